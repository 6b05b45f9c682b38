"""Tests for upload validation (tidegate.publish.validate): request fields and archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import tarfile
import zipfile
from pathlib import Path

import pytest

from tidegate.publish import validate
from tidegate.publish.errors import PublishError
from tidegate.publish.validate import (
    Inspected,
    check_filename,
    check_hashes,
    check_name_version,
    check_size,
)

NAME, VERSION = "Demo.Pkg", "1.0"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"
SDIST = "demo_pkg-1.0.tar.gz"
DIST_INFO = "demo_pkg-1.0.dist-info"
TOP = "demo_pkg-1.0"
WHEEL_FILE = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def inspect_archive(path: Path, filename: str, name: str, version: str) -> Inspected:
    with open(path, "rb") as f:
        return validate.inspect_archive(f, filename, name, version)


def metadata(name: str = "demo.pkg", version: str = "1.0", extra: str = "") -> bytes:
    return (f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\nSummary: A demo.\n{extra}\nBody.\n").encode()


def make_wheel(path: Path, members: dict[str, bytes] | None = None, *, drop: tuple[str, ...] = ()) -> Path:
    files = {
        "demo_pkg/__init__.py": b"",
        f"{DIST_INFO}/METADATA": metadata(extra="Requires-Python: >=3.9"),
        f"{DIST_INFO}/WHEEL": WHEEL_FILE,
        f"{DIST_INFO}/RECORD": b"",
    }
    files.update(members or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            if name not in drop:
                zf.writestr(name, data)
    return path


def make_sdist(path: Path, members: dict[str, bytes] | None = None, *, drop: tuple[str, ...] = ()) -> Path:
    files = {
        f"{TOP}/PKG-INFO": metadata(),
        f"{TOP}/pyproject.toml": b"[project]\n",
        f"{TOP}/src/demo_pkg/__init__.py": b"",
    }
    files.update(members or {})
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            if name not in drop:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def rejected(source: str, match: str | None = None, status: int = 400):
    """pytest.raises for a refusal from ``source``; checks the status after the block."""

    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(PublishError, match=match)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self.ctx.__exit__(*exc)
            assert self.info.value.source == source, self.info.value
            assert self.info.value.status == status
            assert str(self.info.value).endswith(".")
            return suppressed

    return Check()


# --- name and version --------------------------------------------------------------------------


def test_name_version_normalized() -> None:
    assert check_name_version("Friendly.Bard", "1.0.0-RC1") == ("friendly-bard", "1.0.0rc1")
    assert check_name_version("a", "2025.1") == ("a", "2025.1")


@pytest.mark.parametrize("name", ["", "-foo", "foo-", "foo bar", "foo\n", "föö", "foo/bar", None, 3])
def test_bad_name(name: object) -> None:
    with rejected("name"):
        check_name_version(name, "1.0")  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["", "one", "1.0-", "1..0", None, 1.0])
def test_bad_version(version: object) -> None:
    with rejected("version"):
        check_name_version("foo", version)  # type: ignore[arg-type]


# --- filenames ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        (WHEEL, "wheel"),
        ("Demo.Pkg-1.0-1-cp311-cp311-manylinux_2_17_x86_64.whl", "wheel"),
        (SDIST, "sdist"),
        ("demo-pkg-1.0.tar.gz", "sdist"),
        ("demo_pkg-1.0.zip", "sdist"),  # legacy, accepted
    ],
)
def test_filename_ok(filename: str, kind: str) -> None:
    assert check_filename(filename, NAME, VERSION) == kind


@pytest.mark.parametrize(
    ("filename", "match"),
    [
        ("other-1.0.tar.gz", "names project"),
        ("other-1.0-py3-none-any.whl", "names project"),
        ("demo_pkg-1.1.tar.gz", "version"),
        ("demo_pkg-1.1-py3-none-any.whl", "version"),
        ("demo_pkg-1.0.0-py3-none-any.whl", "normalized version"),  # == 1.0, but a second name for it
        ("demo_pkg-1.00.tar.gz", "normalized version"),
        ("demo_pkg-1.0-py3-none.whl", "not a valid wheel"),
        ("demo_pkg-1.0-x-py3-none-any.whl", "not a valid wheel"),  # build tag must start with a digit
        ("demo_pkg.whl", "not a valid wheel"),
        ("demo_pkg-1.0.exe", "not a distribution"),
        ("demo_pkg-1.0.tar.bz2", "not a distribution"),
        ("demo_pkg-1.0.egg", "not a distribution"),
        ("demo_pkg.tar.gz", "not a valid sdist"),
        ("../demo_pkg-1.0.tar.gz", "plain file name"),
        ("x/demo_pkg-1.0.tar.gz", "plain file name"),
        ("x\\demo_pkg-1.0.tar.gz", "plain file name"),
        ("demo_pkg-1.0.tar.gz\0", "plain file name"),
        (".demo_pkg-1.0.tar.gz", "plain file name"),
        ("demo_pkg-1." + "0" * 260 + ".tar.gz", "longer than 255"),
        ("", "non-empty"),
    ],
)
def test_filename_rejected(filename: str, match: str) -> None:
    with rejected("filename", match):
        check_filename(filename, NAME, VERSION)


# --- hashes ------------------------------------------------------------------------------------

SHA256 = hashlib.sha256(b"x").hexdigest()


def test_hashes_lowercased() -> None:
    assert check_hashes({"SHA256": SHA256.upper(), "md5": hashlib.md5(b"x").hexdigest()}) == {
        "sha256": SHA256,
        "md5": hashlib.md5(b"x").hexdigest(),
    }
    assert check_hashes({"blake2b": hashlib.blake2b(b"x").hexdigest()})
    assert check_hashes({"sha3_256": hashlib.sha3_256(b"x").hexdigest()})


@pytest.mark.parametrize(
    ("hashes", "match"),
    [
        ({}, "non-empty"),
        (None, "non-empty"),
        ([("sha256", SHA256)], "non-empty"),
        ({"md5": hashlib.md5(b"x").hexdigest()}, "secure"),
        ({"md5": hashlib.md5(b"x").hexdigest(), "sha1": hashlib.sha1(b"x").hexdigest()}, "secure"),
        ({"sha256": SHA256[:-1]}, "64 hex digits"),
        ({"sha256": "z" * 64}, "64 hex digits"),
        ({"sha256": SHA256 + "00"}, "64 hex digits"),
        ({"sha256": 1}, "hex digest strings"),
        ({"nosuchhash": SHA256}, "not a hash algorithm"),
        ({"shake_128": SHA256}, "digest length"),
        ({"sha256": SHA256, "SHA256": "0" * 64}, "Two different"),
    ],
)
def test_hashes_rejected(hashes: object, match: str) -> None:
    with rejected("hashes", match):
        check_hashes(hashes)


# --- size --------------------------------------------------------------------------------------


def test_size() -> None:
    assert check_size(1, 10) == 1
    assert check_size(10, 10) == 10
    with rejected("size", "over", status=413):
        check_size(11, 10)
    for bad in (0, -1, True, 1.0, "5", None):
        with rejected("size", "positive integer"):
            check_size(bad, 10)


# --- archives: accepted ------------------------------------------------------------------------


def test_valid_wheel(tmp_path: Path) -> None:
    got = inspect_archive(make_wheel(tmp_path / WHEEL), WHEEL, NAME, VERSION)
    assert got == Inspected(
        kind="wheel",
        metadata=metadata(extra="Requires-Python: >=3.9"),
        metadata_version="2.4",
        name="demo.pkg",
        version="1.0",
        requires_python=">=3.9",
        summary="A demo.",
    )


def test_valid_sdist(tmp_path: Path) -> None:
    got = inspect_archive(make_sdist(tmp_path / SDIST), SDIST, NAME, VERSION)
    assert got.kind == "sdist"
    assert got.metadata == metadata()
    assert (got.name, got.version, got.requires_python, got.metadata_version) == ("demo.pkg", "1.0", None, "2.4")


def test_valid_sdist_legacy_spellings(tmp_path: Path) -> None:
    # Top-level directory and metadata in the project's own spelling; metadata may spell the
    # version unnormalized (the filename may not: one artifact, one name).
    path = tmp_path / "Demo.Pkg-1.0.tar.gz"
    top = "Demo.Pkg-1.0"
    with tarfile.open(path, "w:gz") as tf:
        data = metadata(name="Demo.Pkg", version="1.0.0")
        info = tarfile.TarInfo(f"{top}/PKG-INFO")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        tf.addfile(_dir(top))
    assert inspect_archive(path, path.name, NAME, VERSION).version == "1.0.0"


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def test_valid_zip_sdist(tmp_path: Path) -> None:
    path = tmp_path / "demo_pkg-1.0.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{TOP}/PKG-INFO", metadata())
        zf.writestr(f"{TOP}/setup.py", b"")
    assert inspect_archive(path, path.name, NAME, VERSION).kind == "sdist"


def test_sdist_symlink_inside_is_fine(tmp_path: Path) -> None:
    path = tmp_path / SDIST
    with tarfile.open(path, "w:gz") as tf:
        data = metadata()
        info = tarfile.TarInfo(f"{TOP}/PKG-INFO")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{TOP}/README")
        link.type, link.linkname = tarfile.SYMTYPE, "PKG-INFO"
        tf.addfile(link)
    assert inspect_archive(path, SDIST, NAME, VERSION).kind == "sdist"


# --- archives: rejected ------------------------------------------------------------------------


def test_filename_checked_first(tmp_path: Path) -> None:
    path = make_wheel(tmp_path / WHEEL)
    with rejected("filename", "names project"):
        inspect_archive(path, "other-1.0-py3-none-any.whl", NAME, VERSION)
    with rejected("filename", "version"):
        inspect_archive(path, "demo_pkg-2.0-py3-none-any.whl", NAME, VERSION)


@pytest.mark.parametrize(
    ("members", "drop", "match"),
    [
        ({}, (f"{DIST_INFO}/METADATA",), "no demo_pkg-1.0.dist-info/METADATA"),
        ({}, (f"{DIST_INFO}/WHEEL",), "no demo_pkg-1.0.dist-info/WHEEL"),
        ({"other-1.0.dist-info/METADATA": metadata()}, (), "exactly one"),
        ({}, (f"{DIST_INFO}/METADATA", f"{DIST_INFO}/WHEEL", f"{DIST_INFO}/RECORD"), "found: none"),
        ({f"{DIST_INFO}/WHEEL": b"Wheel-Version: 2.0\nRoot-Is-Purelib: true\n"}, (), "Wheel-Version 2.0"),
        ({f"{DIST_INFO}/WHEEL": b"Generator: x\nRoot-Is-Purelib: true\n"}, (), "no valid Wheel-Version"),
        ({f"{DIST_INFO}/WHEEL": b"Wheel-Version: 1.0\n"}, (), "Root-Is-Purelib"),
        ({"../evil.py": b""}, (), "outside"),
        ({"/etc/evil": b""}, (), "outside"),
    ],
)
def test_wheel_structure_rejected(tmp_path: Path, members: dict[str, bytes], drop: tuple[str, ...],
                                  match: str) -> None:
    path = make_wheel(tmp_path / WHEEL, members, drop=drop)
    with rejected("content", match):
        inspect_archive(path, WHEEL, NAME, VERSION)


def test_wheel_dist_info_of_another_release(tmp_path: Path) -> None:
    path = tmp_path / WHEEL
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("demo_pkg-1.1.dist-info/METADATA", metadata())
        zf.writestr("demo_pkg-1.1.dist-info/WHEEL", WHEEL_FILE)
    with rejected("content", "does not belong"):
        inspect_archive(path, WHEEL, NAME, VERSION)


def test_wheel_duplicate_member(tmp_path: Path) -> None:
    path = make_wheel(tmp_path / WHEEL)
    with pytest.warns(UserWarning), zipfile.ZipFile(path, "a") as zf:
        zf.writestr(f"{DIST_INFO}/METADATA", metadata(name="evil"))
    with rejected("content", "twice"):
        inspect_archive(path, WHEEL, NAME, VERSION)


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / WHEEL
    path.write_bytes(b"this is not a zip archive" * 10)
    with rejected("content", "not a zip"):
        inspect_archive(path, WHEEL, NAME, VERSION)


def test_truncated_wheel(tmp_path: Path) -> None:
    data = make_wheel(tmp_path / "w.whl").read_bytes()
    path = tmp_path / WHEEL
    path.write_bytes(data[: len(data) // 2])
    with rejected("content", "not a zip"):
        inspect_archive(path, WHEEL, NAME, VERSION)


def test_corrupt_metadata_member(tmp_path: Path) -> None:
    path = tmp_path / WHEEL
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{DIST_INFO}/WHEEL", WHEEL_FILE)
        zf.writestr(f"{DIST_INFO}/METADATA", metadata())
    data = bytearray(path.read_bytes())
    at = data.find(b"Name: demo.pkg")
    data[at] = ord("X")  # the CRC no longer matches
    path.write_bytes(bytes(data))
    with rejected("content", "corrupt"):
        inspect_archive(path, WHEEL, NAME, VERSION)


def test_metadata_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_METADATA", 64)
    path = make_wheel(tmp_path / WHEEL, {f"{DIST_INFO}/METADATA": metadata() + b"x" * 1000})
    with rejected("content", "larger than 64"):
        inspect_archive(path, WHEEL, NAME, VERSION)
    path = make_sdist(tmp_path / SDIST, {f"{TOP}/PKG-INFO": metadata() + b"x" * 1000})
    with rejected("content", "larger than 64"):
        inspect_archive(path, SDIST, NAME, VERSION)


def test_zip_bomb_metadata_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 10 MB of zeros deflate to a few kB: refused from its stated size, before decompressing.
    monkeypatch.setattr(validate, "MAX_METADATA", 1024)
    path = make_wheel(tmp_path / WHEEL, {f"{DIST_INFO}/METADATA": metadata() + b"\0" * 10_000_000})
    assert path.stat().st_size < 100_000
    with rejected("content", "larger than 1024"):
        inspect_archive(path, WHEEL, NAME, VERSION)


def test_too_many_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_MEMBERS", 3)
    path = make_wheel(tmp_path / WHEEL, {f"demo_pkg/{i}.py": b"" for i in range(5)})
    with rejected("content", "more than 3 members"):
        inspect_archive(path, WHEEL, NAME, VERSION)
    path = make_sdist(tmp_path / SDIST, {f"{TOP}/{i}.py": b"" for i in range(5)})
    with rejected("content", "more than 3 members"):
        inspect_archive(path, SDIST, NAME, VERSION)


def test_sdist_unpacked_size_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_UNPACKED", 100_000)
    path = make_sdist(tmp_path / SDIST, {f"{TOP}/zeros": b"\0" * 1_000_000})
    with rejected("content", "unpacks to more than"):
        inspect_archive(path, SDIST, NAME, VERSION)


@pytest.mark.parametrize(
    ("members", "drop", "match"),
    [
        ({}, (f"{TOP}/PKG-INFO",), "no demo_pkg-1.0/PKG-INFO"),
        ({f"{TOP}/../evil": b""}, (), "outside"),
        ({"../evil": b""}, (), "outside"),
        ({"/abs/evil": b""}, (), "outside"),
        ({"other-1.0/x": b""}, (), "single top-level"),
        ({"README": b""}, (), "single top-level"),
        ({f"{TOP}/sub/PKG-INFO": b""}, (f"{TOP}/PKG-INFO",), "no demo_pkg-1.0/PKG-INFO"),
    ],
)
def test_sdist_structure_rejected(tmp_path: Path, members: dict[str, bytes], drop: tuple[str, ...],
                                  match: str) -> None:
    path = make_sdist(tmp_path / SDIST, members, drop=drop)
    with rejected("content", match):
        inspect_archive(path, SDIST, NAME, VERSION)


def test_sdist_wrong_top_level(tmp_path: Path) -> None:
    path = tmp_path / SDIST
    with tarfile.open(path, "w:gz") as tf:
        data = metadata()
        info = tarfile.TarInfo("demo_pkg-2.0/PKG-INFO")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with rejected("content", "is not Demo.Pkg-1.0"):
        inspect_archive(path, SDIST, NAME, VERSION)


@pytest.mark.parametrize(
    ("kind", "linkname"),
    [(tarfile.SYMTYPE, "/etc/passwd"), (tarfile.SYMTYPE, "../../x"), (tarfile.CHRTYPE, ""), (tarfile.FIFOTYPE, "")],
)
def test_sdist_unsafe_members(tmp_path: Path, kind: bytes, linkname: str) -> None:
    path = tmp_path / SDIST
    with tarfile.open(path, "w:gz") as tf:
        data = metadata()
        info = tarfile.TarInfo(f"{TOP}/PKG-INFO")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        odd = tarfile.TarInfo(f"{TOP}/odd")
        odd.type, odd.linkname = kind, linkname
        tf.addfile(odd)
    with rejected("content", "unsafe member"):
        inspect_archive(path, SDIST, NAME, VERSION)


def test_sdist_pkg_info_not_regular(tmp_path: Path) -> None:
    path = tmp_path / SDIST
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(_dir(TOP))
        link = tarfile.TarInfo(f"{TOP}/PKG-INFO")
        link.type, link.linkname = tarfile.SYMTYPE, "setup.cfg"
        tf.addfile(link)
    with rejected("content", "regular file"):
        inspect_archive(path, SDIST, NAME, VERSION)


def test_sdist_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / SDIST
    path.write_bytes(make_wheel(tmp_path / "w.whl").read_bytes())
    with rejected("content", "not a gzip-compressed tar"):
        inspect_archive(path, SDIST, NAME, VERSION)


def test_sdist_plain_tar_refused(tmp_path: Path) -> None:
    path = tmp_path / SDIST
    with tarfile.open(path, "w") as tf:
        data = metadata()
        info = tarfile.TarInfo(f"{TOP}/PKG-INFO")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with rejected("content", "not a gzip-compressed tar"):
        inspect_archive(path, SDIST, NAME, VERSION)


def test_sdist_gzip_of_garbage(tmp_path: Path) -> None:
    path = tmp_path / SDIST
    path.write_bytes(gzip.compress(b"\xff" * 2000))
    with rejected("content", "not a gzip-compressed tar"):
        inspect_archive(path, SDIST, NAME, VERSION)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -4])
def test_truncated_sdist(tmp_path: Path, keep: float) -> None:
    # Incompressible content, so that a cut lands inside the members; -4 cuts only the gzip
    # trailer, which tarfile alone never reads: draining the stream catches it.
    blob = random.Random(0).randbytes(200_000)
    data = make_sdist(tmp_path / "s.tar.gz", {f"{TOP}/blob": blob}).read_bytes()
    path = tmp_path / SDIST
    path.write_bytes(data[: int(len(data) * keep)] if keep > 0 else data[: int(keep)])
    with rejected("content", "corrupt|not a gzip"):
        inspect_archive(path, SDIST, NAME, VERSION)


# --- metadata ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (metadata(name="other"), "names project .other."),
        (metadata(version="1.1"), "for version 1.1"),
        (metadata(extra="Requires-Python: >=3.x"), "Requires-Python"),
        (b"Name: demo.pkg\nVersion: 1.0\n", "no Metadata-Version"),
        (b"Metadata-Version: 2.4\nVersion: 1.0\n", "no Name"),
        (b"Metadata-Version: 2.4\nName: demo.pkg\n", "no Version"),
        (b"Metadata-Version: 2.4\nName: demo.pkg\nName: other\nVersion: 1.0\n", "repeated Name"),
        (b"Metadata-Version: 9.9\nName: demo.pkg\nVersion: 1.0\n", "Metadata-Version"),
        (b"Metadata-Version: 2.4\nName: demo pkg!\nVersion: 1.0\n", "Name"),
        (b"Metadata-Version: 2.4\nName: demo.pkg\nVersion: one\n", "Version"),
    ],
)
def test_metadata_rejected(tmp_path: Path, data: bytes, match: str) -> None:
    path = make_wheel(tmp_path / WHEEL, {f"{DIST_INFO}/METADATA": data})
    with rejected("metadata", match):
        inspect_archive(path, WHEEL, NAME, VERSION)
    path = make_sdist(tmp_path / SDIST, {f"{TOP}/PKG-INFO": data})
    with rejected("metadata", match):
        inspect_archive(path, SDIST, NAME, VERSION)


def test_missing_file_is_not_the_clients_fault(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        inspect_archive(tmp_path / "nope", WHEEL, NAME, VERSION)
