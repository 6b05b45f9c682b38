"""Every implementation of each storage protocol, as parametrized fixtures: the contract tests
in this folder run once per implementation, so a new engine is one entry here."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import uuid

import pytest

from tidegate.storage.blobs import FileBlobStore
from tidegate.storage.index import SqliteIndex
from tidegate.storage.locks import FileLocks
from tidegate.storage.s3blobs import S3BlobStore, make_s3_client
from tidegate.storage.pagecache import FilePageCache

Factory = Callable[..., Awaitable[Any]]


async def _factory(make: Callable[..., Any]) -> AsyncIterator[Factory]:
    """`await new(...)` opens another instance (on the same state, like another worker)."""
    opened: list[Any] = []

    async def new(*args: Any, **kwargs: Any) -> Any:
        instance = make(*args, **kwargs)
        if inspect.isawaitable(instance):  # an engine that connects first
            instance = await instance
        opened.append(instance)
        return instance

    yield new
    for instance in reversed(opened):
        await instance.close()


@pytest.fixture(params=["disk", "s3"])
async def new_blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """new_blob_store(max_size=None): a blob store; each call another instance on the same state.
    "s3": a prefix of its own in the session's SeaweedFS; each instance has its own local tier
    (like another host), of max_size bytes. `new_blob_store.kind` says which."""
    if request.param == "disk":
        make = lambda max_size=None: FileBlobStore(tmp_path / "blobs", max_size)  # noqa: E731
    else:
        server = request.getfixturevalue("seaweedfs")
        bucket = server.bucket("contract")
        prefix = f"{request.node.originalname}-{uuid.uuid4().hex[:8]}"
        tiers = iter(range(1000))

        def make(max_size=None):
            client = make_s3_client(bucket, prefix, server.endpoint)
            return S3BlobStore(client, "cache", tmp_path / f"tier{next(tiers)}", max_size)
    async for new in _factory(make):
        new.kind = request.param  # type: ignore[attr-defined]
        yield new


async def _pg_engine(url: str) -> Any:
    """An engine of its own: each instance is like another host."""
    from tidegate.storage.postgres import engine, migrate_database

    await asyncio.to_thread(migrate_database, url)
    opened = engine.Engine(url)
    await asyncio.to_thread(opened.open)
    return opened


async def _pg_page_cache(url: str, max_size: int | None) -> Any:
    from tidegate.storage.postgres import PgPageCache

    return PgPageCache(await _pg_engine(url), max_size)


async def _pg_index(url: str) -> Any:
    from tidegate.storage.postgres import PgIndex

    return PgIndex(await _pg_engine(url))


@pytest.fixture(params=["disk", "postgres"])
async def new_page_cache(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """new_page_cache(max_size=None): a page cache; each call another instance on the same state."""
    if request.param == "postgres":
        url = request.getfixturevalue("database_url")
        make: Callable[..., Any] = lambda max_size=None: _pg_page_cache(url, max_size)
    else:
        make = lambda max_size=None: FilePageCache(tmp_path / "pages", max_size)
    async for new in _factory(make):
        yield new


@pytest.fixture(params=["sqlite", "postgres"])
async def new_index_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    if request.param == "postgres":
        url = request.getfixturevalue("database_url")
        make: Callable[..., Any] = lambda: _pg_index(url)
    else:
        make = lambda: SqliteIndex(tmp_path / "index.db")
    async for new in _factory(make):
        yield new


@pytest.fixture(params=["ofd", "flock", "postgres"])
async def new_locks(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """Also `new_locks.holder`: Python source that takes lock NAME in another process, prints
    "held" and sleeps (to be killed)."""
    if request.param == "postgres":
        from tidegate.storage.postgres import PgLocks

        url = request.getfixturevalue("database_url")
        async for new in _factory(lambda: PgLocks(url)):
            new.holder = (  # type: ignore[attr-defined]
                "import asyncio, sys, time\n"
                "from tidegate.storage.postgres import PgLocks\n"
                f"locks = PgLocks({url!r})\n"
                "lease = asyncio.run(locks.try_acquire(sys.argv[1]))\n"
                "print('held' if lease else 'busy', flush=True)\n"
                "time.sleep(60)\n"
            )
            yield new
        return
    ranges = request.param == "ofd"
    async for new in _factory(lambda: FileLocks(tmp_path / "locks", ranges=ranges)):
        new.holder = (  # type: ignore[attr-defined]
            "import asyncio, sys, time\n"
            "from pathlib import Path\n"
            "from tidegate.storage.locks import FileLocks\n"
            f"locks = FileLocks(Path({str(tmp_path / 'locks')!r}), ranges={ranges})\n"
            "lease = asyncio.run(locks.try_acquire(sys.argv[1]))\n"
            "print('held' if lease else 'busy', flush=True)\n"
            "time.sleep(60)\n"
        )
        yield new
