"""The blob store contract, run against every implementation (see conftest.py)."""

from __future__ import annotations

import hashlib
import os

import pytest


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def put(store, data: bytes) -> str:
    key = digest(data)
    temp = store.temp_path(key)
    with open(temp, "wb") as fh:
        fh.write(data)
        os.fsync(fh.fileno())
    await store.commit(temp, key)
    return key


async def read(store, key: str) -> bytes | None:
    fh = await store.open(key)
    if fh is None:
        return None
    with fh:
        return fh.read()


async def test_a_missing_blob_is_none_everywhere(new_blob_store):
    store = await new_blob_store()
    key = digest(b"nothing")
    assert await store.open(key) is None
    assert not await store.exists(key)
    assert await store.info(key) is None
    assert await store.keys() == [] and await store.total_size() == 0


async def test_a_committed_blob_reads_back_whole(new_blob_store):
    store = await new_blob_store()
    data = os.urandom(300_000)
    key = await put(store, data)
    assert await read(store, key) == data
    assert await store.exists(key)
    assert (await store.info(key)).size == len(data)
    assert await store.keys() == [key] and await store.total_size() == len(data)


async def test_nothing_is_visible_before_commit(new_blob_store):
    store = await new_blob_store()
    data = b"half written"
    key = digest(data)
    temp = store.temp_path(key)
    temp.write_bytes(data)
    assert not await store.exists(key) and await store.open(key) is None
    await store.commit(temp, key)
    assert await store.exists(key) and not temp.exists()


async def test_another_instance_sees_commits(new_blob_store):
    """What two workers sharing the storage see of each other."""
    writer, reader = await new_blob_store(), await new_blob_store()
    key = await put(writer, b"shared")
    assert await read(reader, key) == b"shared"


async def test_an_open_reader_keeps_its_bytes_after_removal(new_blob_store):
    store = await new_blob_store()
    data = os.urandom(100_000)
    key = await put(store, data)
    fh = await store.open(key)
    await store.remove(key)
    assert not await store.exists(key) and await store.keys() == []
    with fh:
        assert fh.read() == data


async def test_temp_paths(new_blob_store):
    store = await new_blob_store()
    key = digest(b"x")
    assert store.temp_path(key, shared=True) == store.temp_path(key, shared=True)  # followers find it
    assert store.temp_path(key) != store.temp_path(key)  # private writers never collide


async def test_recovery_drops_temp_files_and_indexes_what_is_committed(new_blob_store):
    store = await new_blob_store()
    key = await put(store, b"kept")
    leftover = store.temp_path(digest(b"partial"), shared=True)
    leftover.write_bytes(b"part")
    await store.recover()
    assert not leftover.exists()
    assert await store.keys() == [key]


async def test_least_recently_used_blobs_are_evicted_beyond_the_limit(new_blob_store):
    if new_blob_store.kind == "s3":
        pytest.skip("S3: the bucket is bounded by its lifecycle rules, not by tidegate (the local tier's eviction is in test_s3_blob_store.py)")
    store = await new_blob_store(max_size=250_000)
    first = await put(store, os.urandom(100_000))
    second = await put(store, os.urandom(100_000))
    third = await put(store, os.urandom(100_000))  # 300 kB > 250 kB: the oldest goes
    assert not await store.exists(first)
    assert await store.exists(second) and await store.exists(third)
    assert await store.total_size() == 200_000


async def test_a_blob_larger_than_the_limit_stays_until_the_next(new_blob_store):
    if new_blob_store.kind == "s3":
        pytest.skip("S3: the bucket is bounded by its lifecycle rules, not by tidegate (the local tier's eviction is in test_s3_blob_store.py)")
    store = await new_blob_store(max_size=1000)
    big = await put(store, os.urandom(5000))
    assert await store.exists(big)  # still servable
    other = await put(store, os.urandom(10))
    assert not await store.exists(big) and await store.exists(other)


@pytest.mark.parametrize("size", [0, 1, 256 * 1024 + 7])
async def test_sizes(new_blob_store, size):
    store = await new_blob_store()
    data = os.urandom(size)
    key = await put(store, data)
    assert await read(store, key) == data


async def test_usage_from_the_index(new_blob_store):
    store = await new_blob_store()
    assert await store.usage() == (0, 0)
    await put(store, b"a" * 100)
    await put(store, b"b" * 50)
    assert await store.usage() == (2, 150)
    await store.remove(digest(b"a" * 100))
    assert await store.usage() == (1, 50)


async def test_commit_many_makes_unsynced_temp_files_blobs_at_once(new_blob_store):
    """A bundle's import: temp files written without an fsync each, committed together."""
    store = await new_blob_store()
    blobs = [os.urandom(n) for n in (0, 1, 70_000, 300_001)]
    pairs = []
    for data in blobs:
        temp = store.temp_path(digest(data))
        temp.write_bytes(data)
        pairs.append((temp, digest(data)))
    assert not any([await store.exists(key) for _, key in pairs])
    await store.commit_many(pairs)
    for data, (temp, key) in zip(blobs, pairs):
        assert await read(store, key) == data and not temp.exists()
    assert await store.usage() == (4, sum(map(len, blobs)))
    await store.commit_many([])  # nothing to do
    assert sorted(await store.keys()) == sorted(key for _, key in pairs)
