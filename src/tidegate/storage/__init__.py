"""The one seam between tidegate and its state: `open_storage(settings)` gives every part.

Protocols in protocols.py; implementations on local disk beside them. Commands (serve, the
start-up recovery, yank, ...) all open storage here, so the layout and the engines are chosen
in one place.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from ..config import Settings
from .backup import BackupError, BackupReport, backup
from .blobs import FileBlobStore
from .errors import EngineUnavailable
from .health import DataDirError, prepare_data_dir, probe_writable
from .index import SqliteIndex
from .layout import Layout, layout
from .locks import FileLocks
from .pagecache import FilePageCache
from .protocols import BlobStore, IndexStore, Locks, PageCache
from .rootlists import SqliteRootLists


@dataclass
class Storage:
    pages: PageCache
    cache_blobs: BlobStore  # files from upstreams, evicted beyond files_max_size
    local_blobs: BlobStore  # uploaded files, never evicted
    index: IndexStore
    locks: Locks
    roots: SqliteRootLists  # one engine only: the root lists are a cache each host may keep
    writable_dirs: tuple[Path, ...] = field(default=())  # where state is written, for the readiness probe
    # Shared engines' own readiness checks (a database, a bucket): each says why it cannot
    # serve right now, or None.
    probes: tuple[Callable[[], Awaitable[str | None]], ...] = field(default=())

    async def unwritable(self) -> str | None:
        """Why storage cannot take a write right now (a full disk, a read-only mount), or None."""
        return await asyncio.to_thread(probe_writable, self.writable_dirs)

    async def problem(self) -> str | None:
        """Why this instance cannot serve right now: storage that cannot take a write, or a
        shared engine that is down; None when all is well."""
        unwritable = await self.unwritable()
        if unwritable:
            return f"storage not writable: {unwritable}"
        for probe in self.probes:
            if problem := await probe():
                return problem
        return None

    async def close(self) -> None:
        for part in (self.pages, self.cache_blobs, self.local_blobs, self.index, self.locks, self.roots):
            await part.close()


async def open_storage(settings: Settings, *, engines_later: bool = False) -> Storage:
    """Every part of the state. `engines_later` (a serving process): a shared engine that is down
    now does not fail the opening; its calls fail with EngineUnavailable (a 503 with the reason)
    until it is back. Otherwise (commands) that is an EngineUnavailable here."""
    prepare_data_dir(settings.data_dir)
    where = layout(settings.data_dir)
    cache_blobs, local_blobs, blob_probes = _blob_stores(settings, where)
    if settings.database_url:  # index, page cache and locks shared by every instance
        from .postgres import open_postgres

        try:
            shared = await open_postgres(settings.database_url, settings.pages_max_size, FileLocks(where.locks),
                                         shared_blobs=bool(settings.blob_store), later=engines_later)
        except BaseException:
            await cache_blobs.close()
            await local_blobs.close()
            raise
        pages, index, locks, probes = shared.pages, shared.index, shared.locks, shared.probes + blob_probes
    else:
        pages, index, locks, probes = (FilePageCache(where.pages, settings.pages_max_size), SqliteIndex(where.index),
                                       FileLocks(where.locks), blob_probes)
    return Storage(
        pages=pages,
        cache_blobs=cache_blobs,
        local_blobs=local_blobs,
        index=index,
        locks=locks,
        roots=SqliteRootLists(where.roots),
        # The data dir (page cache, file cache) and the local index's directory (index.db and
        # uploads), which an operator may have put on another volume; with the index in
        # PostgreSQL and uploads in a bucket, nothing is written there and it need not exist.
        writable_dirs=(settings.data_dir,) if settings.database_url and settings.blob_store
        else (settings.data_dir, where.index.parent),
        probes=probes,
    )


def _blob_stores(settings: Settings, where: Layout) -> tuple[BlobStore, BlobStore, tuple]:
    """(cache blobs, local blobs, their readiness probes): files under the data dir, or a bucket."""
    if settings.blob_store:
        from .s3blobs import open_s3_blobs  # the S3 client is an optional dependency

        cache, local = open_s3_blobs(settings.blob_store, settings.s3_endpoint_url, where.blob_tier,
                                     settings.local_cache_size)
        return cache, local, (cache.probe,)
    return FileBlobStore(where.cache_blobs, settings.files_max_size), FileBlobStore(where.local_blobs), ()


def remove_legacy_state(settings: Settings) -> None:
    """State an older tidegate kept in a format this one does not read (start-up recovery)."""
    shutil.rmtree(layout(settings.data_dir).legacy_pages, ignore_errors=True)


def backup_data_dir(settings: Settings, dest: Path, *, cached_files: bool = True) -> BackupReport:
    """An online backup of the data dir into `dest` (blocking); BackupError if it cannot be taken."""
    if settings.blob_store:
        raise BackupError(f"the files are in {settings.blob_store}, not in the data dir: back up the bucket "
                          "(versioning or replication) and the local index separately")
    return backup(settings.data_dir, dest, cached_files=cached_files, pages=settings.offline,
                  shared_index=bool(settings.database_url))


def check_data_dir(settings: Settings) -> None:
    """Create the data dir if needed; DataDirError (one line) if it cannot be one."""
    prepare_data_dir(settings.data_dir)


__all__ = ["BackupError", "BackupReport", "BlobStore", "DataDirError", "EngineUnavailable", "backup_data_dir", "IndexStore", "Locks", "PageCache", "Storage", "check_data_dir", "open_storage",
           "remove_legacy_state"]
