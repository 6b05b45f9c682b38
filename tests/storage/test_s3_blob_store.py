"""What only the S3 blob store has: multipart uploads, the local tier, a server that goes away."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import obstore
import pytest

from tidegate.storage import EngineUnavailable
from tidegate.storage.s3blobs import PART_SIZE, S3BlobStore, make_s3_client

from test_blob_store import digest, put, read  # the contract suite, beside this file


@pytest.fixture
async def s3(seaweedfs, tmp_path):
    """new(tier_size=None, name=...): a store on this test's own prefix, with its own tier."""
    bucket, prefix = seaweedfs.bucket("s3tests"), uuid.uuid4().hex
    opened: list[S3BlobStore] = []

    def new(tier_size=None, name="a"):
        store = S3BlobStore(make_s3_client(bucket, prefix, seaweedfs.endpoint), "cache", tmp_path / name, tier_size)
        opened.append(store)
        return store

    new.server, new.bucket, new.prefix = seaweedfs, bucket, prefix
    yield new
    for store in opened:
        await store.close()


def big_file(path: Path, size: int) -> str:
    """A file of `size` random bytes, written a MiB at a time; its sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as fh:
        for _ in range(0, size, 1 << 20):
            chunk = os.urandom(min(1 << 20, size - fh.tell()))
            h.update(chunk)
            fh.write(chunk)
    return h.hexdigest()


ROUND_TRIP = """
import asyncio, hashlib, os, resource, sys
from pathlib import Path
from tidegate.storage.s3blobs import S3BlobStore, make_s3_client

async def main(endpoint, bucket, prefix, source, tiers):
    key = sys.argv[6]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the interpreter and the client, loaded
    writer = S3BlobStore(make_s3_client(bucket, prefix, endpoint), "cache", Path(tiers) / "w", None)
    temp = writer.temp_path(key)
    os.link(source, temp)
    await writer.commit(temp, key)
    reader = S3BlobStore(make_s3_client(bucket, prefix, endpoint), "cache", Path(tiers) / "r", None)
    fh = await reader.open(key)
    h = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        h.update(chunk)
    await writer.close(); await reader.close()
    print(h.hexdigest(), base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

asyncio.run(main(*sys.argv[1:6]))
"""


async def test_a_multipart_file_round_trips_in_bounded_memory(s3, tmp_path):
    """A file of many parts goes up and comes back (into another host's tier) whole, and the
    process never holds more than a fraction of it in memory."""
    size = 32 * PART_SIZE + 12345
    source = tmp_path / "big"
    key = big_file(source, size)
    env = {**os.environ}
    out = subprocess.run([sys.executable, "-c", ROUND_TRIP, s3.server.endpoint, s3.bucket, s3.prefix, str(source),
                          str(tmp_path), key], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got, base, peak = out.stdout.split()
    assert got == key
    grown = int(peak) - int(base)
    assert grown < size // 2, f"RSS grew {grown / 1024**2:.0f} MiB for a {size / 1024**2:.0f} MiB file"
    meta = await obstore.head_async(s3(name="check")._s3, f"cache/{key}")
    assert meta["size"] == size


async def test_ranges_of_a_blob_not_in_the_tier(s3):
    writer, reader = s3(name="w"), s3(name="r")
    data = os.urandom(3 * 1024 * 1024 + 5)
    key = await put(writer, data)
    assert not await reader.tier.exists(key)
    fh = await reader.open(key)
    with fh:
        assert os.pread(fh.fileno(), 1000, 2 * 1024 * 1024) == data[2 * 1024 * 1024:2 * 1024 * 1024 + 1000]
        assert os.pread(fh.fileno(), 10, len(data) - 10) == data[-10:]
        assert os.fstat(fh.fileno()).st_size == len(data)
    assert await reader.tier.exists(key)  # filled once, then served from disk


async def test_the_tier_evicts_and_the_bucket_refills_it(s3):
    store = s3(tier_size=250_000)
    blobs = [os.urandom(100_000) for _ in range(3)]
    keys = [await put(store, data) for data in blobs]
    assert not await store.tier.exists(keys[0])  # evicted locally...
    assert await store.exists(keys[0]) and (await store.info(keys[0])).size == 100_000  # ...not from S3
    assert await read(store, keys[0]) == blobs[0]
    assert await store.tier.exists(keys[0])
    assert await store.usage() == (3, 300_000)


async def test_an_object_that_does_not_hash_to_its_key_is_never_served(s3):
    store = s3()
    key = digest(b"the real bytes")
    await obstore.put_async(store._s3, f"cache/{key}", b"other bytes")
    with pytest.raises(EngineUnavailable, match="does not hash to its key"):
        await store.open(key)
    assert not await store.tier.exists(key)


KILLED_UPLOAD = """
import asyncio, os, sys
from pathlib import Path
from tidegate.storage.s3blobs import S3BlobStore, make_s3_client

async def main(endpoint, bucket, prefix, source, tier, key):
    store = S3BlobStore(make_s3_client(bucket, prefix, endpoint), "cache", Path(tier), None)
    temp = store.temp_path(key)
    os.link(source, temp)
    print("uploading", flush=True)
    await store.commit(temp, key)
    print("committed", flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_process_killed_mid_upload_leaves_nothing_visible(s3, tmp_path):
    size = 40 * PART_SIZE
    source = tmp_path / "big"
    key = big_file(source, size)
    child = subprocess.Popen([sys.executable, "-c", KILLED_UPLOAD, s3.server.endpoint, s3.bucket, s3.prefix,
                              str(source), str(tmp_path / "child"), key], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "uploading"
    time.sleep(0.5)  # some parts are up by now
    assert child.poll() is None, "the upload finished before the kill: the test proves nothing"
    child.kill()
    child.wait()
    store = s3(name="after")
    await store.recover()
    assert not await store.exists(key) and await store.open(key) is None
    assert key not in await store.keys()


async def test_a_server_down_is_engine_unavailable_and_back_it_works(s3):
    store = s3()
    cached = await put(store, b"in the tier")
    server = s3.server
    server.stop()
    try:
        store._probed = (0.0, None)
        assert "S3 is unavailable" in (await store.probe() or "")
        with pytest.raises(EngineUnavailable):
            await put(store, b"not now")
        with pytest.raises(EngineUnavailable):
            await store.open(digest(b"only in the bucket"))
        assert await read(store, cached) == b"in the tier"  # hot files still served from disk
    finally:
        server.start()
    store._probed = (0.0, None)
    assert await store.probe() is None
    key = await put(store, b"back")
    other = s3(name="other")
    assert await read(other, key) == b"back"


async def test_a_file_uploaded_as_it_is_written_commits_whole(s3):
    """upload_as_written follows a growing temp file (as a download writes it); commit waits for
    the tail, and the object is the whole file."""
    store, other = s3(), s3(name="other")
    data = os.urandom(3 * PART_SIZE + 999)
    key = digest(data)
    temp = store.temp_path(key, shared=True)
    with open(temp, "wb") as fh:
        store.upload_as_written(temp, key)
        for start in range(0, len(data), 1 << 20):
            fh.write(data[start:start + (1 << 20)])
            fh.flush()
            await asyncio.sleep(0.005)
        os.fsync(fh.fileno())
    stream = store._streams[temp]
    await store.commit(temp, key)
    assert stream.task.result() is True  # completed by the stream, not uploaded again
    assert await read(other, key) == data


async def test_a_streamed_upload_of_a_failed_download_leaves_nothing(s3):
    store = s3()
    key = digest(b"never finished")
    temp = store.temp_path(key, shared=True)
    with open(temp, "wb") as fh:
        store.upload_as_written(temp, key)
        fh.write(os.urandom(PART_SIZE + 5))  # a part goes up
        fh.flush()
        await asyncio.sleep(0.5)
    temp.unlink()  # what a failed download does
    stream = store._streams[temp]
    assert await asyncio.wait_for(stream.task, 30) is False
    assert not await store.exists(key) and await s3(name="other").open(key) is None
    assert store._streams == {}  # commit() never comes for a failed download: nothing is kept for it


async def test_a_stream_whose_bytes_do_not_hash_to_the_key_is_not_completed(s3):
    store = s3()
    key = digest(b"expected")
    temp = store.temp_path(key, shared=True)
    temp.write_bytes(b"something else")
    store.upload_as_written(temp, key)
    stream = store._streams[temp]
    await store.commit(temp, key)  # then a whole PUT of the file, as commit() on disk keeps it
    assert stream.task.result() is False  # the stream itself was aborted, never completed
    assert store._streams == {}
