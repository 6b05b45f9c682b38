"""The records tidegate keeps, and the versioned format page records are stored in.

Pure data and pure codecs. A page record on disk (or in a shared engine) is JSON with a format
number, its projects as PEP 691 JSON: never a pickle, so a stored record can neither run code
nor break when a class is renamed. A record in another format, or garbage, decodes as None:
a cache miss, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from ..simple.json_page import parse_json_page, parse_project_json, project_document
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
    # The upstream's PEP 691 page as it came, when it holds the whole project: stored as it is,
    # which spares encoding thousands of files again.
    document: bytes | None = field(default=None, compare=False, repr=False)


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


class _StoredPart(msgspec.Struct, forbid_unknown_fields=True):
    upstream: str
    etag: str | None
    last_modified: str | None
    project: msgspec.Raw  # PEP 691 JSON, parsed like any upstream page


class _StoredPage(msgspec.Struct, forbid_unknown_fields=True):
    format: int
    name: str
    fetched_at: float
    changed_at: float
    parts: list[_StoredPart]
    served: msgspec.Raw  # PEP 691 JSON, {"part": i} for parts[i]'s project, or null


class _SameAsPart(msgspec.Struct, forbid_unknown_fields=True):
    part: int


_ENCODE = msgspec.json.Encoder().encode
_DECODE = msgspec.json.Decoder(_StoredPage).decode
_DECODE_SAME = msgspec.json.Decoder(_SameAsPart).decode
_BASE = "https://invalid/"  # stored URLs are absolute, so the base is never used


def encode_page(record: PageRecord) -> bytes:
    parts = [{"upstream": p.upstream, "etag": p.validators.etag, "last_modified": p.validators.last_modified,
              "project": msgspec.Raw(p.document) if p.document is not None else project_document(p.project)}
             for p in record.parts]
    served: object = None
    if record.served is not None:
        # Usually the page is one upstream's page as it came: store it once.
        same = next((i for i, p in enumerate(record.parts) if p.project == record.served), None)
        served = {"part": same} if same is not None else project_document(record.served)
    return _ENCODE({"format": PAGE_FORMAT, "name": record.name, "fetched_at": record.fetched_at,
                    "changed_at": record.changed_at, "parts": parts, "served": served})


def _part(stored: _StoredPart, name: str) -> Part:
    document = bytes(stored.project)
    project, whole = parse_json_page(document, _BASE, name)
    return Part(stored.upstream, project, Validators(stored.etag, stored.last_modified), document if whole else None)


def decode_page(data: bytes, name: str) -> PageRecord | None:
    """The record stored for `name`, or None if it is in another format, another project's, or
    not a record at all. URLs and files are validated again, as from any upstream."""
    try:
        doc = _DECODE(data)
        if doc.format != PAGE_FORMAT or doc.name != name:
            return None
        parts = tuple(_part(p, name) for p in doc.parts)
        if bytes(doc.served) == b"null":
            return PageRecord(name, parts, None, doc.fetched_at, doc.changed_at)
        try:
            served = parts[_DECODE_SAME(doc.served).part].project
        except (msgspec.ValidationError, msgspec.DecodeError):
            served = parse_project_json(bytes(doc.served), _BASE, name)
        return PageRecord(name, parts, served, doc.fetched_at, doc.changed_at)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, IndexError, RecursionError):
        return None


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """An API token: who it acts for and where; the secret itself is never stored."""

    id: str
    user: str
    sha256: str  # of the secret
    scopes: tuple[str, ...]  # project-name glob patterns
    created_at: float
    expires_at: float | None = None  # None: never
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One line of the append-only audit log: who did what, when, from where."""

    at: float
    actor: str
    address: str
    action: str
    subject: str
    detail: dict = field(default_factory=dict)
    seq: int | None = None  # assigned by the store
