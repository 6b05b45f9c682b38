"""A bundle's manifest: what it holds, as one JSON document that the signature covers.

Pure data and codecs. A bundle is a tar whose first member is this manifest (then, if signed,
its detached Ed25519 signature), then one member per file the manifest lists, each checked on
import against the size and sha256 stated here. Pages travel as PEP 691 JSON (the upstream's
absolute file URLs kept, as the page cache stores them), so every field the model knows
(hashes, upload times, yanked reasons, requires-python, PEP 658/740 links, project status)
survives the trip. `holds_*` are cumulative over the chain of bundles a delta extends, so the
next delta can be cut from this manifest alone.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import secrets
import time

import msgspec

from ..simple.names import checked_name, valid_filename

FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_MANIFEST = 512 * 1024 * 1024
MAX_SMALL = 64 * 1024 * 1024  # bytes of a metadata or provenance member (they are held in memory)

# Kinds of file member, and the member-name prefix of each.
CACHED = "files"  # a cached upstream file, committed to the cache's blob store under `key`
LOCAL = "local"  # an uploaded file, committed to the local blob store
METADATA = "metadata"  # a PEP 658 metadata or PEP 740 provenance file of the page cache, by `key`
LOCAL_METADATA = "local-metadata"  # a local file's PEP 658 metadata, by its sha256
KINDS = (CACHED, LOCAL, METADATA, LOCAL_METADATA)


class Member(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: str
    key: str
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.key}"


class Page(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    upstream: str
    fetched_at: float
    changed_at: float
    project: msgspec.Raw  # PEP 691 JSON of the page as served


class LocalRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A published file of the local index, as the index holds it."""

    filename: str
    project: str
    version: str
    sha256: str
    hashes: dict[str, str]
    size: int
    upload_time: str
    requires_python: str | None = None
    metadata_sha256: str | None = None
    yanked: str | None = None
    attestations: str | None = None


class Manifest(msgspec.Struct, forbid_unknown_fields=True):
    format: int
    bundle: str
    base: str | None
    created: str  # when the exporting side read what it holds (UTC, microseconds; seconds before)
    pages: list[Page]
    local: list[LocalRow]
    files: list[Member]
    holds_files: list[str]  # member names of this bundle and every bundle it extends
    holds_pages: dict[str, str]  # project -> sha256 of its page document, over the chain


def new_bundle_id(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{secrets.token_hex(6)}"


def now_created() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def created_at(created: str) -> float:
    """A manifest's `created` as a POSIX time; ValueError if it is not one."""
    for form in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(created, form).replace(tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            continue
    raise ValueError(created)


def page_digest(document: bytes) -> str:
    return hashlib.sha256(document).hexdigest()


def encode(manifest: Manifest) -> bytes:
    return msgspec.json.encode(manifest)


class BadManifest(ValueError):
    pass


_DECODE = msgspec.json.Decoder(Manifest).decode


def decode(data: bytes) -> Manifest:
    """The manifest, or BadManifest saying in one line what is wrong with it."""
    try:
        manifest = _DECODE(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadManifest(f"the manifest is not valid: {exc}") from None
    if manifest.format != FORMAT:
        raise BadManifest(f"the manifest is in format {manifest.format}; this tidegate reads format {FORMAT}")
    # Every name and key below becomes a path or a blob address: checked here, in one place,
    # whether or not the bundle is signed (a signer may be trusted with content, never with paths).
    for member in manifest.files:
        if member.kind not in KINDS or not _SHA256.fullmatch(member.sha256) or member.size < 0:
            raise BadManifest(f"the manifest lists a bad member {member.kind}/{member.key}"[:300])
        if not _key_fits(member):
            raise BadManifest(f"the manifest's key {member.key[:100]!r} does not fit its {member.kind} member")
        if member.kind in (METADATA, LOCAL_METADATA) and member.size > MAX_SMALL:
            raise BadManifest(f"{member.name[:200]} is larger than {MAX_SMALL} bytes")
    try:
        created_at(manifest.created)
    except ValueError:
        raise BadManifest(f"the manifest's creation time {manifest.created[:40]!r} is not a UTC time") from None
    for page in manifest.pages:
        if checked_name(page.name) != page.name:
            raise BadManifest(f"the manifest has a page for {page.name[:100]!r}, which is not a normalized project name")
    filenames: set[str] = set()
    for row in manifest.local:
        if (checked_name(row.project) != row.project or not valid_filename(row.filename)
                or not _SHA256.fullmatch(row.sha256)
                or (row.metadata_sha256 is not None and not _SHA256.fullmatch(row.metadata_sha256))):
            raise BadManifest(f"the manifest's local file {row.filename[:100]!r} is malformed")
        if row.filename in filenames:
            raise BadManifest(f"the manifest lists the local file {row.filename} twice")
        filenames.add(row.filename)
    return manifest


_SHA256 = re.compile(r"[0-9a-f]{64}")
_METADATA_KEY = re.compile(r"(?:provenance-)?(?:url-)?[0-9a-f]{64}")
_URL_KEY = re.compile(r"url-[0-9a-f]{64}")


def _key_fits(member: Member) -> bool:
    """Blobs are content-addressed: a member's key is its sha256 (a cached file the upstream
    gave no hash for is addressed by its URL's); metadata keys have their own two shapes."""
    if member.kind in (LOCAL, LOCAL_METADATA):
        return member.key == member.sha256
    if member.kind == CACHED:
        return member.key == member.sha256 or _URL_KEY.fullmatch(member.key) is not None
    return _METADATA_KEY.fullmatch(member.key) is not None
