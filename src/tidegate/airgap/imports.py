"""`tidegate import`: a bundle checked whole, then made visible.

Nothing of a bundle is visible before every check passed: the signature (by the configured key;
signature_refusal holds the policy), the manifest, the base bundle of a delta, and every
member's size and sha256 (read into the blob stores' temp files, never under a final name).
Then, in this order:

1. blobs are committed, content-addressed: harmless while no page lists them;
2. metadata and provenance files are stored (also invisible until a page links them);
3. the pages are stored (each replaced atomically) where the bundle's copy is newer than the one
   here (merge.py: an older bundle never rolls a page back), then the page cache's change stamp
   moves, which makes every worker drop the pages it holds in memory;
4. one index-store transaction publishes the local files (again only where the bundle's copy of
   the project is the newer) and records the bundle id.

"At once", across the page cache's files, means: every file a page lists is there before the
page is; each page switches from its old state to its new one atomically; a server's workers
see the new pages from the next request (what they held in memory is dropped on the stamp).
The pages of one bundle are not switched in a single atomic step among themselves: a client
resolving during step 3 (milliseconds per hundred pages) may see some projects in their new
state and others still in their old one; each of those states lists only files present. A
crash before step 4 leaves the bundle unrecorded, and importing it again completes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..publish.errors import PublishError
from ..publish.service import Publisher
from ..simple.json_page import parse_project_json
from ..storage import Storage
from ..storage.leases import acquire_all, release_all
from ..storage.protocols import Lease
from ..storage.records import PageRecord, Part, PublishedFile, Validators
from . import manifest as mf
from . import tarfile_io
from .merge import newer_page
from .progress import Progress
from .signing import verify

WORKERS = max(2, min(8, os.cpu_count() or 1))  # members taken in at once
_BASE = "https://invalid/"  # page documents' URLs are absolute


class Refused(Exception):
    """The bundle is not imported; the message says why, in one line."""


@dataclass
class Imported:
    bundle: str
    already: bool = False
    pages: int = 0
    files: int = 0
    bytes: int = 0
    checked_signature: bool = False
    kept_pages: int = 0  # pages of the bundle older than the copy here, which was kept
    kept_projects: list[str] = field(default_factory=list)  # local projects likewise


@dataclass
class _Received:
    temps: dict[str, Path] = field(default_factory=dict)  # member name -> verified temp file
    bodies: dict[str, bytes] = field(default_factory=dict)  # member name -> verified small file


_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)


def _header(path: Path) -> tuple[bytes, bytes | None]:
    """The manifest's bytes and the signature at the head of the bundle (the manifest is
    decoded only once its signature, if one is asked for, is checked)."""
    try:
        with tarfile.open(path, "r|") as tar:
            first = tar.next()
            if first is None or first.name != mf.MANIFEST or first.type not in _REGULAR:
                raise Refused(f"{path} is not a tidegate bundle (no {mf.MANIFEST} first)")
            if first.size > mf.MAX_MANIFEST:
                raise Refused(f"the manifest is larger than {mf.MAX_MANIFEST} bytes")
            data = tar.extractfile(first).read()  # type: ignore[union-attr]
            if len(data) != first.size:
                raise Refused("the bundle is truncated inside its manifest")
            second = tar.next()
            signed = second is not None and second.name == mf.SIGNATURE and second.type in _REGULAR
            signature = tar.extractfile(second).read(4096) if signed else None  # type: ignore[union-attr]
    except (tarfile.TarError, EOFError) as exc:
        raise Refused(f"the bundle is truncated or damaged: {exc}") from None
    except OSError as exc:
        raise Refused(f"cannot read {path}: {exc.strerror or exc}") from None
    return data, signature


def signature_refusal(path: Path, signed: bool, verify_key: Path | None, unchecked_signature: bool) -> str | None:
    """The verification policy, before the signature itself is checked: why the bundle is
    refused, or None. A key configured (import_verify_key or --verify-key) asks every bundle to
    be signed by it; with none, a signed bundle is refused unless its signer is explicitly left
    unchecked (--no-verify-signature), since taking it silently would look like checking it."""
    if verify_key is not None and not signed:
        return (f"bundle {path} is not signed, and the key {verify_key} (import_verify_key or --verify-key) "
                f"asks for a signature")
    if verify_key is None and signed and not unchecked_signature:
        return (f"bundle {path} is signed, but no key to check it is configured: give --verify-key PUBKEY "
                f"(or the import_verify_key setting), or --no-verify-signature to import it unchecked")
    return None


async def import_bundle(storage: Storage, publisher: Publisher, path: Path, *,
                        verify_key: Path | None = None, unchecked_signature: bool = False) -> Imported:
    data, signature = await asyncio.to_thread(_header, path)
    if (refusal := signature_refusal(path, signature is not None, verify_key, unchecked_signature)) is not None:
        raise Refused(refusal)
    if verify_key is not None and not verify(verify_key, data, signature):  # type: ignore[arg-type]
        raise Refused(f"bundle {path}'s signature does not match the key {verify_key}")
    try:
        manifest = await asyncio.to_thread(mf.decode, data)
    except mf.BadManifest as exc:
        raise Refused(str(exc)) from None
    if await publisher.bundle_imported(manifest.bundle):
        return Imported(manifest.bundle, already=True)
    if manifest.base is not None and not await publisher.bundle_imported(manifest.base):
        raise Refused(f"bundle {manifest.bundle} extends bundle {manifest.base}, which was never imported here; "
                      f"import {manifest.base} first")
    local = [PublishedFile(**{f: getattr(row, f) for f in row.__struct_fields__}) for row in manifest.local]
    carried = {m.key for m in manifest.files if m.kind == mf.LOCAL}
    await _check_local(storage, local, carried)  # before the bundle is read through
    records = [_record(page) for page in manifest.pages]
    # A blob under its sha256 is what it says (commits are verified); one addressed by its URL
    # is not, so it is always replaced by the verified bytes of this bundle.
    present = {m.name for m in manifest.files if m.kind in (mf.CACHED, mf.LOCAL) and m.key == m.sha256
               and await (storage.cache_blobs if m.kind == mf.CACHED else storage.local_blobs).exists(m.key)}
    temps = {m.name: (storage.cache_blobs if m.kind == mf.CACHED else storage.local_blobs).temp_path(m.key)
             for m in manifest.files if m.kind in (mf.CACHED, mf.LOCAL) and m.name not in present}
    received = _Received()
    leases: list[Lease] = []
    try:
        await asyncio.to_thread(_receive, path, manifest, temps, received)
        # Every byte checked. From here until the local files' rows are in, no upload or publish
        # of these projects and no removal of these blobs interleaves (Publisher.holding): the
        # checks are made again under the locks, so a concurrent upload either came first and
        # refuses the bundle whole, or waits and comes after.
        leases = await publisher.hold(projects={pf.project for pf in local}, blobs={pf.sha256 for pf in local})
        await _check_local(storage, local, carried)
        # Now make it visible, blobs first. The temp files were not fsynced one by one:
        # commit_many syncs the filesystem once before renaming them and once after, so every
        # blob is on disk before any page can list it. That is as durable as an fsync per file:
        # until the pages and the index transaction of _make_visible (which come after those
        # syncs), nothing of this bundle is visible, and a crash before them leaves at most
        # unlisted, whole, content-addressed blobs (or temp files start-up removes).
        for store, kind in ((storage.cache_blobs, mf.CACHED), (storage.local_blobs, mf.LOCAL)):
            try:
                await store.commit_many([(received.temps[m.name], m.key) for m in manifest.files
                                         if m.kind == kind and m.name in received.temps])
            except OSError as exc:  # a disk that fails the sync: no page lists these blobs yet
                raise Refused(f"cannot write the bundle's files to disk: {exc.strerror or exc}") from None
    except BaseException:
        await release_all(leases)
        raise
    finally:
        for temp in received.temps.values():
            temp.unlink(missing_ok=True)
    try:
        return await _make_visible(storage, publisher, manifest, records, local, received, verify_key is not None)
    finally:
        await release_all(leases)


async def _check_local(storage: Storage, local: list[PublishedFile], carried: set[str]) -> None:
    """Refuse the bundle whole if a local file of it conflicts with what is published here."""
    for pf in local:
        if pf.sha256 not in carried and not await storage.local_blobs.exists(pf.sha256):
            raise Refused(f"the bundle lists the local file {pf.filename} but neither carries its bytes nor "
                          f"extends a bundle that did")
        existing, deleted = await storage.index.read(
            lambda rows, name=pf.filename: (rows.published(name), rows.deleted(name)))
        if existing is not None and existing.sha256 != pf.sha256:
            raise Refused(f"{pf.filename} is published here with other contents; published files never change")
        if existing is None and deleted not in (None, pf.sha256):
            raise Refused(f"{pf.filename} was deleted here and cannot come back with other contents")


async def _make_visible(storage: Storage, publisher: Publisher, manifest: mf.Manifest, records: list[PageRecord],
                        local: list[PublishedFile], received: _Received, checked_signature: bool) -> Imported:
    # A cache bounded by files_max_size may have evicted files of this very bundle to make room
    # for later ones: then it does not fit, and is not recorded as imported (pages not shown).
    for member in manifest.files:
        if member.kind == mf.CACHED and not await storage.cache_blobs.exists(member.key):
            raise Refused(f"the bundle does not fit the file cache (files_max_size): {member.name} was evicted "
                          f"while importing; raise the limit and import it again")
    local_metadata: dict[str, bytes] = {}
    for member in manifest.files:
        if member.kind == mf.METADATA:
            await storage.pages.store_metadata(member.key, received.bodies[member.name])
        elif member.kind == mf.LOCAL_METADATA:
            local_metadata[member.key] = received.bodies[member.name]
    stored = await _store_newer(storage, records)
    try:
        older = await publisher.import_bundle(manifest.bundle, manifest.base, local, local_metadata,
                                              mf.created_at(manifest.created))
    except PublishError as exc:
        raise Refused(str(exc)) from None
    return Imported(manifest.bundle, pages=stored, files=len(manifest.files),
                    bytes=sum(m.size for m in manifest.files), checked_signature=checked_signature,
                    kept_pages=len(records) - stored, kept_projects=older)


async def _store_newer(storage: Storage, records: list[PageRecord]) -> int:
    """Store the bundle's pages that are newer than the copies here (merge.newer_page), under
    each page's lock, which a server refreshing the page from its upstream holds too: neither
    overwrites a newer page with an older one. Then the change stamp moves (also when no page
    is stored: the new files of pages already here are listed offline from now on). Returns
    how many were stored."""
    leases = await acquire_all(storage.locks, ["page:" + r.name for r in records])
    try:
        newer = [n for r in records if (n := newer_page(await storage.pages.load(r.name), r)) is not None]
        if newer:
            await storage.pages.store_all(newer)
        else:
            await storage.pages.mark_changed()
    finally:
        await release_all(leases)
    return len(newer)


def _record(page: mf.Page) -> PageRecord:
    try:
        project = parse_project_json(bytes(page.project), _BASE, page.name)
    except ValueError as exc:
        raise Refused(f"the page of {page.name} in the manifest is not a PEP 691 page: {exc}") from None
    return PageRecord(page.name, (Part(page.upstream, project, Validators()),), project, page.fetched_at,
                      page.changed_at)


def _receive(path: Path, manifest: mf.Manifest, temps: dict[str, Path], received: _Received) -> None:
    """Check every member header after the manifest against it, then take the members in:
    refused on the first discrepancy. Blobs are copied into their temp files by the kernel and
    hashed there (what a commit makes visible is exactly what was checked); a blob this data
    dir has already, and small files, are hashed in the bundle. Several members are taken at
    once, biggest first: copies and hashlib release the GIL, so they use every core."""
    expected = {m.name: m for m in manifest.files}
    try:
        with open(path, "rb") as bundle:
            work: list[tuple[mf.Member, int]] = []
            seen: set[str] = set()
            for info in tarfile_io.members(bundle):
                if info.name in (mf.MANIFEST, mf.SIGNATURE):
                    continue
                member = expected.get(info.name)
                if member is None or info.name in seen or info.type not in _REGULAR:  # no sparse, link, device
                    raise Refused(f"the bundle holds {info.name!r}, which its manifest does not list (once)")
                if info.size != member.size:
                    raise Refused(f"{info.name} is {info.size} bytes, the manifest says {member.size}")
                seen.add(info.name)
                work.append((member, info.offset_data))
            if len(work) < len(expected):
                missing = [name for name in expected if name not in seen]
                raise Refused(f"the bundle is truncated: {len(missing)} of its {len(expected)} files are missing "
                              f"(first: {missing[0]})")
            work.sort(key=lambda item: -item[0].size)
            _take_all(bundle.fileno(), work, temps, received)
    except (tarfile.TarError, EOFError, tarfile_io.ShortSource) as exc:
        raise Refused(f"the bundle is truncated or damaged: {exc}") from None
    except OSError as exc:  # a full disk, say: nothing was committed yet
        raise Refused(f"cannot take in the bundle's files: {exc.strerror or exc}") from None


def _take_all(fd: int, work: list[tuple[mf.Member, int]], temps: dict[str, Path], received: _Received) -> None:
    progress = Progress("import", len(work))
    pool = ThreadPoolExecutor(min(WORKERS, max(1, len(work))), thread_name_prefix="tidegate-import")
    try:
        futures = [pool.submit(_take, fd, member, offset, temps.get(member.name), received)
                   for member, offset in work]
        for future in as_completed(futures):
            future.result()
            progress.advance()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a refusal: the members being taken finish
        progress.finish()


def _take(fd: int, member: mf.Member, offset: int, temp: Path | None, received: _Received) -> None:
    if member.kind in (mf.METADATA, mf.LOCAL_METADATA):
        body = os.pread(fd, member.size, offset)
        if len(body) != member.size:
            raise Refused(f"the bundle is truncated inside {member.name}")
        digest = hashlib.sha256(body).hexdigest()
    elif temp is None:
        digest = tarfile_io.sha256_of(fd, member.size, offset)
    else:
        out = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        received.temps[member.name] = temp  # removed by the caller whatever happens next
        try:
            tarfile_io.copy_range(fd, out, member.size, offset)
            digest = tarfile_io.sha256_of(out, member.size)
            tarfile_io.start_writeback(out, 0, member.size)  # the sync before the commit waits less
        finally:
            os.close(out)
    if digest != member.sha256:
        raise Refused(f"{member.name} does not match its sha256 in the manifest: the bundle was altered or damaged")
    if member.kind in (mf.METADATA, mf.LOCAL_METADATA):
        received.bodies[member.name] = body
