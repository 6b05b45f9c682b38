"""Downloading a file from an upstream once, while any number of clients stream it.

One download per blob key across all workers: the worker that takes the key's lock fetches into
the blob store's shared temp path for the key; other workers, and other requests in the same
worker, follow that file as it grows. A reader never receives the last byte until the whole file
has been verified against the upstream's size and hashes and committed (or, below, verified on
local disk), so a client can only ever see a complete, verified file or a transfer that fails
(short of its Content-Length).

A store whose commit() is slow (S3: it waits for the upload's tail, or all of it on a retry)
says so with `serve_before_commit`. Then this worker's readers get the last byte as soon as the
whole file is in the temp file, fsynced and verified, and commit() finishes after, still inside
run(), under the key's lock (single-flight holds until the blob is in S3). Why that is safe:
- The bytes served are the verified temp file, and commit() uploads and then renames that very
  file into the local tier, so the tier holds the verified bytes. Readers that opened the temp
  file keep reading it across the rename (same inode); one that opens it after the rename finds
  it gone, waits for the result and reads the committed blob.
- Nothing is visible to anyone else early: other workers and instances follow the lock and
  info(), which sees only a committed blob (commit() puts it in S3 before the tier), never the
  temp file's end.
- The commit fails, or this instance dies before it ends: the multipart upload is never
  completed (invisible), the temp file is removed (by run(), or swept by recover() at the next
  start), the lock is released (or dropped with the dead process and its PostgreSQL session),
  and the next request downloads the file again. The client that got its bytes lost nothing; the
  cache only missed a file. A request that joins in the instant after such a failure, once the
  temp file is gone, is refused with the reason: a 503 that names the store, not a 502 that
  blames the upstream (DownloadFailed.storing).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from typing import AsyncIterator, BinaryIO

import aiohttp

from ..simple.model import File
from ..storage import BlobStore, Locks
from ..storage.full import FULL_MESSAGE, disk_full, has_room
from ..storage.protocols import Lease
from ..upstream.client import UpstreamClient, UpstreamError
from .keys import lock_name
from .sink import HashingSink

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
WATCH_INTERVAL = 0.01  # seconds between looks at another worker's download on this host
WATCH_MAX_INTERVAL = 0.5  # at most this long between looks at a download on another host
COMMIT_GRACE = 3.0  # seconds a closing worker waits for uploads of files it has served (< process.KILL_GRACE)


class DownloadFailed(Exception):
    def __init__(self, message: str, *, full: bool = False, storing: bool = False) -> None:
        super().__init__(message)
        self.full = full  # failed because the disk is full (a 507, not the upstream's fault)
        self.storing = storing  # the upstream's bytes were verified; keeping them failed (a 503)


class Download:
    def __init__(self, key: str, file: File, blobs: BlobStore) -> None:
        self.key = key
        self.blobs = blobs
        self.file = file
        self.temp = blobs.temp_path(key, shared=True)
        self.size: int | None = file.size
        self.written = 0
        self.verified = False  # verified in the temp file, its readers free to take the last byte (serve_before_commit)
        self.storing = False  # the file was verified and is being committed to the store
        self.started = asyncio.Event()  # the temp file exists and size is known (or never will be)
        self.result: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._progress = asyncio.Event()

    def _notify(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def run(self, client: UpstreamClient, lease: Lease, response: aiohttp.ClientResponse | None) -> None:
        """Fetch, verify and commit the file, holding the key's lock throughout. `response`:
        an upstream answer of the whole file already open (a range request the upstream
        answered with the whole file), read instead of asking again."""
        try:
            if self.size is not None and not await asyncio.to_thread(has_room, self.temp.parent, self.size):
                raise DownloadFailed(f"no room for {self.file.filename} ({self.size} bytes): {FULL_MESSAGE}",
                                     full=True)
            if response is not None:
                await self._receive(client, response)
            else:
                async with client.stream(self.file.url) as opened:
                    await self._receive(client, opened)
        except asyncio.CancelledError:  # shutting down
            self.temp.unlink(missing_ok=True)
            self.result.cancel()
            raise
        except Exception as exc:  # any failure: nothing is committed, readers fail
            self.temp.unlink(missing_ok=True)
            message = str(exc) if isinstance(exc, (UpstreamError, DownloadFailed)) else f"{type(exc).__name__}: {exc}"
            if self.verified:  # its readers got every byte: only the cache lost it
                log.warning("%s was served but not kept (downloaded again when next asked for): %s",
                            self.file.filename, message)
            else:
                log.warning("download of %s failed: %s", self.file.filename, message)
            self.result.set_exception(DownloadFailed(message, full=disk_full(exc) or getattr(exc, "full", False),
                                                     storing=self.storing))
            self.result.exception()  # mark retrieved: a download nobody waits for is not an error
        else:
            self.result.set_result(None)
        finally:
            await lease.release()
            self.started.set()
            self._notify()

    async def watch(self, locks: Locks, client: UpstreamClient) -> None:
        """Follow a download another process holds the lock for. On this host, its part file's
        growth is our progress (looked at every WATCH_INTERVAL); a holder on another host has
        no part file here, so only the committed blob counts, asked for less and less often (up
        to WATCH_MAX_INTERVAL: a HEAD per follower every 10 ms would hammer a shared store). The
        lock freed without a blob means the holder failed or died: take the lock and download
        the file here."""
        interval = WATCH_INTERVAL
        try:
            while True:
                info = await self.blobs.info(self.key)
                if info is not None:
                    self.written = info.size
                    self.result.set_result(None)
                    return
                try:
                    size = os.stat(self.temp).st_size
                    self.started.set()
                    interval = WATCH_INTERVAL
                    if size != self.written:
                        self.written = size
                        self._notify()
                except FileNotFoundError:  # not begun yet, or begun on another host
                    interval = min(interval * 2, WATCH_MAX_INTERVAL)
                lease = await locks.try_acquire(lock_name(self.key))
                if lease is not None:  # the holder finished, failed or died
                    if await self.blobs.exists(self.key):
                        await lease.release()
                        continue  # committed just now: info() says so on the next turn
                    log.info("taking over the download of %s: its holder let go without committing it",
                             self.file.filename)
                    self.written = 0  # the part file, if any, is written again from its start
                    await self.run(client, lease, None)
                    return
                await asyncio.sleep(interval)
        except asyncio.CancelledError:
            if not self.result.done():
                self.result.cancel()
            raise
        except Exception as exc:  # the shared store or the locks failed us: readers fail
            if not self.result.done():
                self.result.set_exception(DownloadFailed(f"following the download of {self.file.filename} failed: "
                                                         f"{exc}"))
                self.result.exception()
        finally:
            self.started.set()
            self._notify()

    async def _receive(self, client: UpstreamClient, response: aiohttp.ClientResponse) -> None:
        if response.status != 200:
            raise DownloadFailed(f"{client.name} answered {response.status} for {self.file.filename}")
        length = response.content_length
        if self.size is not None and length is not None and length != self.size:
            raise DownloadFailed(f"{self.file.filename}: upstream sent {length} bytes, its index says {self.size}")
        self.size = self.size if self.size is not None else length
        sink = HashingSink(self.temp, {n for n in self.file.hashes if n in hashlib.algorithms_available})
        self.blobs.upload_as_written(self.temp, self.key)
        self.started.set()
        try:
            async for chunk in response.content.iter_chunked(CHUNK):
                await sink.write(chunk)
                self.written += len(chunk)
                if self.size is not None and self.written > self.size:
                    raise DownloadFailed(f"{self.file.filename}: upstream sent more than {self.size} bytes")
                self._notify()
            digests = await sink.finish()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            await sink.abort()
            raise DownloadFailed(f"{self.file.filename}: download interrupted: {exc}") from exc
        except BaseException:
            await sink.abort()
            raise
        if self.size is not None and self.written != self.size:
            raise DownloadFailed(f"{self.file.filename}: truncated: {self.written} of {self.size} bytes")
        for name, expected in self.file.hashes.items():
            if name in digests and digests[name] != expected:
                raise DownloadFailed(f"{self.file.filename}: {name} mismatch, the upstream sent other bytes than its index lists")
        self.size = self.written
        self.storing = True  # from here on a failure is the store's, not the upstream's
        if self.blobs.serve_before_commit:
            self.verified = True  # readers may take the last byte now (see the module's doc)
            self._notify()
        await self.blobs.commit(self.temp, self.key)

    async def follow(self, start: int = 0, stop: int | None = None) -> AsyncIterator[bytes]:
        """The file's bytes [start, stop) as they arrive. The file's final byte comes only once
        the whole file is verified and committed (only verified: see serve_before_commit); a
        range that ends before it is sent as soon as it has arrived (a part cannot be verified,
        just as an upstream's range cannot)."""
        await self.started.wait()
        fh: BinaryIO | None
        try:
            fh = open(self.temp, "rb")
        except FileNotFoundError:
            # Finished before we opened it: committed (read the blob) or failed.
            await self.result
            fh = await self.blobs.open(self.key)
            if fh is None:
                raise DownloadFailed(f"{self.file.filename} left the cache as it was committed; try again")
        with fh:
            sent = start
            while True:
                progress = self._progress
                done = self.result.done()
                if done and not self.verified and self.result.exception() is not None:
                    raise self.result.exception()  # (once verified, a failed commit costs readers nothing)
                complete = done or self.verified
                before_end = stop is not None and self.size is not None and stop < self.size
                limit = self.written if complete or before_end else self.written - 1  # hold back until verified
                if stop is not None:
                    limit = min(limit, stop)
                while sent < limit:
                    chunk = os.pread(fh.fileno(), min(CHUNK, limit - sent), sent)
                    if not chunk:
                        break
                    sent += len(chunk)
                    yield chunk
                if done or (stop is not None and sent >= stop) or (self.verified and sent >= self.written):
                    return
                await progress.wait()


class Downloads:
    """The downloads in progress in this process, one per blob key (single-flight)."""

    def __init__(self, blobs: BlobStore, locks: Locks) -> None:
        self.blobs = blobs
        self._locks = locks
        self._active: dict[str, Download] = {}
        self._tasks: dict[asyncio.Task, Download] = {}

    async def start(self, key: str, file: File, client: UpstreamClient,
                    response: aiohttp.ClientResponse | None = None) -> Download:
        """The download of key, started now unless one is in progress (in this worker: joined;
        in another: followed). `response`: see Download.run."""
        download = self._active.get(key)
        if download is not None:
            return download
        download = Download(key, file, self.blobs)
        self._active[key] = download  # before any await: concurrent callers join this one
        try:
            lease = await self._locks.try_acquire(lock_name(key))
            committed = await self.blobs.info(key) if lease is not None else None
        except BaseException:
            self._active.pop(key, None)
            raise
        if lease is None:
            work = download.watch(self._locks, client)  # another worker or instance is fetching it
        elif committed is not None:  # another worker committed it just now
            await lease.release()
            self._active.pop(key, None)
            download.size = download.written = committed.size
            download.result.set_result(None)
            download.started.set()
            return download
        else:
            work = download.run(client, lease, response)
        task = asyncio.ensure_future(work)
        self._tasks[task] = download
        task.add_done_callback(lambda t, key=key: (self._active.pop(key, None), self._tasks.pop(t, None)))
        return download

    async def close(self) -> None:
        """Cancel the downloads in progress; those already served and being committed (see
        serve_before_commit) get up to COMMIT_GRACE to finish, so a restart does not throw away
        the files its last clients fetched (the process is killed KILL_GRACE after its requests)."""
        committing = [task for task, download in self._tasks.items() if download.verified]
        if committing:
            await asyncio.wait(committing, timeout=COMMIT_GRACE)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
