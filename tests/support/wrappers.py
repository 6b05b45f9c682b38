"""Storage parts wrapped to hold or break one operation, injected through the storage seam."""

from __future__ import annotations

import asyncio
from typing import Any, BinaryIO


class GatedBlobs:
    """A blob store whose reads wait until `gate` is set (writes pass)."""

    def __init__(self, inner: Any, gate: asyncio.Event) -> None:
        self._inner, self._gate = inner, gate

    async def open(self, key: str) -> BinaryIO | None:
        await self._gate.wait()
        return await self._inner.open(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
