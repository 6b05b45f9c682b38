"""The records tidegate keeps, and the versioned format page records are stored in.

Pure data and pure codecs. A page record on disk (or in a shared engine) is JSON with a format
number, its projects as PEP 691 JSON: never a pickle, so a stored record can neither run code
nor break when a class is renamed. A record in another format, or garbage, decodes as None:
a cache miss, never a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..simple.json_page import project_document, project_from_document
from ..simple.model import Project

PAGE_FORMAT = 1


@dataclass(frozen=True, slots=True)
class BlobInfo:
    size: int
    committed_at: float  # wall clock


@dataclass(frozen=True, slots=True)
class Validators:
    """An upstream's validators for a page, for conditional revalidation."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Part:
    """What one upstream said about a project."""

    upstream: str
    project: Project
    validators: Validators


@dataclass(frozen=True, slots=True)
class PageRecord:
    """A project page as the upstreams gave it, and what tidegate shows of it."""

    name: str
    parts: tuple[Part, ...]  # upstreams that have the project, priority order; empty: unknown
    served: Project | None  # what we show (after merge policy and cooldown); None: unknown
    fetched_at: float  # last time the upstreams confirmed this (wall clock)
    changed_at: float  # last time `served` changed

    @property
    def found(self) -> bool:
        return self.served is not None


def encode_page(record: PageRecord) -> bytes:
    parts = [{"upstream": p.upstream, "etag": p.validators.etag, "last_modified": p.validators.last_modified,
              "project": project_document(p.project)} for p in record.parts]
    served: object = None
    if record.served is not None:
        # Usually the page is one upstream's page as it came: store it once.
        same = next((i for i, p in enumerate(record.parts) if p.project == record.served), None)
        served = {"part": same} if same is not None else project_document(record.served)
    doc = {"format": PAGE_FORMAT, "name": record.name, "fetched_at": record.fetched_at,
           "changed_at": record.changed_at, "parts": parts, "served": served}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


def decode_page(data: bytes, name: str) -> PageRecord | None:
    """The record stored for `name`, or None if it is in another format, another project's, or
    not a record at all. URLs and files are validated again, as from any upstream."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != PAGE_FORMAT or doc.get("name") != name:
            return None
        parts = tuple(
            Part(_text(p["upstream"]), _project(p["project"], name), Validators(_opt(p["etag"]), _opt(p["last_modified"])))
            for p in doc["parts"]
        )
        served = doc["served"]
        if isinstance(served, dict) and set(served) == {"part"}:
            project: Project | None = parts[served["part"]].project
        else:
            project = None if served is None else _project(served, name)
        return PageRecord(name, parts, project, float(doc["fetched_at"]), float(doc["changed_at"]))
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        return None


def _project(doc: object, name: str) -> Project:
    # Stored URLs are absolute, so the base URL is never used.
    return project_from_document(doc, "https://invalid/", name)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _opt(value: object) -> str | None:
    return None if value is None else _text(value)


# --- the local index: rows of the index store -----------------------------------------------
# Statuses are stored as the strings PEP 694 reports; publish/states.py owns what they mean.


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A publishing session."""

    token: str
    project: str
    version: str
    status: str
    created_at: float
    expires_at: float
    ended_at: float | None = None
    notices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalFile:
    """A file of the local index, published or staged: what the read path serves of it."""

    filename: str
    size: int
    hashes: dict[str, str]
    sha256: str | None  # of the bytes received; None until they arrived and matched
    requires_python: str | None = None
    metadata_sha256: str | None = None  # of its PEP 658 metadata file
    attestations: str | None = None  # PEP 740 attestations, as JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class Upload(LocalFile):
    """A file upload session."""

    id: str
    token: str
    status: str
    mechanism: str
    created_at: float
    expires_at: float
    notices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedFile(LocalFile):
    """A published file."""

    project: str
    version: str
    upload_time: str
    yanked: str | None = None  # None: not yanked; otherwise the reason ("" for none)
