"""One download per file across workers, streamed to followers, verified before commit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from support.fakeindex import Fault
from tidegate.cache.downloads import DownloadFailed, Downloads
from tidegate.cache.keys import blob_key
from tidegate.config import build
from tidegate.simple.model import File
from tidegate.storage.blobs import FileBlobStore
from tidegate.storage.locks import FileLocks
from tidegate.upstream.client import UpstreamClient

WHEEL = "demo_pkg-1.0-py3-none-any.whl"


@pytest.fixture
async def upstream(fake_index, dists):
    idx = await fake_index("negotiate")
    idx.index.add(dists.wheel("demo-pkg", "1.0", padding=300_000))
    return idx


@pytest.fixture
async def client(upstream) -> AsyncIterator[UpstreamClient]:
    settings = build({"upstreams": [{"url": upstream.url, "retries": 0}]})
    async with aiohttp.ClientSession() as session:
        yield UpstreamClient(settings.upstreams[0], session, settings.max_page_size)


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[Any]:
    """new() -> Downloads of another worker on the same storage."""
    opened: list[Any] = []

    def new() -> Downloads:
        blobs, locks = FileBlobStore(tmp_path / "blobs"), FileLocks(tmp_path / "locks")
        opened.append((blobs, locks))
        return Downloads(blobs, locks)

    yield new
    for blobs, locks in opened:
        await blobs.close()
        await locks.close()


def entry(upstream: Any) -> File:
    fake = upstream.index.file(WHEEL)
    return File(WHEEL, upstream.file_url(WHEEL), {"sha256": fake.real_sha256()}, size=fake.path.stat().st_size)


async def collect(download: Any) -> bytes:
    return b"".join([chunk async for chunk in download.follow()])


async def test_followers_never_get_the_last_byte_of_an_unverified_file(upstream, client, workers):
    upstream.index.faults[f"/files/{WHEEL}"] = Fault(corrupt=True, slow=0.001, chunk_size=32768)
    file = entry(upstream)
    download = await workers().start(blob_key(file), file, client)
    received = 0
    with pytest.raises(DownloadFailed, match="sha256 mismatch"):
        async for chunk in download.follow():
            received += len(chunk)
    assert 0 < received < file.size  # streamed as it came, but never complete
    assert not await download.blobs.exists(blob_key(file))


async def test_concurrent_requests_in_two_workers_make_one_download(upstream, client, workers):
    upstream.index.faults[f"/files/{WHEEL}"] = Fault(slow=0.001, chunk_size=32768)
    file = entry(upstream)
    first, second = workers(), workers()
    downloads = [await d.start(blob_key(file), file, client) for d in (first, second, first, second)]
    assert downloads[0] is downloads[2] and downloads[1] is downloads[3]  # one per worker
    bodies = await asyncio.gather(*(collect(d) for d in downloads))
    assert set(bodies) == {upstream.index.file(WHEEL).path.read_bytes()}
    assert upstream.index.requests[f"/files/{WHEEL}"] == 1


async def test_a_file_another_worker_committed_is_not_fetched_again(upstream, client, workers):
    file = entry(upstream)
    first = await workers().start(blob_key(file), file, client)
    await first.result
    again = await workers().start(blob_key(file), file, client)
    assert again.result.done() and await collect(again) == upstream.index.file(WHEEL).path.read_bytes()
    assert upstream.index.requests[f"/files/{WHEEL}"] == 1


async def test_a_short_upstream_answer_is_a_failure_and_leaves_nothing(upstream, client, workers, tmp_path):
    upstream.index.faults[f"/files/{WHEEL}"] = Fault(reset_after=1000)
    file = entry(upstream)
    download = await workers().start(blob_key(file), file, client)
    with pytest.raises(DownloadFailed):
        await download.result
    assert not any((tmp_path / "blobs" / "tmp").iterdir())


class OtherHostBlobs(FileBlobStore):
    """The same committed blobs seen from another host: its part files are in a temp dir of
    its own, as with a bucket shared by instances, so it cannot follow a download's growth.
    Counts its looks at the store."""

    def __init__(self, root: Path, temp: Path) -> None:
        super().__init__(root)
        self._host_tmp = temp
        temp.mkdir(parents=True, exist_ok=True)
        self.looks = 0

    def temp_path(self, key: str, *, shared: bool = False) -> Path:
        return self._host_tmp / f"{key}.part"

    async def info(self, key: str):
        self.looks += 1
        return await super().info(key)


async def test_a_follower_on_another_host_waits_for_the_commit_without_hammering_the_store(
        upstream, client, workers, tmp_path):
    upstream.index.faults[f"/files/{WHEEL}"] = Fault(slow=0.01, chunk_size=16384)  # ~0.2 s
    file = entry(upstream)
    holder = await workers().start(blob_key(file), file, client)
    blobs, locks = OtherHostBlobs(tmp_path / "blobs", tmp_path / "host-b"), FileLocks(tmp_path / "locks")
    try:
        follower = await Downloads(blobs, locks).start(blob_key(file), file, client)
        body = await collect(follower)
        assert holder.result.done()  # nothing came before the holder's commit
        assert body == upstream.index.file(WHEEL).path.read_bytes()
        assert upstream.index.requests[f"/files/{WHEEL}"] == 1
        assert blobs.looks < 15  # backed off: at 10 ms a look, a 0.2 s download would be 20+
    finally:
        await blobs.close()
        await locks.close()


async def test_a_follower_takes_over_the_download_of_a_holder_that_died(upstream, client, tmp_path):
    file = entry(upstream)
    dead = FileLocks(tmp_path / "locks")  # another instance, holding the lock, then killed
    assert await dead.try_acquire("download:" + blob_key(file)) is not None
    blobs, locks = OtherHostBlobs(tmp_path / "blobs", tmp_path / "host-b"), FileLocks(tmp_path / "locks")
    try:
        follower = await Downloads(blobs, locks).start(blob_key(file), file, client)
        await asyncio.sleep(0.2)
        assert not follower.result.done() and upstream.index.requests[f"/files/{WHEEL}"] == 0
        await dead.close()  # its locks go with its descriptor, as with a dead process's connection
        assert await collect(follower) == upstream.index.file(WHEEL).path.read_bytes()
        assert await blobs.exists(blob_key(file))
        assert upstream.index.requests[f"/files/{WHEEL}"] == 1
    finally:
        await blobs.close()
        await locks.close()



class FailingDisk(FileBlobStore):
    """A store whose disk fails (EIO) when a verified download is committed."""

    async def commit(self, temp: Path, key: str) -> None:
        raise OSError(5, "Input/output error")


async def test_a_file_that_cannot_be_stored_is_a_store_failure_not_the_upstreams(upstream, client, tmp_path):
    """The upstream sent the right bytes and keeping them failed: the refusal says so, 503 (it
    passes), not a 502 that blames the upstream; a transfer that breaks off still does."""
    from tidegate.readpath.errors import Unavailable
    from tidegate.readpath.upstream import failed_download

    file = entry(upstream)
    blobs, locks = FailingDisk(tmp_path / "blobs"), FileLocks(tmp_path / "locks")
    try:
        downloads = Downloads(blobs, locks)
        download = await downloads.start(blob_key(file), file, client)
        with pytest.raises(DownloadFailed) as failed:
            await download.result
        assert failed.value.storing and not failed.value.full
        refusal = failed_download(file, failed.value)
        assert isinstance(refusal, Unavailable) and refusal.status == 503
        assert "could not store it" in refusal.message and "Input/output error" in refusal.message
        assert "from upstream" not in refusal.message
        upstream.index.faults[f"/files/{WHEEL}"] = Fault(reset_after=1000)
        download = await Downloads(blobs, locks).start(blob_key(file), file, client)  # a new one, not the failed
        with pytest.raises(DownloadFailed) as failed:
            await download.result
        assert not failed.value.storing and failed_download(file, failed.value).status == 502
    finally:
        await blobs.close()
        await locks.close()
