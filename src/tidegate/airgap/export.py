"""`tidegate export`: the selected pages, their cached files, metadata and provenance, and the
local index's projects, written as one bundle (see manifest.py for the format).

Files are read from the blob stores as they are: blobs are content-addressed and were verified
when they arrived, so the manifest's sha256 of a blob is its key (`tidegate verify` re-hashes
the cache; `tidegate import` re-hashes every byte). A delta (`--since`) holds the pages that
changed and the files the earlier bundle's chain lacks; local rows always travel whole (they
are small, and carry yank states).
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import msgspec

from ..cache.keys import blob_key
from ..publish.service import Publisher
from ..simple.json_page import project_document
from ..simple.names import normalize
from ..storage import Storage
from . import manifest as mf
from .progress import Progress
from .signing import sign
from .tarfile_io import ShortSource, TarWriter


class ExportError(Exception):
    pass


@dataclass
class Exported:
    bundle: str
    base: str | None
    pages: int
    files: int
    bytes: int


def selector(patterns: list[str]) -> Callable[[str], bool]:
    """Project-name patterns (fnmatch, compared normalized); none selects every project."""
    wanted = [normalize(p) if not any(c in p for c in "*?[") else p.lower() for p in patterns]
    return lambda name: not wanted or any(fnmatch.fnmatchcase(name, p) for p in wanted)


def read_manifest(bundle: Path) -> mf.Manifest:
    """The manifest of a bundle (its first member), not otherwise checked."""
    try:
        with tarfile.open(bundle, "r|") as tar:
            first = tar.next()
            if first is None or first.name != mf.MANIFEST or first.size > mf.MAX_MANIFEST:
                raise ExportError(f"{bundle} is not a tidegate bundle (its first member is not {mf.MANIFEST})")
            data = tar.extractfile(first).read()  # type: ignore[union-attr]
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ExportError(f"cannot read {bundle}: {exc}") from None
    try:
        return mf.decode(data)
    except mf.BadManifest as exc:
        raise ExportError(f"{bundle}: {exc}") from None


async def export(storage: Storage, publisher: Publisher, output: Path, *, since: Path | None = None,
                 patterns: list[str] = (), sign_key: Path | None = None) -> Exported:  # type: ignore[assignment]
    created = mf.now_created()  # before anything is read: what it holds is no older than this
    base = read_manifest(since) if since is not None else None
    held_files = set(base.holds_files) if base else set()
    holds_pages = dict(base.holds_pages) if base else {}
    wanted = selector(list(patterns))
    members: list[mf.Member] = []
    sources: dict[str, tuple[str, str] | bytes] = {}  # member name -> (store, key) or the bytes
    holds = set(held_files)

    def add(member: mf.Member, source: tuple[str, str] | bytes) -> None:
        if member.name in holds:
            return
        holds.add(member.name)
        members.append(member)
        sources[member.name] = source

    pages: list[mf.Page] = []
    for name in await storage.pages.names():
        if not wanted(name):
            continue
        record = await storage.pages.load(name)
        if record is None or record.served is None:
            continue
        document = msgspec.json.encode(project_document(record.served))
        digest = mf.page_digest(document)
        if holds_pages.get(name) != digest:
            upstream = record.parts[0].upstream if record.parts else ""
            pages.append(mf.Page(name, upstream, record.fetched_at, record.changed_at, msgspec.Raw(document)))
            holds_pages[name] = digest
        for f in record.served.files:
            key = blob_key(f)
            info = await storage.cache_blobs.info(key)
            if info is None:
                continue  # on the page, never fetched: the offline page will not list it
            sha256 = f.sha256 or await _hash_blob(storage, key)
            add(mf.Member(mf.CACHED, key, info.size, sha256), ("cache", key))
            for extra in (key, "provenance-" + key):
                body = await storage.pages.load_metadata(extra)
                if body is not None:
                    add(mf.Member(mf.METADATA, extra, len(body), hashlib.sha256(body).hexdigest()), body)

    local_files, local_metadata = await publisher.published_files(wanted)
    for pf in local_files:
        add(mf.Member(mf.LOCAL, pf.sha256, pf.size, pf.sha256), ("local", pf.sha256))  # type: ignore[arg-type]
    for digest, body in local_metadata.items():
        add(mf.Member(mf.LOCAL_METADATA, digest, len(body), digest), body)
    rows = [mf.LocalRow(filename=f.filename, project=f.project, version=f.version, sha256=f.sha256 or "",
                        hashes=dict(f.hashes), size=f.size, upload_time=f.upload_time,
                        requires_python=f.requires_python, metadata_sha256=f.metadata_sha256, yanked=f.yanked,
                        attestations=f.attestations) for f in local_files]

    manifest = mf.Manifest(format=mf.FORMAT, bundle=mf.new_bundle_id(), base=base.bundle if base else None,
                           created=created, pages=pages, local=rows, files=members,
                           holds_files=sorted(holds), holds_pages=holds_pages)
    data = mf.encode(manifest)
    signature = sign(sign_key, data) if sign_key is not None else None
    opened: list[tuple[mf.Member, BinaryIO]] = []
    try:
        for member in members:
            source = sources[member.name]
            if isinstance(source, bytes):
                opened.append((member, io.BytesIO(source)))
                continue
            store = storage.cache_blobs if source[0] == "cache" else storage.local_blobs
            fh = await store.open(source[1])
            if fh is None:
                raise ExportError(f"{member.kind} file {member.key} left the store while exporting; export again")
            opened.append((member, fh))
        try:
            await asyncio.to_thread(_write, output, data, signature, opened)
        except ShortSource as exc:
            raise ExportError(f"a file changed while exporting ({exc}); export again") from None
    finally:
        for _, fh in opened:
            fh.close()
    return Exported(manifest.bundle, manifest.base, len(pages), len(members), sum(m.size for m in members))


async def _hash_blob(storage: Storage, key: str) -> str:
    fh = await storage.cache_blobs.open(key)
    if fh is None:
        raise ExportError(f"cached file {key} left the store while exporting; export again")
    with fh:
        return await asyncio.to_thread(lambda: hashlib.file_digest(fh, "sha256").hexdigest())


def _write(output: Path, data: bytes, signature: bytes | None, opened: list[tuple[mf.Member, BinaryIO]]) -> None:
    """Write the tar next to `output`, fsync it and rename it into place: never half a bundle
    under the final name, and the command returns only once the bundle is on its disk (it is
    often a removable one). Member data is copied file to file by the kernel."""
    temp = output.with_name(f".{output.name}.{os.getpid()}.part")
    progress = Progress("export", len(opened))
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            tar = TarWriter(fd)
            tar.add_bytes(mf.MANIFEST, data)
            if signature is not None:
                tar.add_bytes(mf.SIGNATURE, signature)
            for member, fh in opened:
                tar.add_file(member.name, member.size, fh)
                progress.advance()
            tar.close()
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, output)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        progress.finish()
