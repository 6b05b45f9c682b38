"""GET /metrics: the Prometheus text format, summed over all worker processes."""

from __future__ import annotations

import asyncio

from aiohttp import hdrs, web

from ..observe.metrics import CONTENT_TYPE, Figures
from ..publish.states import SessionState
from ..storage import Storage
from .auth import CHALLENGE, may_read
from .keys import JOURNAL, METRICS, SETTINGS, STORAGE, TOKENS
from .responses import error


async def figures(storage: Storage) -> Figures:
    """What storage holds now: cheap counts (SQLite aggregates, a page count at most a minute old)."""
    (files, files_bytes), (pages, pages_bytes), sessions = await asyncio.gather(
        storage.cache_blobs.usage(), storage.pages.usage(),
        storage.index.read(lambda rows: rows.session_counts()))
    return Figures(cache_bytes={"files": files_bytes, "pages": pages_bytes},
                   cache_files={"files": files, "pages": pages},
                   sessions={**{str(state): 0 for state in SessionState}, **sessions})


async def metrics(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    # A configured user, or one of their API tokens: a scraper can hold a token that can be
    # revoked on its own rather than a user's password.
    if settings.metrics_auth and not await may_read(request, settings, request.app[TOKENS]):
        return error(401, "The metrics require credentials of a configured user or an API token.", CHALLENGE)
    recorder = request.app[METRICS]
    request.app[JOURNAL].flush()  # this worker's requests up to now; the others' are at most FLUSH_INTERVAL old
    recorder.push()
    # Reading every worker's files is blocking work: off the event loop.
    body = await asyncio.get_running_loop().run_in_executor(
        None, recorder.exposition, await figures(request.app[STORAGE]))
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: CONTENT_TYPE})


def routes() -> list[web.AbstractRouteDef]:
    return [web.get("/metrics", metrics)]
