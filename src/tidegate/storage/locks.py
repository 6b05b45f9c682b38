"""Named locks shared by every process on one host.

On Linux: a one-byte open-file-description lock (F_OFD_SETLK) on a single lock file, at an
offset taken from the sha256 of the lock's name. Taking a lock creates no file (a file created
per lock cost more than the work it guarded, for a cold page), any name works, and the kernel
drops the lock when its holder closes the file or dies. Two names whose offsets collide (one
chance in 2^62) merely wait for each other.

Elsewhere: an flock on a file per lock, named by the same hash, removed on release; a process
that locked a file just removed finds, by comparing inodes, that it holds nothing and tries again.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import struct
from pathlib import Path

OFD = hasattr(fcntl, "F_OFD_SETLK")
_BUSY = (errno.EAGAIN, errno.EACCES)


def _digest(name: str) -> bytes:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()


class FileLease:
    def __init__(self, fd: int, path: Path | None = None) -> None:
        self._fd: int | None = fd
        self._path = path  # the lock's own file, removed on release (flock locks)

    async def release(self) -> None:
        if self._fd is not None:
            if self._path is not None:
                self._path.unlink(missing_ok=True)
            os.close(self._fd)  # closing drops the lock
            self._fd = None


class FileLocks:
    def __init__(self, directory: Path, *, ranges: bool = OFD) -> None:
        self._dir = directory
        self._ranges = ranges
        directory.mkdir(parents=True, exist_ok=True)
        self._file = directory / "locks"
        self._file.touch()

    async def try_acquire(self, name: str) -> FileLease | None:
        """The lock, if nobody holds it now; never waits."""
        return self._range(name) if self._ranges else self._flock(name)

    def _range(self, name: str) -> FileLease | None:
        fd = os.open(self._file, os.O_RDWR)
        offset = int.from_bytes(_digest(name)[:8], "big") >> 2  # a positive off_t
        request = struct.pack("hhxxxxqqixxxx", fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)  # struct flock
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _BUSY:
                return None
            raise
        return FileLease(fd)

    def _flock(self, name: str) -> FileLease | None:
        path = self._dir / (_digest(name).hex() + ".lock")
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
                return FileLease(fd, path)
            os.close(fd)  # the holder removed this file as we locked it: try the new one

    async def close(self) -> None:
        pass
