"""PEP 503 HTML: parsing hostile upstream pages into the model, and rendering the model safely."""

from __future__ import annotations

import gc
import random
import re
import sys
from html.parser import HTMLParser
from types import FrameType
from typing import Any, Callable, NamedTuple

import pytest

from tidegate.simple import html_page
from tidegate.simple.html_page import (
    parse_project_html,
    render_index_html,
    render_project_html,
    resolve_http_url,
    valid_filename,
)
from tidegate.simple.model import File, Project

PAGE_URL = "https://upstream.example/simple/holy-grail/"
SHA256 = "0123456789abcdef" * 4
OTHER256 = "ab" * 32
MD5 = "cd" * 16


def parse(html: str | bytes, page_url: str = PAGE_URL) -> Project:
    body = html.encode() if isinstance(html, str) else html
    return parse_project_html(body, page_url, "holy-grail")


def one_file(attrs: str, href: str = "https://files.example/holy_grail-1.0.tar.gz") -> File:
    project = parse(f'<a href="{href}" {attrs}>holy_grail-1.0.tar.gz</a>')
    assert len(project.files) == 1
    return project.files[0]


class _Collector(HTMLParser):
    """An independent reading of our output, the way pip reads a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_back(body: bytes) -> _Collector:
    collector = _Collector()
    collector.feed(body.decode("utf-8"))
    collector.close()
    return collector


def anchors(body: bytes) -> list[dict[str, str | None]]:
    return [attrs for tag, attrs in read_back(body).tags if tag == "a"]


# --- parsing ---------------------------------------------------------------------------------


def test_parses_a_typical_pypi_page() -> None:
    page = f"""<!DOCTYPE html>
<html>
  <head>
    <meta name="pypi:repository-version" content="1.4">
    <meta name="pypi:project-status" content="deprecated">
    <meta name="pypi:project-status-reason" content="use spam instead">
    <title>Links for holy-grail</title>
  </head>
  <body>
    <h1>Links for holy-grail</h1>
    <a href="https://files.example/packages/aa/holy_grail-1.0.tar.gz#sha256={SHA256}" data-requires-python="&gt;=3.8" >holy_grail-1.0.tar.gz</a><br />
    <a href="https://files.example/packages/bb/holy_grail-1.0-py3-none-any.whl#sha256={OTHER256}" data-requires-python="&gt;=3.8" data-dist-info-metadata="sha256={MD5 * 2}" data-core-metadata="sha256={MD5 * 2}" data-provenance="https://files.example/integrity/holy-grail/1.0/holy_grail-1.0-py3-none-any.whl/provenance">holy_grail-1.0-py3-none-any.whl</a><br />
  </body>
</html>
"""
    project = parse(page)
    assert project.name == "holy-grail"
    assert project.status == "deprecated"
    assert project.status_reason == "use spam instead"
    assert project.versions is None  # HTML cannot say
    sdist, wheel = project.files
    assert sdist == File(
        filename="holy_grail-1.0.tar.gz",
        url="https://files.example/packages/aa/holy_grail-1.0.tar.gz",
        hashes={"sha256": SHA256},
        requires_python=">=3.8",
    )
    assert wheel.url == "https://files.example/packages/bb/holy_grail-1.0-py3-none-any.whl"
    assert wheel.hashes == {"sha256": OTHER256}
    assert wheel.core_metadata == {"sha256": MD5 * 2}
    assert wheel.provenance == (
        "https://files.example/integrity/holy-grail/1.0/holy_grail-1.0-py3-none-any.whl/provenance"
    )


def test_name_comes_from_the_request_not_the_page() -> None:
    project = parse_project_html(b"<title>Links for EVIL</title><h1>evil</h1>", PAGE_URL, "spam")
    assert project.name == "spam"
    assert project.files == ()


def test_relative_urls_resolve_against_the_page() -> None:
    page = (
        '<a href="../../packages/x/holy_grail-1.0.tar.gz">a</a>'
        '<a href="holy_grail-2.0.tar.gz">b</a>'
        '<a href="/root/holy_grail-3.0.tar.gz">c</a>'
        '<a href="//cdn.example/holy_grail-4.0.tar.gz">d</a>'
        '<a href="HTTPS://Mixed.Example/holy_grail-5.0.tar.gz">e</a>'
    )
    urls = [f.url for f in parse(page).files]
    assert urls == [
        "https://upstream.example/packages/x/holy_grail-1.0.tar.gz",
        "https://upstream.example/simple/holy-grail/holy_grail-2.0.tar.gz",
        "https://upstream.example/root/holy_grail-3.0.tar.gz",
        "https://cdn.example/holy_grail-4.0.tar.gz",
        "https://Mixed.Example/holy_grail-5.0.tar.gz",
    ]


def test_base_element_changes_where_relative_links_point() -> None:
    page = (
        '<head><base href="https://mirror.example/pkgs/"></head>'
        '<a href="holy_grail-1.0.tar.gz">x</a>'
        '<a href="/p/provenance-target.tar.gz" data-provenance="prov.json">y</a>'
    )
    first, second = parse(page).files
    assert first.url == "https://mirror.example/pkgs/holy_grail-1.0.tar.gz"
    assert second.provenance == "https://mirror.example/pkgs/prov.json"


def test_a_javascript_base_is_ignored() -> None:
    page = '<base href="javascript:alert(1)//"><a href="holy_grail-1.0.tar.gz">x</a>'
    assert parse(page).files[0].url == PAGE_URL + "holy_grail-1.0.tar.gz"


def test_filename_is_the_percent_decoded_last_path_component() -> None:
    f = one_file("", href="https://files.example/a/holy_grail-1.0%2Blocal.tar.gz?x=1")
    assert f.filename == "holy_grail-1.0+local.tar.gz"
    assert f.url == "https://files.example/a/holy_grail-1.0%2Blocal.tar.gz?x=1"


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        (f"sha256={SHA256}", {"sha256": SHA256}),
        (f"SHA256={SHA256.upper()}", {"sha256": SHA256}),
        (f"md5={MD5}", {"md5": MD5}),
        (f"egg=holy_grail&sha256={SHA256}", {"sha256": SHA256}),
        ("sha256=nothex", {}),
        (f"sha256={SHA256}00", {}),  # wrong length
        (f"nosuchhash={SHA256}", {}),
        ("shake_128=", {}),  # hashlib knows it, but an empty digest proves nothing
        ("", {}),
    ],
)
def test_fragment_hashes_are_validated(fragment: str, expected: dict[str, str]) -> None:
    f = one_file("", href=f"https://files.example/holy_grail-1.0.tar.gz#{fragment}")
    assert f.hashes == expected
    assert "#" not in f.url


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ('data-requires-python="&gt;=3.8,&lt;4,!=3.9.*"', ">=3.8,<4,!=3.9.*"),
        ('data-requires-python=">=3.8"', ">=3.8"),  # unescaped, as some indexes send it
        ("data-requires-python='&quot;&amp;&#39;'", "\"&'"),
        ('data-requires-python=""', None),
        ("", None),
    ],
)
def test_requires_python(attrs: str, expected: str | None) -> None:
    assert one_file(attrs).requires_python == expected


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ("data-yanked", True),
        ('data-yanked=""', True),
        ('data-yanked="broken &amp; bad"', "broken & bad"),
        ('DATA-YANKED="upper"', "upper"),  # attribute names are case-insensitive
        ("", False),
    ],
)
def test_yanked(attrs: str, expected: bool | str) -> None:
    assert one_file(attrs).yanked == expected


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ('data-core-metadata="true"', True),
        (f'data-core-metadata="sha256={SHA256}"', {"sha256": SHA256}),
        (f'data-dist-info-metadata="sha256={SHA256}"', {"sha256": SHA256}),  # PEP 658 only
        ('data-dist-info-metadata="true"', True),
        (f'data-core-metadata="sha256={SHA256}" data-dist-info-metadata="true"', {"sha256": SHA256}),
        (f'data-dist-info-metadata="md5={MD5}" data-core-metadata="true"', True),  # PEP 714 wins
        ('data-core-metadata="sha256=garbage"', True),  # present, hash unusable
        ("data-core-metadata", True),
        ('data-core-metadata="false"', False),
        ("", None),
    ],
)
def test_core_metadata(attrs: str, expected: object) -> None:
    assert one_file(attrs).core_metadata == expected


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [('data-gpg-sig="true"', True), ('data-gpg-sig="false"', False), ('data-gpg-sig="yes"', None)],
)
def test_gpg_sig(attrs: str, expected: bool | None) -> None:
    assert one_file(attrs).gpg_sig == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Relative to the page (the document base), not to the file's URL.
        ("prov/holy.json", "https://upstream.example/simple/holy-grail/prov/holy.json"),
        ("https://other.example/p", "https://other.example/p"),
        ("javascript:alert(1)", None),
    ],
)
def test_provenance_is_made_absolute(value: str, expected: str | None) -> None:
    f = one_file(f'data-provenance="{value}"', href="https://files.example/holy_grail-1.0.tar.gz")
    assert f.provenance == expected


def test_tracks_and_alternate_locations_are_repeatable_meta_tags() -> None:
    page = """
    <meta name="pypi:tracks" content="https://pypi.org/simple/holy-grail/">
    <meta name="pypi:tracks" content="https://test.pypi.org/simple/holy-grail/">
    <meta name="pypi:tracks" content="https://pypi.org/simple/holy-grail/">
    <meta name="pypi:tracks" content="javascript:alert(1)">
    <meta name="PYPI:ALTERNATE-LOCATIONS" content="../other/">
    <meta name="pypi-alternate-locations" content="https://alt.example/simple/holy-grail/">
    """
    project = parse(page)
    assert project.tracks == (
        "https://pypi.org/simple/holy-grail/",
        "https://test.pypi.org/simple/holy-grail/",
    )
    assert project.alternate_locations == (
        "https://upstream.example/simple/other/",
        "https://alt.example/simple/holy-grail/",
    )


@pytest.mark.parametrize("version", ["1.0", "1.4", "1.99", "", "x", "2", "latest"])
def test_repository_version_is_tolerated(version: str) -> None:
    page = f'<meta name="pypi:repository-version" content="{version}"><a href="a-1.0.tar.gz">x</a>'
    assert [f.filename for f in parse(page).files] == ["a-1.0.tar.gz"]


@pytest.mark.parametrize("version", ["2.0", "0.9", "10.1"])
def test_another_major_version_is_refused(version: str) -> None:
    with pytest.raises(ValueError, match="version"):
        parse(f'<meta name="pypi:repository-version" content="{version}">')


# --- hostile upstream pages ------------------------------------------------------------------


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)//holy_grail-1.0.tar.gz",
        " JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "ftp://files.example/holy_grail-1.0.tar.gz",
        "http:///holy_grail-1.0.tar.gz",  # no host
        "https://[::1/holy_grail-1.0.tar.gz",  # unbalanced IPv6 bracket
        "https://files.example/a b/holy_grail-1.0.tar.gz",
        "https://files.example/",  # no filename
        "",
    ],
)
def test_only_http_urls_with_a_host_survive(href: str) -> None:
    assert parse(f'<a href="{href}">holy_grail-1.0.tar.gz</a>').files == ()


@pytest.mark.parametrize(
    "last_component",
    [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "a..b.tar.gz",
        ".hidden.tar.gz",
        "-rf.tar.gz",
        "holy%00grail.tar.gz",
        "holy%20grail.tar.gz",
        "holy%22%3E%3Cscript%3E.tar.gz",
        "%C3%A9t%C3%A9-1.0.tar.gz",  # non-ASCII
        "%FF%FE.tar.gz",  # not UTF-8
        "a" * 256,
    ],
)
def test_unsafe_filenames_are_dropped(last_component: str) -> None:
    assert parse(f'<a href="https://files.example/x/{last_component}">x</a>').files == ()


def test_path_traversal_in_href_cannot_escape_the_filename() -> None:
    # The URL may climb directories upstream; the filename is still one safe segment.
    f = parse('<a href="../../../../etc/passwd">../../etc/passwd</a>').files[0]
    assert f.url == "https://upstream.example/etc/passwd"
    assert f.filename == "passwd"


def test_valid_filename_edges() -> None:
    assert valid_filename("holy_grail-1.0+local!1~x-py3-none-any.whl")
    assert valid_filename("a" * 255)
    assert not valid_filename("")
    assert not valid_filename("holy_grail-1.0.tar.gz\n")


def test_resolve_http_url_refuses_non_http() -> None:
    assert resolve_http_url("x.whl", "https://a.example/s/") == "https://a.example/s/x.whl"
    assert resolve_http_url("mailto:a@b", "https://a.example/s/") is None


def test_duplicate_filenames_keep_the_first() -> None:
    page = (
        f'<a href="https://one.example/holy_grail-1.0.tar.gz#sha256={SHA256}">1</a>'
        f'<a href="https://two.example/holy_grail-1.0.tar.gz#sha256={OTHER256}">2</a>'
        '<a href="https://one.example/holy_grail-2.0.tar.gz">3</a>'
    )
    files = parse(page).files
    assert [(f.filename, f.url) for f in files] == [
        ("holy_grail-1.0.tar.gz", "https://one.example/holy_grail-1.0.tar.gz"),
        ("holy_grail-2.0.tar.gz", "https://one.example/holy_grail-2.0.tar.gz"),
    ]
    assert files[0].hashes == {"sha256": SHA256}


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    body = b'<a href="holy_grail-1.0.tar.gz" data-yanked="bad \xff\xfe reason">x</a>\xc3'
    (f,) = parse(body).files
    assert f.yanked == "bad \ufffd\ufffd reason"


def test_links_inside_comments_scripts_and_styles_are_not_links() -> None:
    page = """
    <!-- <a href="holy_grail-0.1.tar.gz">commented</a> -->
    <script>var s = '<a href="holy_grail-0.2.tar.gz">';</script>
    <SCRIPT type="x">document.write("<a href='holy_grail-0.3.tar.gz'>")</SCRIPT >
    <style>a::after { content: '<a href="holy_grail-0.4.tar.gz">' }</style>
    <!--><a href="holy_grail-1.0.tar.gz">after an abrupt empty comment</a>
    <a href="holy_grail-2.0.tar.gz">real</a>
    """
    assert [f.filename for f in parse(page).files] == ["holy_grail-1.0.tar.gz", "holy_grail-2.0.tar.gz"]


def test_attribute_injection_stays_inside_the_attribute() -> None:
    page = (
        '<a href="holy_grail-1.0.tar.gz" data-requires-python="&quot;&gt;&lt;script&gt;alert(1)'
        '&lt;/script&gt;" data-yanked="x&quot; onmouseover=&quot;alert(1)">x</a>'
    )
    f = parse(page).files[0]
    assert f.requires_python == '"><script>alert(1)</script>'
    assert f.yanked == 'x" onmouseover="alert(1)'
    out = render_project_html(parse(page))
    assert b"<script" not in out
    (attrs,) = anchors(out)
    assert attrs["data-requires-python"] == '"><script>alert(1)</script>'
    assert attrs["data-yanked"] == 'x" onmouseover="alert(1)'
    assert "onmouseover" not in attrs


def test_unterminated_tag_drops_only_what_follows() -> None:
    page = '<a href="holy_grail-1.0.tar.gz">ok</a><a href="holy_grail-2.0.tar.gz" data-yanked="x'
    assert [f.filename for f in parse(page).files] == ["holy_grail-1.0.tar.gz"]


def test_first_of_repeated_attributes_wins() -> None:
    page = '<a href="holy_grail-1.0.tar.gz" href="javascript:alert(1)">x</a>'
    assert parse(page).files[0].filename == "holy_grail-1.0.tar.gz"


class ParseWork(NamedTuple):
    lines: int  # Python lines run by the parse (tidegate, html.parser, ...), not by the counting
    examined: int  # characters of the page gone over by find() and regex scans of the page


def parse_work(page: str) -> ParseWork:
    """Parse `page`, counting its work instead of timing it (the same page gives the same counts).

    Lines alone would miss the classic blow-up: a scan from each '<' to the end of the page (plain
    HTMLParser on unclosed tags, or a tag scanner that skips an unclosed '<' instead of stopping)
    is one C call per tag, so the line count stays linear while the time is quadratic. So the page
    is also passed as a str whose find()/startswith() count what they go over, and html_page's
    compiled patterns are wrapped to count how far each search()/match() of the page goes.
    """
    examined = 0

    def went_over(string: str, start: int, stop: int) -> None:
        nonlocal examined
        if isinstance(string, Page):
            examined += stop - start

    class Page(str):
        def removeprefix(self, prefix: str) -> str:  # the BOM strip keeps the counting type
            return Page(str.removeprefix(self, prefix))

        def find(self, sub: str, start: int = 0, end: int = sys.maxsize) -> int:  # type: ignore[override]
            found = str.find(self, sub, start, end)
            went_over(self, start, found + len(sub) if found >= 0 else min(end, len(self)))
            return found

        def startswith(self, prefix: Any, start: int = 0, end: int = sys.maxsize) -> bool:  # type: ignore[override]
            longest = max(map(len, (prefix,) if isinstance(prefix, str) else prefix))
            went_over(self, start, start + longest)
            return str.startswith(self, prefix, start, end)

    class Body(bytes):
        def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
            return Page(bytes.decode(self, encoding, errors))

    class Counted:
        def __init__(self, pattern: re.Pattern[str]) -> None:
            self.pattern = pattern

        def __getattr__(self, name: str) -> object:
            return getattr(self.pattern, name)

        def match(self, string: str, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[str] | None:
            found = self.pattern.match(string, pos, endpos)
            went_over(string, pos, found.end() if found else pos + 1)  # a failed match: at least 1
            return found

        def search(self, string: str, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[str] | None:
            found = self.pattern.search(string, pos, endpos)
            went_over(string, pos, found.end() if found else min(endpos, len(string)))
            return found

    lines = 0

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal lines
        if frame.f_code.co_filename == __file__:
            return None  # the counting above is not the parser's work
        lines += event == "line"
        return trace

    with pytest.MonkeyPatch.context() as patch:
        for name, value in list(vars(html_page).items()):
            if isinstance(value, re.Pattern):
                patch.setattr(html_page, name, Counted(value))
            elif isinstance(value, dict) and value and all(isinstance(v, re.Pattern) for v in value.values()):
                patch.setattr(html_page, name, {k: Counted(v) for k, v in value.items()})
        previous, gc_was_enabled = sys.gettrace(), gc.isenabled()
        gc.disable()  # no finalizer of some other test's objects runs inside the count
        sys.settrace(trace)
        try:
            parse_project_html(Body(page.encode()), PAGE_URL, "holy-grail")
        finally:
            sys.settrace(previous)
            if gc_was_enabled:
                gc.enable()
    return ParseWork(lines, examined)


def assert_linear(page_of: Callable[[int], str], n: int) -> None:
    """Parsing 4n units costs at most 5 times what n units cost, in lines and in characters gone
    over. Linear work gives at most 4 (a fixed part does not grow); quadratic work gives about 16,
    so this fails if the parser becomes quadratic, at any size, on any machine, however loaded."""
    small_page = page_of(n)
    small, large = parse_work(small_page), parse_work(page_of(4 * n))
    # A correct parser goes over every character at least once; less means the page was scanned
    # by something the counting does not see, and the measure needs updating.
    assert small.examined >= len(small_page), (small, len(small_page))
    assert large.lines <= 5 * small.lines, (small, large)
    assert large.examined <= 5 * small.examined, (small, large)


def many_links(n: int) -> str:
    return "".join(
        f'<a href="../../p/{i % 256:02x}/holy_grail-{i}.0-py3-none-any.whl#sha256={SHA256}" '
        f'data-requires-python="&gt;=3.8" data-core-metadata="sha256={SHA256}">'
        f"holy_grail-{i}.0-py3-none-any.whl</a><br>\n"
        for i in range(n)
    )


def test_many_links_parse_in_linear_time() -> None:
    project = parse(many_links(50_000))
    assert len(project.files) == 50_000
    assert project.files[-1].filename == "holy_grail-49999.0-py3-none-any.whl"
    assert_linear(many_links, 1_000)


@pytest.mark.parametrize(
    "unit",
    ["<a ", '<a href="', "<a x=y ", "<!--", "<a<", "<", '<a x="<a x=y ">', "<a b='<' c=\"<a d=\" "],
)
def test_malformed_markup_parses_in_linear_time(unit: str) -> None:
    # Plain HTMLParser needs minutes for ("<a " * 200_000); linear parsing takes milliseconds.
    # Work is counted, not timed, so a quadratic parser shows at a few thousand units already.
    assert_linear(lambda n: unit * n, 2_000)


def test_random_garbage_never_raises() -> None:
    rng = random.Random(1234)
    alphabet = ['<a href="', '"', "'", "<", ">", "=", "&", "#", " ", "x.tar.gz", "</a>",
                "<!--", "-->", "<script>", "</script>", "\x00", "\xff", "é", "data-yanked",
                '<meta name="pypi:tracks" content="']
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        parse(text.encode("utf-8", "surrogatepass"))


# --- rendering -------------------------------------------------------------------------------


def _file(**kwargs: object) -> File:
    defaults: dict[str, object] = {
        "filename": "holy_grail-1.0.tar.gz",
        "url": "https://proxy.example/files/holy_grail-1.0.tar.gz",
    }
    return File(**{**defaults, **kwargs})  # type: ignore[arg-type]


def test_render_escapes_everything_from_data() -> None:
    project = Project(
        name="<script>alert('name')</script>",
        files=(
            _file(
                url='https://proxy.example/"><script>alert(1)</script>/holy_grail-1.0.tar.gz',
                requires_python=">=3.8",
                yanked="<script>alert('reason')</script>",
                provenance="https://proxy.example/p?a=1&b=2",
            ),
        ),
        status="archived\"><script>",
        status_reason="</title><script>alert(2)</script>",
        tracks=('https://t.example/"><script>',),
        alternate_locations=("https://a.example/<b>",),
    )
    out = render_project_html(project)
    assert b'data-requires-python="&gt;=3.8"' in out
    assert b"&amp;b=2" in out
    assert b"<script" not in out.lower()
    collected = read_back(out)
    assert {tag for tag, _ in collected.tags} <= {"html", "head", "meta", "title", "body", "h1", "a", "br"}
    (attrs,) = anchors(out)
    assert attrs["href"] == 'https://proxy.example/"><script>alert(1)</script>/holy_grail-1.0.tar.gz'
    assert attrs["data-yanked"] == "<script>alert('reason')</script>"
    metas = {(a.get("name"), a.get("content")) for t, a in collected.tags if t == "meta"}
    assert ("pypi:project-status", "archived\"><script>") in metas
    assert ("pypi:project-status-reason", "</title><script>alert(2)</script>") in metas
    assert ("pypi:tracks", 'https://t.example/"><script>') in metas
    assert ("pypi:alternate-locations", "https://a.example/<b>") in metas


def test_render_link_attributes() -> None:
    project = Project(
        name="holy-grail",
        files=(
            _file(hashes={"md5": MD5, "sha256": SHA256}, yanked=True, core_metadata=True, gpg_sig=False),
            _file(
                filename="holy_grail-1.0-py3-none-any.whl",
                url="https://proxy.example/holy_grail-1.0-py3-none-any.whl",
                core_metadata={"sha512": "ee" * 64},
                gpg_sig=True,
            ),
            _file(filename="holy_grail-2.0.tar.gz", url="https://proxy.example/h-2.0.tar.gz",
                  core_metadata=False),
        ),
    )
    first, second, third = anchors(render_project_html(project))
    assert first == {
        "href": f"https://proxy.example/files/holy_grail-1.0.tar.gz#sha256={SHA256}",
        "data-yanked": "",
        "data-core-metadata": "true",
        "data-dist-info-metadata": "true",
        "data-gpg-sig": "false",
    }
    assert second == {
        "href": "https://proxy.example/holy_grail-1.0-py3-none-any.whl",  # no hash to give
        "data-core-metadata": "sha512=" + "ee" * 64,
        "data-dist-info-metadata": "sha512=" + "ee" * 64,
        "data-gpg-sig": "true",
    }
    assert third == {"href": "https://proxy.example/h-2.0.tar.gz"}


def test_render_text_matches_filenames_and_doc_is_utf8_html5() -> None:
    project = Project(name="holy-grail", files=(_file(yanked="naïve ☃"),))
    out = render_project_html(project)
    assert out.startswith(b"<!DOCTYPE html>")
    assert "naïve ☃".encode() in out
    collected = read_back(out)
    assert "holy_grail-1.0.tar.gz" in collected.text


def test_render_survives_control_characters_and_lone_surrogates() -> None:
    project = Project(name="x", files=(_file(yanked="a\r\nb\x00c\x1b", requires_python="\ud800"),))
    out = render_project_html(project)
    out.decode("utf-8")  # valid UTF-8
    assert b"\x00" not in out and b"\x1b" not in out
    (f,) = parse(out).files
    assert f.yanked == "a\r\nb\ufffdc\ufffd"


@pytest.mark.parametrize(
    ("sizes", "version"), [((1, 2), "1.1"), ((1, None), "1.0"), ((), "1.1")]
)
def test_declared_api_version_is_honest(sizes: tuple[int | None, ...], version: str) -> None:
    files = tuple(_file(filename=f"holy_grail-{i}.0.tar.gz", size=s) for i, s in enumerate(sizes))
    out = render_project_html(Project(name="holy-grail", files=files))
    metas = {a.get("name"): a.get("content") for t, a in read_back(out).tags if t == "meta"}
    assert metas["pypi:repository-version"] == version


def test_html_round_trip_keeps_everything_html_can_carry() -> None:
    project = Project(
        name="holy-grail",
        files=(
            _file(
                hashes={"sha256": SHA256},
                requires_python='>=3.8,<4,!="3.9"&',
                yanked="bad <release> & \"stuff\"",
                core_metadata={"sha256": OTHER256},
                gpg_sig=True,
                provenance="https://proxy.example/provenance?x=1&y=2",
            ),
            _file(
                filename="holy_grail-1.0-py3-none-any.whl",
                url="https://proxy.example/files/holy_grail-1.0-py3-none-any.whl",
                hashes={"md5": MD5},
                yanked=True,
                core_metadata=True,
                gpg_sig=False,
            ),
            _file(filename="holy_grail-2.0.tar.gz", url="https://proxy.example/files/holy_grail-2.0.tar.gz"),
        ),
        status="quarantined",
        status_reason="malware <found>",
        tracks=("https://pypi.org/simple/holy-grail/", "https://test.pypi.org/simple/holy-grail/"),
        alternate_locations=("https://alt.example/simple/holy-grail/",),
    )
    again = parse(render_project_html(project), page_url="https://proxy.example/simple/holy-grail/")
    assert again == project


# --- the root index --------------------------------------------------------------------------


def test_render_index() -> None:
    out = render_index_html(["Holy_Grail", "spam.eggs", "<script>alert(1)</script>", "https://evil.example/x"])
    collected = read_back(out)
    links = [(a["href"]) for t, a in collected.tags if t == "a"]
    assert links == [
        "holy-grail/",
        "spam-eggs/",
        "%3Cscript%3Ealert%281%29%3C%2Fscript%3E/",
        "https%3A%2F%2Fevil-example%2Fx/",  # one relative segment, never another host
    ]
    assert "Holy_Grail" in collected.text and "<script>alert(1)</script>" in collected.text
    assert b"<script" not in out
    metas = {a.get("name"): a.get("content") for t, a in collected.tags if t == "meta"}
    assert metas["pypi:repository-version"] == "1.4"


def test_render_empty_index() -> None:
    assert anchors(render_index_html([])) == []
