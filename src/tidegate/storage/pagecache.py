"""Page records and PEP 658 metadata files on local disk, shared by the workers of one host.

diskcache (SQLite plus files) with string keys and byte values only: diskcache stores those as
they are, so nothing here is ever pickled or unpickled. Records are in the versioned format of
records.py. Every call runs in a thread: decoding a big page must not hold up the event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import diskcache

from .records import PageRecord, decode_page, encode_page

SIZE_LIMIT = 8 * 1024**3


class DiskPageCache:
    def __init__(self, directory: Path) -> None:
        self._disk = diskcache.Cache(str(directory), size_limit=SIZE_LIMIT, eviction_policy="least-recently-stored")
        self._listed: set[str] = set()  # names this process knows are listed: skips a write

    async def close(self) -> None:
        self._disk.close()

    async def load(self, name: str) -> PageRecord | None:
        return await asyncio.to_thread(self._load, name)

    def _load(self, name: str) -> PageRecord | None:
        data = self._disk.get("page:" + name)
        return decode_page(data, name) if isinstance(data, bytes) else None

    async def store(self, record: PageRecord) -> None:
        await asyncio.to_thread(self._store, record)

    def _store(self, record: PageRecord) -> None:
        self._disk.set("page:" + record.name, encode_page(record))
        # A separate small key per listed project keeps the root list cheap to build; it is
        # written only when it changes, since every diskcache write takes the shared write lock.
        listed = "listed:" + record.name
        if record.found and record.name not in self._listed:
            self._disk.set(listed, b"")
            self._listed.add(record.name)
        elif not record.found and (record.name in self._listed or listed in self._disk):
            self._disk.delete(listed)
            self._listed.discard(record.name)

    async def names(self) -> list[str]:
        """Projects with a cached page."""
        return await asyncio.to_thread(self._names)

    def _names(self) -> list[str]:
        return sorted(key[7:] for key in self._disk.iterkeys() if isinstance(key, str) and key.startswith("listed:"))

    async def load_metadata(self, key: str) -> bytes | None:
        data = await asyncio.to_thread(self._disk.get, "metadata:" + key)
        return data if isinstance(data, bytes) else None

    async def store_metadata(self, key: str, body: bytes) -> None:
        await asyncio.to_thread(self._disk.set, "metadata:" + key, body)
