"""Page records and PEP 658 metadata files on local disk, shared by the workers of one host.

A file per page: storing a page takes no lock other workers wait on (a shared database's write
lock made cold pages over many projects queue behind each other). A page file is replaced by
removing it and creating it anew, not by renaming a temp file over it: on ext4 a rename over a
file (or a truncate) forces the data to disk first, which made storing a page cost 0.7 ms instead
of 0.2. A reader that catches a page half written (or a crash that leaves one) finds a record
that does not decode, which is a miss: the record's JSON is whole or invalid. Metadata files,
which are served as they are, are still written then renamed.
Layout: pages/<name[:2]>/<name>.page for a record that found its project, <name>.none for one
that did not (so the root list is a directory listing), metadata/<key[:2]>/<key>, and `changed`,
replaced after a bulk change (an imported bundle, a repair), whose identity workers compare to
drop what they keep in memory. Records are in
the versioned format of records.py; nothing is pickled. Every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path

from .records import PageRecord, decode_page, encode_page

FOUND, MISSING, TEMP = ".page", ".none", ".tmp"
STAMP = "changed"
_TEMPS = itertools.count()
USAGE_MAX_AGE = 60.0  # seconds a count of the files (a directory walk) is reused


class FilePageCache:
    def __init__(self, directory: Path, max_size: int | None = None) -> None:
        """`max_size`: bytes kept at most by prune() (least recently stored out first)."""
        self._pages, self._metadata = directory / "pages", directory / "metadata"
        self._max_size = max_size
        self._usage: tuple[float, int, int] | None = None  # (when, files, bytes) of the last walk
        # A str, joined once: changed() is asked on every page request, and building the Path
        # each time cost four times the stat itself.
        self._stamp = str(directory / STAMP)
        for part in (self._pages, self._metadata):
            part.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        pass

    def changed(self) -> tuple[int, int] | None:
        """Differs after every store_all() or mark_changed() by any process: one stat."""
        try:
            st = os.stat(self._stamp)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    async def mark_changed(self) -> None:
        await asyncio.to_thread(_write, Path(self._stamp), str(os.getpid()).encode())

    async def store_all(self, records: list[PageRecord]) -> None:
        """Store many records, each replaced atomically (write then rename: no reader ever
        finds one of them missing), then mark the change."""
        await asyncio.to_thread(self._store_all, records)
        await self.mark_changed()

    def _store_all(self, records: list[PageRecord]) -> None:
        for record in records:
            _write(self._page(record.name, FOUND if record.found else MISSING), encode_page(record))
            self._page(record.name, MISSING if record.found else FOUND).unlink(missing_ok=True)

    def _page(self, name: str, suffix: str) -> Path:
        return self._pages / name[:2] / (name + suffix)

    async def load(self, name: str) -> PageRecord | None:
        return await asyncio.to_thread(self._load, name)

    def _load(self, name: str) -> PageRecord | None:
        found = [r for suffix in (FOUND, MISSING) if (r := _read(self._page(name, suffix), name)) is not None]
        # Both exist only briefly (or after a crash between storing one and removing the other): the
        # newer wins.
        return max(found, key=lambda r: r.fetched_at, default=None)

    async def store(self, record: PageRecord) -> None:
        await asyncio.to_thread(self._store, record)

    def _store(self, record: PageRecord) -> None:
        target = self._page(record.name, FOUND if record.found else MISSING)
        _write_anew(target, encode_page(record))
        self._page(record.name, MISSING if record.found else FOUND).unlink(missing_ok=True)

    async def names(self) -> list[str]:
        """Projects with a stored page that found the project."""
        return await asyncio.to_thread(self._names)

    def _names(self) -> list[str]:
        return sorted(entry.name[: -len(FOUND)] for shard in _dirs(self._pages) for entry in os.scandir(shard)
                      if entry.name.endswith(FOUND))

    async def load_metadata(self, key: str) -> bytes | None:
        return await asyncio.to_thread(_read_bytes, self._metadata / key[:2] / key)

    async def store_metadata(self, key: str, body: bytes) -> None:
        await asyncio.to_thread(_write, self._metadata / key[:2] / key, body)

    async def remove_metadata(self, key: str) -> None:
        await asyncio.to_thread((self._metadata / key[:2] / key).unlink, missing_ok=True)

    async def recover(self) -> None:
        """Drop temp files a crash left behind."""
        await asyncio.to_thread(self._recover)

    def _recover(self) -> None:
        for root in (self._pages, self._metadata):
            for shard in _dirs(root):
                for entry in os.scandir(shard):
                    if TEMP in entry.name:
                        os.unlink(entry.path)

    async def prune(self) -> int:
        """Delete the least recently stored files beyond max_size; returns how many."""
        return await asyncio.to_thread(self._prune) if self._max_size is not None else 0

    def _prune(self) -> int:
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in sorted(entries):
            if total <= (self._max_size or 0):
                break
            Path(path).unlink(missing_ok=True)
            total -= size
            removed += 1
        self._usage = (time.monotonic(), len(entries) - removed, total)
        return removed

    async def usage(self) -> tuple[int, int]:
        """Files and bytes, from a directory walk at most USAGE_MAX_AGE old (a scrape every few
        seconds must not walk a directory of a million pages each time)."""
        known = self._usage
        if known is None or time.monotonic() - known[0] > USAGE_MAX_AGE:
            known = self._usage = await asyncio.to_thread(self._walk)
        return known[1], known[2]

    def _walk(self) -> tuple[float, int, int]:
        entries = self._entries()
        return time.monotonic(), len(entries), sum(size for _, size, _ in entries)

    def _entries(self) -> list[tuple[float, int, str]]:
        """(mtime, size, path) of every file."""
        found = []
        for root in (self._pages, self._metadata):
            for shard in _dirs(root):
                for entry in os.scandir(shard):
                    try:
                        st = entry.stat()
                    except FileNotFoundError:  # removed meanwhile by another worker
                        continue
                    if entry.is_file():
                        found.append((st.st_mtime, st.st_size, entry.path))
        return found


def _dirs(root: Path) -> list[str]:
    return [e.path for e in os.scandir(root) if e.is_dir()]


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _read(path: Path, name: str) -> PageRecord | None:
    data = _read_bytes(path)
    return decode_page(data, name) if data is not None else None


_SHARDS: set[Path] = set()  # directories known to exist


def _write_anew(path: Path, data: bytes) -> None:
    """Remove the file and create it again with `data` (see the module's docstring)."""
    if path.parent not in _SHARDS:
        path.parent.mkdir(exist_ok=True)
        _SHARDS.add(path.parent)
    path.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return  # another writer got there first, with a record as new as this one
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _write(path: Path, data: bytes) -> None:
    """Write-then-rename: never a partly written file under the final name. A cache needs no
    fsync: after a power cut a file cut short decodes as a miss."""
    if path.parent not in _SHARDS:
        path.parent.mkdir(exist_ok=True)
        _SHARDS.add(path.parent)
    temp = path.with_name(f"{path.name}{TEMP}-{os.getpid()}-{next(_TEMPS)}")
    temp.write_bytes(data)
    os.replace(temp, path)
