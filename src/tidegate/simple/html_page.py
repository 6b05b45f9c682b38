"""PEP 503 HTML pages: parse an upstream project page into the model, render the model as HTML.

Pure: no I/O. Upstream pages are hostile, so parsing keeps only what validates, and rendering
escapes every value that came from data.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Iterable, Iterator, Mapping
from urllib.parse import quote, unquote, urlsplit

from .model import (
    API_VERSION_FULL,
    File,
    Project,
    dedupe_files,
    fragment_hash,
    resolve_http_url,
    valid_hashes,
)
from .names import is_valid_name, normalize, valid_filename

# --- parsing ---------------------------------------------------------------------------------

# Bigger tags are skipped unparsed: no real link comes close, and it bounds per-tag work.
MAX_TAG = 64 * 1024

_TAG_NAME = re.compile(r"[A-Za-z][^\t\n\f\r />]*")
# Inside a tag only '>' ends it, and a quote opens a value only right after '='.
_TAG_STOP = re.compile(r"""=[\t\n\f\r ]*(["'])|>""")
# Raw-text elements, as HTMLParser (and so pip) treats them: no tags inside.
_RAW_TEXT_END = {
    "script": re.compile(r"</script", re.IGNORECASE),
    "style": re.compile(r"</style", re.IGNORECASE),
}
_WANTED_TAGS = frozenset({"a", "meta", "base"})
_VERSION = re.compile(r"[0-9]+\.[0-9]+")


def _scan_tags(doc: str) -> Iterator[tuple[str, str]]:
    """Yield (lowercase name, source) of each complete a/meta/base start tag, in one pass.

    HTMLParser alone is quadratic on unclosed tags (b"<a " * n takes minutes at n=20000), so
    tag boundaries are found here with find() and anchored regexes, which never rescan.
    """
    pos = 0
    while (lt := doc.find("<", pos)) >= 0:
        if doc.startswith("<!--", lt):
            # Searching from lt+2 also honours the abrupt "<!-->" and "<!--->" endings.
            end = doc.find("-->", lt + 2)
            if end < 0:
                return
            pos = end + 3
            continue
        name_match = _TAG_NAME.match(doc, lt + 1)
        if name_match is None:
            if doc.startswith(("</", "<!", "<?"), lt):  # end tag, doctype, bogus comment
                end = doc.find(">", lt + 2)
                if end < 0:
                    return
                pos = end + 1
            else:  # a lone '<' in text
                pos = lt + 1
            continue
        name = name_match.group().lower()
        pos = name_match.end()
        while True:
            stop = _TAG_STOP.search(doc, pos)
            if stop is None:  # tag never closes: like browsers, drop it and the rest
                return
            quote_char = stop.group(1)
            if quote_char is None:
                end = stop.end()
                break
            close = doc.find(quote_char, stop.end())
            if close < 0:
                return
            pos = close + 1
        if name in _WANTED_TAGS and end - lt <= MAX_TAG:
            yield name, doc[lt:end]
        pos = end
        if (raw_end := _RAW_TEXT_END.get(name)) is not None:
            match = raw_end.search(doc, pos)
            if match is None:
                return
            pos = match.start()


class _TagParser(HTMLParser):
    """Turns one complete start tag into its attributes, character references decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._attrs: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._attrs is None:  # only the first tag counts, should HTMLParser see more
            self._attrs = {}
            for key, value in attrs:
                self._attrs.setdefault(key, value)  # HTML: the first of repeated attributes wins

    handle_startendtag = handle_starttag

    def attributes(self, tag_source: str) -> dict[str, str | None]:
        # With the only '<' at index 0, whatever HTMLParser makes of the tag, it scans it
        # once and takes the rest as text: no rescanning. In values '&lt;' means '<' anyway.
        self.reset()
        self._attrs = None
        try:
            self.feed("<" + tag_source[1:].replace("<", "&lt;"))
            self.close()
        except AssertionError:  # HTMLParser's "should not get here"; treat as no tag
            return {}
        return self._attrs or {}


def _hashes_from(value: str) -> dict[str, str]:
    """Hashes from "name=hex" pairs, as in a URL fragment ("&"-separated) or metadata attribute."""
    found: dict[str, str] = {}
    for part in value.split("&"):
        name, sep, digest = part.partition("=")
        if sep:
            for k, v in valid_hashes({name.strip(): digest.strip()}).items():
                found.setdefault(k, v)
    return found


def _metadata_value(value: str | None) -> bool | dict[str, str]:
    """data-core-metadata: present means available; a valid "name=hex" adds the hash."""
    if value is None:
        return True
    value = value.strip()
    if value.lower() == "false":
        return False
    if "=" in value:
        return _hashes_from(value) or True
    return True


def _file_from_anchor(attrs: dict[str, str | None], base: str) -> File | None:
    href = attrs.get("href")
    if not href or (full := resolve_http_url(href, base)) is None:
        return None
    url, _, fragment = full.partition("#")
    filename = unquote(urlsplit(url).path.rpartition("/")[2])  # bad %-UTF-8 -> U+FFFD -> refused
    if not valid_filename(filename):
        return None

    requires_python = attrs.get("data-requires-python") or None
    yanked: bool | str = False
    if "data-yanked" in attrs:
        yanked = attrs["data-yanked"] or True
    core_metadata: bool | dict[str, str] | None = None
    for key in ("data-core-metadata", "data-dist-info-metadata"):  # PEP 714 name first
        if key in attrs:
            core_metadata = _metadata_value(attrs[key])
            break
    gpg = (attrs.get("data-gpg-sig") or "").strip().lower()
    provenance = attrs.get("data-provenance")

    return File(
        filename=filename,
        url=url,
        hashes=_hashes_from(fragment),
        requires_python=requires_python,
        yanked=yanked,
        core_metadata=core_metadata,
        gpg_sig={"true": True, "false": False}.get(gpg),
        provenance=resolve_http_url(provenance, base) if provenance else None,
    )


def parse_project_html(body: bytes, page_url: str, name: str) -> Project:
    """Parse an upstream PEP 503 project page. `name` (normalized, ours) is trusted over the page.

    Raises ValueError only if the page declares an API major version other than 1.
    """
    doc = body.decode("utf-8", errors="replace").removeprefix("\ufeff")
    parser = _TagParser()
    anchors: list[dict[str, str | None]] = []
    metas: list[tuple[str, str]] = []
    base = page_url
    seen_base = False
    for tag, source in _scan_tags(doc):
        attrs = parser.attributes(source)
        if tag == "a":
            anchors.append(attrs)
        elif tag == "meta":
            meta_name, content = attrs.get("name"), attrs.get("content")
            if meta_name is not None and content is not None:
                metas.append((meta_name.strip().lower(), content))
        elif not seen_base and attrs.get("href"):  # <base>: the first one with href counts
            seen_base = True
            base = resolve_http_url(attrs["href"] or "", page_url) or page_url

    status: str | None = None
    reason: str | None = None
    tracks: dict[str, None] = {}
    alternates: dict[str, None] = {}
    for meta_name, content in metas:
        if meta_name == "pypi:repository-version":
            version = content.strip()
            # The spec says clients MUST fail on another major version; garbage is ignored.
            if _VERSION.fullmatch(version) and version.partition(".")[0].lstrip("0") != "1":
                raise ValueError(f"unsupported Simple API version {version!r} in HTML page")
        elif meta_name == "pypi:project-status":
            status = status or content or None
        elif meta_name == "pypi:project-status-reason":
            reason = reason or content or None
        elif meta_name == "pypi:tracks":
            if (url := resolve_http_url(content, base)) is not None:
                tracks.setdefault(url, None)
        elif meta_name in ("pypi:alternate-locations", "pypi-alternate-locations"):
            # PEP 708's prose says "pypi-alternate-locations", its examples the colon form.
            if (url := resolve_http_url(content, base)) is not None:
                alternates.setdefault(url, None)

    files = [f for attrs in anchors if (f := _file_from_anchor(attrs, base)) is not None]
    return Project(name=name, files=dedupe_files(files), status=status, status_reason=reason, tracks=tuple(tracks),
                   alternate_locations=tuple(alternates))


# --- rendering -------------------------------------------------------------------------------

# Characters HTML5 forbids in documents; CR would be folded into LF by parsers, so it is kept
# as a character reference instead.
_HTML_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0d-\x1f\x7f-\x9f]")
# What _esc changes: most values (URLs, filenames, hashes) have none of it, and one search is
# cheaper than html.escape's five replaces, thousands of times a page.
_ESCAPED = re.compile(r"[&<>\"'\x00-\x08\x0b\x0d-\x1f\x7f-\x9f]")


def _esc(value: str) -> str:
    """Escape data for both attribute values and text."""
    if _ESCAPED.search(value) is None:
        return value
    out = html.escape(value, quote=True)
    if _HTML_FORBIDDEN.search(out):
        out = _HTML_FORBIDDEN.sub(lambda m: "&#13;" if m.group() == "\r" else "\ufffd", out)
    return out


def _metadata_attr(core_metadata: bool | Mapping[str, str] | None) -> str | None:
    if core_metadata is None or core_metadata is False:
        return None
    if (type(core_metadata) is dict or isinstance(core_metadata, Mapping)) and (pair := fragment_hash(core_metadata)):
        return f"{pair[0]}={pair[1]}"
    return "true"  # True, or hashes none of which fit the HTML syntax


def _file_link(f: File) -> str:
    href = f.url.partition("#")[0]
    if (pair := fragment_hash(f.hashes)) is not None:
        href += f"#{pair[0]}={pair[1]}"
    attrs = [("href", href)]
    if f.requires_python is not None:
        attrs.append(("data-requires-python", f.requires_python))
    if f.yanked:
        attrs.append(("data-yanked", "" if f.yanked is True else str(f.yanked)))
    if (metadata := _metadata_attr(f.core_metadata)) is not None:
        # Both names: PEP 714's, and PEP 658's for clients that predate the rename.
        attrs.append(("data-core-metadata", metadata))
        attrs.append(("data-dist-info-metadata", metadata))
    if f.gpg_sig is not None:
        attrs.append(("data-gpg-sig", "true" if f.gpg_sig else "false"))
    if f.provenance is not None:
        attrs.append(("data-provenance", f.provenance))
    rendered = " ".join(f'{key}="{_esc(value)}"' for key, value in attrs)
    return f"    <a {rendered}>{_esc(f.filename)}</a><br>"


def _page(version: str, head: list[str], title: str, body: list[str]) -> bytes:
    return b"".join(_page_parts(version, head, title, [body]))


def _page_parts(version: str, head: list[str], title: str, bodies: Iterable[list[str]]) -> Iterator[bytes]:
    """The document in pieces: its head, each list of body lines, its end."""
    top = ["<!DOCTYPE html>", "<html>", "  <head>", '    <meta charset="utf-8">',
           f'    <meta name="pypi:repository-version" content="{_esc(version)}">', *head,
           f"    <title>{_esc(title)}</title>", "  </head>", "  <body>", f"    <h1>{_esc(title)}</h1>"]
    # "replace" only matters for lone surrogates a caller might have put in the model.
    yield ("\n".join(top) + "\n").encode("utf-8", errors="replace")
    for lines in bodies:
        if lines:
            yield ("\n".join(lines) + "\n").encode("utf-8", errors="replace")
    yield b"  </body>\n</html>\n"


def render_project_html(project: Project) -> bytes:
    """The project page as UTF-8 HTML5; every value from the model is escaped."""
    head = []
    if project.status is not None:
        head.append(f'    <meta name="pypi:project-status" content="{_esc(project.status)}">')
    if project.status_reason is not None:
        reason = _esc(project.status_reason)
        head.append(f'    <meta name="pypi:project-status-reason" content="{reason}">')
    head += [f'    <meta name="pypi:tracks" content="{_esc(u)}">' for u in project.tracks]
    head += [
        f'    <meta name="pypi:alternate-locations" content="{_esc(u)}">'
        for u in project.alternate_locations
    ]
    links = [_file_link(f) for f in project.files]
    return _page(project.api_version(), head, f"Links for {project.name}", links)


def render_index_html(names: Iterable[str]) -> bytes:
    """The root project list. Each href is the percent-quoted normalized name, so even a
    hostile name stays a single relative path segment."""
    return b"".join(render_index_html_parts([list(names)]))


def render_index_html_parts(batches: Iterable[list[str]]) -> Iterator[bytes]:
    """The root project list in pieces, a piece per batch of names: a list the size of PyPI's is
    written out without ever being whole in memory."""
    links = ([f'    <a href="{_esc(quote(normalize(n), safe=""))}/">{_esc(n)}</a><br>' for n in batch]
             for batch in batches)
    return _page_parts(API_VERSION_FULL, [], "Simple index", links)


# An anchor's text in a root list: the project name (what PEP 503 says the text is).
_ROOT_ANCHOR = re.compile(rb"<a\s[^<>]*>([^<>]{1,300})</a\s*>", re.IGNORECASE)
_CARRY = 64 * 1024  # at most this much of a piece waits for the next one


class RootScanner:
    """Reads an upstream's root list (PEP 503 HTML) as it arrives, piece by piece: each
    piece gives the valid names it completes, normalized. Memory is bounded by the piece size,
    whatever the size of the list."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, piece: bytes) -> list[str]:
        data = self._rest + piece
        names, end = [], 0
        for match in _ROOT_ANCHOR.finditer(data):
            text = html.unescape(match.group(1).decode("utf-8", "replace")).strip()
            if is_valid_name(text):
                names.append(normalize(text))
            end = match.end()
        # After the last complete anchor there is none: keep that rest, which may hold the start
        # of one cut by the piece boundary (bounded: an anchor is far shorter than _CARRY).
        self._rest = data[max(end, len(data) - _CARRY):]
        return names


__all__ = [
    "RootScanner",
    "parse_project_html",
    "render_index_html",
    "render_index_html_parts",
    "render_project_html",
]
