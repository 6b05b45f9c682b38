"""Validation of what a client uploads: the release, the file's name, hashes and size, and the
archive itself (structure and core metadata), in the spirit of Warehouse's upload checks.

Pure: no I/O except reading the archive given. Every failure is an Invalid error
that names the wrong input and says, in one sentence, what is wrong and what to do. Archives are
hostile: member counts, the metadata's size and the unpacked size of an sdist are bounded, and
nothing is extracted.
"""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import hashlib
import lzma
import re
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Literal

from packaging.metadata import InvalidMetadata, Metadata, parse_email
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ..simple.names import MAX_FILENAME, NormalizedName, is_sdist, is_valid_name, is_wheel, names_release, normalize, \
    sdist_stem, valid_filename
from .errors import Invalid

__all__ = [
    "MAX_MEMBERS",
    "MAX_METADATA",
    "MAX_UNPACKED",
    "SECURE_HASHES",
    "Inspected",
    "check_filename",
    "check_hashes",
    "check_name_version",
    "check_size",
    "inspect_archive",
]

# Hard limits against hostile archives (looked up at call time, so tests can lower them).
MAX_MEMBERS = 100_000
MAX_METADATA = 16 * 1024 * 1024  # METADATA, PKG-INFO and WHEEL
MAX_UNPACKED = 4 * 1024**3  # an sdist is gzip: walking its members means decompressing them all

# Secure algorithms from hashlib.algorithms_guaranteed; md5 and sha1 may come along but do not count.
SECURE_HASHES = frozenset(
    {"sha256", "sha384", "sha512", "sha3_224", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s"}
) & hashlib.algorithms_guaranteed

Kind = Literal["wheel", "sdist"]

_CHUNK = 1024 * 1024
# tarfile.data_filter needs a destination; one that does not exist keeps its realpath() textual.
_NOWHERE = "/nonexistent/tidegate-sdist"
# What a corrupt or hostile archive can raise while being read (zipfile alone raises most of
# these for garbage offsets, encryption or unknown compression). OSError included: the file is
# already open, so a read failing is far more likely a bad offset than a failing disk.
_BROKEN = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, struct.error,
           OSError, ValueError, NotImplementedError, RuntimeError)


@dataclass(frozen=True, slots=True)
class Inspected:
    """What an accepted archive says about itself."""

    kind: Kind
    metadata: bytes  # the raw METADATA / PKG-INFO, served as PEP 658 metadata for wheels
    metadata_version: str
    name: str  # as the metadata spells it
    version: str  # as the metadata spells it
    requires_python: str | None
    summary: str | None


# --- request fields --------------------------------------------------------------------------


def check_name_version(name: str, version: str) -> tuple[NormalizedName, str]:
    """The normalized project name and version string of a release, or Invalid."""
    if not isinstance(name, str) or not is_valid_name(name):
        raise Invalid(f"{str(name)[:100]!r} is not a valid project name; use up to 200 ASCII letters, digits, '.', '_' "
                      "and '-', starting and ending with a letter or digit.", source="name")
    if not isinstance(version, str):
        raise Invalid("The version must be a string such as '1.0'.", source="version")
    try:
        parsed = Version(version)
    except InvalidVersion:
        raise Invalid(f"{version!r} is not a valid version; use a PEP 440 version such as '1.0'.",
                      source="version") from None
    if parsed.local is not None:
        raise Invalid(f"{version!r} has a local version label (+{parsed.local}); an index takes only public "
                      "versions, so drop the label.", source="version")
    return normalize(name), str(parsed)


def check_filename(filename: str, name: str, version: str) -> Kind:
    """Check that ``filename`` is a wheel or sdist name of this release; returns its kind.

    Names are compared normalized, so a legacy spelling (``Foo.Bar-1.0.tar.gz``) is accepted.
    ``.zip`` sdists are no longer standard (PEP 625 allows only ``.tar.gz``) but are accepted for
    compatibility with older build tools.
    """
    if not isinstance(filename, str) or not filename:
        raise Invalid("The filename must be a non-empty string.", source="filename")
    if len(filename) > MAX_FILENAME:
        raise Invalid(f"The filename is longer than {MAX_FILENAME} characters; shorten it.", source="filename")
    if any(c in filename for c in "/\\\0") or filename.startswith("."):
        raise Invalid(f"{filename!r} is not a plain file name; remove any directory part, NUL or leading dot.",
                      source="filename")
    if not valid_filename(filename):
        raise Invalid(f"{filename!r} has characters a distribution filename cannot have; use ASCII letters, "
                      "digits and . _ + ! -", source="filename")
    try:
        if is_wheel(filename):
            kind: Kind = "wheel"
            file_name, file_version, _, _ = parse_wheel_filename(filename)
        elif is_sdist(filename):
            kind = "sdist"
            file_name, file_version = parse_sdist_filename(filename)
        else:
            raise Invalid(f"{filename!r} is not a distribution; upload a wheel (.whl) or an sdist (.tar.gz).",
                          source="filename")
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as e:
        example = "name-1.0-py3-none-any.whl" if kind == "wheel" else "name-1.0.tar.gz"
        raise Invalid(f"{filename!r} is not a valid {kind} filename ({e}); name it like {example!r}.",
                      source="filename") from None
    _check_release(f"{filename!r}", file_name, file_version, name, version, source="filename")
    # One artifact, one name: the version must be spelled normalized ("1.0", not "1.0.0" or "1.00").
    spelled = filename.split("-")[1] if kind == "wheel" else sdist_stem(filename).rpartition("-")[2]
    release = str(_version(version))
    if spelled != release:
        raise Invalid(f"{filename!r} spells version {release} as {spelled!r}; name the file with the "
                      f"normalized version {release}.", source="filename")
    return kind


def _check_release(what: str, found_name: str, found_version: object, name: str, version: str, *,
                   source: str) -> None:
    """A filename or a metadata file must name the session's project and version."""
    if canonicalize_name(found_name) != canonicalize_name(name):
        raise Invalid(f"{what} names project {found_name!r}, but this session is for {name!r}; "
                      "upload it in a session for that project.", source=source)
    if found_version != _version(version):
        raise Invalid(f"{what} is for version {found_version}, but this session is for {version}; "
                      "upload it in a session for that version.", source=source)


def check_hashes(hashes: object) -> dict[str, str]:
    """The digests with names and hex lowercased, or Invalid if any is malformed or none is secure."""
    if not isinstance(hashes, dict) or not hashes:
        raise Invalid("'hashes' must be a non-empty object mapping algorithm names to hex digests.",
                      source="hashes")
    result: dict[str, str] = {}
    for key, value in hashes.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise Invalid("'hashes' must map algorithm names to hex digest strings.", source="hashes")
        algorithm, digest = key.lower(), value.lower()
        try:
            if algorithm not in hashlib.algorithms_available:  # not OpenSSL's aliases
                raise ValueError(algorithm)
            size = hashlib.new(algorithm).digest_size
        except ValueError:
            raise Invalid(f"{key!r} is not a hash algorithm this server knows; use sha256.",
                          source="hashes") from None
        if size == 0:  # shake_*: the digest length is a parameter, which the protocol cannot carry
            raise Invalid(f"{key!r} needs a digest length and cannot be used; use sha256.", source="hashes")
        if len(digest) != 2 * size or not all(c in "0123456789abcdef" for c in digest):
            raise Invalid(f"The {algorithm} digest is not {2 * size} hex digits; send the hex digest of the file.",
                          source="hashes")
        if result.setdefault(algorithm, digest) != digest:
            raise Invalid(f"Two different {algorithm} digests were given; send one.", source="hashes")
    if not SECURE_HASHES & result.keys():
        raise Invalid("'hashes' must include a secure algorithm such as sha256, not only "
                      + ", ".join(sorted(result)) + ".", source="hashes")
    return result


def check_size(size: object, limit: int) -> int:
    """The declared file size, or Invalid (413 when it is over ``limit``)."""
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise Invalid("'size' must be the file's size in bytes, a positive integer.", source="size")
    if size > limit:
        raise Invalid(f"The file is {size} bytes, over this server's limit of {limit} bytes; upload a smaller one.",
                      source="size", status=413)
    return size


# --- archives --------------------------------------------------------------------------------


def inspect_archive(f: BinaryIO, filename: str, name: str, version: str) -> Inspected:
    """Check the archive in the open file ``f`` (uploaded as ``filename`` for release
    name/version) and its core metadata; returns what the metadata says, or raises Invalid."""
    kind = check_filename(filename, name, version)
    # The file is open already: an OSError while reading it is a bad offset in the archive far
    # more likely than a failing disk, so it counts as a corrupt upload (_BROKEN).
    try:
        if kind == "wheel":
            raw = _wheel_metadata(f, name, version)
        elif filename.endswith(".zip"):
            raw = _zip_sdist_metadata(f, name, version)
        else:
            raw = _tar_sdist_metadata(f, name, version)
    except Invalid:
        raise
    except _BROKEN as e:
        what = "a gzip-compressed tar" if kind == "sdist" and not filename.endswith(".zip") else "a zip"
        raise Invalid(f"The file is not {what} archive or is corrupt ({e}); upload it again.",
                      source="content") from None
    return _check_metadata(raw, kind, name, version)


def _wheel_metadata(f: BinaryIO, name: str, version: str) -> bytes:
    with zipfile.ZipFile(f) as zf:
        names = _zip_names(zf)
        dist_infos = {n.split("/", 1)[0] for n in names if "/" in n and n.split("/", 1)[0].endswith(".dist-info")}
        if len(dist_infos) != 1:
            found = ", ".join(sorted(dist_infos)) or "none"
            raise Invalid(f"A wheel must have exactly one top-level .dist-info directory (found: {found}); "
                          "rebuild the wheel.", source="content")
        (dist_info,) = dist_infos
        if not names_release(dist_info.removesuffix(".dist-info"), name, _version(version)):
            raise Invalid(f"{dist_info} does not belong to {name} {version}; rebuild the wheel.",
                          source="content")
        for member in ("METADATA", "WHEEL"):
            if f"{dist_info}/{member}" not in names:
                raise Invalid(f"The wheel has no {dist_info}/{member}; rebuild it.", source="content")
        _check_wheel_file(_zip_read(zf, f"{dist_info}/WHEEL"))
        return _zip_read(zf, f"{dist_info}/METADATA")


def _zip_sdist_metadata(f: BinaryIO, name: str, version: str) -> bytes:
    with zipfile.ZipFile(f) as zf:
        top = _single_top(_zip_names(zf), name, version)
        if f"{top}/PKG-INFO" not in zf.NameToInfo:
            raise Invalid(f"The sdist has no {top}/PKG-INFO; rebuild it.", source="content")
        return _zip_read(zf, f"{top}/PKG-INFO")


def _zip_names(zf: zipfile.ZipFile) -> set[str]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise Invalid(f"The archive has more than {MAX_MEMBERS} members; this server refuses it.",
                      source="content")
    names: set[str] = set()
    for info in infos:
        # Duplicate names are ambiguous: tools disagree about which one counts.
        if info.filename in names:
            raise Invalid(f"The archive contains {info.filename!r} twice; rebuild it.", source="content")
        _check_member_name(info.filename)
        names.add(info.filename)
    return names


def _zip_read(zf: zipfile.ZipFile, member: str) -> bytes:
    info = zf.getinfo(member)
    if info.file_size > MAX_METADATA:
        raise Invalid(f"{member} is larger than {MAX_METADATA} bytes; this server refuses it.",
                      source="content")
    with zf.open(info) as fh:
        data = fh.read(MAX_METADATA + 1)  # bounded even if the stated size lies
    if len(data) > MAX_METADATA:
        raise Invalid(f"{member} is larger than {MAX_METADATA} bytes; this server refuses it.",
                      source="content")
    return data


def _tar_sdist_metadata(f: BinaryIO, name: str, version: str) -> bytes:
    # Our own GzipFile, so that after the last member the rest of the stream can be drained,
    # which makes gzip verify its CRC and length: a truncated upload is noticed.
    with gzip.GzipFile(fileobj=f, mode="rb") as gz, tarfile.open(fileobj=gz, mode="r:") as tf:
        names: set[str] = set()
        pkg_info: dict[str, bytes] = {}  # top-level directory -> its PKG-INFO
        count = unpacked = 0
        for member in tf:  # streamed: each member is seen once, in order, never extracted
            count += 1
            if count > MAX_MEMBERS:
                raise Invalid(f"The archive has more than {MAX_MEMBERS} members; this server refuses it.",
                              source="content")
            _check_member_name(member.name)
            try:
                tarfile.data_filter(member, _NOWHERE)
            except tarfile.FilterError as e:
                raise Invalid(f"The sdist contains an unsafe member ({e}); rebuild it.", source="content") from None
            unpacked += member.size
            if unpacked > MAX_UNPACKED:
                raise Invalid(f"The sdist unpacks to more than {MAX_UNPACKED} bytes; this server refuses it.",
                              source="content")
            names.add(member.name)
            top, _, rest = member.name.partition("/")
            if rest == "PKG-INFO":
                if top in pkg_info or not member.isreg():
                    raise Invalid(f"{member.name} must be a single regular file; rebuild the sdist.",
                                  source="content")
                if member.size > MAX_METADATA:
                    raise Invalid(f"{member.name} is larger than {MAX_METADATA} bytes; this server refuses it.",
                                  source="content")
                fh = tf.extractfile(member)
                assert fh is not None  # a regular file
                pkg_info[top] = fh.read(MAX_METADATA)
        while gz.read(_CHUNK):  # the end-of-archive padding, and whatever follows it
            unpacked += _CHUNK
            if unpacked > MAX_UNPACKED:
                raise Invalid(f"The sdist unpacks to more than {MAX_UNPACKED} bytes; this server refuses it.",
                              source="content")
    top = _single_top(names, name, version)
    if top not in pkg_info:
        raise Invalid(f"The sdist has no {top}/PKG-INFO; rebuild it.", source="content")
    return pkg_info[top]


def _check_member_name(member: str) -> None:
    parts = member.replace("\\", "/").split("/")
    if member.startswith(("/", "\\")) or ".." in parts or "\0" in member or re.match(r"[A-Za-z]:", member):
        raise Invalid(f"The archive contains {member!r}, which points outside it; rebuild the archive.",
                      source="content")
    member.encode("utf-8")  # an undecodable name raises UnicodeError (a ValueError): a corrupt archive


def _single_top(names: set[str], name: str, version: str) -> str:
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1:
        listed = ", ".join(sorted(tops)[:5]) or "nothing"
        raise Invalid(f"An sdist must contain a single top-level directory (found: {listed}); "
                      "rebuild it.", source="content")
    (top,) = tops
    if not names_release(top, name, _version(version)):
        raise Invalid(f"The sdist's top-level directory {top!r} is not {name}-{version}; rebuild it.",
                      source="content")
    return top


def _check_wheel_file(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("The wheel's WHEEL file is not UTF-8; rebuild the wheel.", source="content") from None
    fields = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(text)
    wheel_version = (fields.get("Wheel-Version") or "").strip()
    major, _, minor = wheel_version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise Invalid("The wheel's WHEEL file has no valid Wheel-Version; rebuild the wheel.", source="content")
    if int(major) != 1:
        raise Invalid(f"Wheel-Version {wheel_version} is not supported, only 1.x; build a 1.x wheel.",
                      source="content")
    if (fields.get("Root-Is-Purelib") or "").strip().lower() not in ("true", "false"):
        raise Invalid("The wheel's WHEEL file has no Root-Is-Purelib: true/false; rebuild the wheel.",
                      source="content")


def _check_metadata(data: bytes, kind: Kind, name: str, version: str) -> Inspected:
    member = "METADATA" if kind == "wheel" else "PKG-INFO"
    raw, unparsed = parse_email(data)
    for key, header in (("metadata_version", "Metadata-Version"), ("name", "Name"), ("version", "Version")):
        if key in unparsed:
            raise Invalid(f"{member} has a malformed or repeated {header}; rebuild the {kind}.",
                          source="metadata")
        if key not in raw:
            raise Invalid(f"{member} has no {header}; rebuild the {kind}.", source="metadata")
    meta = Metadata.from_raw(raw, validate=False)  # fields are validated as they are read below
    try:
        metadata_version = meta.metadata_version
        meta_name = meta.name
        meta_version = meta.version
        requires_python = meta.requires_python
    except InvalidMetadata as e:
        header = e.field.replace("_", "-").title()
        raise Invalid(f"{member} is invalid: {e}; fix {header} and rebuild the {kind}.",
                      source="metadata") from None
    _check_release(f"{member}", meta_name, meta_version, name, version, source="metadata")
    return Inspected(
        kind=kind,
        metadata=data,
        metadata_version=metadata_version,
        name=raw["name"],
        version=raw["version"],
        requires_python=raw["requires_python"].strip() if requires_python is not None else None,
        summary=raw.get("summary"),
    )


def _version(version: str) -> Version:
    try:
        return Version(version)
    except InvalidVersion:
        raise Invalid(f"{version!r} is not a valid version; use a PEP 440 version such as '1.0'.",
                      source="version") from None
