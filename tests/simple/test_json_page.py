"""PEP 691 JSON: parsing hostile upstream pages into the model, rendering it, and round trips."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tidegate.simple.html_page import parse_project_html, render_project_html
from tidegate.simple.json_page import parse_project_json, render_index_json, render_project_json
from tidegate.simple.model import File, Project

PAGE_URL = "https://upstream.example/simple/holy-grail/"
SHA256 = "0123456789abcdef" * 4
OTHER256 = "ab" * 32
SHA512 = "fe" * 64
BLAKE2B = "01" * 64
MD5 = "cd" * 16


def page(files: list[Any] | None = None, **top: Any) -> bytes:
    doc: dict[str, Any] = {"meta": {"api-version": "1.4"}, "name": "holy-grail", "files": files or []}
    doc.update(top)
    return json.dumps(doc).encode()


def parse(body: bytes | str, page_url: str = PAGE_URL) -> Project:
    if isinstance(body, str):
        body = body.encode()
    return parse_project_json(body, page_url, "holy-grail")


def entry(**extra: Any) -> dict[str, Any]:
    return {
        "filename": "holy_grail-1.0.tar.gz",
        "url": "https://files.example/holy_grail-1.0.tar.gz",
        "hashes": {"sha256": SHA256},
        **extra,
    }


def one_file(**extra: Any) -> File:
    (f,) = parse(page([entry(**extra)])).files
    return f


def rendered(project: Project) -> dict[str, Any]:
    body = render_project_json(project)
    return json.loads(body.decode("utf-8"))  # strict: must be valid UTF-8


def full_project() -> Project:
    """Every field the model has, with awkward values."""
    return Project(
        name="holy-grail",
        files=(
            File(
                filename="holy_grail-1.0.tar.gz",
                url="https://files.example/h/holy_grail-1.0.tar.gz",
                hashes={"sha256": SHA256, "sha512": SHA512, "blake2b": BLAKE2B},
                requires_python='>=3.8,<4,!="3.9"&',
                yanked="Had a <script>vulnerability</script>",
                core_metadata={"sha256": OTHER256, "md5": MD5},
                gpg_sig=True,
                size=123456,
                upload_time="2024-01-02T03:04:05.123456Z",
                provenance="https://files.example/h/holy_grail-1.0.tar.gz.provenance",
            ),
            File(
                filename="holy_grail-1.0-py3-none-any.whl",
                url="https://files.example/h/holy_grail-1.0-py3-none-any.whl",
                hashes={"sha256": OTHER256},
                yanked=True,
                core_metadata=True,
                gpg_sig=False,
                size=1337,
                upload_time="2024-01-02T03:04:05Z",
            ),
            File(
                filename="holy_grail-2.0.tar.gz",
                url="https://files.example/h/holy_grail-2.0.tar.gz",
                core_metadata=False,
                size=0,
            ),
        ),
        versions=("0.9", "1.0", "2.0"),
        status="archived",
        status_reason="no longer <maintained> & \"done\" ☃",
        tracks=("https://pypi.org/simple/holy-grail/", "https://test.pypi.org/simple/holy-grail/"),
        alternate_locations=("https://alt.example/simple/holy-grail/",),
    )


# --- parsing ---------------------------------------------------------------------------------


def test_parses_the_spec_example() -> None:
    body = f"""{{
      "meta": {{"api-version": "1.4", "project-status": "active",
                "project-status-reason": "this project is not yet haunted"}},
      "name": "HolyGrail",
      "files": [
        {{"filename": "holygrail-1.0.tar.gz", "url": "https://example.com/files/holygrail-1.0.tar.gz",
          "hashes": {{"sha256": "{SHA256}", "blake2b": "{BLAKE2B}"}},
          "requires-python": ">=3.7", "yanked": "Had a vulnerability", "size": 123456}},
        {{"filename": "holygrail-1.0-py3-none-any.whl",
          "url": "https://example.com/files/holygrail-1.0-py3-none-any.whl",
          "hashes": {{"sha256": "{OTHER256}"}}, "requires-python": ">=3.7",
          "dist-info-metadata": true,
          "provenance": "https://example.com/files/holygrail-1.0-py3-none-any.whl.provenance",
          "size": 1337, "upload-time": "2023-01-02T03:04:05Z", "gpg-sig": false}}
      ],
      "versions": ["1.0"]
    }}"""
    project = parse(body)
    assert project.name == "holy-grail"  # ours, not the page's
    assert project.versions == ("1.0",)
    assert (project.status, project.status_reason) == ("active", "this project is not yet haunted")
    sdist, wheel = project.files
    assert sdist == File(
        filename="holygrail-1.0.tar.gz",
        url="https://example.com/files/holygrail-1.0.tar.gz",
        hashes={"sha256": SHA256, "blake2b": BLAKE2B},
        requires_python=">=3.7",
        yanked="Had a vulnerability",
        size=123456,
    )
    assert wheel == File(
        filename="holygrail-1.0-py3-none-any.whl",
        url="https://example.com/files/holygrail-1.0-py3-none-any.whl",
        hashes={"sha256": OTHER256},
        requires_python=">=3.7",
        core_metadata=True,
        gpg_sig=False,
        size=1337,
        upload_time="2023-01-02T03:04:05Z",
        provenance="https://example.com/files/holygrail-1.0-py3-none-any.whl.provenance",
    )


def test_relative_urls_resolve_against_the_page() -> None:
    files = [
        entry(filename="a-1.0.tar.gz", url="../../files/a-1.0.tar.gz", provenance="a.prov"),
        entry(filename="b-1.0.tar.gz", url="b-1.0.tar.gz#sha256=" + SHA256),
        entry(filename="c-1.0.tar.gz", url="//cdn.example/c-1.0.tar.gz"),
    ]
    project = parse(page(files, **{"alternate-locations": ["../other/"]}))
    assert [f.url for f in project.files] == [
        "https://upstream.example/files/a-1.0.tar.gz",
        "https://upstream.example/simple/holy-grail/b-1.0.tar.gz",
        "https://cdn.example/c-1.0.tar.gz",
    ]
    assert project.files[0].provenance == "https://upstream.example/simple/holy-grail/a.prov"
    assert project.alternate_locations == ("https://upstream.example/simple/other/",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"files": []} trailing', "not valid JSON"),
        (b'{"files": [], "x": "\xff"}', "UTF-8"),
        (b"[]", "not a JSON object"),
        (b'"files"', "not a JSON object"),
        (b"{}", "'files'"),
        (b'{"files": {}}', "'files'"),
        (b'{"files": null}', "'files'"),
        (b'{"meta": [], "files": []}', "meta"),
        (b'{"meta": {"api-version": "2.0"}, "files": []}', "version"),
        (b'{"meta": {"api-version": "0.1"}, "files": []}', "version"),
        (b'{"meta": {"api-version": 1.0}, "files": []}', "api-version"),
        (b'{"meta": {"api-version": "1"}, "files": []}', "api-version"),
        (b'{"meta": {"api-version": "latest"}, "files": []}', "api-version"),
        (b'{"files": [' * 100_000, "JSON"),  # unbalanced deep nesting
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"files": [], "size": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_invalid_pages_raise_value_error(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(body)


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.4", "1.99", "01.2"])
def test_any_minor_version_of_v1_is_accepted(version: str) -> None:
    assert parse(page(meta={"api-version": version})).files == ()


def test_missing_meta_means_version_1_0() -> None:
    assert parse(b'{"files": []}') == Project(name="holy-grail")


def test_a_bom_is_tolerated() -> None:
    assert parse(b"\xef\xbb\xbf" + page()).files == ()


@pytest.mark.parametrize(
    "bad",
    [
        "not a dict",
        None,
        {"url": "https://files.example/x-1.0.tar.gz"},
        {"filename": "x-1.0.tar.gz"},
        {"filename": 5, "url": "https://files.example/x-1.0.tar.gz"},
        {"filename": "x-1.0.tar.gz", "url": ["https://files.example/x-1.0.tar.gz"]},
    ],
)
def test_entries_without_string_filename_and_url_are_skipped(bad: Any) -> None:
    project = parse(page([bad, entry()]))
    assert [f.filename for f in project.files] == ["holy_grail-1.0.tar.gz"]


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:application/octet-stream;base64,AAAA",
        "file:///etc/passwd",
        "ftp://files.example/x.tar.gz",
        "https:///x.tar.gz",
        "https://files.example/a b.tar.gz",
    ],
)
def test_non_http_urls_are_dropped(url: str) -> None:
    assert parse(page([entry(url=url)])).files == ()


@pytest.mark.parametrize(
    "filename",
    ["../../etc/passwd", "..", "a/b.tar.gz", "a\\b.tar.gz", ".x.tar.gz", "x..y.tar.gz", "", "a b",
     "<script>.tar.gz", "é-1.0.tar.gz", "x-1.0.tar.gz\n", "\ud800.tar.gz"],
)
def test_unsafe_filenames_are_dropped(filename: str) -> None:
    assert parse(page([entry(filename=filename)])).files == ()


def test_duplicate_filenames_keep_the_first() -> None:
    files = [
        entry(url="https://one.example/holy_grail-1.0.tar.gz"),
        entry(url="https://two.example/holy_grail-1.0.tar.gz", hashes={"sha256": OTHER256}),
    ]
    (f,) = parse(page(files)).files
    assert f.url == "https://one.example/holy_grail-1.0.tar.gz"
    assert f.hashes == {"sha256": SHA256}


@pytest.mark.parametrize(
    ("hashes", "expected"),
    [
        ({"sha256": SHA256, "SHA512": SHA512.upper()}, {"sha256": SHA256, "sha512": SHA512}),
        ({"sha256": "zz" * 32, "md5": MD5}, {"md5": MD5}),
        ({"sha256": SHA256[:-2]}, {}),
        ({"nosuch": SHA256, "sha256": 5}, {}),
        ({"shake_128": ""}, {}),
        ([SHA256], {}),
        ("sha256=" + SHA256, {}),
        (None, {}),
    ],
)
def test_hashes(hashes: Any, expected: dict[str, str]) -> None:
    assert one_file(hashes=hashes).hashes == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), ("reason", "reason"), (False, False), ("", False), (1, False), (None, False),
     ({"x": 1}, False)],
)
def test_yanked(value: Any, expected: bool | str) -> None:
    assert one_file(yanked=value).yanked == expected


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"core-metadata": True}, True),
        ({"core-metadata": False}, False),
        ({"core-metadata": {"sha256": SHA256}}, {"sha256": SHA256}),
        ({"core-metadata": {"sha256": "bad"}}, True),  # present, but no usable hash
        ({"core-metadata": {}}, True),
        ({"dist-info-metadata": {"sha256": SHA256}}, {"sha256": SHA256}),
        ({"dist-info-metadata": True}, True),
        ({"core-metadata": {"md5": MD5}, "dist-info-metadata": True}, {"md5": MD5}),
        ({"core-metadata": None, "dist-info-metadata": True}, True),
        ({"core-metadata": "true"}, None),
        ({}, None),
    ],
)
def test_core_metadata(extra: dict[str, Any], expected: object) -> None:
    assert one_file(**extra).core_metadata == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (2**40, 2**40), (True, None), (-1, None), (1.5, None), ("12", None), (2**64, None)],
)
def test_size(value: Any, expected: int | None) -> None:
    assert one_file(size=value).size == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05.1Z", "2024-01-02T03:04:05.1Z"),
        ("2024-01-02T03:04:05.123456Z", "2024-01-02T03:04:05.123456Z"),
        ("2024-01-02T03:04:05.1234567Z", None),
        ("2024-01-02T03:04:05+00:00", None),
        ("2024-01-02 03:04:05Z", None),
        ("2024-01-02T03:04:05Z\n", None),
        ("２０２４-01-02T03:04:05Z", None),  # non-ASCII digits
        (1704164645, None),
    ],
)
def test_upload_time(value: Any, expected: str | None) -> None:
    assert one_file(**{"upload-time": value}).upload_time == expected


@pytest.mark.parametrize(
    ("extra", "gpg", "requires", "provenance"),
    [
        ({"gpg-sig": True, "requires-python": ">=3", "provenance": None}, True, ">=3", None),
        ({"gpg-sig": "true", "requires-python": 3, "provenance": 5}, None, None, None),
        ({"requires-python": "", "provenance": "javascript:x"}, None, None, None),
    ],
)
def test_simple_optional_fields(extra: dict[str, Any], gpg: Any, requires: Any, provenance: Any) -> None:
    f = one_file(**extra)
    assert (f.gpg_sig, f.requires_python, f.provenance) == (gpg, requires, provenance)


def test_versions_are_strings_deduplicated_in_order() -> None:
    project = parse(page(versions=["2.0", 1, "1.0", "2.0", None, "", "3.0"]))
    assert project.versions == ("2.0", "1.0", "3.0")
    assert parse(page(versions="1.0")).versions is None
    assert parse(page()).versions is None


@pytest.mark.parametrize(
    ("top", "meta", "expected"),
    [
        ({"project-status": {"status": "archived", "reason": "done"}}, {}, ("archived", "done")),
        ({}, {"project-status": "quarantined", "project-status-reason": "malware"},
         ("quarantined", "malware")),
        ({"project-status": {"status": "archived"}}, {"project-status": "active",
                                                     "project-status-reason": "meta reason"},
         ("archived", "meta reason")),
        ({"project-status": "archived"}, {}, (None, None)),
        ({"project-status": {"status": 5, "reason": ["x"]}}, {}, (None, None)),
        ({}, {}, (None, None)),
    ],
)
def test_project_status_in_either_shape(top: dict[str, Any], meta: dict[str, Any],
                                        expected: tuple[str | None, str | None]) -> None:
    body = page(meta={"api-version": "1.4", **meta}, **top)
    project = parse(body)
    assert (project.status, project.status_reason) == expected


def test_tracks_and_alternate_locations() -> None:
    body = page(
        meta={"api-version": "1.2", "tracks": ["https://pypi.org/simple/holy-grail/", 5,
                                               "javascript:alert(1)",
                                               "https://pypi.org/simple/holy-grail/"]},
        **{"alternate-locations": ["https://alt.example/simple/holy-grail/", None]},
    )
    project = parse(body)
    assert project.tracks == ("https://pypi.org/simple/holy-grail/",)
    assert project.alternate_locations == ("https://alt.example/simple/holy-grail/",)
    assert parse(page(meta={"api-version": "1.2", "tracks": "https://x/"})).tracks == ()


def test_lone_surrogates_do_not_break_output() -> None:
    body = page([entry(yanked="bad \ud800 reason", **{"requires-python": ">=3\udfff"})],
                meta={"api-version": "1.4", "project-status-reason": "\ud83d"})
    project = parse(body)
    assert project.files[0].yanked == "bad \ufffd reason"
    assert project.status_reason == "\ufffd"
    render_project_json(project).decode("utf-8")
    render_project_html(project).decode("utf-8")


def test_random_documents_only_ever_raise_value_error() -> None:
    rng = random.Random(691)
    leaves: list[Any] = [None, True, False, 0, -1, 1.5, "", "x", "https://a.example/x-1.0.tar.gz",
                         "../x-1.0.tar.gz", "javascript:1", SHA256, "\ud800", "2024-01-02T03:04:05Z"]
    keys = ["meta", "api-version", "files", "filename", "url", "hashes", "sha256", "yanked",
            "core-metadata", "dist-info-metadata", "size", "upload-time", "provenance", "versions",
            "project-status", "status", "reason", "tracks", "alternate-locations", "gpg-sig"]

    def value(depth: int) -> Any:
        kind = rng.random()
        if depth > 4 or kind < 0.4:
            return rng.choice(leaves)
        if kind < 0.7:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(0, 6))}

    for _ in range(3000):
        doc = value(0)
        if isinstance(doc, dict) and rng.random() < 0.7:
            doc["files"] = [value(1) for _ in range(rng.randint(0, 4))]
        body = json.dumps(doc).encode()
        if rng.random() < 0.2 and body:
            i = rng.randrange(len(body))
            body = body[:i] + bytes([rng.randrange(256)]) + body[i + 1:]
        try:
            project = parse(body)
        except ValueError:
            continue
        render_project_json(project).decode("utf-8")


# --- rendering -------------------------------------------------------------------------------


def test_every_file_entry_has_filename_url_and_hashes() -> None:
    project = Project(name="holy-grail", files=(File("x-1.0.tar.gz", "https://p.example/x-1.0.tar.gz"),))
    assert rendered(project)["files"] == [
        {"filename": "x-1.0.tar.gz", "url": "https://p.example/x-1.0.tar.gz", "hashes": {}}
    ]


def test_render_full_project() -> None:
    doc = rendered(full_project())
    assert doc["meta"] == {
        "api-version": "1.4",
        "tracks": ["https://pypi.org/simple/holy-grail/", "https://test.pypi.org/simple/holy-grail/"],
        "project-status": "archived",
        "project-status-reason": "no longer <maintained> & \"done\" ☃",
    }
    assert doc["project-status"] == {"status": "archived",
                                     "reason": "no longer <maintained> & \"done\" ☃"}
    assert doc["alternate-locations"] == ["https://alt.example/simple/holy-grail/"]
    assert doc["name"] == "holy-grail"
    assert doc["versions"] == ["0.9", "1.0", "2.0"]
    sdist, wheel, bare = doc["files"]
    assert sdist["core-metadata"] == sdist["dist-info-metadata"] == {"sha256": OTHER256, "md5": MD5}
    assert sdist["requires-python"] == '>=3.8,<4,!="3.9"&'
    assert sdist["upload-time"] == "2024-01-02T03:04:05.123456Z"
    assert wheel["yanked"] is True and wheel["gpg-sig"] is False
    assert wheel["core-metadata"] is True and wheel["dist-info-metadata"] is True
    assert "provenance" not in wheel
    assert bare == {
        "filename": "holy_grail-2.0.tar.gz",
        "url": "https://files.example/h/holy_grail-2.0.tar.gz",
        "hashes": {},
        "core-metadata": False,
        "dist-info-metadata": False,
        "size": 0,
    }


def test_empty_metadata_hashes_still_say_available() -> None:
    # A caller-built {} must not render as {}, which truthiness-based clients read as "absent".
    project = Project(name="x", files=(File("x-1.0.tar.gz", "https://p.example/x", core_metadata={}),))
    (f,) = rendered(project)["files"]
    assert f["core-metadata"] is True and f["dist-info-metadata"] is True
    (a,) = parse_project_html(render_project_html(project), "https://p.example/", "x").files
    assert a.core_metadata is True


def test_output_is_compact_utf8() -> None:
    body = render_project_json(full_project())
    assert b"\n" not in body and b'", "' not in body
    assert "☃".encode() in body


def test_versions_include_every_file_version() -> None:
    project = Project(
        name="holy-grail",
        files=(File("holy_grail-3.0-py3-none-any.whl", "https://p.example/a.whl"),
               File("holy_grail-1.0.tar.gz", "https://p.example/b.tar.gz"),
               File("holy_grail-1.0.zip", "https://p.example/c.zip")),
        versions=("2.0", "3.0"),
    )
    assert rendered(project)["versions"] == ["2.0", "3.0", "1.0"]
    assert rendered(Project(name="holy-grail"))["versions"] == []


def test_status_reason_without_status() -> None:
    doc = rendered(Project(name="holy-grail", status_reason="why"))
    assert doc["project-status"] == {"reason": "why"}
    assert doc["meta"] == {"api-version": "1.4", "project-status-reason": "why"}
    assert "project-status" not in rendered(Project(name="holy-grail"))


@pytest.mark.parametrize(("sizes", "version"), [((1, 2), "1.1"), ((1, None), "1.0"), ((), "1.1")])
def test_declared_api_version_is_honest(sizes: tuple[int | None, ...], version: str) -> None:
    files = tuple(File(f"x-{i}.0.tar.gz", "https://p.example/x", size=s) for i, s in enumerate(sizes))
    assert rendered(Project(name="x", files=files))["meta"]["api-version"] == version


@pytest.mark.parametrize(("features", "version"), [
    ({}, "1.1"),
    ({"upload_time": "2024-01-02T03:04:05Z"}, "1.1"),
    ({"tracks": ("https://other.example/simple/x/",)}, "1.2"),
    ({"provenance": "https://p.example/x.provenance", "tracks": ("https://o.example/simple/x/",)}, "1.3"),
    ({"status": "archived", "provenance": "https://p.example/x.provenance"}, "1.4"),
])
def test_declared_api_version_is_the_newest_feature_carried(features: dict[str, Any], version: str) -> None:
    file_keys = {k: v for k, v in features.items() if k in ("upload_time", "provenance")}
    page_keys = {k: v for k, v in features.items() if k not in file_keys}
    project = Project(name="x", files=(File("x-1.0.tar.gz", "https://p.example/x", size=1, **file_keys),), **page_keys)
    assert rendered(project)["meta"]["api-version"] == version
    assert f'content="{version}"' in render_project_html(project).decode()


def test_render_index() -> None:
    body = render_index_json(["Holy_Grail", "<b>\u2603"])
    assert json.loads(body.decode("utf-8")) == {
        "meta": {"api-version": "1.4"},
        "projects": [{"name": "Holy_Grail"}, {"name": "<b>☃"}],
    }


# --- round trips -----------------------------------------------------------------------------


def test_json_round_trip_preserves_the_whole_model() -> None:
    project = full_project()
    assert parse(render_project_json(project), page_url="https://proxy.example/simple/holy-grail/") == project


def test_html_to_json_to_html_round_trip() -> None:
    upstream = f"""<!DOCTYPE html><html><head>
    <meta name="pypi:repository-version" content="1.4">
    <meta name="pypi:project-status" content="deprecated">
    <meta name="pypi:project-status-reason" content="use &lt;spam&gt; &amp; eggs">
    <meta name="pypi:tracks" content="https://pypi.org/simple/holy-grail/">
    <meta name="pypi:alternate-locations" content="https://alt.example/simple/holy-grail/">
    </head><body>
    <a href="../../files/holy_grail-1.0.tar.gz#sha256={SHA256}"
       data-requires-python="&gt;=3.8,&lt;4,!=&quot;3.9&quot;&amp;" data-yanked="broke &lt;it&gt;"
       data-dist-info-metadata="sha256={OTHER256}" data-gpg-sig="true"
       data-provenance="/prov/holy_grail-1.0.tar.gz">holy_grail-1.0.tar.gz</a>
    <a href="https://files.example/holy_grail-1.0-py3-none-any.whl#md5={MD5}" data-yanked
       data-core-metadata="true" data-gpg-sig="false">holy_grail-1.0-py3-none-any.whl</a>
    <a href="holy_grail-2.0.tar.gz">holy_grail-2.0.tar.gz</a>
    </body></html>"""
    from_html = parse_project_html(upstream.encode(), PAGE_URL, "holy-grail")
    first, second, third = from_html.files
    assert first == File(
        filename="holy_grail-1.0.tar.gz",
        url="https://upstream.example/files/holy_grail-1.0.tar.gz",
        hashes={"sha256": SHA256},
        requires_python='>=3.8,<4,!="3.9"&',
        yanked="broke <it>",
        core_metadata={"sha256": OTHER256},
        gpg_sig=True,
        provenance="https://upstream.example/prov/holy_grail-1.0.tar.gz",
    )
    assert (second.hashes, second.yanked, second.core_metadata, second.gpg_sig) == (
        {"md5": MD5}, True, True, False)
    assert third.url == "https://upstream.example/simple/holy-grail/holy_grail-2.0.tar.gz"
    assert from_html.status_reason == "use <spam> & eggs"

    as_json = render_project_json(from_html)
    assert json.loads(as_json)["meta"]["api-version"] == "1.0"  # HTML gave no sizes
    from_json = parse(as_json, page_url="https://proxy.example/simple/holy-grail/")
    # JSON adds the versions the files name; nothing else changes.
    assert from_json.versions == ("1.0", "2.0")
    assert from_json == Project(**{**_fields(from_html), "versions": ("1.0", "2.0")})
    assert render_project_html(from_json) == render_project_html(from_html)


def test_json_to_html_keeps_what_html_can_carry() -> None:
    project = full_project()
    back = parse_project_html(render_project_html(project), "https://proxy.example/s/", "holy-grail")
    assert [f.filename for f in back.files] == [f.filename for f in project.files]
    assert (back.status, back.status_reason, back.tracks, back.alternate_locations) == (
        project.status, project.status_reason, project.tracks, project.alternate_locations)
    for before, after in zip(project.files, back.files):
        # One hash fits an HTML link; sizes, upload times and versions do not exist there.
        assert after.hashes == ({"sha256": before.hashes["sha256"]} if before.hashes else {})
        assert (after.url, after.requires_python, after.yanked, after.gpg_sig, after.provenance) == (
            before.url, before.requires_python, before.yanked, before.gpg_sig, before.provenance)
        assert after.size is None and after.upload_time is None
    assert back.files[0].core_metadata == {"sha256": OTHER256}
    assert back.files[1].core_metadata is True
    assert back.files[2].core_metadata is None  # False is "no metadata": HTML omits it
    assert back.versions is None


def _fields(project: Project) -> dict[str, Any]:
    return {name: getattr(project, name) for name in Project.__slots__}


def _pypi_like_page(rng: random.Random, files: int) -> dict[str, Any]:
    entries = []
    for i in range(files):
        entry: dict[str, Any] = {
            "filename": f"holy_grail-{i}.0-py3-none-any.whl",
            "url": f"https://files.example/packages/{rng.getrandbits(32):08x}/holy_grail-{i}.0-py3-none-any.whl",
            "hashes": {"sha256": f"{rng.getrandbits(256):064x}"},
        }
        for key, value in (("requires-python", ">=3.8"), ("yanked", rng.choice([True, False, "broken"])),
                           ("core-metadata", rng.choice([True, False, {"sha256": f"{rng.getrandbits(256):064x}"}])),
                           ("data-dist-info-metadata", True), ("size", rng.randrange(1, 10**9)),
                           ("upload-time", "2024-01-02T03:04:05.123456Z"), ("gpg-sig", False),
                           ("provenance", f"https://files.example/{i}.provenance"),
                           ("hashes", {"sha256": f"{rng.getrandbits(256):064x}", "md5": f"{rng.getrandbits(128):032x}"})):
            if rng.random() < 0.5:
                entry[key] = value
        entries.append(entry)
    return {"meta": {"api-version": "1.1", "_last-serial": 123, "tracks": ["https://o.example/simple/x/"]},
            "name": "holy-grail", "files": entries, "versions": [f"{i}.0" for i in range(files)],
            "project-status": {"status": "active"}}


def test_the_fast_path_takes_pypi_pages_and_agrees_with_the_lenient_path() -> None:
    """A page as PyPI sends it never needs the lenient path, and both give the same model."""
    from tidegate.simple import json_page

    rng = random.Random(7)
    for _ in range(20):
        doc = _pypi_like_page(rng, rng.randrange(0, 40))
        body = json.dumps(doc).encode()
        fast = json_page._parse_plain(body, "https://p.example/simple/holy-grail/", "holy-grail")
        assert fast is not None and fast[1]  # taken, and the body stands on its own
        assert fast[0] == json_page.project_from_document(doc, "https://p.example/simple/holy-grail/", "holy-grail")


@pytest.mark.parametrize("url", [
    "../../files/ab/cd/holy_grail-0.0-py3-none-any.whl", "../x.whl", "x.whl", "../../../../../x.whl",
    "../../files/%2B/x.whl", "files/a;b=c/x.whl",
])
@pytest.mark.parametrize("base", ["https://p.example/simple/holy-grail/", "http://p.example:8080/a/simple/holy-grail/",
                                  "https://p.example/simple/holy-grail/?q=1"])
def test_relative_links_on_the_fast_path_resolve_as_urljoin_does(url: str, base: str) -> None:
    from tidegate.simple import json_page

    doc = _pypi_like_page(random.Random(5), 3)
    doc["files"][0]["url"] = url
    fast = json_page._parse_plain(json.dumps(doc).encode(), base, "holy-grail")
    assert fast is not None and not fast[1]  # taken, but not a body to store as it came
    assert fast[0] == json_page.project_from_document(doc, base, "holy-grail")


@pytest.mark.parametrize("change", [
    lambda d: d["files"][0].update(url="./x.whl"),                   # a dot segment: the lenient path resolves it
    lambda d: d["files"][0].update(url="//other.example/x.whl"),     # a network-path reference
    lambda d: d["files"][0].update(size=1.5),                        # a type the fast path does not take
    lambda d: d["files"][0].update(extra={"nested": True}),          # an unknown key
    lambda d: d["files"][0].update(filename="../escape.whl"),        # an entry to drop
    lambda d: d["files"].append("not an entry"),
    lambda d: d["meta"].update(unknown="x"),
])
def test_pages_the_fast_path_leaves_to_the_lenient_path(change: Any) -> None:
    from tidegate.simple import json_page

    doc = _pypi_like_page(random.Random(3), 3)
    change(doc)
    body = json.dumps(doc).encode()
    assert json_page._parse_plain(body, "https://p.example/simple/holy-grail/", "holy-grail") is None
    assert parse_project_json(body, "https://p.example/simple/holy-grail/", "holy-grail") == \
        json_page.project_from_document(doc, "https://p.example/simple/holy-grail/", "holy-grail")


def test_a_file_with_an_empty_url_is_dropped():
    # Found by tests/robust/test_fuzz.py: "" resolved to the page's own URL, which the HTML
    # rendering could not carry (its filename comes from the link).
    body = json.dumps({"meta": {"api-version": "1.0"}, "name": "x", "files": [
        {"filename": "x-1.0.tar.gz", "url": "", "hashes": {}},
        {"filename": "x-1.1.tar.gz", "url": "https://f.example/x-1.1.tar.gz", "hashes": {}}]}).encode()
    project = parse_project_json(body, "https://up.example/simple/x/", "x")
    assert [f.filename for f in project.files] == ["x-1.1.tar.gz"]
