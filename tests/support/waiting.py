"""Waiting in tests for what another instance did to show."""

from __future__ import annotations

import asyncio


async def changes(store, before, within: float = 5.0) -> bool:
    """Whether store.changed() moves from `before` within a short time (at once on one host;
    a shared engine's notice takes a moment to arrive)."""
    for _ in range(int(within / 0.01)):
        if store.changed() != before:
            return True
        await asyncio.sleep(0.01)
    return False
