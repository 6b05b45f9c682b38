"""Core metadata (PEP 658) of a wheel, read through a few byte ranges instead of the whole file.

A zip keeps its table of contents (the central directory) at its end, so the tail of a wheel
plus the bytes of its METADATA member are enough: two range reads for a normal wheel, whatever
its size. The parsing is sans-I/O: pure functions over bytes, driven by a generator that asks
for ``(offset, length)`` ranges. ``read_wheel_metadata`` (any async transport, usually HTTP
Range requests) and ``read_wheel_metadata_from_path`` (a local file) only feed it bytes.

Everything in the archive is treated as hostile: sizes, counts and offsets are bounded and
cross-checked before anything is read or allocated.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from .simple.names import names_release

__all__ = [
    "MAX_CENTRAL_DIRECTORY",
    "MAX_ENTRIES",
    "MAX_METADATA",
    "MetadataError",
    "RangeNotSupported",
    "read_wheel_metadata",
    "read_wheel_metadata_from_file",
    "read_wheel_metadata_from_path",
]

# Hard limits against hostile archives (looked up at call time, so tests can lower them).
MAX_CENTRAL_DIRECTORY = 32 * 1024 * 1024
MAX_METADATA = 16 * 1024 * 1024
MAX_ENTRIES = 200_000


class MetadataError(ValueError):
    """The file is not a valid wheel, or its METADATA is missing, ambiguous or corrupt."""


class RangeNotSupported(Exception):
    """Raised by a caller's read callback when the server ignored the Range header."""


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # fixed part; an extensible data sector may follow
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # central directory file header
_LOCAL = struct.Struct("<4s5H3L2H")  # local file header

_EOCD_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_CENTRAL_SIG = b"PK\x01\x02"
_LOCAL_SIG = b"PK\x03\x04"

_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF
_ZIP64_EXTRA_ID = 0x0001
_FLAG_ENCRYPTED = 0x0001
_FLAG_UTF8 = 0x0800
_STORED, _DEFLATED = 0, 8

# The EOCD lies within the last 22 + 65535 (longest comment) bytes. Take the ZIP64 locator and
# record in front of it as well, so that no legal comment length costs an extra read.
TAIL_SIZE = _ZIP64_EOCD.size + _ZIP64_LOCATOR.size + _EOCD.size + _U16_MAX
# A local header normally repeats the central name and extra field, but some writers put more
# there (zipfile's force_zip64 adds 20 bytes locally only); over-read this much to absorb it.
_LOCAL_EXTRA_SLACK = 1024

# A step of the parser: yields (offset, length) reads, receives their bytes, returns METADATA.
_Steps = Generator[tuple[int, int], bytes, bytes]


@dataclass(frozen=True, slots=True)
class _Directory:
    """Where the central directory is, as the end records state it."""

    offset: int
    size: int
    entries: int
    end: int  # where the record after the central directory starts: it must end exactly there


@dataclass(frozen=True, slots=True)
class _Entry:
    """The central directory's view of one member."""

    name: bytes
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    offset: int  # of the local file header
    extra_len: int


# --- Pure parsing -------------------------------------------------------------------------------


def _find_eocd(tail: bytes) -> int:
    """Position in ``tail`` of the EOCD record whose comment runs exactly to the end of the file.

    Searching backwards and requiring the comment length to match skips signatures that are
    merely part of a comment.
    """
    end = len(tail)
    while (pos := tail.rfind(_EOCD_SIG, 0, end)) >= 0:
        if pos + _EOCD.size <= len(tail):
            (comment_len,) = struct.unpack_from("<H", tail, pos + _EOCD.size - 2)
            if pos + _EOCD.size + comment_len == len(tail):
                return pos
        end = pos + len(_EOCD_SIG) - 1
    raise MetadataError("No end of central directory record found; this is not a zip archive.")


def _parse_eocd(tail: bytes, tail_start: int) -> _Directory | int:
    """The directory the EOCD describes or, for ZIP64, the offset of the ZIP64 EOCD record."""
    pos = _find_eocd(tail)
    _, disk, cd_disk, disk_entries, entries, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, pos)
    loc = pos - _ZIP64_LOCATOR.size
    if loc >= 0 and tail[loc : loc + 4] == _ZIP64_LOCATOR_SIG:
        # ZIP64: the 16/32-bit fields above are placeholders; the real ones are in the record.
        _, record_disk, record, disks = _ZIP64_LOCATOR.unpack_from(tail, loc)
        if record_disk != 0 or disks > 1:
            raise MetadataError("Multi-disk zip archives are not supported.")
        if record + _ZIP64_EOCD.size > tail_start + loc:
            raise MetadataError("The ZIP64 end of central directory record is out of bounds.")
        return record
    if disk != 0 or cd_disk != 0 or disk_entries != entries:
        raise MetadataError("Multi-disk zip archives are not supported.")
    return _Directory(cd_offset, cd_size, entries, tail_start + pos)


def _parse_zip64_eocd(record: bytes, offset: int) -> _Directory:
    sig, _, _, _, disk, cd_disk, disk_entries, entries, cd_size, cd_offset = (
        _ZIP64_EOCD.unpack_from(record)
    )
    if sig != _ZIP64_EOCD_SIG:
        raise MetadataError("The ZIP64 end of central directory record has a bad signature.")
    if disk != 0 or cd_disk != 0 or disk_entries != entries:
        raise MetadataError("Multi-disk zip archives are not supported.")
    return _Directory(cd_offset, cd_size, entries, offset)


def _check_directory(d: _Directory) -> None:
    if d.entries > MAX_ENTRIES:
        raise MetadataError(f"The archive has {d.entries} entries, more than {MAX_ENTRIES}.")
    if d.size > MAX_CENTRAL_DIRECTORY:
        raise MetadataError(
            f"The central directory is {d.size} bytes, more than {MAX_CENTRAL_DIRECTORY}."
        )
    # Also rejects data prepended to the archive, which would shift every offset.
    if d.offset + d.size != d.end:
        raise MetadataError("The central directory does not end where the end records begin.")
    if d.entries * _CENTRAL.size > d.size:
        raise MetadataError("The central directory is too small for its number of entries.")


def _iter_central(cd: bytes, entries: int) -> Iterator[tuple[str, int]]:
    """Yield (name, position in ``cd``) of every central directory header, checking framing."""
    pos = 0
    for _ in range(entries):
        if cd[pos : pos + 4] != _CENTRAL_SIG or pos + _CENTRAL.size > len(cd):
            raise MetadataError("The central directory has a bad entry header.")
        (flags,) = struct.unpack_from("<H", cd, pos + 8)
        name_len, extra_len, comment_len = struct.unpack_from("<3H", cd, pos + 28)
        name = cd[pos + _CENTRAL.size : pos + _CENTRAL.size + name_len]
        yield name.decode("utf-8" if flags & _FLAG_UTF8 else "cp437", "replace"), pos
        pos += _CENTRAL.size + name_len + extra_len + comment_len
    if pos != len(cd):
        raise MetadataError("The central directory size does not match its entries.")


def _zip64_values(extra: bytes, wanted: int) -> list[int]:
    """The first ``wanted`` 64-bit values of the ZIP64 extended information extra field."""
    pos = 0
    while pos + 4 <= len(extra):
        header_id, length = struct.unpack_from("<2H", extra, pos)
        if header_id == _ZIP64_EXTRA_ID:
            if length < 8 * wanted or pos + 4 + length > len(extra):
                break
            return list(struct.unpack_from(f"<{wanted}Q", extra, pos + 4))
        pos += 4 + length
    raise MetadataError("A ZIP64 entry lacks a valid ZIP64 extra field.")


def _parse_entry(cd: bytes, pos: int) -> _Entry:
    (_, _, _, flags, method, _, _, crc, csize, size, name_len, extra_len, _, disk, _, _, offset) = (
        _CENTRAL.unpack_from(cd, pos)
    )
    name_end = pos + _CENTRAL.size + name_len
    if disk not in (0, _U16_MAX):
        raise MetadataError("Multi-disk zip archives are not supported.")
    # Only the fields saturated in the header are present in the extra field, in this order.
    sentinels = (size == _U32_MAX, csize == _U32_MAX, offset == _U32_MAX)
    if any(sentinels):
        values = iter(_zip64_values(cd[name_end : name_end + extra_len], sum(sentinels)))
        size = next(values) if sentinels[0] else size
        csize = next(values) if sentinels[1] else csize
        offset = next(values) if sentinels[2] else offset
    return _Entry(cd[pos + _CENTRAL.size : name_end], flags, method, crc, csize, size, offset,
                  extra_len)


def _find_metadata(cd: bytes, entries: int, name: str, version: Version) -> _Entry:
    # Like installers, insist on a single top-level .dist-info directory: with more, which one
    # holds the metadata is ambiguous.
    dist_infos: set[str] = set()
    found: list[int] = []
    for member, pos in _iter_central(cd, entries):
        top, slash, rest = member.partition("/")
        if slash and top.endswith(".dist-info"):
            dist_infos.add(top)
            if rest == "METADATA":
                found.append(pos)
    if not dist_infos:
        raise MetadataError("The wheel has no .dist-info directory.")
    if len(dist_infos) > 1:
        raise MetadataError(
            f"The wheel has several .dist-info directories: {', '.join(sorted(dist_infos))}."
        )
    (dist_info,) = dist_infos
    if not names_release(dist_info.removesuffix(".dist-info"), name, version):
        raise MetadataError(f"The directory {dist_info} does not match the wheel's filename.")
    if len(found) != 1:
        raise MetadataError(f"The wheel has {len(found)} {dist_info}/METADATA entries, not 1.")
    entry = _parse_entry(cd, found[0])
    if entry.flags & _FLAG_ENCRYPTED:
        raise MetadataError("METADATA is encrypted.")
    if entry.method not in (_STORED, _DEFLATED):
        raise MetadataError(f"METADATA uses unsupported compression method {entry.method}.")
    # Deflate grows incompressible data by a few bytes per block at most; 1/256 is generous.
    if entry.size > MAX_METADATA or entry.compressed_size > MAX_METADATA + MAX_METADATA // 256:
        raise MetadataError(
            f"METADATA is {entry.size} bytes ({entry.compressed_size} compressed), "
            f"over the {MAX_METADATA}-byte limit."
        )
    return entry


def _local_data_start(header: bytes, entry: _Entry) -> int:
    """Offset of the member's data from its local header, after checking the header agrees."""
    if len(header) < _LOCAL.size or header[:4] != _LOCAL_SIG:
        raise MetadataError("METADATA's local file header has a bad signature.")
    _, _, _, method, _, _, _, _, _, name_len, extra_len = _LOCAL.unpack_from(header)
    if method != entry.method or header[_LOCAL.size : _LOCAL.size + name_len] != entry.name:
        raise MetadataError("METADATA's local file header disagrees with the central directory.")
    return _LOCAL.size + name_len + extra_len


def _decompress(data: bytes, entry: _Entry) -> bytes:
    if entry.method == _STORED:
        out = data
    else:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate: zip has no zlib header
        try:
            # max_length bounds the output whatever the data holds (zip bombs, lying sizes).
            out = inflater.decompress(data, entry.size + 1)
        except zlib.error as exc:
            raise MetadataError(f"METADATA is not valid deflate data ({exc}).") from None
        if not inflater.eof:
            raise MetadataError("METADATA's deflate stream does not end at its declared size.")
    if len(out) != entry.size:
        raise MetadataError(f"METADATA is not the {entry.size} bytes the archive declares.")
    if zlib.crc32(out) != entry.crc:
        raise MetadataError("METADATA fails its CRC-32 check.")
    return out


# --- Orchestration ------------------------------------------------------------------------------


def _get(tail: bytes, tail_start: int, offset: int, length: int) -> _Steps:
    """Bytes [offset, offset + length), taken from the tail as far as it has them."""
    end = offset + length
    if offset >= tail_start:
        return tail[offset - tail_start : end - tail_start]
    if end <= tail_start:
        return (yield offset, length)
    return (yield offset, tail_start - offset) + tail[: end - tail_start]


def _metadata_steps(size: int, filename: str) -> _Steps:
    try:
        name, version, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise MetadataError(f"{filename!r} is not a valid wheel filename ({exc}).") from None
    if size < _EOCD.size:
        raise MetadataError("The file is too small to be a zip archive.")

    tail_start = max(0, size - TAIL_SIZE)
    tail = yield tail_start, size - tail_start
    directory = _parse_eocd(tail, tail_start)
    if isinstance(directory, int):
        record = yield from _get(tail, tail_start, directory, _ZIP64_EOCD.size)
        directory = _parse_zip64_eocd(record, directory)
    _check_directory(directory)

    cd = yield from _get(tail, tail_start, directory.offset, directory.size)
    entry = _find_metadata(cd, directory.entries, name, version)

    # Members precede the central directory; read the header and data in one go if possible.
    room = directory.offset - entry.offset
    if room < _LOCAL.size + len(entry.name) + entry.compressed_size:
        raise MetadataError("METADATA's data is out of bounds.")
    guess = _LOCAL.size + len(entry.name) + entry.extra_len + _LOCAL_EXTRA_SLACK
    want = min(room, guess + entry.compressed_size)
    member = yield from _get(tail, tail_start, entry.offset, want)
    start = _local_data_start(member, entry)
    end = start + entry.compressed_size
    if end > room:
        raise MetadataError("METADATA's data is out of bounds.")
    if end > len(member):  # the local extra field was longer than the slack allowed for
        member += yield entry.offset + len(member), end - len(member)
    return _decompress(member[start:end], entry)


def _checked(data: bytes, length: int) -> bytes:
    if len(data) != length:
        raise MetadataError(f"A read returned {len(data)} bytes instead of {length}.")
    return data


async def read_wheel_metadata(
    read: Callable[[int, int], Awaitable[bytes]], size: int, filename: str
) -> bytes:
    """The METADATA file of the wheel ``filename`` of ``size`` bytes, via ``read(offset, length)``.

    ``read`` must return exactly the bytes asked for (or raise, e.g. ``RangeNotSupported``;
    its exceptions propagate unchanged). A normal wheel takes two reads: the last ~64 KiB, then
    METADATA's local header and data; a central directory larger than the tail takes one more.
    Raises ``MetadataError`` if the file is not a valid wheel with exactly one METADATA.
    """
    steps = _metadata_steps(size, filename)
    request = next(steps)
    while True:
        data = _checked(await read(*request), request[1])
        try:
            request = steps.send(data)
        except StopIteration as done:
            return done.value


def read_wheel_metadata_from_path(path: str | os.PathLike[str], filename: str) -> bytes:
    """Like ``read_wheel_metadata``, for a local file; ``filename`` is the wheel's real name."""
    with open(path, "rb") as file:
        return read_wheel_metadata_from_file(file, filename)


def read_wheel_metadata_from_file(file: BinaryIO, filename: str) -> bytes:
    """Like ``read_wheel_metadata``, for an open, seekable binary file."""
    steps = _metadata_steps(os.fstat(file.fileno()).st_size, filename)
    request = next(steps)
    while True:
        offset, length = request
        file.seek(offset)
        try:
            request = steps.send(_checked(file.read(length), length))
        except StopIteration as done:
            return done.value
