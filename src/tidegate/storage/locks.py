"""Named locks shared by every process on one host: an flock on a file per lock.

A lock's file is named by the sha256 of the lock's name, so any name (a 300-character project,
a filename with odd characters) makes a short, safe file name. The file is removed on release;
a process that locked a file just removed finds, by comparing inodes, that it holds nothing and
tries again, so two holders of one lock never coexist.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path


class FileLease:
    def __init__(self, path: Path, fd: int) -> None:
        self._path = path
        self._fd: int | None = fd

    async def release(self) -> None:
        if self._fd is not None:
            self._path.unlink(missing_ok=True)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class FileLocks:
    def __init__(self, directory: Path) -> None:
        self._dir = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self._dir / (hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest() + ".lock")

    async def try_acquire(self, name: str) -> FileLease | None:
        """The lock, if nobody holds it now; never waits."""
        path = self._path(name)
        while True:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                return FileLease(path, fd)
            os.close(fd)  # the holder removed this file as we locked it: try the new one

    async def close(self) -> None:
        pass
