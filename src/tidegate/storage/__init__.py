"""The one seam between tidegate and its state: `open_storage(settings)` gives every part.

Protocols in protocols.py; implementations on local disk beside them. Commands (serve, the
start-up recovery, yank, ...) all open storage here, so the layout and the engines are chosen
in one place.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from ..config import Settings
from .blobs import FileBlobStore
from .index import SqliteIndex
from .layout import layout
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

    async def close(self) -> None:
        for part in (self.pages, self.cache_blobs, self.local_blobs, self.index, self.locks, self.roots):
            await part.close()


async def open_storage(settings: Settings) -> Storage:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    where = layout(settings.data_dir)
    return Storage(
        pages=FilePageCache(where.pages, settings.pages_max_size),
        cache_blobs=FileBlobStore(where.cache_blobs, settings.files_max_size),
        local_blobs=FileBlobStore(where.local_blobs),
        index=SqliteIndex(where.index),
        locks=FileLocks(where.locks),
        roots=SqliteRootLists(where.roots),
    )


def remove_legacy_state(settings: Settings) -> None:
    """State an older tidegate kept in a format this one does not read (start-up recovery)."""
    shutil.rmtree(layout(settings.data_dir).legacy_pages, ignore_errors=True)


__all__ = ["BlobStore", "IndexStore", "Locks", "PageCache", "Storage", "open_storage", "remove_legacy_state"]
