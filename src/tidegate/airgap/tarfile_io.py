"""The bytes of a bundle: a plain POSIX.1-2001 (pax) tar, written and read without copying member
data through Python where the kernel can copy it.

tarfile builds and parses the headers (the format is tarfile's own, so any tar reads a bundle);
member data goes file to file with copy_file_range(2) (sendfile(2), then read/write, where a
kernel or filesystem refuses it). Hashing reads the bytes through mmap in large slices, so
hashlib releases the GIL and several members hash at once on several cores.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import mmap
import os
import tarfile
from typing import BinaryIO

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
SLICE = 8 * 1024 * 1024  # bytes per hashlib.update or copy call: large enough to release the GIL
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF,
                   errno.ETXTBSY, errno.EPERM}


class ShortSource(OSError):
    """A source file ended before the bytes it was supposed to hold."""


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def copy_range(src: int, dst: int, count: int, offset: int = 0) -> None:
    """Append `count` bytes of `src` from `offset` to `dst` (at its file position)."""
    done = 0
    kernel = [getattr(os, "copy_file_range", None), _sendfile]
    for copy in kernel:
        if copy is None:
            continue
        try:
            while done < count:
                n = copy(src, dst, min(count - done, 1 << 30), offset + done)
                if n == 0:
                    raise ShortSource(f"the source ended {count - done} bytes early")
                done += n
            return
        except ShortSource:
            raise
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY:
                raise
            # Nothing was copied by a call that failed; what earlier calls copied stays.
    buffer = bytearray(min(SLICE, max(count - done, 1)))
    view = memoryview(buffer)
    while done < count:
        n = os.preadv(src, [view[: min(len(view), count - done)]], offset + done)
        if n == 0:
            raise ShortSource(f"the source ended {count - done} bytes early")
        _write_all(dst, view[:n])
        done += n


def _sendfile(src: int, dst: int, count: int, offset: int) -> int:
    return os.sendfile(dst, src, offset, count)


def sha256_of(fd: int, size: int, offset: int = 0) -> str:
    """The sha256 of `size` bytes of `fd` from `offset`, read through a mapping (no copy), or
    read in slices where the file cannot be mapped."""
    digest = hashlib.sha256()
    if size == 0:
        return digest.hexdigest()
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    try:
        mapped = mmap.mmap(fd, size + offset - start, prot=mmap.PROT_READ, offset=start)
    except (OSError, ValueError):
        return _sha256_read(fd, size, offset)
    with mapped:
        if hasattr(mapped, "madvise"):
            mapped.madvise(mmap.MADV_SEQUENTIAL)
        view = memoryview(mapped)
        try:
            skip = offset - start
            for at in range(skip, skip + size, SLICE):
                digest.update(view[at: min(at + SLICE, skip + size)])
        finally:
            view.release()
    return digest.hexdigest()


@functools.cache
def _sync_file_range():
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (ImportError, OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return call


def start_writeback(fd: int, offset: int, size: int) -> None:
    """Ask Linux to start writing these bytes to disk now (sync_file_range(2), WRITE: it does not
    wait for them), so the fsync or syncfs that makes them durable later overlaps the copying
    instead of following it. Only a hint: it makes nothing durable, and is skipped where missing."""
    call = _sync_file_range()
    if call is not None and size > 0:
        call(fd, offset, size, 2)  # SYNC_FILE_RANGE_WRITE; a failure is not ours to report here


def _sha256_read(fd: int, size: int, offset: int) -> str:
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(min(SLICE, size)))
    done = 0
    while done < size:
        n = os.preadv(fd, [buffer[: min(len(buffer), size - done)]], offset + done)
        if n == 0:
            raise ShortSource(f"the file ended {size - done} bytes early")
        digest.update(buffer[:n])
        done += n
    return digest.hexdigest()


def header(name: str, size: int) -> bytes:
    """The tar header block(s) of a regular member, exactly as tarfile.addfile writes it."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


class TarWriter:
    """Writes a tar to an open file descriptor, member by member, starting the disk writes of
    every WRITEBACK bytes as it goes (the caller's fsync then has little left to wait for)."""

    WRITEBACK = 32 * 1024 * 1024

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.offset = 0
        self._written_back = 0

    def _put(self, data: bytes | memoryview) -> None:
        _write_all(self.fd, data)
        self.offset += len(data)

    def _write_back(self) -> None:
        if self.offset - self._written_back >= self.WRITEBACK:
            start_writeback(self.fd, self._written_back, self.offset - self._written_back)
            self._written_back = self.offset

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self._put(bytes(BLOCK - size % BLOCK))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._put(header(name, len(data)))
        self._put(data)
        self._pad(len(data))

    def add_file(self, name: str, size: int, source: BinaryIO) -> None:
        """`size` bytes of `source` from its start (copied by the kernel when it has a descriptor)."""
        self._put(header(name, size))
        try:
            fd = source.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        if fd is None:
            data = source.read(size)
            if len(data) != size:
                raise ShortSource(f"{name}: the source ended {size - len(data)} bytes early")
            self._put(data)
        else:
            try:
                copy_range(fd, self.fd, size)
            except ShortSource as exc:
                raise ShortSource(f"{name}: {exc}") from None
            self.offset += size
        self._pad(size)
        self._write_back()

    def close(self) -> None:
        """The end-of-archive blocks, padded to a whole record, as tarfile ends an archive."""
        self._put(bytes(2 * BLOCK))
        if self.offset % RECORD:
            self._put(bytes(RECORD - self.offset % RECORD))


def members(fileobj: BinaryIO) -> list[tarfile.TarInfo]:
    """Every member header of a seekable tar, in order (the data is skipped, not read), each
    checked to lie wholly inside the file. Raises tarfile.TarError on a damaged or short tar."""
    end = os.fstat(fileobj.fileno()).st_size
    out = []
    with tarfile.open(fileobj=fileobj, mode="r:") as tar:
        for info in tar:
            if info.offset_data + info.size > end:
                raise tarfile.ReadError(f"unexpected end of data inside {info.name!r}")
            out.append(info)
    return out
