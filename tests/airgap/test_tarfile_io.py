"""The bundle's tar, written and read with the kernel copying member data: the same bytes as
tarfile writes, readable by any tar, and copies and hashes right at every size and offset."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tidegate.airgap import tarfile_io

SIZES = [0, 1, 511, 512, 513, 3 * 1024 * 1024 + 5]
LONG = "files/" + "x" * 150  # longer than a ustar name: a pax header carries it


def _entries(tmp_path: Path) -> list[tuple[str, Path]]:
    out = []
    for i, size in enumerate(SIZES):
        path = tmp_path / f"src-{i}"
        path.write_bytes(os.urandom(size))
        out.append((f"files/{i}" if i else LONG, path))
    return out


def _with_tarfile(entries: list[tuple[str, Path]], head: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [("manifest.json", head)] + [(n, p.read_bytes()) for n, p in entries]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _with_writer(entries: list[tuple[str, Path]], head: bytes, out: Path) -> bytes:
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        writer = tarfile_io.TarWriter(fd)
        writer.add_bytes("manifest.json", head)
        for name, path in entries:
            with open(path, "rb") as fh:
                writer.add_file(name, path.stat().st_size, fh)
        writer.close()
    finally:
        os.close(fd)
    return out.read_bytes()


def test_the_writer_writes_the_bytes_tarfile_writes(tmp_path):
    entries = _entries(tmp_path)
    head = b'{"format": 1}'
    assert _with_writer(entries, head, tmp_path / "b.tar") == _with_tarfile(entries, head)


@pytest.mark.skipif(shutil.which("tar") is None, reason="no tar program on this machine")
def test_any_tar_extracts_a_written_bundle(tmp_path):
    entries = _entries(tmp_path)
    bundle = tmp_path / "b.tar"
    _with_writer(entries, b"{}", bundle)
    (tmp_path / "out").mkdir()
    subprocess.run(["tar", "-xf", str(bundle), "-C", str(tmp_path / "out")], check=True)
    for name, path in entries:
        assert (tmp_path / "out" / name).read_bytes() == path.read_bytes()


def test_members_locate_every_data_byte_and_a_cut_tar_is_refused(tmp_path):
    entries = _entries(tmp_path)
    bundle = tmp_path / "b.tar"
    data = _with_writer(entries, b"{}", bundle)
    with open(bundle, "rb") as fh:
        found = tarfile_io.members(fh)
    assert [m.name for m in found] == ["manifest.json"] + [n for n, _ in entries]
    for info, (_, path) in zip(found[1:], entries):
        assert data[info.offset_data: info.offset_data + info.size] == path.read_bytes()
    last = found[-1]
    with open(bundle, "r+b") as fh:
        fh.truncate(last.offset_data + last.size - 1)  # one byte short inside the last member
        with pytest.raises(tarfile.TarError):
            tarfile_io.members(fh)


@pytest.mark.parametrize("where", ["same", "other"])
def test_copy_range_copies_from_any_offset_within_and_across_filesystems(tmp_path, where):
    """From tmpfs to the test's filesystem Linux refuses copy_file_range (EXDEV): the fallback."""
    if where == "other" and not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here to copy across filesystems from")
    source_dir = tmp_path if where == "same" else Path("/dev/shm")
    source = source_dir / f"tidegate-copy-{os.getpid()}"
    data = os.urandom(2 * 1024 * 1024 + 3)
    source.write_bytes(data)
    try:
        out = tmp_path / "out"
        with open(source, "rb") as src, open(out, "wb") as dst:
            dst.write(b"head")
            dst.flush()
            tarfile_io.copy_range(src.fileno(), dst.fileno(), len(data) - 1001, 1001)
            with pytest.raises(tarfile_io.ShortSource):
                tarfile_io.copy_range(src.fileno(), dst.fileno(), 10, len(data) - 5)
        assert out.read_bytes()[: 4 + len(data) - 1001] == b"head" + data[1001:]
    finally:
        source.unlink()


@pytest.mark.parametrize("offset, size", [(0, 0), (0, 1), (1, 4095), (4095, 4097), (5000, 9 * 1024 * 1024)])
def test_sha256_of_any_slice(tmp_path, offset, size):
    data = os.urandom(10 * 1024 * 1024)
    path = tmp_path / "f"
    path.write_bytes(data)
    expected = hashlib.sha256(data[offset: offset + size]).hexdigest()
    with open(path, "rb") as fh:
        assert tarfile_io.sha256_of(fh.fileno(), size, offset) == expected
        assert tarfile_io._sha256_read(fh.fileno(), size, offset) == expected  # where mmap is refused
