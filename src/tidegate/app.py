"""Builds the aiohttp application: routes, error middleware, and the resources' lifetimes (where
storage, the read path's sources and the publishing service are wired together)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from .config import Settings
from .observe.journal import Journal
from .observe.metrics import Metrics
from .observe.requestlog import RequestLog
from .publish.errors import Unavailable
from .publish.service import Publisher, UpstreamServes
from .readpath.errors import ReadError
from .readpath.local import LocalSource
from .readpath.proxy import Proxy
from .readpath.roots import RootLists
from .readpath.upstream import UpstreamSource
from .simple.names import NormalizedName
from .storage import EngineUnavailable, Storage, open_storage
from .storage.full import disk_full, out_of_files
from .upstream.client import UpstreamClient, ssl_context
from .publish.tokens import Tokens
from .web import failures, files, health, landing, legacy, manage, metrics, observe, serverlog, simple, stage, upload
from .web.auth import CHALLENGE, may_read
from .web.keys import JOURNAL, LOCAL, METRICS, PROXY, PUBLISHER, SETTINGS, STORAGE, TOKENS
from .web.responses import error

THREADS = 32
EXPIRY_INTERVAL = 30.0  # seconds between sweeps for expired publishing sessions
PRUNE_EVERY = 20  # sweeps between checks of the page cache's size (each walks its directory)

log = logging.getLogger(__name__)
_exhausted = serverlog.Once(log)


@web.middleware
async def read_auth(request: web.Request, handler) -> web.StreamResponse:
    """With read_auth on, reading the index needs a configured user's credentials too. Stage
    URLs are capabilities of their own and upload endpoints check credentials themselves."""
    if request.path.startswith(("/simple", "/files/")) and not await may_read(request, request.app[SETTINGS],
                                                                              request.app[TOKENS]):
        return error(401, "This index requires credentials of a configured user or an API token.", CHALLENGE)
    return await handler(request)


StorageOpener = Callable[[Settings], Awaitable[Storage]]
OPEN_STORAGE = web.AppKey("open_storage", StorageOpener)


async def serving_storage(settings: Settings) -> Storage:
    """A serving worker's storage: an engine down at start-up means 503s until it is back, not an exit."""
    return await open_storage(settings, engines_later=True)


def make_app(settings: Settings, storage: StorageOpener = serving_storage) -> web.Application:
    """The application; `storage` opens its state (tests pass their own, to wrap a part)."""
    serverlog.install()  # a client's mistakes are one log line, not a traceback
    recorder = Metrics() if settings.metrics else None
    # Request lines are info lines: a higher log level silences them like the others.
    request_log = RequestLog(settings.log_format) if settings.request_log and settings.log_level in ("debug", "info") \
        else None
    journal = Journal(recorder, request_log) if recorder is not None or request_log is not None else None
    # The observing middleware is also the last line of defence: one layer, not two.
    middlewares = [observe.middleware(journal) if journal is not None else failures.errors]
    if settings.read_auth:
        middlewares.append(read_auth)
    app = web.Application(middlewares=middlewares, client_max_size=1024**2)
    app[SETTINGS] = settings
    app[OPEN_STORAGE] = storage
    app.cleanup_ctx.append(_resources)
    app.router.add_routes(landing.routes())
    health.install(app)
    if recorder is not None:
        app[METRICS] = recorder
        app.router.add_routes(metrics.routes())
    if journal is not None:
        app[JOURNAL] = journal
    app.cleanup_ctx.append(_observers)
    app.router.add_routes(simple.routes())
    app.router.add_routes(files.routes())
    app.router.add_routes(stage.routes())
    app.router.add_routes(legacy.routes())
    app.add_subapp("/upload", upload.app())
    app.add_subapp("/manage", manage.app())
    return app


def name_check(upstream: UpstreamSource) -> UpstreamServes:
    """What the publishing service asks before a new local name may shadow a public one."""

    async def serves(name: NormalizedName) -> str | None:
        try:
            return await upstream.serves(name)
        except ReadError as exc:
            raise Unavailable(f"Cannot check whether {name} exists upstream ({exc.message}); try again later.",
                              source="name") from exc

    return serves


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Storage calls run in threads, mostly waiting on the disk: more of them than cores, so that
    # a burst of cold pages does not queue behind six (asyncio's default).
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(THREADS, thread_name_prefix="tidegate"))
    storage = await app[OPEN_STORAGE](settings)
    connector = aiohttp.TCPConnector(limit=0, ssl=ssl_context(settings.ca_bundle), ttl_dns_cache=300)
    # HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as corporate networks need, are applied per host by
    # the upstream clients (see UpstreamClient._proxy).
    session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
    recorder = app.get(METRICS)
    clients = [UpstreamClient(u, session, settings.max_page_size, recorder) for u in settings.upstreams]
    local = LocalSource(storage.index, storage.local_blobs)
    upstream = UpstreamSource(settings, storage, clients)
    publisher = Publisher(settings, storage.index, storage.local_blobs, name_check(upstream), locks=storage.locks)
    app[STORAGE] = storage
    app[LOCAL] = local
    app[PROXY] = Proxy([local, upstream], RootLists(settings, storage, clients))
    app[PUBLISHER] = publisher
    app[TOKENS] = Tokens(settings, storage.index)
    sweeper = asyncio.ensure_future(_sweep(publisher, storage))
    try:
        yield
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
        await publisher.close()
        await upstream.close()
        await session.close()
        await storage.close()


async def _observers(app: web.Application) -> AsyncIterator[None]:
    """Batches of answered requests go to the metrics and the request log while the application
    runs; at the end, whatever is still waiting goes too."""
    journal = app.get(JOURNAL)
    if journal is None:
        yield
        return
    journal.start()
    try:
        yield
    finally:
        await journal.stop()


async def _sweep(publisher: Publisher, storage: Storage) -> None:
    """Cancel expired publishing sessions (purging their files), forget old finished ones, and
    keep the page cache within its size."""
    sweeps = 0
    while True:
        try:
            await publisher.expire_now()
            await publisher.collect_garbage()
            if sweeps % PRUNE_EVERY == 0:
                await storage.pages.prune()
        except Exception as exc:
            if disk_full(exc) or out_of_files(exc):  # a resource ran out: the next sweep tries again
                _exhausted.warning("sweep", f"the periodic sweep failed: {exc}")
            elif isinstance(exc, EngineUnavailable):  # a shared engine is down: a passing condition, said in a line
                log.warning("the periodic sweep failed: %s", exc)
            else:
                log.exception("the periodic sweep failed")
        sweeps += 1
        await asyncio.sleep(EXPIRY_INTERVAL)
