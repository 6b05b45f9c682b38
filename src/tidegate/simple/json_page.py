"""PEP 691 JSON pages: parse an upstream project page into the model, render the model as JSON.

Pure: no I/O. Upstream pages are hostile: anything that does not validate is dropped, and the
parser raises nothing but ValueError.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

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
    if filename is None or url is None or not valid_filename(filename):
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
    return project_from_document(_load(body), page_url, name)


def project_from_document(doc: object, page_url: str, name: str) -> Project:
    """The model of an already decoded PEP 691 project page (see parse_project_json)."""
    if not isinstance(doc, dict):
        raise ValueError("Simple API JSON page is not a JSON object")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError("Simple API JSON page has a non-object 'meta'")
    version = meta.get("api-version", "1.0")  # the spec: no version means 1.0
    match = _API_VERSION.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(f"Simple API JSON page has an invalid meta.api-version: {version!r}")
    if match.group(1).lstrip("0") != "1":
        raise ValueError(f"unsupported Simple API version {version!r} in JSON page")
    raw_files = doc.get("files")
    if not isinstance(raw_files, list):
        raise ValueError("Simple API JSON page has no 'files' list")

    raw_versions = doc.get("versions")
    versions = None
    if isinstance(raw_versions, list):
        versions = tuple(dict.fromkeys(v for x in raw_versions if (v := _text(x))))

    # PEP 792's text puts status in a top-level object, its example in meta: accept both.
    status = reason = None
    project_status = doc.get("project-status")
    if isinstance(project_status, dict):
        status = _text(project_status.get("status")) or None
        reason = _text(project_status.get("reason")) or None
    status = status or _text(meta.get("project-status")) or None
    reason = reason or _text(meta.get("project-status-reason")) or None

    files = [f for entry in raw_files if (f := _file(entry, page_url)) is not None]
    return Project(
        name=name,
        files=dedupe_files(files),
        versions=versions,
        status=status,
        status_reason=reason,
        tracks=_urls(meta.get("tracks"), page_url),
        alternate_locations=_urls(doc.get("alternate-locations"), page_url),
    )


def _metadata_json(core_metadata: bool | Mapping[str, str]) -> bool | dict[str, str]:
    if isinstance(core_metadata, Mapping):
        return dict(core_metadata) or True  # {} would read as "absent" to truthiness checks
    return core_metadata


def _file_json(f: File) -> dict[str, object]:
    out: dict[str, object] = {"filename": f.filename, "url": f.url, "hashes": dict(f.hashes)}
    if f.requires_python is not None:
        out["requires-python"] = f.requires_python
    if f.yanked:
        out["yanked"] = f.yanked
    if f.core_metadata is not None:
        out["core-metadata"] = out["dist-info-metadata"] = _metadata_json(f.core_metadata)
    if f.gpg_sig is not None:
        out["gpg-sig"] = f.gpg_sig
    if f.size is not None:
        out["size"] = f.size
    if f.upload_time is not None:
        out["upload-time"] = f.upload_time
    if f.provenance is not None:
        out["provenance"] = f.provenance
    return out


def _dump(doc: dict[str, object]) -> bytes:
    # "replace" only matters for lone surrogates a caller might have put in the model.
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
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
        "files": [_file_json(f) for f in project.files],
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
    return _dump(
        {"meta": {"api-version": API_VERSION_FULL}, "projects": [{"name": n} for n in names]}
    )


__all__ = ["parse_project_json", "project_document", "project_from_document", "render_index_json",
           "render_project_json"]
