"""What the read path answers: plain data the web handlers turn into responses."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import AsyncIterator, BinaryIO

from ..cache.downloads import Download
from ..simple.names import NormalizedName
from .pages import Page


class CacheResult(enum.StrEnum):
    """Where an answer came from, as X-Tidegate-Cache reports it."""

    HIT = "hit"  # from the cache, fresh
    MISS = "miss"  # fetched from an upstream just now
    REVALIDATED = "revalidated"  # the upstream confirmed the cached copy just now
    STALE = "stale"  # the upstream failed: the last good copy
    OFFLINE = "offline"  # from the cache, no upstream is asked
    LOCAL = "local"  # the local index
    STAGE = "stage"  # a stage preview


class Part(enum.StrEnum):
    """Which resource of a distribution file a request names."""

    FILE = ""
    METADATA = ".metadata"  # PEP 658
    PROVENANCE = ".provenance"  # PEP 740

    @classmethod
    def split(cls, filename: str) -> tuple[str, Part]:
        """("x.whl", METADATA) for "x.whl.metadata"."""
        for part in (cls.METADATA, cls.PROVENANCE):
            if filename.endswith(part):
                return filename[: -len(part)], part
        return filename, cls.FILE


@dataclass(frozen=True, slots=True)
class PageQuery:
    project: NormalizedName
    revalidate: bool = False  # the client asked for a copy confirmed by the upstream


@dataclass(frozen=True, slots=True)
class FileQuery:
    project: NormalizedName
    filename: str
    part: Part = Part.FILE
    head: bool = False  # HEAD: the headers are all the client wants
    range: str | None = None  # the Range header
    if_range: str | None = None  # the If-Range header: the range only if this is the file's ETag


@dataclass(frozen=True, slots=True)
class PageAnswer:
    page: Page
    how: CacheResult


@dataclass(frozen=True, slots=True)
class BlobAnswer:
    """A committed file: the caller sends it and closes it."""

    file: BinaryIO
    etag: str
    content_type: str
    how: CacheResult


@dataclass(frozen=True, slots=True)
class StreamAnswer:
    """A file still downloading, streamed to the client as it arrives (its ETag is its blob
    key, as once it is committed)."""

    download: Download


@dataclass(frozen=True, slots=True)
class UncachedAnswer:
    """HEAD, or bytes first..last (206), of a file not cached yet: the size comes from the page
    or an upstream HEAD; the bytes from the upstream's range or from the download under way,
    whichever has them first."""

    size: int
    etag: str
    content_type: str
    chunks: AsyncIterator[bytes] | None = None  # None: HEAD
    first: int = 0
    last: int = -1


@dataclass(frozen=True, slots=True)
class BytesAnswer:
    """A small resource (metadata, provenance), ETag computed by the sender."""

    body: bytes
    content_type: str
    immutable: bool = True  # provenance may change (PEP 740): revalidated like a page
    how: CacheResult | None = None  # where it came from, when that is known


FileAnswer = BlobAnswer | StreamAnswer | UncachedAnswer | BytesAnswer
Answer = PageAnswer | FileAnswer

CONTENT_TYPES = {".whl": "application/zip", ".zip": "application/zip", ".gz": "application/gzip"}


def content_type_of(filename: str) -> str:
    return CONTENT_TYPES.get(filename[filename.rfind(".") :], "application/octet-stream")
