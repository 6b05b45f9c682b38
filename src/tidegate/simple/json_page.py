"""PEP 691 JSON pages: parse an upstream project page into the model, render the model as JSON.

Pure: no I/O. Upstream pages are hostile: anything that does not validate is dropped, and the
parser raises nothing but ValueError.

Pages can be 2 MB with thousands of files, so the usual page takes a fast path: msgspec decodes
it into typed entries at C speed and a short loop checks each; a page with anything unusual in
it (a relative URL, an invalid entry, an odd type) is parsed again by the lenient path, entry by
entry, which drops what does not validate. Both give the same model for a page both accept.
Rendering encodes msgspec Structs, for the same reason.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import urljoin

import msgspec

from .model import API_VERSION_FULL, File, Project, dedupe_files, resolve_http_url, valid_hashes
from .names import valid_filename

_UPLOAD_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")
_API_VERSION = re.compile(r"([0-9]+)\.[0-9]+")
_MAX_SIZE = 2**63 - 1  # anything bigger is nonsense, and would upset Content-Length handling


def _text(value: object) -> str | None:
    """A str with any lone surrogate (JSON allows "\\ud800") made U+FFFD; None for non-str."""
    if not isinstance(value, str):
        return None
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _urls(values: object, base: str) -> tuple[str, ...]:
    if not isinstance(values, list):
        return ()
    found: dict[str, None] = {}
    for value in values:
        text = _text(value)
        if text is not None and (url := resolve_http_url(text, base)) is not None:
            found.setdefault(url, None)
    return tuple(found)


def _metadata(value: object) -> bool | dict[str, str] | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, dict):
        # Like pip, a dict means "available" even when none of its hashes is usable.
        return valid_hashes(value) or True
    return None


def _file(entry: object, base: str) -> File | None:
    if not isinstance(entry, dict):
        return None
    filename, url = _text(entry.get("filename")), _text(entry.get("url"))
    # An empty url would resolve to the page itself: not a file, whatever the entry says.
    if filename is None or url is None or not url.strip() or not valid_filename(filename):
        return None
    full = resolve_http_url(url, base)
    if full is None:
        return None

    hashes = entry.get("hashes")
    yanked = entry.get("yanked")
    core_metadata = _metadata(entry.get("core-metadata"))
    if core_metadata is None:  # PEP 714: the PEP 658 name is the fallback
        core_metadata = _metadata(entry.get("dist-info-metadata"))
    gpg_sig = entry.get("gpg-sig")
    size = entry.get("size")
    upload_time = _text(entry.get("upload-time"))
    provenance = _text(entry.get("provenance"))

    return File(
        filename=filename,
        url=full.partition("#")[0],
        hashes=valid_hashes(hashes) if isinstance(hashes, dict) else {},
        requires_python=_text(entry.get("requires-python")) or None,
        yanked=True if yanked is True else (_text(yanked) or False),
        core_metadata=core_metadata,
        gpg_sig=gpg_sig if isinstance(gpg_sig, bool) else None,
        # bool is an int subclass; True is not a size.
        size=size if type(size) is int and 0 <= size <= _MAX_SIZE else None,
        upload_time=upload_time if upload_time and _UPLOAD_TIME.fullmatch(upload_time) else None,
        provenance=resolve_http_url(provenance, base) if provenance else None,
    )


# --- the fast path -----------------------------------------------------------------------------


# The fast path's types are strict and allow no unknown key: msgspec does not look into what it
# skips, so a page with anything it would skip goes to the lenient path, which checks it all.


class _Entry(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """A file entry as the fast path decodes it (a value of another type, or a missing
    `hashes`, sends the page to the lenient path), and as pages are rendered."""

    filename: str
    url: str
    hashes: dict[str, str]
    requires_python: str | None = msgspec.field(name="requires-python", default=None)
    yanked: bool | str = False
    core_metadata: bool | dict[str, str] | None = msgspec.field(name="core-metadata", default=None)
    dist_info_metadata: bool | dict[str, str] | None = msgspec.field(name="dist-info-metadata", default=None)
    gpg_sig: bool | None = msgspec.field(name="gpg-sig", default=None)
    size: int | None = None
    upload_time: str | None = msgspec.field(name="upload-time", default=None)
    provenance: str | None = None
    # PyPI's JSON still sends PEP 658's name for core-metadata; like the lenient path, ignored.
    data_dist_info_metadata: bool | dict[str, str] | None = msgspec.field(name="data-dist-info-metadata",
                                                                          default=None)


class _Meta(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    api_version: str = msgspec.field(name="api-version", default="1.0")
    tracks: list[str] | None = None
    project_status: str | None = msgspec.field(name="project-status", default=None)
    project_status_reason: str | None = msgspec.field(name="project-status-reason", default=None)
    last_serial: int | None = msgspec.field(name="_last-serial", default=None)  # PyPI's

    def as_dict(self) -> dict[str, Any]:
        return {"api-version": self.api_version, "tracks": self.tracks, "project-status": self.project_status,
                "project-status-reason": self.project_status_reason}


class _Page(msgspec.Struct, forbid_unknown_fields=True):
    files: list[_Entry]
    meta: _Meta = _Meta()
    name: str | None = None  # ours is trusted over the page's
    versions: list[str] | None = None
    project_status: dict[str, str] | None = msgspec.field(name="project-status", default=None)
    alternate_locations: list[str] | None = msgspec.field(name="alternate-locations", default=None)


class _SlicedPage(_Page, forbid_unknown_fields=True):
    files: list[msgspec.Raw]  # decoded a slice at a time


_DECODE_PAGE = msgspec.json.Decoder(_Page).decode
_DECODE_SLICED = msgspec.json.Decoder(_SlicedPage).decode
_DECODE_ENTRIES = msgspec.json.Decoder(list[_Entry]).decode
SLICED_ABOVE = 256 * 1024  # bytes of a page decoded a slice of files at a time
SLICE = 1000  # files: a few milliseconds of decoding


def _decode_page(body: bytes) -> tuple[_Page, list[_Entry]]:
    """The page and its file entries. A big page's files are decoded a slice at a time: each
    decode is one call that holds the GIL throughout, and a page of 60,000 files decoded at once
    would stall the event loop (parsing runs in a thread) for a tenth of a second."""
    if len(body) <= SLICED_ABOVE:
        page = _DECODE_PAGE(body)
        return page, page.files
    sliced = _DECODE_SLICED(body)
    raw, entries = sliced.files, []
    for i in range(0, len(raw), SLICE):
        entries += _DECODE_ENTRIES(b"[" + b",".join(raw[i:i + SLICE]) + b"]")
    return sliced, entries
# An absolute http(s) URL with a plain host name, printable ASCII only: what resolve_http_url
# returns unchanged. Anything else (relative, spaces, IPv6, userinfo...) takes the lenient path.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][!-~]*)?")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _plain_hashes(hashes: dict[str, str]) -> dict[str, str]:
    if len(hashes) == 1 and _SHA256.fullmatch(hashes.get("sha256", "")):
        return hashes  # PyPI's form: already what valid_hashes would keep
    return valid_hashes(hashes)


# A path-relative link as static mirrors write them ("../../files/x.whl"): some "../", then a
# path with no dot segment, no scheme, query or fragment. Resolving one is then joining a
# prefix, the same for every link with as many "../" (what urljoin would give, without its
# cost on thousands of links).
_RELATIVE = re.compile(r"((?:\.\./)*)([A-Za-z0-9_~-][A-Za-z0-9._~%!$&'()*+,;=@/-]*)")


class _Links:
    """Resolves the links of one page: plain absolute ones as they are, plain relative ones
    against the page's URL; None for anything else (the lenient path decides those)."""

    def __init__(self, page_url: str) -> None:
        self._base = page_url
        self._prefixes: dict[int, str] = {}
        self.relative = False  # whether any link was relative

    def __call__(self, url: str) -> str | None:
        if _PLAIN_URL.fullmatch(url):
            return url if "#" not in url else url.partition("#")[0]
        match = _RELATIVE.fullmatch(url)
        if match is None or "/." in match[2] or not _PLAIN_URL.fullmatch(self._base):
            return None
        ups = len(match[1]) // 3
        prefix = self._prefixes.get(ups)
        if prefix is None:
            prefix = self._prefixes[ups] = urljoin(self._base, match[1] + "x")[:-1]
        self.relative = True
        return prefix + match[2]


def _parse_plain(body: bytes, page_url: str, name: str) -> tuple[Project, bool] | None:
    """The fast path's model of the page and whether all its links were absolute, or None when
    the lenient path must decide."""
    try:
        page, entries = _decode_page(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    files = []
    link = _Links(page_url)
    append, plain_name, times = files.append, valid_filename, _UPLOAD_TIME.fullmatch
    for e in entries:  # one short loop, no call it can do without: thousands of entries on a big page
        provenance, upload_time, size = e.provenance, e.upload_time, e.size
        url = link(e.url)
        if url is None or not plain_name(e.filename):
            return None
        if provenance and (provenance := _plain_provenance(provenance, link)) is None:
            return None
        metadata = e.core_metadata if e.core_metadata is not None else e.dist_info_metadata
        if isinstance(metadata, dict):
            metadata = _plain_hashes(metadata) or True  # like pip: a dict means "available"
        append(File(e.filename, url, _plain_hashes(e.hashes) if e.hashes else {},
                    e.requires_python or None, e.yanked or False, metadata, e.gpg_sig,
                    size if size is not None and 0 <= size <= _MAX_SIZE else None,
                    upload_time if upload_time and times(upload_time) else None, provenance or None))
    project = _project(page.meta.as_dict(), files, page.versions, page.project_status, page.alternate_locations,
                       page_url, name)
    return project, not link.relative


def _plain_provenance(url: str, link: _Links) -> str | None:
    # resolve_http_url keeps a provenance URL's fragment: so does the fast path.
    if _PLAIN_URL.fullmatch(url):
        return url
    return link(url) if "#" not in url else None


# --- the lenient path --------------------------------------------------------------------------


def _load(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8-sig"))  # RFC 8259 lets parsers skip a BOM
    except UnicodeDecodeError as exc:
        raise ValueError(f"Simple API JSON page is not valid UTF-8: {exc}") from None
    except RecursionError:
        raise ValueError("Simple API JSON page is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer literal too long to convert
        raise ValueError(f"Simple API JSON page is not valid JSON: {exc}") from None


def parse_project_json(body: bytes, page_url: str, name: str) -> Project:
    """Parse an upstream PEP 691 project page. `name` (normalized, ours) is trusted over the page.

    Raises ValueError when the body is not a v1 JSON project page.
    """
    return parse_json_page(body, page_url, name)[0]


def parse_json_page(body: bytes, page_url: str, name: str) -> tuple[Project, bool]:
    """Like parse_project_json; also whether the body stands on its own: every URL in it absolute
    and nothing dropped, so that storing the body as it came keeps the whole model."""
    plain = _parse_plain(body, page_url, name)
    if plain is not None:
        return plain
    return project_from_document(_load(body), page_url, name), False


def project_from_document(doc: object, page_url: str, name: str) -> Project:
    """The model of an already decoded PEP 691 project page (see parse_project_json)."""
    if not isinstance(doc, dict):
        raise ValueError("Simple API JSON page is not a JSON object")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError("Simple API JSON page has a non-object 'meta'")
    raw_files = doc.get("files")
    if not isinstance(raw_files, list):
        raise ValueError("Simple API JSON page has no 'files' list")
    files = [f for entry in raw_files if (f := _file(entry, page_url)) is not None]
    return _project(meta, files, doc.get("versions"), doc.get("project-status"), doc.get("alternate-locations"),
                    page_url, name)


def _project(meta: dict[str, Any], files: list[File], raw_versions: object, project_status: object,
             alternates: object, page_url: str, name: str) -> Project:
    """The page-level part of the model, shared by both paths."""
    version = meta.get("api-version", "1.0")  # the spec: no version means 1.0
    match = _API_VERSION.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(f"Simple API JSON page has an invalid meta.api-version: {version!r}")
    if match.group(1).lstrip("0") != "1":
        raise ValueError(f"unsupported Simple API version {version!r} in JSON page")
    versions = None
    if isinstance(raw_versions, list):
        versions = tuple(dict.fromkeys(v for x in raw_versions if (v := _text(x))))
    # PEP 792's text puts status in a top-level object, its example in meta: accept both.
    status = reason = None
    if isinstance(project_status, dict):
        status = _text(project_status.get("status")) or None
        reason = _text(project_status.get("reason")) or None
    status = status or _text(meta.get("project-status")) or None
    reason = reason or _text(meta.get("project-status-reason")) or None
    return Project(
        name=name,
        files=dedupe_files(files),
        versions=versions,
        status=status,
        status_reason=reason,
        tracks=_urls(meta.get("tracks"), page_url),
        alternate_locations=_urls(alternates, page_url),
    )


# --- rendering ---------------------------------------------------------------------------------


def _rendered(f: File) -> _Entry:
    """A file entry as rendered: keys are left out when the model has nothing to say; the core
    metadata under both names (PEP 714's, and PEP 658's for clients that predate the rename)."""
    metadata = f.core_metadata
    if type(metadata) is dict:  # the usual case, without the (slow) ABC check
        metadata = metadata or True  # {} would read as "absent" to truthiness checks
    elif metadata is not None and not isinstance(metadata, bool) and isinstance(metadata, Mapping):
        metadata = dict(metadata) or True
    return _Entry(f.filename, f.url, f.hashes, f.requires_python, f.yanked, metadata, metadata, f.gpg_sig,  # type: ignore[arg-type]
                  f.size, f.upload_time, f.provenance)


_ENCODE = msgspec.json.Encoder().encode


def _dump(doc: dict[str, object]) -> bytes:
    try:
        return _ENCODE(doc)
    except (msgspec.EncodeError, UnicodeEncodeError):
        # Only a lone surrogate a caller put into the model gets here: replace it.
        text = json.dumps(msgspec.to_builtins(doc), ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8", errors="replace")


def project_document(project: Project, *, complete: bool = False) -> dict[str, object]:
    """The model as a PEP 691 project page object. As stored, nothing is derived (`versions`
    only if the source listed them: project_from_document(project_document(p)) == p); complete,
    `versions` lists every version of the page, as PEP 700 asks of what is served."""
    meta: dict[str, object] = {"api-version": project.api_version()}
    if project.tracks:
        meta["tracks"] = list(project.tracks)
    if project.status is not None:
        meta["project-status"] = project.status
    if project.status_reason is not None:
        meta["project-status-reason"] = project.status_reason
    doc: dict[str, object] = {
        "meta": meta,
        "name": project.name,
        "files": [_rendered(f) for f in project.files],
    }
    if complete:
        doc["versions"] = list(project.all_versions())
    elif project.versions is not None:
        doc["versions"] = list(project.versions)
    status = {"status": project.status, "reason": project.status_reason}
    if any(v is not None for v in status.values()):
        doc["project-status"] = {k: v for k, v in status.items() if v is not None}
    if project.alternate_locations:
        doc["alternate-locations"] = list(project.alternate_locations)
    return doc


def render_project_json(project: Project) -> bytes:
    """The project page as compact UTF-8 PEP 691 JSON, `versions` always listed (PEP 700)."""
    return _dump(project_document(project, complete=True))


def render_index_json(names: Iterable[str]) -> bytes:
    """The root project list."""
    return b"".join(render_index_json_parts([list(names)]))


def render_index_json_parts(batches: Iterable[list[str]]) -> Iterator[bytes]:
    """The root project list in pieces, a piece per batch of names (see render_index_html_parts)."""
    yield b'{"meta":{"api-version":"' + API_VERSION_FULL.encode() + b'"},"projects":['
    first = True
    for batch in batches:
        if batch:
            body = _dump([{"name": n} for n in batch])[1:-1]
            yield body if first else b"," + body
            first = False
    yield b"]}"


__all__ = ["parse_json_page", "parse_project_json", "project_document", "project_from_document", "render_index_json", "render_index_json_parts",
           "render_project_json"]
