"""Builds the aiohttp application: routes, middleware and the resources' lifetimes."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from .cache.blobs import BlobStore
from .cache.pages import PageStore
from .config import Settings
from .proxy import Proxy
from .publish.index import LocalIndex
from .publish.service import Publisher
from .upstream.client import UpstreamClient, ssl_context
from .web import files, legacy, simple, stage, upload
from .web.auth import CHALLENGE, authenticate
from .web.keys import PROXY, PUBLISHER, ROOT_MEMO, SETTINGS
from .web.responses import error

EXPIRY_INTERVAL = 30.0  # seconds between sweeps for expired publishing sessions

log = logging.getLogger(__name__)


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    """Last line of defence: a bug answers a clear 500 and is logged, never a traceback page."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (ConnectionResetError, ConnectionError):
        raise  # the client went away; nothing to answer
    except Exception:
        log.exception("unhandled error for %s %s", request.method, request.path_qs)
        return error(500, "Internal error in tidegate; the server log has the details.")


@web.middleware
async def read_auth(request: web.Request, handler) -> web.StreamResponse:
    """With read_auth on, reading the index needs a configured user's credentials too. Stage
    URLs are capabilities of their own and upload endpoints check credentials themselves."""
    if request.path.startswith(("/simple", "/files/")) and authenticate(request, request.app[SETTINGS]) is None:
        return error(401, "This index requires credentials of a configured user.", CHALLENGE)
    return await handler(request)


async def landing(request: web.Request) -> web.Response:
    return web.Response(text="tidegate: the package index is at /simple/\n")


def make_app(settings: Settings) -> web.Application:
    middlewares = [errors, read_auth] if settings.read_auth else [errors]
    app = web.Application(middlewares=middlewares, client_max_size=1024**2)
    app[SETTINGS] = settings
    app[ROOT_MEMO] = {}
    app.cleanup_ctx.append(_resources)
    app.router.add_get("/", landing)
    app.router.add_routes(simple.routes())
    app.router.add_routes(files.routes())
    app.router.add_routes(stage.routes())
    app.router.add_routes(legacy.routes())
    app.add_subapp("/upload", upload.app())
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pages = PageStore(settings.data_dir / "pages", settings.memory_cache)
    blobs = BlobStore(settings.data_dir / "blobs", settings.files_max_size)
    connector = aiohttp.TCPConnector(limit=0, ssl=ssl_context(settings.ca_bundle), ttl_dns_cache=300)
    # trust_env: HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as corporate networks need.
    session = aiohttp.ClientSession(connector=connector, trust_env=True, auto_decompress=True)
    clients = [UpstreamClient(u, session, settings.max_page_size) for u in settings.upstreams]
    local = LocalIndex(settings.data_dir)
    proxy = Proxy(settings, pages, blobs, clients, local)
    publisher = Publisher(settings, local, proxy)
    app[PROXY] = proxy
    app[PUBLISHER] = publisher
    sweeper = asyncio.ensure_future(_expire_sessions(publisher))
    try:
        yield
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
        await proxy.close()
        await session.close()
        pages.close()
        blobs.close()
        local.close()


async def _expire_sessions(publisher: Publisher) -> None:
    """Cancel expired publishing sessions (purging their files) and forget old finished ones."""
    while True:
        try:
            await asyncio.to_thread(publisher.expire_now)
            await asyncio.to_thread(publisher.collect_garbage)
        except Exception:
            log.exception("expiring publishing sessions failed")
        await asyncio.sleep(EXPIRY_INTERVAL)
