"""Tests for reading a wheel's METADATA through byte ranges (tidegate.wheelmeta)."""

from __future__ import annotations

import io
import os
import random
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tidegate import wheelmeta
from tidegate.wheelmeta import (
    TAIL_SIZE,
    MetadataError,
    RangeNotSupported,
    read_wheel_metadata,
    read_wheel_metadata_from_path,
)

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
METADATA = b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n\nA demo.\n"
# Incompressible filler placed after METADATA, so that METADATA is outside the tail read.
FILLER = random.Random(0).randbytes(4 * TAIL_SIZE)


class Reader:
    """A read callback over bytes that records every call."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, offset: int, length: int) -> bytes:
        self.calls.append((offset, length))
        return self.data[offset : offset + length]

    @property
    def bytes_read(self) -> int:
        return sum(length for _, length in self.calls)


def make_wheel(
    path: Path,
    *,
    metadata: bytes = METADATA,
    dist_info: str = "demo_pkg-1.0.dist-info",
    compression: int = zipfile.ZIP_DEFLATED,
    filler: bytes = FILLER,
    comment: bytes = b"",
    extra_members: int = 0,
    force_zip64: bool = False,
) -> bytes:
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.comment = comment
        zf.writestr("demo_pkg/__init__.py", b"")
        with zf.open(f"{dist_info}/METADATA", "w", force_zip64=force_zip64) as fh:
            fh.write(metadata)
        zf.writestr(f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\n")
        if filler:
            zf.writestr(zipfile.ZipInfo("demo_pkg/blob.bin"), filler)
        for i in range(extra_members):
            zf.writestr(f"demo_pkg/m/{i}.py", b"")
        zf.writestr(f"{dist_info}/RECORD", b"")
    return path.read_bytes()


async def check(data: bytes, tmp_path: Path, filename: str = WHEEL) -> tuple[bytes, Reader]:
    """METADATA via ranges, also checking the local-file path gives the same bytes."""
    reader = Reader(data)
    got = await read_wheel_metadata(reader, len(data), filename)
    path = tmp_path / filename
    path.write_bytes(data)
    assert read_wheel_metadata_from_path(path, filename) == got
    return got, reader


# --- A hand-rolled zip writer, to produce ZIP64 everywhere and lies zipfile won't write ---------


@dataclass
class Member:
    name: str
    data: bytes
    method: int = zipfile.ZIP_STORED
    declared_size: int | None = None  # lie about the uncompressed size
    crc: int | None = None  # lie about the CRC-32
    local_extra: bytes = b""  # an extra field in the local header only


def build_zip(members: list[Member], *, zip64: bool = True) -> bytes:
    """A zip whose central entries and end records all use ZIP64 when ``zip64`` is set."""
    out = io.BytesIO()
    central = io.BytesIO()
    for m in members:
        name = m.name.encode()
        payload = m.data
        if m.method == zipfile.ZIP_DEFLATED:
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            payload = compressor.compress(m.data) + compressor.flush()
        size = len(m.data) if m.declared_size is None else m.declared_size
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0, m.method, 0, 0x21,
                              crc, len(payload), size, len(name), len(m.local_extra)))
        out.write(name + m.local_extra + payload)
        if zip64:
            extra = struct.pack("<2H3Q", 1, 24, size, len(payload), offset)
            sizes = (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
        else:
            extra, sizes = b"", (len(payload), size, offset)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, m.method, 0, 0x21,
                                  crc, sizes[0], sizes[1], len(name), len(extra), 0, 0, 0, 0,
                                  sizes[2]))
        central.write(name + extra)
    cd_offset, cd = out.tell(), central.getvalue()
    out.write(cd)
    count = len(members)
    if zip64:
        record = out.tell()
        out.write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0,
                              count, count, len(cd), cd_offset))
        out.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, record, 1))
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF,
                              0xFFFFFFFF, 0xFFFFFFFF, 0))
    else:
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(cd),
                              cd_offset, 0))
    return out.getvalue()


def wheel_members(metadata: Member | None = None) -> list[Member]:
    return [
        metadata or Member("demo_pkg-1.0.dist-info/METADATA", METADATA, zipfile.ZIP_DEFLATED),
        Member("demo_pkg/blob.bin", FILLER),
        Member("demo_pkg-1.0.dist-info/RECORD", b""),
    ]


# --- Valid wheels -------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
async def test_normal_wheel_takes_two_reads(tmp_path: Path, compression: int) -> None:
    data = make_wheel(tmp_path / "w.whl", compression=compression)
    got, reader = await check(data, tmp_path)
    assert got == METADATA
    assert len(reader.calls) == 2  # the tail, then METADATA's header and data
    assert reader.bytes_read < len(data) // 2


async def test_small_wheel_is_read_once(tmp_path: Path) -> None:
    data = make_wheel(tmp_path / "w.whl", filler=b"")
    got, reader = await check(data, tmp_path)
    assert got == METADATA
    assert reader.calls == [(0, len(data))]  # METADATA is already inside the tail


@pytest.mark.parametrize(("comment_len", "reads"), [(1000, 2), (65535, 3)])
async def test_comment(tmp_path: Path, comment_len: int, reads: int) -> None:
    # The comment is full of fake EOCD signatures, which the backward search must step over.
    fakes = comment_len // 22
    comment = (b"PK\x05\x06" + bytes(18)) * fakes + bytes(comment_len - 22 * fakes)
    data = make_wheel(tmp_path / "w.whl", comment=comment)
    got, reader = await check(data, tmp_path)
    assert got == METADATA
    # The longest comment fills the tail read, pushing the central directory out of it.
    assert len(reader.calls) == reads


async def test_escaped_name_and_unnormalized_version(tmp_path: Path) -> None:
    data = make_wheel(tmp_path / "w.whl", dist_info="Demo.Pkg-1.0.0.dist-info")
    got, _ = await check(data, tmp_path, "demo_pkg-1.0-py3-none-any.whl")
    assert got == METADATA


async def test_central_directory_beyond_tail(tmp_path: Path) -> None:
    data = make_wheel(tmp_path / "w.whl", extra_members=3000)
    got, reader = await check(data, tmp_path)
    assert got == METADATA
    assert len(reader.calls) == 3  # the tail, the rest of the central directory, METADATA


async def test_zipfile_zip64_over_65535_entries(tmp_path: Path) -> None:
    data = make_wheel(tmp_path / "w.whl", extra_members=70_000, filler=b"")
    assert b"PK\x06\x06" in data[-200:]  # zipfile did write the ZIP64 end records
    got, reader = await check(data, tmp_path)
    assert got == METADATA
    assert len(reader.calls) == 3


async def test_local_zip64_extra_longer_than_central(tmp_path: Path) -> None:
    # force_zip64 puts a ZIP64 extra field in the local header only.
    data = make_wheel(tmp_path / "w.whl", force_zip64=True)
    got, reader = await check(data, tmp_path)
    assert got == METADATA
    assert len(reader.calls) == 2


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
async def test_zip64_everywhere(tmp_path: Path, method: int) -> None:
    data = build_zip(wheel_members(Member("demo_pkg-1.0.dist-info/METADATA", METADATA, method)))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # the hand-built archive is a valid zip
        assert zf.read("demo_pkg-1.0.dist-info/METADATA") == METADATA
    got, reader = await check(data, tmp_path)
    assert got == METADATA
    assert len(reader.calls) == 2


async def test_local_extra_beyond_slack_takes_another_read(tmp_path: Path) -> None:
    # A 4000-byte extra field in METADATA's local header that the central directory lacks.
    local_extra = struct.pack("<2H", 0xCAFE, 3996) + bytes(3996)
    meta = Member("demo_pkg-1.0.dist-info/METADATA", METADATA, local_extra=local_extra)
    for zip64 in (False, True):
        got, reader = await check(build_zip(wheel_members(meta), zip64=zip64), tmp_path)
        assert got == METADATA
        assert len(reader.calls) == 3


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
async def test_large_metadata(tmp_path: Path, compression: int) -> None:
    rng = random.Random(1)
    words = [rng.randbytes(6).hex().encode() for _ in range(1000)]
    metadata = METADATA + b" ".join(rng.choice(words) for _ in range(400_000))  # ~5 MiB
    data = make_wheel(tmp_path / "w.whl", metadata=metadata, compression=compression)
    got, reader = await check(data, tmp_path)
    assert got == metadata
    assert len(reader.calls) == 2


# --- Invalid wheels -----------------------------------------------------------------------------


async def expect_error(
    data: bytes, tmp_path: Path, match: str | None, filename: str = WHEEL
) -> None:
    with pytest.raises(MetadataError, match=match):
        await read_wheel_metadata(Reader(data), len(data), filename)
    path = tmp_path / "bad.whl"
    path.write_bytes(data)
    with pytest.raises(MetadataError, match=match):
        read_wheel_metadata_from_path(path, filename)


async def test_two_dist_info_directories(tmp_path: Path) -> None:
    make_wheel(tmp_path / "w.whl")
    with zipfile.ZipFile(tmp_path / "w.whl", "a") as zf:
        zf.writestr("other-2.0.dist-info/METADATA", b"Name: other\n")
    await expect_error((tmp_path / "w.whl").read_bytes(), tmp_path, "several .dist-info")


@pytest.mark.parametrize("dist_info", ["other_pkg-1.0.dist-info", "demo_pkg-1.1.dist-info",
                                       "demo_pkg.dist-info", "demo_pkg-1.0-x.dist-info"])
async def test_mismatched_dist_info(tmp_path: Path, dist_info: str) -> None:
    data = make_wheel(tmp_path / "w.whl", dist_info=dist_info)
    await expect_error(data, tmp_path, "does not match")


async def test_no_dist_info_and_no_metadata(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("demo_pkg/__init__.py", b"")
    await expect_error(buf.getvalue(), tmp_path, "no .dist-info")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("demo_pkg-1.0.dist-info/RECORD", b"")
        zf.writestr("demo_pkg-1.0.dist-info/sub/METADATA", b"")  # not the top-level one
    await expect_error(buf.getvalue(), tmp_path, "0 demo_pkg-1.0.dist-info/METADATA")


async def test_duplicate_metadata(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        zf.writestr("demo_pkg-1.0.dist-info/METADATA", METADATA)
        zf.writestr("demo_pkg-1.0.dist-info/METADATA", METADATA)
    await expect_error(buf.getvalue(), tmp_path, "2 demo_pkg-1.0.dist-info/METADATA")


async def test_invalid_filename(tmp_path: Path) -> None:
    data = make_wheel(tmp_path / "w.whl")
    await expect_error(data, tmp_path, "not a valid wheel filename", "demo_pkg-1.0.tar.gz")


@pytest.mark.parametrize("cut", [1, 21, 22, 500, TAIL_SIZE, "half"])
async def test_truncated(tmp_path: Path, cut: int | str) -> None:
    data = make_wheel(tmp_path / "w.whl")
    keep = len(data) // 2 if cut == "half" else len(data) - cut
    await expect_error(data[:keep], tmp_path, None)


async def test_size_larger_than_data_is_a_short_read(tmp_path: Path) -> None:
    data = make_wheel(tmp_path / "w.whl")
    with pytest.raises(MetadataError, match="returned"):
        await read_wheel_metadata(Reader(data[:-10]), len(data), WHEEL)


@pytest.mark.parametrize("size", [0, 10, 100, 100_000, 1_000_000])
async def test_random_bytes(tmp_path: Path, size: int) -> None:
    await expect_error(random.Random(size).randbytes(size), tmp_path, None)


async def test_random_corruption_never_escapes_as_another_error(tmp_path: Path) -> None:
    # Flip bytes in the tail (end records, central directory, METADATA): the result must be
    # METADATA itself or a MetadataError, never IndexError, struct.error and the like.
    data = make_wheel(tmp_path / "w.whl", filler=b"")
    rng = random.Random(2)
    for _ in range(500):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        try:
            got = await read_wheel_metadata(Reader(bytes(bad)), len(bad), WHEEL)
        except MetadataError:
            continue
        assert got == METADATA


async def test_bad_crc(tmp_path: Path) -> None:
    meta = Member("demo_pkg-1.0.dist-info/METADATA", METADATA, crc=12345)
    await expect_error(build_zip(wheel_members(meta)), tmp_path, "CRC-32")


async def test_unsupported_compression(tmp_path: Path) -> None:
    data = make_wheel(tmp_path / "w.whl", compression=zipfile.ZIP_LZMA)
    await expect_error(data, tmp_path, "compression method 14")


async def test_zip_bomb_over_limit(tmp_path: Path) -> None:
    bomb = bytes(wheelmeta.MAX_METADATA + 1)
    data = make_wheel(tmp_path / "w.whl", metadata=bomb, filler=b"")
    assert len(data) < 100_000
    await expect_error(data, tmp_path, "over the")


async def test_zip_bomb_lying_about_its_size(tmp_path: Path) -> None:
    # Declares 100 bytes but inflates to 64 MiB: decompression must stop right after 100.
    meta = Member("demo_pkg-1.0.dist-info/METADATA", bytes(64 << 20), zipfile.ZIP_DEFLATED,
                  declared_size=100)
    await expect_error(build_zip(wheel_members(meta)), tmp_path, "declared size")


async def test_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_wheel(tmp_path / "w.whl", extra_members=50)
    monkeypatch.setattr(wheelmeta, "MAX_ENTRIES", 20)
    await expect_error(data, tmp_path, "entries, more than 20")
    monkeypatch.setattr(wheelmeta, "MAX_ENTRIES", 200_000)
    monkeypatch.setattr(wheelmeta, "MAX_CENTRAL_DIRECTORY", 1000)
    await expect_error(data, tmp_path, "more than 1000")


async def test_offsets_outside_the_file(tmp_path: Path) -> None:
    data = bytearray(make_wheel(tmp_path / "w.whl"))
    struct.pack_into("<L", data, len(data) - 6, 0xFFFFFF00)  # EOCD central directory offset
    await expect_error(bytes(data), tmp_path, "does not end where")
    data = build_zip(wheel_members())
    bad = bytearray(data)
    locator = len(bad) - 22 - 20
    struct.pack_into("<Q", bad, locator + 8, len(bad) * 2)  # ZIP64 record beyond the file
    await expect_error(bytes(bad), tmp_path, "out of bounds")


async def test_read_errors_propagate(tmp_path: Path) -> None:
    data = make_wheel(tmp_path / "w.whl")

    async def read(offset: int, length: int) -> bytes:
        raise RangeNotSupported("server sent 200")

    with pytest.raises(RangeNotSupported):
        await read_wheel_metadata(read, len(data), WHEEL)


# --- Real wheels --------------------------------------------------------------------------------

REAL = Path("/opt/pypi/files")


@pytest.mark.skipif(not REAL.is_dir(), reason="no local wheel collection")
async def test_real_wheels(tmp_path: Path) -> None:
    wheels = sorted(REAL.glob("*.whl"), key=lambda p: p.stat().st_size)
    if not wheels:
        pytest.skip("no wheels in /opt/pypi/files")
    # The smallest, the largest and some in between.
    picks = {wheels[round(i * (len(wheels) - 1) / 9)] for i in range(10)}
    for wheel in sorted(picks):
        with zipfile.ZipFile(wheel) as zf:
            (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")
                       and n.count("/") == 1]
            expected = zf.read(name)
        with wheel.open("rb") as fh:
            calls = []

            async def read(offset: int, length: int) -> bytes:
                calls.append(length)
                fh.seek(offset)
                return fh.read(length)

            size = os.fstat(fh.fileno()).st_size
            assert await read_wheel_metadata(read, size, wheel.name) == expected
        assert len(calls) <= 3
        assert read_wheel_metadata_from_path(wheel, wheel.name) == expected
