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
from .observe.metrics import FLUSH_INTERVAL, Metrics
from .observe.requestlog import RequestLog, redact
from .publish.errors import Unavailable
from .publish.service import Publisher, UpstreamServes
from .readpath.errors import ReadError, StorageFull
from .readpath.local import LocalSource
from .readpath.proxy import Proxy
from .readpath.roots import RootLists
from .readpath.upstream import UpstreamSource
from .simple.names import NormalizedName
from .storage import EngineUnavailable, Storage, open_storage
from .storage.full import FULL_MESSAGE, disk_full, out_of_files
from .upstream.client import UpstreamClient, ssl_context
from .publish.tokens import Tokens
from .web import files, health, landing, legacy, manage, metrics, observe, serverlog, simple, stage, upload
from .web.auth import CHALLENGE, may_read
from .web.keys import LOCAL, METRICS, PROXY, PUBLISHER, REQUEST_LOG, SETTINGS, STORAGE, TOKENS
from .web.responses import error, read_refusal

THREADS = 32
EXPIRY_INTERVAL = 30.0  # seconds between sweeps for expired publishing sessions
PRUNE_EVERY = 20  # sweeps between checks of the page cache's size (each walks its directory)

log = logging.getLogger(__name__)
_exhausted = serverlog.Once(log)


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    """Last line of defence: a bug answers a clear 500 and is logged, never a traceback page."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (ConnectionResetError, ConnectionError):
        raise  # the client went away; nothing to answer
    except Exception as exc:
        if disk_full(exc):  # what is cached is still served; this request needed room
            log.warning("refused %s %s: %s (%s)", request.method, redact(request.rel_url.raw_path), FULL_MESSAGE, exc)
            return read_refusal(StorageFull(f"{FULL_MESSAGE}; try again once space is freed."))
        if isinstance(exc, EngineUnavailable):  # a passing condition: the engine comes back
            _exhausted.warning(exc.engine, f"refusing requests with 503: {exc}")
            return error(503, f"{exc}; try again in a moment.", {"Retry-After": "2"})
        if out_of_files(exc):  # a passing condition: the connections holding them will close
            _exhausted.warning("files", f"too many open files; refusing requests with 503 meanwhile ({exc})")
            return error(503, "tidegate has too many open files right now; try again in a moment.",
                         {"Retry-After": "1"})
        log.exception("unhandled error for %s %s", request.method, redact(request.rel_url.raw_path_qs))
        return error(500, "Internal error in tidegate; the server log has the details.")


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
    middlewares = [errors, read_auth] if settings.read_auth else [errors]
    if recorder is not None or request_log is not None:
        middlewares.insert(0, observe.middleware(recorder, request_log))
    app = web.Application(middlewares=middlewares, client_max_size=1024**2)
    app[SETTINGS] = settings
    app[OPEN_STORAGE] = storage
    app.cleanup_ctx.append(_resources)
    app.router.add_routes(landing.routes())
    health.install(app)
    if recorder is not None:
        app[METRICS] = recorder
        app.router.add_routes(metrics.routes())
    if request_log is not None:
        app[REQUEST_LOG] = request_log
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
    """Hand the pending request sums to the metrics every FLUSH_INTERVAL; at the end, write out
    what the metrics and the request log still hold."""
    recorder, request_log = app.get(METRICS), app.get(REQUEST_LOG)

    async def flushing(recorder: Metrics) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            recorder.flush()

    flusher = asyncio.ensure_future(flushing(recorder)) if recorder is not None else None
    try:
        yield
    finally:
        if flusher is not None:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            recorder.flush()
        if request_log is not None:
            request_log.flush()


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
