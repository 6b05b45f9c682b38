"""Immutable, content-addressed file store with a size limit and least-recently-used eviction.

Layout under the root: files/<key[:2]>/<key> for committed blobs, tmp/ for downloads in
progress. A blob becomes visible only by rename after it was written, verified and fsynced, so a
crash leaves either no file or a whole one. An SQLite table holds sizes and access times for
eviction; it is rebuilt from the files on startup, so a crash between rename and insert is harmless.
Readers hold an open file descriptor, so evicting (unlinking) a file never cuts a transfer short.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

_TOUCH_INTERVAL = 60.0  # seconds between access-time writes for one blob


class BlobStore:
    def __init__(self, root: Path, max_size: int) -> None:
        self.root = root
        self.files = root / "files"
        self.tmp = root / "tmp"
        self.max_size = max_size
        self.files.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(root / "files.db", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=2000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, size INTEGER NOT NULL, atime REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS blobs_atime ON blobs (atime)")
        self._touched: dict[str, float] = {}
        # The connection is used from the event loop and from threads (commit runs in one):
        # every use, and close, holds this lock.
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def path(self, key: str) -> Path:
        return self.files / key[:2] / key

    def temp_path(self, key: str) -> Path:
        return self.tmp / f"{key}.{os.getpid()}.{time.monotonic_ns()}.part"

    def open(self, key: str):
        """An open binary file for a committed blob, or None. Marks it recently used."""
        try:
            fh = open(self.path(key), "rb")
        except FileNotFoundError:
            return None
        self.touch(key)
        return fh

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def touch(self, key: str) -> None:
        now = time.time()
        if now - self._touched.get(key, 0.0) >= _TOUCH_INTERVAL:
            self._touched[key] = now
            try:
                with self._lock:
                    self._db.execute("UPDATE blobs SET atime = ? WHERE key = ?", (now, key))
            except sqlite3.OperationalError:
                pass  # another worker holds the write lock: an access time is only a hint

    def commit(self, temp: Path, key: str) -> Path:
        """Make a verified, fsynced temp file the blob for key (atomically), then evict if needed."""
        final = self.path(key)
        final.parent.mkdir(exist_ok=True)
        size = temp.stat().st_size
        os.replace(temp, final)
        _fsync_dir(final.parent)
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO blobs (key, size, atime) VALUES (?, ?, ?)", (key, size, time.time())
                )
                self.evict(keep=key)
        except sqlite3.OperationalError:
            # The file is committed whatever happens to its index row; startup recovery indexes
            # files that have none. Failing the download here would only waste it.
            pass
        return final

    def keys(self) -> list[str]:
        with self._lock:
            return [key for (key,) in self._db.execute("SELECT key FROM blobs")]

    def remove(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
        with self._lock:
            self._db.execute("DELETE FROM blobs WHERE key = ?", (key,))
        self._touched.pop(key, None)

    def total_size(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COALESCE(SUM(size), 0) FROM blobs").fetchone()[0]

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used blobs until the store fits max_size. A client still reading
        an evicted file is unaffected: it holds an open descriptor, and unlink keeps the data.
        `keep` (the blob just committed) always stays, even if it alone exceeds the limit, so a
        file larger than the cache can still be served until the next one arrives."""
        with self._lock:
            return self._evict(keep)

    def _evict(self, keep: str | None) -> list[str]:
        total = self.total_size()
        removed: list[str] = []
        if total <= self.max_size:
            return removed
        for key, size in self._db.execute("SELECT key, size FROM blobs ORDER BY atime").fetchall():
            if total <= self.max_size:
                break
            if key == keep:
                continue
            try:
                os.unlink(self.path(key))
            except FileNotFoundError:
                pass
            self._db.execute("DELETE FROM blobs WHERE key = ?", (key,))
            self._touched.pop(key, None)
            total -= size
            removed.append(key)
        return removed

    def recover(self) -> None:
        """After a crash: drop partial downloads and make the index agree with the files on disk.
        Run once, before any worker starts serving."""
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
        on_disk = {p.name: p.stat().st_size for p in self.files.glob("*/*") if p.is_file()}
        indexed = {key for (key,) in self._db.execute("SELECT key FROM blobs")}
        now = time.time()
        with self._db:
            self._db.execute("BEGIN")
            for key in indexed - on_disk.keys():
                self._db.execute("DELETE FROM blobs WHERE key = ?", (key,))
            for key in on_disk.keys() - indexed:
                self._db.execute("INSERT INTO blobs (key, size, atime) VALUES (?, ?, ?)", (key, on_disk[key], now))
        self.evict()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
