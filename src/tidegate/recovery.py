"""Start-up repairs, run once before any worker serves. No aiohttp here: the supervisor runs it
before forking and should stay small."""

from __future__ import annotations

import logging

from .config import Settings
from .publish.service import Publisher, no_upstream
from .storage import EngineUnavailable, open_storage, remove_legacy_state
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
    storage = await open_storage(settings, engines_later=True)
    try:
        # Partial downloads and uploads a crash may have left; file indexes reconciled (on this
        # host's disk: done whatever engine is down).
        await storage.cache_blobs.recover()
        await storage.local_blobs.recover()
        try:
            await storage.pages.recover()
            # Validations cut short by the crash fail (through the PEP 694 tables).
            await Publisher(settings, storage.index, storage.local_blobs, no_upstream, locks=storage.locks).recover()
        except EngineUnavailable as exc:
            # The workers start all the same and answer 503 until the engine is back; what is
            # left here (sessions a crash left validating) waits for the next start of any instance.
            log.warning("start-up repairs of the shared state skipped: %s", exc)
    finally:
        await storage.close()
