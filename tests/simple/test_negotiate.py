"""The Accept / ?format= matrix of PEP 691 as clients really send it."""

import pytest

from tidegate.simple.negotiate import Encoding, Representation as R, negotiate, negotiate_encoding, parse_accept

PIP = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
UV = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, R.TEXT),
        ("", R.TEXT),
        ("*/*", R.TEXT),
        ("*/*;q=0.5", R.TEXT),
        (PIP, R.JSON),
        (UV, R.JSON),
        (BROWSER, R.TEXT),
        ("text/html", R.TEXT),
        ("application/vnd.pypi.simple.v1+html", R.HTML),
        ("application/vnd.pypi.simple.latest+html", R.HTML),
        ("application/vnd.pypi.simple.latest+json", R.JSON),
        ("application/vnd.pypi.simple.v1+json", R.JSON),
        # equally acceptable named types: JSON wins
        ("text/html, application/vnd.pypi.simple.v1+json", R.JSON),
        ("application/*", R.JSON),
        ("text/*", R.TEXT),
        # higher q wins over the JSON preference
        ("application/vnd.pypi.simple.v1+json;q=0.5, text/html", R.TEXT),
        # an explicit type beats a wildcard of the same q
        ("text/html, */*", R.TEXT),
        # q=0 excludes, even when a wildcard would allow it
        ("application/vnd.pypi.simple.v1+json;q=0, */*", R.TEXT),
        ("text/html;q=0, */*", R.JSON),
        ("text/html;q=0, application/vnd.pypi.simple.v1+html;q=0, application/vnd.pypi.simple.v1+json;q=0", None),
        # nothing we serve
        ("application/xml", None),
        ("image/png, application/json", None),
        ("application/vnd.pypi.simple.v2+json", None),
        # malformed parts are ignored, the rest still counts
        ("garbage, text/html", R.TEXT),
        ("application/vnd.pypi.simple.v1+json;q=abc, text/html", R.TEXT),
        ("application/vnd.pypi.simple.v1+json;q=7, text/html", R.TEXT),
        (";;;,,,/", R.TEXT),
        ("*/json", R.TEXT),
        ("application/vnd.pypi.simple.v1+json;q=nan, text/html;q=0.1", R.TEXT),
        ("TEXT/HTML", R.TEXT),
    ],
)
def test_accept(accept, expected):
    assert negotiate(accept) is expected


@pytest.mark.parametrize(
    "fmt, expected",
    [
        ("application/vnd.pypi.simple.v1+json", R.JSON),
        ("application/vnd.pypi.simple.latest+json", R.JSON),
        ("application/vnd.pypi.simple.v1+html", R.HTML),
        ("text/html", R.TEXT),
        ("application/json", None),
        ("*/*", None),
        ("", None),
    ],
)
def test_format_parameter_overrides_accept(fmt, expected):
    assert negotiate("text/html", fmt) is expected


def test_content_types_are_v1():
    assert R.JSON.content_type == "application/vnd.pypi.simple.v1+json"
    assert R.HTML.content_type.startswith("application/vnd.pypi.simple.v1+html")
    assert R.TEXT.content_type.startswith("text/html")


def test_parse_accept_never_raises_on_junk():
    for junk in ["\x00\xff", "a/b;q=", "a/b;q==1", ",,,", "a/b;q=1e309", "/" * 1000, "a/b;" * 500]:
        parse_accept(junk)
        negotiate(junk)


@pytest.mark.parametrize(("header", "expected"), [
    (None, Encoding.IDENTITY), ("", Encoding.IDENTITY), ("gzip, deflate", Encoding.GZIP),
    ("gzip, deflate, br, zstd", Encoding.ZSTD),  # what uv sends
    ("zstd;q=0.5, gzip", Encoding.GZIP), ("x-gzip", Encoding.GZIP), ("*", Encoding.ZSTD),
    ("br", Encoding.IDENTITY), ("identity;q=0, gzip;q=0.1", Encoding.GZIP),
    ("gzip;q=0, zstd;q=0", Encoding.IDENTITY), ("*;q=0", Encoding.IDENTITY),
    ("gzip;q=2, zstd;q=nan", Encoding.IDENTITY), ("ZSTD;Q=1", Encoding.ZSTD), (",,;", Encoding.IDENTITY),
])
def test_content_coding(header, expected) -> None:
    assert negotiate_encoding(header) is expected
