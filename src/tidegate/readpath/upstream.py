"""The upstreams as a source of pages and files: this worker's memory, the shared page cache,
then the upstreams in priority order (the first that has the project wins, unless the
configuration merges it).

An upstream that fails never lets a lower-priority upstream answer instead (that would be
dependency confusion); the last good page is served instead, marked stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import replace
from typing import AsyncIterator

import aiohttp
import msgspec

from ..cache.downloads import CHUNK, Download, DownloadFailed, Downloads
from ..cache.keys import blob_key
from ..ranges import parse_range
from ..cache.flight import SingleFlight
from ..config import Settings
from ..simple.model import File, Project
from ..simple.names import NormalizedName
from ..simple.provenance import check_provenance
from ..storage import Storage
from ..storage.protocols import Lease
from ..storage.records import PageRecord, Part as UpstreamPart
from ..upstream.client import PageFound, PageMissing, PageUnchanged, UpstreamClient, UpstreamError
from ..upstream.policy import combine
from ..wheelmeta import TAIL_SIZE, MetadataError, read_wheel_metadata, read_wheel_metadata_from_file
from .answers import BlobAnswer, BytesAnswer, CacheResult, FileAnswer, FileQuery, PageAnswer, Part, StreamAnswer, \
    UncachedAnswer, content_type_of
from .errors import NotCached, NotFound, ReadError, StorageFull, Unavailable, UpstreamFailed
from .memory import PageMemory
from .pages import Page

log = logging.getLogger(__name__)

NEGATIVE_TTL = 60.0  # an unknown project is asked about again after at most this long
BULK_CHECK = 0.1  # seconds between looks for a bulk change of the page cache (an import, a prune)
# Seconds between tries for a page another worker or instance is fetching: 10 ms at first (a
# refresh by a worker of this host is often that quick), doubling up to 200 ms (each try is a
# PostgreSQL round trip with shared engines; a slow upstream must not cost 100 queries a second
# per waiting request).
PAGE_LOCK_POLL = 0.01
PAGE_LOCK_MAX_POLL = 0.2
METADATA_LIMIT = 16 * 1024 * 1024
BIG_FILES = 1024  # files on a page whose merge and comparison run in a thread
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class UpstreamSource:
    def __init__(self, settings: Settings, storage: Storage, clients: list[UpstreamClient]) -> None:
        self.settings = settings
        self.clients = clients
        self._pages = storage.pages
        self._blobs = storage.cache_blobs
        self._locks = storage.locks
        self.downloads = Downloads(storage.cache_blobs, storage.locks)
        self._memory = PageMemory(settings.memory_cache)
        self._by_name = {c.name: c for c in clients}
        self._flights: SingleFlight = SingleFlight()
        self._listing = 0  # bumped when this worker learns a project appeared or vanished
        self._storing: dict[asyncio.Task, PageRecord] = {}  # records being stored, each holding its page's lock
        self._bulk_stamp: object = None  # the page cache's change stamp the memory was filled at
        self._bulk_checked = -BULK_CHECK  # when that stamp was last compared (monotonic)

    @property
    def offline(self) -> bool:
        return self.settings.offline or not self.clients

    def changed(self) -> tuple[int, object]:
        # A bulk change of the page cache (an import, a prune) may add or remove projects too.
        return self._listing, self._pages.changed()

    async def names(self) -> set[str]:
        return set(await self._pages.names()) | {r.name for r in self._storing.values() if r.found}

    # --- pages ---

    def _ttl(self, record: PageRecord) -> float:
        ttls = [self._by_name[p.upstream].upstream.ttl for p in record.parts if p.upstream in self._by_name]
        return min(ttls) if ttls else min([c.upstream.ttl for c in self.clients] + [NEGATIVE_TTL])

    def is_fresh(self, record: PageRecord, now: float) -> bool:
        return now - record.fetched_at < self._ttl(record)

    async def page(self, name: NormalizedName, *, revalidate: bool = False) -> PageAnswer | None:
        """The project's page, or None when no upstream has the project."""
        if self.offline:
            return await self._offline_page(name)
        self._forget_if_changed()
        page = self._memory.get(name)
        loaded: PageRecord | None | bool = False  # what the disk held just now (False: not asked)
        if page is None:
            loaded = await self._pages.load(name)
            page = self._remember(loaded) if loaded is not None else None
        now = time.time()
        if revalidate and page is not None and now - page.record.fetched_at < self.settings.min_refresh:
            revalidate = False  # confirmed moments ago: a client's max-age=0 is satisfied already
        if page is not None and not revalidate and now < page.fresh_until:
            how = CacheResult.HIT
        else:
            page, how = await self._flights.run(("page", name, revalidate),
                                                lambda: self._refresh(name, revalidate, loaded))
        return PageAnswer(page, how) if page.record.found else None

    async def _offline_page(self, name: NormalizedName) -> PageAnswer:
        """Offline, a page lists exactly the files this mirror has, so that no resolver picks
        one it cannot get. Pages are kept in memory until the page cache says it changed in
        bulk, which a running server so sees at once."""
        self._forget_if_changed()
        page = self._memory.get(name)
        if page is None:
            loaded = await self._pages.load(name)
            if loaded is not None and loaded.served is not None:
                page = self._memory.put(name, Page.of_record(await self.available(loaded)))
        if page is None or page.record is None or not page.record.found:
            raise NotCached(f"{name} is not in this mirror (tidegate is offline).")
        return PageAnswer(page, CacheResult.OFFLINE)

    def _forget_if_changed(self) -> None:
        """Drop the pages held in memory once the page cache says it changed in bulk (a bundle
        imported, a repair, a prune), by any process, online too (a page held in memory would
        otherwise be served until its ttl). Asked at most every BULK_CHECK seconds: the local
        page cache's stamp is a stat, ~4% of a warm page's instructions if asked on each."""
        now = time.monotonic()
        if now - self._bulk_checked < BULK_CHECK:
            return
        self._bulk_checked = now
        stamp = self._pages.changed()
        if stamp != self._bulk_stamp:
            self._memory.clear()
            self._bulk_stamp = stamp

    async def available(self, record: PageRecord) -> PageRecord:
        """The record with only the files whose bytes are cached, and provenance links only
        where the provenance is cached too."""
        assert record.served is not None
        files = []
        for f in record.served.files:
            key = blob_key(f)
            if not await self._blobs.exists(key):
                continue
            if f.provenance is not None and await self._pages.load_metadata("provenance-" + key) is None:
                f = msgspec.structs.replace(f, provenance=None)
            files.append(f)
        return replace(record, served=msgspec.structs.replace(record.served, files=tuple(files)))

    def _remember(self, record: PageRecord) -> Page:
        known = self._memory.get(record.name)
        if known is not None and known.record is not None and known.record.changed_at == record.changed_at:
            page = known.renewed(record)  # same page: keep what was rendered
        else:
            page = Page.of_record(record)
        page.fresh_until = record.fetched_at + self._ttl(record)
        return self._memory.put(record.name, page)

    async def _refresh(self, name: str, revalidate: bool, loaded: PageRecord | None | bool) -> tuple[Page, CacheResult]:
        """Refresh a page from the upstreams, once across all workers: the worker holding the
        page's lock asks upstream; the others wait and take what it stored. `loaded`: what the
        disk held just before (False: unknown)."""
        asked = time.time()
        lease, waited = await self._wait_for_lock("page:" + name)
        try:
            if loaded is False or loaded is None or waited:  # another worker may have refreshed it meanwhile
                # (None too: another instance may have fetched and stored the page between our
                # look and our lock, a window a shared engine's round trips make wide; reading
                # a record that is not there is cheap.)
                current = await self._pages.load(name)
            else:
                current = loaded  # nobody held the lock: read moments ago, no need to read again
            if current is not None and (current.fetched_at >= asked or not revalidate and self.is_fresh(current, time.time())):
                record, how = current, CacheResult.HIT
            else:
                record, how = await self._fetch_page(name, current)
        except BaseException:
            await lease.release()
            raise
        if how in (CacheResult.MISS, CacheResult.REVALIDATED):
            # The client has its page now; the lock is held until the record is stored, so
            # other workers waiting for it take the stored record rather than ask again.
            task = asyncio.ensure_future(self._store(record, lease))
            self._storing[task] = record
            task.add_done_callback(self._storing.pop)
        else:
            await lease.release()
        return self._remember(record), how

    async def _store(self, record: PageRecord, lease: Lease) -> None:
        try:
            await self._pages.store(record)
        except Exception as exc:  # a full disk, say: the page was served, it is just not kept
            log.warning("could not store the page of %s: %s", record.name, exc)
        finally:
            await lease.release()

    async def _wait_for_lock(self, name: str) -> tuple[Lease, bool]:
        """The lock, and whether it had to be waited for."""
        waited, interval = False, PAGE_LOCK_POLL
        while (lease := await self._locks.try_acquire(name)) is None:
            waited = True
            await asyncio.sleep(interval)
            interval = min(interval * 2, PAGE_LOCK_MAX_POLL)
        return lease, waited

    async def _fetch_page(self, name: str, current: PageRecord | None) -> tuple[PageRecord, CacheResult]:
        try:
            parts = await self._resolve(name, current)
        except UpstreamError as exc:
            if current is not None:
                log.warning("upstream failure, serving the stale page of %s: %s", name, exc)
                return current, CacheResult.STALE
            log.warning("upstream failure, no cached page of %s to serve: %s", name, exc)
            raise UpstreamFailed(f"No cached copy of {name} and the upstream failed: {exc}") from exc
        now = time.time()
        cooldowns = {c.name: c.upstream.cooldown for c in self.clients}
        if sum(len(p.project.files) for p in parts) > BIG_FILES:  # tens of milliseconds: not on the loop
            served, same = await asyncio.to_thread(_served, parts, cooldowns, now, current)
        else:
            served, same = _served(parts, cooldowns, now, current)
        if current is not None and same:
            record = PageRecord(name, parts, current.served, now, current.changed_at)
            how = CacheResult.REVALIDATED
        else:
            # Last-Modified has one-second resolution: a change must move it by at least that,
            # or a client's If-Modified-Since would wrongly get 304 for the new page.
            changed = max(now, current.changed_at + 1) if current is not None else now
            record = PageRecord(name, parts, served, now, changed)
            how = CacheResult.MISS
        if (current is not None and current.found) != record.found:
            self._listing += 1
        return record, how

    async def _resolve(self, name: str, current: PageRecord | None) -> tuple[UpstreamPart, ...]:
        previous = {p.upstream: p for p in current.parts} if current else {}
        parts: list[UpstreamPart] = []
        for client in self.clients:
            before = previous.get(client.name)
            result = await client.fetch_page(name, before.validators if before else None)
            if isinstance(result, PageUnchanged) and before is not None:
                parts.append(before)
            elif isinstance(result, PageFound):
                parts.append(UpstreamPart(client.name, result.project, result.validators, result.document))
            elif isinstance(result, PageMissing):
                continue
            if parts and not self.settings.merges(name):
                break
        return tuple(parts)

    async def serves(self, name: NormalizedName) -> str | None:
        """The upstream that serves a project of this name, or None (UpstreamFailed if that
        cannot be known now). What the shadowing guard of uploads asks."""
        try:
            answer = await self.page(name)
        except NotCached:
            return None
        if answer is None or answer.page.record is None:
            return None
        parts = answer.page.record.parts
        return parts[0].upstream if parts else "an upstream"

    # --- files ---

    def source_of(self, record: PageRecord, filename: str) -> tuple[File, UpstreamClient | None] | None:
        """The upstream file entry behind a filename on a served page, and who serves it (offline:
        nobody; the upstream need not even be configured, as after importing a bundle)."""
        served = record.served.file(filename) if record.served is not None else None
        if served is None:
            return None
        if self.offline:
            return served, None
        for part in record.parts:
            # The very entry the page lists: with merging, another upstream's file of the same
            # name may be hidden (by cooldown or priority) and must not be the one served.
            if part.project.file(filename) == served and part.upstream in self._by_name:
                return served, self._by_name[part.upstream]
        # A page imported from a bundle names the exporting side's upstreams: what it lists is
        # served from the cache (the blob is addressed by the listed entry's own hash).
        return served, None

    async def file(self, query: FileQuery, answer: PageAnswer) -> FileAnswer:
        assert answer.page.record is not None
        source = self.source_of(answer.page.record, query.filename)
        if source is None:
            if self.offline:
                raise NotCached(f"{query.filename} is not in this mirror (tidegate is offline).")
            raise NotFound(f"{query.filename} is not a file of project {query.project}.")
        upstream_file, client = source
        if query.part is Part.PROVENANCE:
            return BytesAnswer(await self.provenance(upstream_file, client), "application/json", immutable=False)
        if query.part is Part.METADATA:
            body, how = await self.metadata(upstream_file, client)
            return BytesAnswer(body, "application/octet-stream", how=how)
        key = blob_key(upstream_file)
        etag, content_type = f'"{key}"', content_type_of(query.filename)
        fh = await self._blobs.open(key)
        if fh is not None:
            return BlobAnswer(fh, etag, content_type, CacheResult.HIT)
        if self.offline or client is None:
            raise NotCached(f"{query.filename} is not cached and tidegate is offline." if self.offline else
                            f"{query.filename} is not cached, and the upstream it came from is not configured here.")
        ranged = query.range if query.if_range is None or query.if_range.strip() == etag else None
        if query.head or ranged:
            size = upstream_file.size if upstream_file.size is not None else await self._size(upstream_file, client)
            if size is not None and query.head:
                return UncachedAnswer(size, etag, content_type)
            wanted = parse_range(ranged, size) if size is not None and ranged else None
            if isinstance(wanted, tuple):
                download = await self.downloads.start(key, upstream_file, client)  # the rest follows
                first, last = wanted
                return UncachedAnswer(size, etag, content_type, self._range(download, client, first, last), first, last)
            # No size, or a range to refuse or to ignore: as for the whole committed file.
            return await self._committed(upstream_file, client, key, etag, content_type)
        return StreamAnswer(await self.downloads.start(key, upstream_file, client))

    async def _committed(self, file: File, client: UpstreamClient, key: str, etag: str, content_type: str) -> BlobAnswer:
        """The file once downloaded whole: exact Content-Length, ranges and 416 come from it."""
        download = await self.downloads.start(key, file, client)
        try:
            await asyncio.shield(download.result)  # shared with other clients: never cancel it
        except DownloadFailed as exc:
            raise failed_download(file, exc) from None
        fh = await self._blobs.open(key)
        if fh is None:
            raise Unavailable(f"{file.filename} was evicted from the cache while being fetched; try again.")
        return BlobAnswer(fh, etag, content_type, CacheResult.MISS)

    async def _size(self, file: File, client: UpstreamClient) -> int | None:
        try:
            return await client.size_of(file.url)
        except UpstreamError as exc:  # the file itself may still download: only its size is unknown
            log.warning("upstream failure, size of %s unknown: %s", file.filename, exc)
            return None

    async def _range(self, download: Download, client: UpstreamClient, first: int, last: int) -> AsyncIterator[bytes]:
        """Bytes first..last: from the download if it has them already, else from the upstream's
        own range, else (an upstream that ignores ranges) from the download as it arrives."""
        if download.written <= last and not download.result.done():
            async with client.stream(download.file.url, {"Range": f"bytes={first}-{last}"}) as response:
                if response.status == 206 and response.headers.get("Content-Range", "").strip().startswith(
                        f"bytes {first}-{last}/"):
                    remaining = last - first + 1
                    try:
                        async for chunk in response.content.iter_chunked(CHUNK):
                            yield chunk[:remaining]
                            remaining -= len(chunk)
                            if remaining <= 0:
                                return
                    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                        raise DownloadFailed(f"{download.file.filename}: range interrupted: {exc}") from exc
                    raise DownloadFailed(f"{download.file.filename}: the upstream's range ended early")
        async for chunk in download.follow(first, last + 1):
            yield chunk

    # --- PEP 740 provenance ---

    async def provenance(self, file: File, client: UpstreamClient | None) -> bytes:
        """The upstream's provenance object of a file: fetched once, checked to be about this
        very file, then served from the cache (so offline too)."""
        if file.provenance is None:
            raise NotFound(f"No provenance is available for {file.filename}.")
        key = "provenance-" + blob_key(file)
        cached = await self._pages.load_metadata(key)
        if cached is not None:
            return cached
        if self.offline or client is None:
            raise NotCached(f"The provenance of {file.filename} is not cached and tidegate is offline.")
        try:
            status, _, body = await client.fetch_bytes(file.provenance, METADATA_LIMIT)
        except UpstreamError as exc:
            raise _failed(f"Could not get the provenance of {file.filename} from upstream: {exc}") from None
        if status != 200:
            raise _failed(f"{client.name} answered {status} for the provenance of {file.filename}.")
        try:
            check_provenance(body, file.filename, file.sha256)
        except ValueError as exc:
            raise _failed(f"{client.name}'s provenance of {file.filename} is unusable: {exc}") from None
        await self._keep_metadata(key, body)
        return body

    # --- PEP 658 metadata ---

    async def metadata(self, file: File, client: UpstreamClient | None) -> tuple[bytes, CacheResult]:
        """The file's core metadata, and whether it was cached."""
        if not file.is_wheel and not file.core_metadata:
            raise NotFound(f"No metadata file is available for {file.filename}.")
        key = blob_key(file)
        cached = await self._pages.load_metadata(key)
        if cached is not None:
            return cached, CacheResult.OFFLINE if self.offline else CacheResult.HIT
        try:
            found = await self._flights.run(("metadata", key), lambda: self._find_metadata(file, client, key))
            return found, CacheResult.MISS
        except DownloadFailed as exc:  # logged by the download
            raise failed_download(file, exc) from None
        except UpstreamError as exc:
            raise _failed(f"Could not get the metadata of {file.filename} from upstream: {exc}") from None
        except MetadataError as exc:
            raise _failed(f"The upstream's {file.filename} is not a valid wheel: {exc}") from None

    async def _find_metadata(self, file: File, client: UpstreamClient | None, key: str) -> bytes:
        metadata = None
        if file.core_metadata and client is not None and not self.offline:
            metadata = await self._upstream_metadata(file, client)
        if metadata is None and file.is_wheel:
            if await self._blobs.exists(key):
                metadata = await self._metadata_from_blob(file)
            elif self.offline or client is None:
                raise NotCached(f"The metadata of {file.filename} is not cached and tidegate is offline.")
            else:
                metadata = await self._ranged_metadata(file, client)
            _check_digests(metadata, file.core_metadata, f"the metadata extracted from {file.filename}")
        if metadata is None:
            raise NotCached(f"No metadata is available for {file.filename}.")
        await self._keep_metadata(key, metadata)
        return metadata

    async def _keep_metadata(self, key: str, body: bytes) -> None:
        try:
            await self._pages.store_metadata(key, body)
        except OSError as exc:  # a full disk, say: served all the same, just not kept
            log.warning("could not store %s: %s", key, exc)

    async def _metadata_from_blob(self, file: File) -> bytes:
        fh = await self._blobs.open(blob_key(file))
        if fh is None:  # evicted just now
            raise Unavailable(f"{file.filename} left the cache before its metadata was read; try again.")
        with fh:
            return await asyncio.to_thread(read_wheel_metadata_from_file, fh, file.filename)

    async def _upstream_metadata(self, file: File, client: UpstreamClient) -> bytes | None:
        status, _, body = await client.fetch_bytes(file.url + ".metadata", METADATA_LIMIT)
        if status != 200:
            return None
        _check_digests(body, file.core_metadata, f"{client.name}'s metadata of {file.filename}")
        return body

    async def _ranged_metadata(self, file: File, client: UpstreamClient) -> bytes:
        """Read METADATA out of a remote wheel with two Range requests (zip directory, member);
        download the whole wheel, once, when the upstream answers the first range with all of it."""
        async with client.stream(file.url, {"Range": f"bytes=-{TAIL_SIZE}"}) as response:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if response.status == 206 and match is not None:
                tail = await client.read_body(response, TAIL_SIZE)
            elif response.status == 200:  # no range support: this answer is the download
                download = await self.downloads.start(blob_key(file), file, client, response=response)
                await asyncio.shield(download.result)
                return await self._metadata_from_blob(file)
            else:
                raise UpstreamError(f"{client.name} answered {response.status} for {file.filename}")
        tail_start, total = int(match.group(1)), int(match.group(3))

        async def read(offset: int, length: int) -> bytes:
            if offset >= tail_start and offset + length <= total:
                return tail[offset - tail_start : offset - tail_start + length]
            rng = f"bytes={offset}-{offset + length - 1}"
            status, _, body = await client.fetch_bytes(file.url, length, {"Range": rng}, expect=206)
            if status != 206 or len(body) != length:
                raise UpstreamError(f"{client.name}: bad answer to a range request for {file.filename}")
            return body

        return await read_wheel_metadata(read, total, file.filename)

    async def flush(self) -> None:
        """Wait until the pages fetched so far are stored."""
        await asyncio.gather(*self._storing, return_exceptions=True)

    async def close(self) -> None:
        await self.flush()
        await self.downloads.close()


def _served(parts: tuple[UpstreamPart, ...], cooldowns: dict[str, float], now: float,
            current: PageRecord | None) -> tuple[Project | None, bool]:
    """What the page shows, and whether that is what `current` showed."""
    served = combine([(p.project, cooldowns[p.upstream]) for p in parts], now) if parts else None
    return served, current is not None and current.served == served


def failed_download(file: File, exc: DownloadFailed) -> ReadError:
    if exc.full:
        return StorageFull(f"{file.filename} is not cached and tidegate's storage is full; try again once space is freed.")
    if exc.storing:  # the upstream did its part; the store (a disk, a bucket) failed, which passes
        return Unavailable(f"{file.filename} was downloaded, but tidegate could not store it ({exc}); "
                           "try again in a moment.")
    return UpstreamFailed(f"Downloading {file.filename} from upstream failed: {exc}")


def _failed(message: str) -> UpstreamFailed:
    """The refusal for an upstream failure, logged once here with its reason."""
    log.warning("upstream failure: %s", message)
    return UpstreamFailed(message)


def _check_digests(body: bytes, expected: object, what: str) -> None:
    """Metadata must match the hashes the page advertises for it, or pip rejects it."""
    for name, digest in (expected.items() if isinstance(expected, dict) else ()):
        if name in hashlib.algorithms_available and hashlib.new(name, body).hexdigest() != digest:
            raise UpstreamError(f"{what} does not match its advertised {name}")
