"""Where each kind of state lives under the data directory: the only module that knows."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


class Layout(NamedTuple):
    pages: Path  # page records and metadata files, a file each
    legacy_pages: Path  # tidegate 0.1's page cache of pickles: never read, removed at start-up
    cache_blobs: Path  # files fetched from upstreams (evictable)
    local_blobs: Path  # uploaded files (never evicted)
    index: Path  # the local index database
    locks: Path
    roots: Path  # the upstreams' root lists, and the root pages written from them
    metrics: Path  # prometheus-client's files of each running server's workers, a directory per server
    blob_tier: Path  # with blob_store = s3://...: the local disk tier of hot files


def layout(root: Path) -> Layout:
    local = root / "local"
    return Layout(pages=root / "pagecache", legacy_pages=root / "pages", cache_blobs=root / "blobs",
                  local_blobs=local, index=local / "index.db", locks=root / "locks", roots=root / "roots",
                  metrics=root / "metrics", blob_tier=root / "blobtier")
