"""Build real, installable distributions (wheels and sdists) for tests, with the stdlib only.

Output is deterministic: fixed zip/tar timestamps, and padding bytes drawn from a PRNG seeded
with the name and version, so the same arguments always give the same bytes and sha256.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import re
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_TAR_MTIME = 315532800  # 1980-01-01


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def escape(name: str) -> str:
    """Name as it appears in wheel/sdist filenames and the .dist-info directory."""
    return normalize(name).replace("-", "_")


def sha256_of(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _metadata(
    name: str, version: str, requires_python: str | None, requires_dist: Sequence[str],
    provides_extra: Sequence[str] = (),
) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python is not None:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Provides-Extra: {extra}" for extra in provides_extra]
    lines += [f"Requires-Dist: {req}" for req in requires_dist]
    return "\n".join(lines) + "\n\n"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def _padding(name: str, version: str, size: int) -> bytes:
    return random.Random(f"{name}-{version}-{size}").randbytes(size)


def build_wheel(
    dest: Path,
    name: str,
    version: str,
    *,
    requires_python: str | None = None,
    requires_dist: Sequence[str] = (),
    padding: int = 0,
    tag: str = "py3-none-any",
    module_code: str | None = None,
    provides_extra: Sequence[str] = (),
) -> Path:
    """Write `<escaped>-<version>-<tag>.whl` into dest and return its path.

    `padding` adds an incompressible, stored (uncompressed) data file of that many bytes.
    """
    dest.mkdir(parents=True, exist_ok=True)
    module = escape(name)
    dist_info = f"{module}-{version}.dist-info"
    code = module_code if module_code is not None else f'__version__ = "{version}"\n'
    metadata = _metadata(name, version, requires_python, requires_dist, provides_extra)
    wheel = f"Wheel-Version: 1.0\nGenerator: tidegate-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
    entries: list[tuple[str, bytes, int]] = [  # (archive name, data, compression)
        (f"{module}/__init__.py", code.encode(), zipfile.ZIP_DEFLATED),
        (f"{dist_info}/METADATA", metadata.encode(), zipfile.ZIP_DEFLATED),
        (f"{dist_info}/WHEEL", wheel.encode(), zipfile.ZIP_DEFLATED),
    ]
    if padding:
        pad = _padding(name, version, padding)
        entries.insert(1, (f"{module}/_padding.bin", pad, zipfile.ZIP_STORED))
    record = "".join(f"{arc},{_record_hash(data)},{len(data)}\n" for arc, data, _ in entries)
    record += f"{dist_info}/RECORD,,\n"
    entries.append((f"{dist_info}/RECORD", record.encode(), zipfile.ZIP_DEFLATED))

    path = dest / f"{module}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for arc, data, compression in entries:
            info = zipfile.ZipInfo(arc, date_time=_ZIP_TIME)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return path


def wheel_metadata(path: Path) -> bytes:
    """The METADATA file of a wheel: what a PEP 658 `.metadata` URL serves."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        (arc,) = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        return zf.read(arc)


def build_sdist(
    dest: Path, name: str, version: str, *, requires_python: str | None = None
) -> Path:
    """Write a structurally valid `<escaped>-<version>.tar.gz` (setuptools backend)."""
    dest.mkdir(parents=True, exist_ok=True)
    module = escape(name)
    root = f"{module}-{version}"
    rp = f'requires-python = "{requires_python}"\n' if requires_python is not None else ""
    pyproject = (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n{rp}'
    )
    members = {
        f"{root}/PKG-INFO": _metadata(name, version, requires_python, ()).encode(),
        f"{root}/pyproject.toml": pyproject.encode(),
        f"{root}/{module}/__init__.py": f'__version__ = "{version}"\n'.encode(),
    }
    path = dest / f"{root}.tar.gz"
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for arc, data in members.items():
                info = tarfile.TarInfo(arc)
                info.size, info.mtime, info.mode = len(data), _TAR_MTIME, 0o644
                tf.addfile(info, io.BytesIO(data))
    return path


class DistCache:
    """Builds each distinct dist once per session. Treat the returned files as read-only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[tuple[Any, ...], Path] = {}

    def wheel(self, name: str, version: str, **kwargs: Any) -> Path:
        """`build_wheel` arguments, minus dest."""
        return self._get(build_wheel, name, version, kwargs)

    def sdist(self, name: str, version: str, **kwargs: Any) -> Path:
        """`build_sdist` arguments, minus dest."""
        return self._get(build_sdist, name, version, kwargs)

    def _get(
        self, build: Callable[..., Path], name: str, version: str, kwargs: dict[str, Any]
    ) -> Path:
        key = (build.__name__, name, version, repr(sorted(kwargs.items())))
        if key not in self._built:
            # One directory per build: same-named files (e.g. other module_code) never clash.
            self._built[key] = build(self.root / str(len(self._built)), name, version, **kwargs)
        return self._built[key]


def provenance(filename: str, sha256: str) -> bytes:
    """A PEP 740 provenance object for a file (well formed; the signature is not a real one)."""
    statement = {"_type": "https://in-toto.io/Statement/v1",
                 "subject": [{"name": filename, "digest": {"sha256": sha256}}],
                 "predicateType": "https://docs.pypi.org/attestations/publish/v1", "predicate": None}
    attestation = {"version": 1, "verification_material": {"certificate": "", "transparency_entries": []},
                   "envelope": {"statement": base64.b64encode(json.dumps(statement).encode()).decode(),
                                "signature": base64.b64encode(b"sig").decode()}}
    return json.dumps({"version": 1, "attestation_bundles": [
        {"publisher": {"kind": "GitHub", "claims": {}}, "attestations": [attestation]}]}).encode()
