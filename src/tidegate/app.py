"""Builds the aiohttp application: routes, middleware and the resources' lifetimes."""

from __future__ import annotations

import logging
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from .cache.blobs import BlobStore
from .cache.pages import PageStore
from .config import Settings
from .proxy import Proxy
from .upstream.client import UpstreamClient, ssl_context
from .web import files, simple
from .web.keys import PROXY, ROOT_MEMO, SETTINGS
from .web.responses import error

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


async def landing(request: web.Request) -> web.Response:
    return web.Response(text="tidegate: the package index is at /simple/\n")


def make_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=1024**2)
    app[SETTINGS] = settings
    app[ROOT_MEMO] = {}
    app.cleanup_ctx.append(_resources)
    app.router.add_get("/", landing)
    app.router.add_routes(simple.routes())
    app.router.add_routes(files.routes())
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
    proxy = Proxy(settings, pages, blobs, clients)
    app[PROXY] = proxy
    try:
        yield
    finally:
        await proxy.close()
        await session.close()
        pages.close()
        blobs.close()
