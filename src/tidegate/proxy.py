"""The read path: project pages, files and metadata files, from cache or from the upstreams.

Order of sources for a page: this worker's memory, the shared disk cache, then the upstreams in
priority order (first one that has the project wins, unless the configuration merges it).
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

from .cache.blobs import BlobStore
from .cache.downloads import Download, DownloadFailed, Downloads, FileLock, blob_key
from .cache.flight import SingleFlight
from .cache.pages import PageRecord, PageStore, Part, render
from .config import Settings
from .publish.index import LocalIndex
from .simple.model import File
from .upstream.client import PageFound, PageMissing, PageUnchanged, UpstreamClient, UpstreamError
from .upstream.policy import combine
from .wheelmeta import TAIL_SIZE, MetadataError, read_wheel_metadata, read_wheel_metadata_from_path

log = logging.getLogger(__name__)

NEGATIVE_TTL = 60.0  # an unknown project is asked about again after at most this long
PAGE_LOCK_POLL = 0.01  # seconds between tries for a page another worker is fetching
METADATA_TAIL = TAIL_SIZE  # first range read: enough for the zip end records and usually the directory
METADATA_LIMIT = 16 * 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class NotCached(Exception):
    """Offline and the thing asked for is not in the cache."""


class Proxy:
    def __init__(self, settings: Settings, pages: PageStore, blobs: BlobStore, clients: list[UpstreamClient],
                 local: LocalIndex | None = None) -> None:
        self.settings = settings
        self.local = local
        self.pages = pages
        self.blobs = blobs
        self.clients = clients
        self.downloads = Downloads(blobs)
        self._by_name = {c.name: c for c in clients}
        self._flights: SingleFlight = SingleFlight()

    # --- pages ---

    def is_fresh(self, record: PageRecord, now: float) -> bool:
        ttls = [self._by_name[p.upstream].upstream.ttl for p in record.parts if p.upstream in self._by_name]
        if not ttls:
            ttls = [min([c.upstream.ttl for c in self.clients] + [NEGATIVE_TTL])]
        return now - record.fetched_at < min(ttls)

    async def page(self, name: str, *, revalidate: bool = False) -> tuple[PageRecord | None, str]:
        """The record for a project and how we got it: local, hit, miss, revalidated, stale or offline.
        A local project shadows upstream projects of the same name entirely."""
        if self.local is not None and self.local.has(name):
            return self.local.page(name), "local"
        record = self.pages.get(name)
        if self.settings.offline or not self.clients:
            return record, "offline"
        if record is not None and not revalidate and self.is_fresh(record, time.time()):
            return record, "hit"
        return await self._flights.run(("page", name, revalidate), lambda: self._refresh(name, revalidate))

    async def _refresh(self, name: str, revalidate: bool) -> tuple[PageRecord | None, str]:
        """Refresh a page from the upstreams, once across all workers: the worker holding the
        page's lock asks upstream; the others wait and take what it stored."""
        asked = time.time()
        lock = FileLock(self.blobs.tmp / f"page-{name}.lock")
        while not lock.acquire():
            await asyncio.sleep(PAGE_LOCK_POLL)
        try:
            current = self.pages.load(name)  # another worker may have refreshed it meanwhile
            if current is not None and (current.fetched_at >= asked or not revalidate and self.is_fresh(current, time.time())):
                return current, "hit"
            return await self._fetch_page(name, current)
        finally:
            lock.release()

    async def _fetch_page(self, name: str, current: PageRecord | None) -> tuple[PageRecord | None, str]:
        try:
            parts = await self._resolve(name, current)
        except UpstreamError as exc:
            if current is not None:
                log.warning("serving stale page for %s: %s", name, exc)
                return current, "stale"
            raise
        now = time.time()
        cooldowns = {c.name: c.upstream.cooldown for c in self.clients}
        served = combine([(p.project, cooldowns[p.upstream]) for p in parts], now) if parts else None
        if current is not None and current.served == served:
            record = replace(current, parts=parts, fetched_at=now)
            status = "revalidated"
        else:
            # Last-Modified has one-second resolution: a change must move it by at least that,
            # or a client's If-Modified-Since would wrongly get 304 for the new page.
            changed = max(now, current.changed_at + 1) if current is not None else now
            record = PageRecord(name=name, parts=parts, served=served, fetched_at=now, changed_at=changed)
            render(record)
            status = "miss"
        await asyncio.to_thread(self.pages.put, record)
        return record, status

    async def _resolve(self, name: str, current: PageRecord | None) -> tuple[Part, ...]:
        previous = {p.upstream: p for p in current.parts} if current else {}
        parts: list[Part] = []
        for client in self.clients:
            before = previous.get(client.name)
            result = await client.fetch_page(name, before.validators if before else None)
            if isinstance(result, PageUnchanged) and before is not None:
                parts.append(before)
            elif isinstance(result, PageFound):
                parts.append(Part(client.name, result.project, result.validators))
            elif isinstance(result, PageMissing):
                continue
            if parts and not self.settings.merges(name):
                break
        return tuple(parts)

    # --- files ---

    def source_of(self, record: PageRecord, filename: str) -> tuple[File, UpstreamClient] | None:
        """The upstream file entry behind a filename on a served page, and who serves it."""
        served = record.served.file(filename) if record.served is not None else None
        if served is None:
            return None
        for part in record.parts:
            # The very entry the page lists: with merging, another upstream's file of the same
            # name may be hidden (by cooldown or priority) and must not be the one served.
            if part.project.file(filename) == served and part.upstream in self._by_name:
                return served, self._by_name[part.upstream]
        return None

    def start_download(self, file: File, client: UpstreamClient) -> Download:
        if self.settings.offline:
            raise NotCached(f"{file.filename} is not cached and tidegate is offline")
        return self.downloads.start(blob_key(file), file, client)

    async def fetch_file(self, file: File, client: UpstreamClient) -> None:
        """Make sure a file is in the blob store (downloading it whole if needed)."""
        key = blob_key(file)
        if self.blobs.exists(key):
            return
        download = self.start_download(file, client)
        await asyncio.shield(download.result)

    # --- PEP 658 metadata ---

    async def metadata(self, file: File, client: UpstreamClient) -> bytes:
        key = blob_key(file)
        cached = self.pages.get_metadata(key)
        if cached is not None:
            return cached
        return await self._flights.run(("metadata", key), lambda: self._find_metadata(file, client, key))

    async def _find_metadata(self, file: File, client: UpstreamClient, key: str) -> bytes:
        metadata = None
        if file.core_metadata and not self.settings.offline:
            metadata = await self._upstream_metadata(file, client)
        if metadata is None and file.is_wheel:
            if self.blobs.exists(key):
                metadata = await self._metadata_from_blob(file)
            elif self.settings.offline:
                raise NotCached(f"metadata of {file.filename} is not cached and tidegate is offline")
            else:
                metadata = await self._ranged_metadata(file, client)
            _check_digests(metadata, file.core_metadata, f"the metadata extracted from {file.filename}")
        if metadata is None:
            raise NotCached(f"no metadata is available for {file.filename}")
        await asyncio.to_thread(self.pages.put_metadata, key, metadata)
        return metadata

    async def _metadata_from_blob(self, file: File) -> bytes:
        try:
            return await asyncio.to_thread(read_wheel_metadata_from_path, self.blobs.path(blob_key(file)), file.filename)
        except FileNotFoundError:  # evicted just now
            raise NotCached(f"{file.filename} left the cache before its metadata was read; try again") from None

    async def _upstream_metadata(self, file: File, client: UpstreamClient) -> bytes | None:
        status, _, body = await client.fetch_bytes(file.url + ".metadata", METADATA_LIMIT)
        if status != 200:
            return None
        _check_digests(body, file.core_metadata, f"{client.name}'s metadata of {file.filename}")
        return body

    async def _ranged_metadata(self, file: File, client: UpstreamClient) -> bytes:
        """Read METADATA out of a remote wheel with two Range requests (zip directory, member);
        download the whole wheel only when the upstream does not answer ranges."""
        status, headers, tail = await client.fetch_bytes(file.url, METADATA_TAIL, {"Range": f"bytes=-{METADATA_TAIL}"},
                                                         expect=206)
        match = _CONTENT_RANGE.fullmatch(headers.get("Content-Range", "").strip()) if status == 206 else None
        if match is None:
            if status not in (200, 206):
                raise UpstreamError(f"{client.name} answered {status} for {file.filename}")
            await self.fetch_file(file, client)  # no range support: the whole wheel, once
            return await self._metadata_from_blob(file)
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

    async def close(self) -> None:
        await self.downloads.close()


def _check_digests(body: bytes, expected: object, what: str) -> None:
    """Metadata must match the hashes the page advertises for it, or pip rejects it."""
    for name, digest in (expected.items() if isinstance(expected, dict) else ()):
        if name in hashlib.algorithms_available and hashlib.new(name, body).hexdigest() != digest:
            raise UpstreamError(f"{what} does not match its advertised {name}")


__all__ = ["DownloadFailed", "MetadataError", "NotCached", "Proxy"]
