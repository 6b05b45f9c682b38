"""Writing a stream to a file while hashing it, off the event loop.

Each chunk is written and hashed in a worker thread (hashlib releases the GIL on large inputs),
and the next chunk is read from the network meanwhile: one chunk in flight at a time keeps the
order and bounds memory. Used for upstream downloads and for uploads alike.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path


def new_hasher(name: str) -> "hashlib._Hash":
    """hashlib by name, plus "blake2_256" (BLAKE2b with a 32-byte digest, as the legacy upload
    API names it)."""
    return hashlib.blake2b(digest_size=32) if name == "blake2_256" else hashlib.new(name)


class HashingSink:
    def __init__(self, path: Path, algorithms: set[str]) -> None:
        self.path = path
        self.hashers = {name: new_hasher(name) for name in algorithms}
        self.size = 0
        self._file = open(path, "wb")
        self._pending: asyncio.Future[None] | None = None

    def _absorb(self, chunk: bytes) -> None:
        self._file.write(chunk)
        for hasher in self.hashers.values():
            hasher.update(chunk)

    async def write(self, chunk: bytes) -> None:
        if self._pending is not None:
            await self._pending
        self.size += len(chunk)
        self._pending = asyncio.get_running_loop().run_in_executor(None, self._absorb, chunk)

    async def finish(self) -> dict[str, str]:
        """Flush and fsync (durable before anyone renames it into place); the hex digests."""
        if self._pending is not None:
            await self._pending
            self._pending = None
        await asyncio.to_thread(self._sync_and_close)
        return {name: h.hexdigest() for name, h in self.hashers.items()}

    def _sync_and_close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    async def abort(self) -> None:
        """Stop and delete the partial file."""
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
        self._file.close()
        self.path.unlink(missing_ok=True)
