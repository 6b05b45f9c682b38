"""Blobs in an S3-compatible bucket, with a bounded local disk tier in front (a FileBlobStore).

Objects live at s3://BUCKET/PREFIX/<kind>/<key> (kind: "cache" or "local"). Writers still
write a local temp file (the tier's); commit() uploads it to its final key with an
x-amz-checksum-sha256 the server verifies (per part for a multipart upload), then keeps the file
in the tier. Visibility needs no temporary key: a single PUT is atomic in S3, and the parts of a
multipart upload stay invisible until CompleteMultipartUpload, so the final key only ever holds
whole, server-verified bytes; a copy from a temporary key would move every byte twice for the
same guarantee. Keys are content addresses, so two writers of one key write the same bytes.

open() serves from the tier, or first fills the tier from one streamed GET (bounded memory),
verifying the sha256 against the key before anything is served. The bucket is never
LRU-evicted by tidegate (files_max_size does not apply): bound it with a lifecycle rule; the
tier is bounded by local_cache_size.

Every failure to reach the server, or an answer other than "not found", raises
EngineUnavailable("S3", reason), which the web layer answers with a 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from .awsfiles import shared_settings
from .blobs import FileBlobStore
from .errors import EngineUnavailable
from .records import BlobInfo

try:
    import obstore
    from obstore.exceptions import NotFoundError
    from obstore.store import S3Store
except ImportError:  # pragma: no cover - exercised by the settings check
    obstore = None  # type: ignore[assignment]
    NotFoundError = FileNotFoundError  # type: ignore[misc,assignment]

NOT_FOUND = (NotFoundError, FileNotFoundError)  # obstore raises the builtin one for a 404

MISSING_CLIENT = "blob_store = s3://... needs the S3 client: pip install 'tidegate[s3]'"
PART_SIZE = 8 * 1024 * 1024  # multipart above this; memory per upload: PART_SIZE x PARTS_AT_ONCE
PARTS_AT_ONCE = 4
READ_CHUNK = 1024 * 1024
USAGE_REFRESH = 300.0  # seconds between LISTs that re-count the bucket (other instances' commits)
PROBE_TTL = 5.0  # seconds a readiness answer is reused
SHA256_KEY = re.compile(r"[0-9a-f]{64}")
STREAM_POLL = 0.01  # seconds between looks at a growing temp file


class _Abandoned(Exception):
    """A streamed upload that must not complete."""


class _Stream:
    def __init__(self, temp: Path, key: str) -> None:
        self.temp, self.key = temp, key
        self.final: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Future[bool]


def parse_blob_store(url: str) -> tuple[str, str]:
    """(bucket, prefix) of "s3://BUCKET/PREFIX"; ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"blob_store must be s3://BUCKET/PREFIX, not {url!r}")
    return parts.netloc, parts.path.strip("/")


def make_s3_client(bucket: str, prefix: str, endpoint_url: str | None) -> Any:
    """One S3 client for a bucket and prefix; credentials and region from the AWS environment
    variables (read by obstore) and the AWS shared files (read here: obstore does not)."""
    if obstore is None:
        raise RuntimeError(MISSING_CLIENT)
    options: dict[str, Any] = {"connect_timeout": timedelta(seconds=3), "timeout": timedelta(minutes=30)}
    config: dict[str, Any] = {"checksum_algorithm": "SHA256", **shared_settings()}
    if endpoint_url:
        config["endpoint"] = endpoint_url
        options["allow_http"] = endpoint_url.startswith("http://")
    if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or config.get("region")):
        config["region"] = "us-east-1"  # S3-compatible servers ignore it; AWS itself redirects
    # A few quick retries: a server that stays down must become a 503 in seconds, not minutes.
    retry = {"max_retries": 2, "retry_timeout": timedelta(seconds=10),
             "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2), "base": 2}}
    return S3Store(bucket, prefix=prefix or None, client_options=options, retry_config=retry, **config)


def unavailable(exc: Exception) -> EngineUnavailable:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return EngineUnavailable("S3", reason[:300])


class S3BlobStore:
    serve_before_commit = True  # commit() waits for the upload: a verified download is served first

    def __init__(self, client: Any, kind: str, tier_root: Path, tier_size: int | None) -> None:
        self._s3 = client
        self._kind = kind
        self.tier = FileBlobStore(tier_root, tier_size)
        self.max_size = None  # the bucket is bounded by its lifecycle rules, not by tidegate
        self._sizes: dict[str, int] | None = None  # what the bucket holds, as of the last LIST
        self._counted_at = 0.0
        self._recount: asyncio.Task | None = None
        self._fills: dict[str, asyncio.Future[None]] = {}
        self._probed: tuple[float, str | None] = (0.0, None)
        self._streams: dict[Path, _Stream] = {}

    def _path(self, key: str) -> str:
        return f"{self._kind}/{key}"

    async def close(self) -> None:
        if self._recount is not None:
            self._recount.cancel()
        for stream in self._streams.values():
            stream.task.cancel()
        await self.tier.close()

    # --- reading ---

    async def open(self, key: str) -> BinaryIO | None:
        fh = await self.tier.open(key)
        if fh is not None:
            return fh
        fill = self._fills.get(key)
        if fill is None:  # one GET per key at a time in this process
            fill = self._fills[key] = asyncio.ensure_future(self._fill(key))
            fill.add_done_callback(lambda _, key=key: self._fills.pop(key, None))
        try:
            await asyncio.shield(fill)
        except NOT_FOUND:
            return None
        return await self.tier.open(key)

    async def _fill(self, key: str) -> None:
        """Copy the object into the tier, verified against its key when that is a sha256."""
        temp = self.tier.temp_path(key)
        try:
            try:
                result = await obstore.get_async(self._s3, self._path(key))
                digest = hashlib.sha256()
                with open(temp, "wb") as out:
                    async for chunk in result.stream(min_chunk_size=READ_CHUNK):
                        digest.update(chunk)
                        await asyncio.to_thread(out.write, chunk)
                    await asyncio.to_thread(os.fsync, out.fileno())
            except NOT_FOUND:
                raise
            except Exception as exc:
                raise unavailable(exc) from exc
            if SHA256_KEY.fullmatch(key) and digest.hexdigest() != key:
                raise EngineUnavailable("S3", f"object {self._path(key)} does not hash to its key")
            await self.tier.commit(temp, key)
        finally:
            temp.unlink(missing_ok=True)

    async def _head(self, key: str) -> dict | None:
        try:
            return await obstore.head_async(self._s3, self._path(key))
        except NOT_FOUND:
            return None
        except Exception as exc:
            raise unavailable(exc) from exc

    async def exists(self, key: str) -> bool:
        """Without a request when the key is on local disk or in the last LIST (blobs are
        immutable; a page of thousands of files served offline asks for each)."""
        if await self.tier.exists(key) or (self._sizes is not None and key in self._sizes):
            return True
        return await self._head(key) is not None

    async def info(self, key: str) -> BlobInfo | None:
        local = await self.tier.info(key)
        if local is not None:
            return local
        meta = await self._head(key)
        return None if meta is None else BlobInfo(meta["size"], meta["last_modified"].timestamp())

    # --- writing ---

    def temp_path(self, key: str, *, shared: bool = False) -> Path:
        return self.tier.temp_path(key, shared=shared)

    def upload_as_written(self, temp: Path, key: str) -> None:
        """Start uploading `temp` while its writer still appends to it (a download from an
        upstream), so commit() waits only for the tail, not for the whole file again."""
        stream = _Stream(temp, key)
        stream.task = asyncio.ensure_future(self._stream(stream))
        stream.task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._streams[temp] = stream

    async def _stream(self, stream: _Stream) -> bool:
        """Follow the temp file's growth into a multipart upload; complete it only once commit()
        gave the final size and the bytes sent hash to the key, else abort it (raising inside
        the writer's context aborts the upload: nothing becomes visible). True if completed."""
        with open(stream.temp, "rb") as fh:
            inode = os.fstat(fh.fileno()).st_ino
            digest, sent = hashlib.sha256(), 0
            try:
                async with obstore.open_writer_async(self._s3, self._path(stream.key), buffer_size=PART_SIZE,
                                                     max_concurrency=PARTS_AT_ONCE) as writer:
                    while True:
                        size = os.fstat(fh.fileno()).st_size
                        if sent < size:
                            chunk = await asyncio.to_thread(os.pread, fh.fileno(), min(READ_CHUNK, size - sent), sent)
                            await writer.write(chunk)
                            digest.update(chunk)
                            sent += len(chunk)
                            continue
                        if stream.final.done():
                            if sent != stream.final.result() or (SHA256_KEY.fullmatch(stream.key)
                                                                 and digest.hexdigest() != stream.key):
                                raise _Abandoned("the bytes sent are not the file committed")
                            break
                        try:
                            if os.stat(stream.temp).st_ino != inode:
                                raise _Abandoned("the download was restarted")
                        except FileNotFoundError:
                            raise _Abandoned("the download failed") from None
                        await asyncio.sleep(STREAM_POLL)
            except _Abandoned:
                return False
            finally:  # a failed download never reaches commit(), which would forget it
                if self._streams.get(stream.temp) is stream:
                    del self._streams[stream.temp]
        return True

    async def commit(self, temp: Path, key: str) -> None:
        size = temp.stat().st_size
        stream = self._streams.pop(temp, None)
        streamed = False
        if stream is not None and stream.key == key:
            stream.final.set_result(size)
            try:
                streamed = await stream.task
            except Exception:  # the server failed it midway: one more try, whole, below
                streamed = False
        if not streamed:
            await self._put(temp, key)
        await self.tier.commit(temp, key)
        if self._sizes is not None:
            self._sizes[key] = size

    async def _put(self, temp: Path, key: str) -> None:
        try:
            await obstore.put_async(self._s3, self._path(key), temp, chunk_size=PART_SIZE,
                                    max_concurrency=PARTS_AT_ONCE)
        except Exception as exc:
            raise unavailable(exc) from exc

    async def commit_many(self, blobs: list[tuple[Path, str]]) -> None:
        """Each to the bucket (durable there once its PUT returns), then all to the disk tier at
        once (which syncs them there)."""
        sizes = {key: temp.stat().st_size for temp, key in blobs}
        for temp, key in blobs:
            await self._put(temp, key)
        await self.tier.commit_many(blobs)
        if self._sizes is not None:
            self._sizes.update(sizes)

    async def remove(self, key: str) -> None:
        try:
            await obstore.delete_async(self._s3, self._path(key))
        except NOT_FOUND:
            pass
        except Exception as exc:
            raise unavailable(exc) from exc
        await self.tier.remove(key)
        if self._sizes is not None:
            self._sizes.pop(key, None)

    async def _list(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        try:
            async for batch in obstore.list(self._s3, f"{self._kind}/", chunk_size=1000):
                for meta in batch:
                    sizes[meta["path"].rsplit("/", 1)[-1]] = meta["size"]
        except Exception as exc:
            raise unavailable(exc) from exc
        self._sizes, self._counted_at = sizes, time.monotonic()
        return sizes

    async def keys(self) -> list[str]:
        return list(await self._list())

    async def total_size(self) -> int:
        return sum((await self._list()).values())

    async def usage(self) -> tuple[int, int]:
        """From counts kept in memory: one LIST the first time, then one in the background every
        USAGE_REFRESH seconds (to see other instances' commits), never one per scrape."""
        if self._sizes is None:
            await self._list()
        elif time.monotonic() - self._counted_at > USAGE_REFRESH and (self._recount is None or self._recount.done()):
            self._recount = asyncio.ensure_future(self._list())
            self._recount.add_done_callback(lambda t: t.cancelled() or t.exception())
        sizes = self._sizes or {}
        return len(sizes), sum(sizes.values())

    async def recover(self) -> None:
        """Temp files are local (the tier's); an upload cut short by a crash left, at most, the
        parts of an uncompleted multipart upload, which are invisible (a lifecycle rule's
        AbortIncompleteMultipartUpload removes them)."""
        await self.tier.recover()

    async def probe(self) -> str | None:
        """Why the bucket cannot serve now, or None; a HEAD, reused for PROBE_TTL seconds."""
        at, answer = self._probed
        if time.monotonic() - at < PROBE_TTL:
            return answer
        try:
            await self._head(".tidegate-probe")
            answer = None
        except EngineUnavailable as exc:
            answer = str(exc)
        self._probed = (time.monotonic(), answer)
        return answer


def open_s3_blobs(blob_store: str, endpoint_url: str | None, tier_root: Path,
                  tier_size: int | None) -> tuple[S3BlobStore, S3BlobStore]:
    """(cache blobs, local blobs) in the bucket of `blob_store`, sharing one client and one
    local tier budget (split: a quarter for uploads, which clients fetch less often)."""
    bucket, prefix = parse_blob_store(blob_store)
    client = make_s3_client(bucket, prefix, endpoint_url)
    local_size = None if tier_size is None else tier_size // 4
    cache_size = None if tier_size is None else tier_size - local_size  # type: ignore[operator]
    return (S3BlobStore(client, "cache", tier_root / "cache", cache_size),
            S3BlobStore(client, "local", tier_root / "local", local_size))


__all__ = ["MISSING_CLIENT", "S3BlobStore", "open_s3_blobs", "parse_blob_store"]
