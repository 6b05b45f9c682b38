"""Named locks shared by every process on one host.

On Linux: a one-byte open-file-description lock (F_OFD_SETLK) on a single lock file, at an
offset taken from the sha256 of the lock's name, taken through one descriptor per process (and
a set of the names this process holds, since the kernel sees one owner per descriptor). Taking a
lock opens and creates no file (a file created per lock cost more than the work it guarded, for
a cold page), any name works, and the kernel drops the locks when their process dies. Two names
whose offsets collide (one chance in 2^62) merely wait for each other.

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


def _range_lock(fd: int, kind: int, offset: int) -> None:
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhxxxxqqixxxx", kind, os.SEEK_SET, offset, 1, 0))  # struct flock


class RangeLease:
    def __init__(self, locks: FileLocks, name: str, offset: int) -> None:
        self._locks, self._name, self._offset = locks, name, offset

    async def release(self) -> None:
        if self._name is not None:
            _range_lock(self._locks.fd, fcntl.F_UNLCK, self._offset)
            self._locks.held.discard(self._name)
            self._name = None


class FileLease:
    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self._path = path  # the lock's own file, removed on release

    async def release(self) -> None:
        if self._fd is not None:
            self._path.unlink(missing_ok=True)
            os.close(self._fd)  # closing drops the lock
            self._fd = None


class FileLocks:
    def __init__(self, directory: Path, *, ranges: bool = OFD) -> None:
        self._dir = directory
        self._ranges = ranges
        directory.mkdir(parents=True, exist_ok=True)
        self.held: set[str] = set()
        self.fd = -1
        if ranges:
            path = directory / "locks"
            self.fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)

    async def try_acquire(self, name: str) -> RangeLease | FileLease | None:
        """The lock, if nobody holds it now; never waits."""
        return self._range(name) if self._ranges else self._flock(name)

    def _range(self, name: str) -> RangeLease | None:
        if name in self.held:
            return None
        offset = int.from_bytes(_digest(name)[:8], "big") >> 2  # a positive off_t
        try:
            _range_lock(self.fd, fcntl.F_WRLCK, offset)
        except OSError as exc:
            if exc.errno in _BUSY:
                return None
            raise
        self.held.add(name)
        return RangeLease(self, name, offset)

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
        if self.fd >= 0:
            os.close(self.fd)  # drops every lock still held
            self.fd = -1
