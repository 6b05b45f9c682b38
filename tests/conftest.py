"""Shared fixtures. Tests only ever talk to servers they start on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.dists import DistCache
from support.fakeindex import FakeIndex, MakeFakeIndex, Mode, RunningFakeIndex
from support.postgres import PostgresServer, find_bin


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> DistCache:
    """Session-wide cache of built dists: `dists.wheel("foo", "1.0")`, `dists.sdist(...)`."""
    return DistCache(tmp_path_factory.mktemp("dists"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (skipped, loudly, without Debian's postgresql)."""
    bindir = find_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (initdb not found): .ci/run installs Debian's postgresql")
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
        server.stop("immediate")
    finally:
        server.remove()


@pytest.fixture
def database_url(postgres: PostgresServer) -> str:
    """The URL of a fresh database on the session's PostgreSQL server."""
    return postgres.new_database()


@pytest.fixture
def dist_dir(tmp_path: Path) -> Path:
    """An empty per-test directory for dists a test builds (or copies) itself."""
    path = tmp_path / "dists"
    path.mkdir()
    return path


@pytest.fixture
async def fake_index() -> AsyncIterator[MakeFakeIndex]:
    """Factory: `running = await fake_index(mode="negotiate", **FakeIndex options)`."""
    started: list[RunningFakeIndex] = []

    async def make(mode: Mode = "negotiate", **opts: Any) -> RunningFakeIndex:
        running = await RunningFakeIndex.start(FakeIndex(mode, **opts))
        started.append(running)
        return running

    yield make
    for running in started:
        await running.close()


@pytest.fixture
def installer_env(tmp_path: Path) -> dict[str, str]:
    """Environment for pip/uv subprocesses: no user/site config, no proxies, private caches."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.upper().startswith(("PIP_", "UV_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"))
    }
    env |= {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PIP_CACHE_DIR": str(tmp_path / "pip-cache"),
        "UV_NO_CONFIG": "1",
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_PYTHON_DOWNLOADS": "never",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    return env


class RunningTidegate:
    """tidegate served on 127.0.0.1 by this test's event loop, with a client session."""

    def __init__(self, layers: dict[str, Any], storage: Any = None) -> None:
        from tidegate.config import build

        self.settings = build(layers)
        self.storage = storage  # a replacement for tidegate.storage.open_storage
        self.runner: Any = None
        self.port = 0
        self.session: Any = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/simple/"

    @property
    def app(self) -> Any:
        return self.runner.app

    async def start(self) -> "RunningTidegate":
        import aiohttp
        from aiohttp import web

        from tidegate.app import make_app
        from tidegate.recovery import recover

        await recover(self.settings)  # what `tidegate serve` does before its workers start
        app = make_app(self.settings, self.storage) if self.storage else make_app(self.settings)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self.runner.addresses[0][1]
        if self.session is None:
            # Bodies as sent, and no Accept-Encoding unless a test asks for a content coding.
            self.session = aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=["Accept-Encoding"])
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.session.get(self.origin + path, allow_redirects=False, **kwargs)

    def head(self, path: str, **kwargs: Any) -> Any:
        return self.session.head(self.origin + path, allow_redirects=False, **kwargs)

    async def close(self) -> None:
        await self.stop()
        if self.session is not None:
            await self.session.close()


@pytest.fixture
async def tidegate(tmp_path: Path) -> AsyncIterator[Any]:
    """Factory: `tg = await tidegate(upstreams=[idx.url], **settings)` (data dir under tmp_path);
    `storage=` replaces open_storage, to wrap a part of the storage."""
    started: list[RunningTidegate] = []

    async def make(storage: Any = None, **layers: Any) -> RunningTidegate:
        layers.setdefault("data_dir", str(tmp_path / f"tidegate-data-{len(started)}"))
        layers.setdefault("workers", 1)
        running = await RunningTidegate(layers, storage).start()
        started.append(running)
        return running

    yield make
    for running in started:
        await running.close()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory):
    """One SeaweedFS S3 server for the session (SeaweedFS.stop()/start() restart it in place);
    its AWS credentials are in os.environ meanwhile, where the S3 client reads them."""
    from support.seaweedfs import SeaweedFS

    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    saved = {name: os.environ.get(name) for name in server.env}
    os.environ.update(server.env)
    yield server
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
