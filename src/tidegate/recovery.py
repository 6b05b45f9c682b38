"""Start-up repairs, run once before any worker serves. No aiohttp here: the supervisor runs it
before forking and should stay small."""

from __future__ import annotations

import time

from .cache.blobs import BlobStore
from .config import Settings
from .publish.store import Store


def recover(settings: Settings) -> None:
    """Startup repairs, run once before any worker serves: drop partial downloads and uploads
    a crash may have left, reconcile the file indexes, fail validations that were cut short."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for root, limit in ((settings.data_dir / "blobs", settings.files_max_size), (settings.data_dir / "local", 2**62)):
        store = BlobStore(root, limit)
        store.recover()
        store.close()
    index = Store(settings.data_dir / "local" / "index.db")
    index.recover(time.time())
    index.close()
