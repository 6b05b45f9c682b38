"""Start-up repairs, run once before any worker serves. No aiohttp here: the supervisor runs it
before forking and should stay small."""

from __future__ import annotations

import logging

from .config import Settings
from .publish.service import Publisher, no_upstream
from .storage import open_storage, remove_legacy_state
from .storage.full import FULL_MESSAGE, disk_full

log = logging.getLogger(__name__)


async def recover(settings: Settings) -> None:
    """Start-up repairs, before any worker serves (`tidegate serve` runs it with asyncio.run).
    On a full disk the repairs that need room are left for the next start: the workers serve
    what is stored (read-only, every write refused with 507) rather than not at all."""
    try:
        await _repair(settings)
    except Exception as exc:
        if not disk_full(exc):
            raise
        log.warning("%s: start-up repairs skipped; serving what is stored, refusing writes, until space is freed"
                    " (%s)", FULL_MESSAGE, exc)


async def _repair(settings: Settings) -> None:
    remove_legacy_state(settings)
    storage = await open_storage(settings)
    try:
        # Partial downloads and uploads a crash may have left; file indexes reconciled.
        await storage.cache_blobs.recover()
        await storage.local_blobs.recover()
        await storage.pages.recover()
        # Validations cut short by the crash fail (through the PEP 694 tables).
        await Publisher(settings, storage.index, storage.local_blobs, no_upstream, locks=storage.locks).recover()
    finally:
        await storage.close()
