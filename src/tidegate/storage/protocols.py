"""The storage seam: what the rest of tidegate may ask of state, whatever engine holds it.

Every call that may touch a disk or a network is a coroutine, so no implementation can block
the event loop. The implementations on local disk are blobs.FileBlobStore,
pagecache.FilePageCache, index.SqliteIndex and locks.FileLocks; tests/storage/ runs one
contract suite per protocol against every implementation.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Callable, Hashable, Protocol, TypeVar

from .index import IndexRows
from .records import BlobInfo, PageRecord

T = TypeVar("T")


class BlobStore(Protocol):
    """Immutable blobs by key (the sha256 of their bytes, as a rule). A blob is visible only
    whole: written to a temp path, verified and fsynced by the writer, then committed."""

    # True when commit() is slow (a network upload): a download's client then gets its last
    # byte once the temp file is verified, before commit() ends (see cache/downloads.py).
    serve_before_commit: bool

    async def open(self, key: str) -> BinaryIO | None:
        """A readable, seekable file of the blob, or None. Reading it stays possible even if the
        blob is removed meanwhile."""

    async def exists(self, key: str) -> bool: ...

    async def info(self, key: str) -> BlobInfo | None: ...

    def temp_path(self, key: str, *, shared: bool = False) -> Path:
        """A local path to write a future blob to (`shared`: the one path other processes of this
        host follow a download of `key` at)."""

    def upload_as_written(self, temp: Path, key: str) -> None:
        """A hint that `temp` is being appended to and will be committed as `key` (or removed):
        a store that uploads may start now, so commit() waits only for the tail."""

    async def commit(self, temp: Path, key: str) -> None:
        """Make the (fsynced) temp file the blob for key, atomically."""

    async def commit_many(self, blobs: list[tuple[Path, str]]) -> None:
        """Commit many (temp file, key) pairs whose temp files were written and verified but not
        fsynced: on return every one is committed and durable, each atomically."""

    async def remove(self, key: str) -> None: ...

    async def keys(self) -> list[str]: ...

    async def total_size(self) -> int: ...

    async def usage(self) -> tuple[int, int]:
        """How many blobs, and how many bytes, the store holds (cheap: asked on every scrape)."""

    async def recover(self) -> None:
        """Start-up repair after a crash: drop temp files, reconcile any index with the blobs."""

    async def close(self) -> None: ...


class PageCache(Protocol):
    """Page records and PEP 658 metadata files, shared by every process using the storage."""

    async def load(self, name: str) -> PageRecord | None:
        """The stored record, or None (also for a record in an unknown format)."""

    async def store(self, record: PageRecord) -> None: ...

    async def store_all(self, records: list[PageRecord]) -> None:
        """Store many records (a bundle's), each replaced atomically, then mark the change."""

    def changed(self) -> Hashable:
        """A value that differs after any store_all() or mark_changed(), by any process; cheap
        and non-blocking. Workers drop the pages they keep in memory when it changes."""

    async def mark_changed(self) -> None:
        """Say that pages or the files they list changed in bulk (files removed by a repair)."""

    async def names(self) -> list[str]:
        """Projects with a stored page that found the project."""

    async def load_metadata(self, key: str) -> bytes | None: ...

    async def store_metadata(self, key: str, body: bytes) -> None: ...

    async def remove_metadata(self, key: str) -> None:
        """Forget a metadata file (its file was pruned); nothing if there is none."""

    async def recover(self) -> None:
        """Start-up repair after a crash: drop temp files."""

    async def prune(self) -> int:
        """Keep within the configured size, least recently stored out first; how many went."""

    async def usage(self) -> tuple[int, int]:
        """How many files, and how many bytes, the cache holds, as of at most a minute ago."""

    async def close(self) -> None: ...


class IndexStore(Protocol):
    """The local index. fn runs with the rows inside one transaction: `read` sees one snapshot
    and never waits for a writer; `write` is atomic (all of fn's changes, or none if it raises)."""

    async def read(self, fn: Callable[[IndexRows], T]) -> T: ...

    async def write(self, fn: Callable[[IndexRows], T]) -> T: ...

    def changed(self) -> Hashable:
        """A value that differs after any committed change, by any process; cheap and
        non-blocking, since it is asked on every request."""

    async def close(self) -> None: ...


class Lease(Protocol):
    async def release(self) -> None: ...


class Locks(Protocol):
    """Named exclusive locks shared by every process using the storage; any string is a name."""

    async def try_acquire(self, name: str) -> Lease | None:
        """The lock if it is free now (never waits), else None. A holder that dies releases it."""

    async def close(self) -> None: ...
