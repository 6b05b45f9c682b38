"""The normalized project model that both index formats are parsed into and rendered from.

Pure data: no I/O. Everything an upstream states about a project or a file has a field here,
so that HTML -> model -> JSON (and back) loses nothing.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Mapping
from urllib.parse import urljoin, urlsplit

import msgspec
from msgspec.structs import replace

from .names import file_version, is_wheel

# Versions of the Simple API. 1.1 (PEP 700) made `versions` and `files[].size` mandatory in
# JSON (and added upload times); 1.2 added tracks (PEP 708), 1.3 provenance (PEP 740) and 1.4
# project status (PEP 792), each an optional key.
API_VERSION_BASE = "1.0"
API_VERSION_FULL = "1.4"

# Hash names we prefer for the HTML URL fragment, strongest first.
FRAGMENT_HASHES = ("sha256", "sha384", "sha512", "sha224", "blake2b", "sha3_256", "sha1", "md5")


class File(msgspec.Struct, frozen=True, gc=False):
    """One distribution file as an index describes it. (msgspec Structs, not dataclasses: a big
    page has thousands, and they are made, compared and encoded at C speed.)"""

    filename: str
    url: str  # absolute URL of the file at its source
    hashes: Mapping[str, str] = msgspec.field(default_factory=dict)  # lowercase name -> lowercase hex
    requires_python: str | None = None
    yanked: bool | str = False  # False, True, or the reason (a non-empty string)
    core_metadata: bool | Mapping[str, str] | None = None  # None: the source did not say
    gpg_sig: bool | None = None
    size: int | None = None
    upload_time: str | None = None  # ISO 8601 UTC, as the source gave it
    provenance: str | None = None  # absolute URL of the PEP 740 provenance object

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")

    @property
    def is_wheel(self) -> bool:
        return is_wheel(self.filename)


class Project(msgspec.Struct, frozen=True, gc=False):
    """A project page: the files of one project plus the page-level metadata."""

    name: str  # normalized
    files: tuple[File, ...] = ()
    versions: tuple[str, ...] | None = None  # None: the source did not list them
    status: str | None = None  # PEP 792 project status marker
    status_reason: str | None = None
    tracks: tuple[str, ...] = ()  # PEP 708
    alternate_locations: tuple[str, ...] = ()  # PEP 708

    def file(self, filename: str) -> File | None:
        for f in self.files:
            if f.filename == filename:
                return f
        return None

    def all_versions(self) -> tuple[str, ...]:
        """The versions the source listed plus every version named by a file, without duplicates."""
        seen: dict[str, None] = dict.fromkeys(self.versions or ())
        for f in self.files:
            v = file_version(f.filename)
            if v is not None:
                seen.setdefault(v, None)
        return tuple(seen)

    def api_version(self) -> str:
        """The version this page declares: that of the newest feature it carries, whatever its
        source declared. 1.1 and later make sizes mandatory, so a page lacking one is 1.0."""
        if not all(f.size is not None for f in self.files):
            return API_VERSION_BASE
        if self.status is not None or self.status_reason is not None:
            return "1.4"
        if any(f.provenance is not None for f in self.files):
            return "1.3"
        if self.tracks:
            return "1.2"
        return "1.1"


def fragment_hash(hashes: Mapping[str, str]) -> tuple[str, str] | None:
    """The (name, hex) pair to put in an HTML link's URL fragment."""
    for name in FRAGMENT_HASHES:
        if name in hashes:
            return name, hashes[name]
    return None


@functools.cache
def _digest_pattern(name: str) -> re.Pattern[str] | None:
    """The hex pattern of a hashlib algorithm's digest, or None if hashlib lacks it (or it has
    no fixed size, like shake_*)."""
    try:
        size = hashlib.new(name).digest_size
    except (ValueError, TypeError):
        return None
    return re.compile(f"[0-9a-f]{{{2 * size}}}") if size > 0 else None


def valid_hashes(hashes: Mapping[object, object]) -> dict[str, str]:
    """Keep only hashes whose name hashlib knows and whose value is hex of the right length."""
    out: dict[str, str] = {}
    for name, value in hashes.items():
        if not isinstance(name, str) or not isinstance(value, str) or len(name) > 32:
            continue
        name, value = name.lower(), value.lower()
        pattern = _digest_pattern(name)
        if pattern is not None and pattern.fullmatch(value):
            out[name] = value
    return out


_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_ASCII_WS = "\t\n\f\r "


def resolve_http_url(url: str, base: str) -> str | None:
    """`url` made absolute against `base`, or None unless it is an http(s) URL with a host."""
    url = url.strip(_ASCII_WS)  # what browsers strip from href values
    if _URL_FORBIDDEN.search(url):  # controls or spaces inside a URL: refuse rather than guess
        return None
    try:
        # urljoin is the costliest step of a big page, and absolute links are the norm.
        full = url if url.startswith(("https://", "http://")) else urljoin(base, url)
        parts = urlsplit(full)
        host = parts.hostname
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    return full


def dedupe_files(files: list[File] | tuple[File, ...]) -> tuple[File, ...]:
    """Drop repeated filenames, keeping the first (the highest-priority) occurrence."""
    seen: set[str] = set()
    out = []
    for f in files:
        if f.filename not in seen:
            seen.add(f.filename)
            out.append(f)
    return tuple(out)


__all__ = [
    "API_VERSION_BASE",
    "API_VERSION_FULL",
    "File",
    "Project",
    "dedupe_files",
    "fragment_hash",
    "replace",
    "resolve_http_url",
    "valid_hashes",
]
