"""Start-up repairs, run once before any worker serves. No aiohttp here: the supervisor runs it
before forking and should stay small."""

from __future__ import annotations

from .config import Settings
from .publish.service import Publisher, no_upstream
from .storage import open_storage, remove_legacy_state


async def recover(settings: Settings) -> None:
    """Start-up repairs, before any worker serves (`tidegate serve` runs it with asyncio.run)."""
    remove_legacy_state(settings)
    storage = await open_storage(settings)
    try:
        # Partial downloads and uploads a crash may have left; file indexes reconciled.
        await storage.cache_blobs.recover()
        await storage.local_blobs.recover()
        await storage.pages.recover()
        # Validations cut short by the crash fail (through the PEP 694 tables).
        await Publisher(settings, storage.index, storage.local_blobs, no_upstream).recover()
    finally:
        await storage.close()

