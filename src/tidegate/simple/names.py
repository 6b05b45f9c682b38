"""Project names and distribution filenames: the rules every part of tidegate shares.

Pure. A name or filename reaches URLs, cache keys, SQL rows and lock names only after one of
these checks, so each rule (the name alphabet, the length limits, what makes an sdist, how a
``name-version`` directory is matched) is written once, here.
"""

from __future__ import annotations

import functools
import re
from typing import NewType

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

# A project name normalized as PEP 503 says (lowercase, runs of -_. as one "-").
NormalizedName = NewType("NormalizedName", str)

MAX_NAME = 200  # far above any real project name; keeps names well inside file name limits
MAX_FILENAME = 255  # the usual file system limit; no real distribution name comes near it
SDIST_SUFFIXES = (".tar.gz", ".zip")  # .zip is legacy (PEP 625 allows .tar.gz) but still met
WHEEL_SUFFIX = ".whl"

_VALID_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)
# Filenames end up in our own URLs and cache paths, so only a conservative alphabet passes.
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!~-]*")


def normalize(name: str) -> NormalizedName:
    return NormalizedName(canonicalize_name(name))


def is_valid_name(name: str) -> bool:
    """A project name as the core metadata specification allows it (before normalization)."""
    return len(name) <= MAX_NAME and _VALID_NAME.fullmatch(name) is not None


@functools.lru_cache(maxsize=8192)
def checked_name(raw: str) -> NormalizedName | None:
    """The normalized form of a project name from a URL or a request, or None if it is not a
    valid name. Memoized: the same few names arrive over and over on the hot path."""
    return normalize(raw) if is_valid_name(raw) else None


def valid_filename(filename: str) -> bool:
    """Whether a distribution filename is safe to put into our own URLs and paths."""
    return len(filename) <= MAX_FILENAME and _FILENAME.fullmatch(filename) is not None and ".." not in filename


def is_wheel(filename: str) -> bool:
    return filename.endswith(WHEEL_SUFFIX)


def is_sdist(filename: str) -> bool:
    return filename.endswith(SDIST_SUFFIXES)


def sdist_stem(filename: str) -> str:
    """``name-1.0`` of ``name-1.0.tar.gz`` (or ``.zip``)."""
    for suffix in SDIST_SUFFIXES:
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


# A version in its normalized form (str(Version(v)) == v): release, pre, post, dev segments.
_NORMALIZED_VERSION = r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*(?:(?:a|b|rc)(?:0|[1-9][0-9]*))?" \
                      r"(?:\.post(?:0|[1-9][0-9]*))?(?:\.dev(?:0|[1-9][0-9]*))?"
# Wheel names whose parts packaging would accept as they are: name, normalized version, an
# optional build tag and three tags. Others are left to packaging.
_PLAIN_WHEEL = re.compile(rf"[A-Za-z0-9._]+-({_NORMALIZED_VERSION})(?:-[0-9][A-Za-z0-9._]*)?"
                          r"-[A-Za-z0-9._]+-[A-Za-z0-9._]+-[A-Za-z0-9._]+\.whl")


@functools.lru_cache(maxsize=65536)
def file_version(filename: str) -> str | None:
    """The version a wheel or sdist filename names, or None for other or invalid names.
    (Asked for every file of every rendered page: the usual name is read without packaging.)"""
    plain = _PLAIN_WHEEL.fullmatch(filename)
    if plain is not None and "__" not in filename.partition("-")[0]:  # packaging refuses "__" in names
        return plain.group(1)
    try:
        if is_wheel(filename):
            return str(parse_wheel_filename(filename)[1])
        if is_sdist(filename):
            return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return None


def names_release(stem: str, name: str, version: Version) -> bool:
    """Whether ``stem`` (a ``.dist-info`` directory without its suffix, or an sdist's top
    directory) is ``{name}-{version}`` in any spelling. Tools escape names differently
    (``Foo.Bar``, ``foo_bar``) and may not normalize versions, so both sides are compared
    normalized, trying every "-" as the separator."""
    wanted = canonicalize_name(name)
    for i, c in enumerate(stem):
        if c == "-" and canonicalize_name(stem[:i]) == wanted:
            try:
                if Version(stem[i + 1 :]) == version:
                    return True
            except InvalidVersion:
                pass
    return False
