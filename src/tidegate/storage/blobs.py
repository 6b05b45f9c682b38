"""Immutable, content-addressed files on local disk, with an optional size limit (LRU eviction).

Layout under the root: files/<key[:2]>/<key> for committed blobs, tmp/ for files being written.
A blob becomes visible only by rename after it was written, verified and fsynced, so a crash
leaves either no file or a whole one. An SQLite table holds sizes and access times for
eviction; it is rebuilt from the files at start-up, so a crash between rename and insert is
harmless. Readers hold an open file descriptor, so evicting (unlinking) a file never cuts a
transfer short. Every SQLite call runs on the store's own thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable, TypeVar

from .records import BlobInfo
from .sqlite import connect

T = TypeVar("T")

TOUCH_INTERVAL = 60.0  # seconds between access-time writes for one blob


class FileBlobStore:
    serve_before_commit = False  # commit() is a rename: the last byte may as well wait for it

    def __init__(self, root: Path, max_size: int | None = None) -> None:
        """`max_size`: evict least recently used blobs beyond this many bytes; None: never."""
        self._files = root / "files"
        self._tmp = root / "tmp"
        self.max_size = max_size
        self._files.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._db = connect(root / "files.db", busy_timeout_ms=2000)
        self._db.execute("CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, size INTEGER NOT NULL,"
                         " atime REAL NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS blobs_atime ON blobs (atime)")
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tidegate-blobs")
        self._touched: dict[str, float] = {}  # access times not yet written
        self._written: dict[str, float] = {}  # when each blob's access time was last written
        self._flushing = False

    async def _run(self, fn: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def close(self) -> None:
        await self._run(self._flush)
        self._thread.shutdown(wait=True)
        self._db.close()

    def _path(self, key: str) -> Path:
        return self._files / key[:2] / key

    # --- reading ---

    async def open(self, key: str) -> BinaryIO | None:
        try:
            fh = open(self._path(key), "rb")
        except FileNotFoundError:
            return None
        self._touch(key)
        return fh

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    async def info(self, key: str) -> BlobInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return BlobInfo(st.st_size, st.st_mtime)

    def _touch(self, key: str) -> None:
        """Remember the access for eviction; written in batches on the store's thread."""
        now = time.time()
        if now - self._written.get(key, 0.0) < TOUCH_INTERVAL:
            return
        self._written[key] = now
        self._touched[key] = now
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().run_in_executor(self._thread, self._flush)

    def _flush(self) -> None:
        self._flushing = False
        touched, self._touched = self._touched, {}
        if not touched:
            return
        try:
            self._db.executemany("UPDATE blobs SET atime = ? WHERE key = ?", [(t, k) for k, t in touched.items()])
        except sqlite3.OperationalError:
            pass  # another worker holds the write lock: an access time is only a hint

    # --- writing ---

    def temp_path(self, key: str, *, shared: bool = False) -> Path:
        """Where to write a blob before committing it. `shared`: the one well-known temp path
        of `key`, where other processes of this host follow a download as it grows."""
        if shared:
            return self._tmp / f"{key}.part"
        return self._tmp / f"{key}.{os.getpid()}.{time.monotonic_ns()}.part"

    def upload_as_written(self, temp: Path, key: str) -> None:
        """Nothing to do ahead of commit on local disk."""

    async def commit(self, temp: Path, key: str) -> None:
        await self._run(self._commit, temp, key)

    def _commit(self, temp: Path, key: str) -> None:
        final = self._path(key)
        final.parent.mkdir(exist_ok=True)
        size = temp.stat().st_size
        os.replace(temp, final)
        fsync_path(final.parent)
        try:
            self._db.execute("INSERT OR REPLACE INTO blobs (key, size, atime) VALUES (?, ?, ?)", (key, size, time.time()))
            self._evict(keep=key)
        except sqlite3.OperationalError:
            # The file is committed whatever happens to its index row; start-up recovery indexes
            # files that have none. Failing the download here would only waste it.
            pass

    async def commit_many(self, blobs: list[tuple[Path, str]]) -> None:
        await self._run(self._commit_many, blobs)

    def _commit_many(self, blobs: list[tuple[Path, str]]) -> None:
        """Temp files written but not fsynced (a bundle's), committed with two syncs of the whole
        filesystem instead of two fsyncs per file: the first makes every byte durable before any
        file is renamed, the second makes the renames durable before this returns (before any
        page can list the files). Where syncfs(2) is missing, file by file as commit() does."""
        if not blobs:
            return
        if not sync_filesystem(self._tmp):
            for temp, _ in blobs:
                fsync_path(temp)
        rows, parents = [], set()
        now = time.time()
        for temp, key in blobs:
            final = self._path(key)
            final.parent.mkdir(exist_ok=True)
            rows.append((key, temp.stat().st_size, now))
            os.replace(temp, final)
            parents.add(final.parent)
        if not sync_filesystem(self._files):
            for parent in parents:
                fsync_path(parent)
        try:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO blobs (key, size, atime) VALUES (?, ?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._evict(keep=blobs[-1][1])
        except sqlite3.OperationalError:
            pass  # as in _commit: the files are committed; start-up recovery indexes them

    async def remove(self, key: str) -> None:
        await self._run(self._remove, key)

    def _remove(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        self._db.execute("DELETE FROM blobs WHERE key = ?", (key,))
        self._written.pop(key, None)

    async def keys(self) -> list[str]:
        return await self._run(lambda: [key for (key,) in self._db.execute("SELECT key FROM blobs")])

    async def total_size(self) -> int:
        return await self._run(self._total)

    async def usage(self) -> tuple[int, int]:
        return await self._run(lambda: tuple(self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs")
                                             .fetchone()))

    def _total(self) -> int:
        return self._db.execute("SELECT COALESCE(SUM(size), 0) FROM blobs").fetchone()[0]

    def _evict(self, keep: str | None) -> None:
        """Remove least recently used blobs until the store fits max_size. A client still reading
        an evicted file is unaffected: it holds an open descriptor, and unlink keeps the data.
        `keep` (the blob just committed) always stays, even if it alone exceeds the limit, so a
        file larger than the cache can still be served until the next one arrives."""
        if self.max_size is None:
            return
        total = self._total()
        if total <= self.max_size:
            return
        for key, size in self._db.execute("SELECT key, size FROM blobs ORDER BY atime").fetchall():
            if total <= self.max_size:
                break
            if key != keep:
                self._remove(key)
                total -= size

    async def recover(self) -> None:
        """After a crash: drop partial files and make the index agree with the files on disk.
        Run once, before any worker starts serving."""
        await self._run(self._recover)

    def _recover(self) -> None:
        for leftover in self._tmp.iterdir():
            leftover.unlink(missing_ok=True)
        on_disk = {p.name: p.stat().st_size for p in self._files.glob("*/*") if p.is_file()}
        indexed = {key for (key,) in self._db.execute("SELECT key FROM blobs")}
        now = time.time()
        self._db.execute("BEGIN")
        try:
            for key in indexed - on_disk.keys():
                self._db.execute("DELETE FROM blobs WHERE key = ?", (key,))
            for key in on_disk.keys() - indexed:
                self._db.execute("INSERT INTO blobs (key, size, atime) VALUES (?, ?, ?)", (key, on_disk[key], now))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._evict(keep=None)


@functools.cache
def _syncfs():
    """libc's syncfs(2) through ctypes, or None (not Linux, or no C library to call)."""
    try:
        import ctypes

        return ctypes, ctypes.CDLL(None, use_errno=True).syncfs
    except (ImportError, OSError, AttributeError):
        return None


def sync_filesystem(path: Path) -> bool:
    """Flush every dirty page and inode of the filesystem holding `path` in one call (syncfs),
    which costs about what the data costs to write, not a journal commit per file. It also
    flushes other processes' dirty data on that filesystem, as `sync` would. False when the call
    is not available: the caller then fsyncs what it wrote, file by file."""
    found = _syncfs()
    if found is None:
        return False
    ctypes, syncfs = found
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:  # since Linux 5.8 it reports writeback errors (EIO, ENOSPC)
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)
    return True


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a rename is durable once its directory is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
