"""Pure: a prefetch target (a Python version and a platform tag) as uv's resolver names it, and
the wheel tags an installer on it accepts (from `packaging`, as pip computes them)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from packaging import tags
from packaging.utils import parse_wheel_filename

_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_(\w+)")
_LEGACY = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}
_MUSL = re.compile(r"musllinux_(\d+)_(\d+)_(\w+)")
_MAC = re.compile(r"macosx_(\d+)_(\d+)_(\w+)")
_WINDOWS = {"win_amd64": "x86_64-pc-windows-msvc", "win_arm64": "aarch64-pc-windows-msvc",
            "win32": "i686-pc-windows-msvc"}


@dataclass(frozen=True)
class Target:
    python: str  # "3.11"
    platform: str | None  # a wheel platform tag; None: this machine's

    def __str__(self) -> str:
        return f"Python {self.python} on {self.platform or 'this machine'}"

    @property
    def version(self) -> tuple[int, int]:
        major, minor = self.python.split(".")[:2]
        return int(major), int(minor)

    def uv_platform(self) -> str | None:
        """uv's --python-platform for the tag (None: this machine); ValueError if uv has none."""
        p = self.platform
        if p is None:
            return None
        if p in _WINDOWS:
            return _WINDOWS[p]
        if m := _MANYLINUX.fullmatch(p):
            return f"{m.group(3)}-manylinux_{m.group(1)}_{m.group(2)}"
        for legacy in _LEGACY:
            if p.startswith(legacy + "_"):
                return f"{p[len(legacy) + 1:]}-manylinux_{_LEGACY[legacy][0]}_{_LEGACY[legacy][1]}"
        if m := _MUSL.fullmatch(p):
            return f"{m.group(3)}-unknown-linux-musl"
        if m := _MAC.fullmatch(p):
            return f"{'aarch64' if m.group(3) == 'arm64' else m.group(3)}-apple-darwin"
        if p.startswith("linux_"):
            return f"{p[len('linux_'):]}-unknown-linux-gnu"
        raise ValueError(f"unknown platform tag {p!r} (e.g. manylinux_2_28_x86_64, win_amd64, macosx_11_0_arm64)")

    def _platforms(self) -> list[str] | None:
        p = self.platform
        if p is None:
            return None
        if m := _MANYLINUX.fullmatch(p):
            major, minor, arch = int(m.group(1)), int(m.group(2)), m.group(3)
            out = [f"manylinux_{major}_{n}_{arch}" for n in range(minor, 4, -1)]
            out += [f"{legacy}_{arch}" for legacy, (ma, mi) in _LEGACY.items() if (ma, mi) <= (major, minor)]
            return out
        if m := _MUSL.fullmatch(p):
            return [f"musllinux_{m.group(1)}_{n}_{m.group(3)}" for n in range(int(m.group(2)), -1, -1)]
        if m := _MAC.fullmatch(p):
            return list(tags.mac_platforms((int(m.group(1)), int(m.group(2))), m.group(3)))
        return [p]

    def tags(self) -> frozenset[tags.Tag]:
        platforms = self._platforms()
        interpreter = f"cp{self.version[0]}{self.version[1]}"
        return frozenset([*tags.cpython_tags(self.version, platforms=platforms),
                          *tags.compatible_tags(self.version, interpreter, platforms)])

    def accepts(self, filename: str, tag_set: frozenset[tags.Tag]) -> bool:
        try:
            _, _, _, wheel_tags = parse_wheel_filename(filename)
        except ValueError:
            return False
        return not wheel_tags.isdisjoint(tag_set)


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def targets(pythons: list[str], platforms: list[str]) -> list[Target]:
    return [Target(py, plat) for py in (pythons or [this_python()]) for plat in (platforms or [None])]  # type: ignore[list-item]
