"""Waiting for the storage seam's locks (Locks.try_acquire never waits)."""

from __future__ import annotations

import asyncio
from typing import Iterable

from .protocols import Lease, Locks

POLL = 0.01  # seconds between tries for a lock another process holds


async def acquire(locks: Locks, name: str) -> Lease:
    while (lease := await locks.try_acquire(name)) is None:
        await asyncio.sleep(POLL)
    return lease


async def acquire_all(locks: Locks, names: Iterable[str]) -> list[Lease]:
    """Every named lock, taken in sorted order: two holders of several never wait on each other
    in a circle. On an error, those taken are released."""
    leases: list[Lease] = []
    try:
        for name in sorted(set(names)):
            leases.append(await acquire(locks, name))
    except BaseException:
        await release_all(leases)
        raise
    return leases


async def release_all(leases: list[Lease]) -> None:
    for lease in leases:
        await lease.release()
