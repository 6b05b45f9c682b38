"""Where each kind of state lives under the data directory: the only module that knows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def pages(self) -> Path:
        """Page records and metadata files (diskcache)."""
        return self.root / "pagecache"

    @property
    def legacy_pages(self) -> Path:
        """The page cache of tidegate 0.1 (pickles): never read, removed at start-up."""
        return self.root / "pages"

    @property
    def cache_blobs(self) -> Path:
        """Files fetched from upstreams (evictable)."""
        return self.root / "blobs"

    @property
    def local_blobs(self) -> Path:
        """Uploaded files (never evicted)."""
        return self.root / "local"

    @property
    def index(self) -> Path:
        """The local index database."""
        return self.root / "local" / "index.db"

    @property
    def locks(self) -> Path:
        return self.root / "locks"
