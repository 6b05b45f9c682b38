"""GET /health (liveness: the process serves) and GET /ready (readiness: storage is open and
writable, and the server is not shutting down). Plain-text bodies of one line, never cached.

/health touches neither an upstream nor storage, so a slow disk or a dead upstream never gets
a serving process restarted. /ready probes storage with a small write, at most once per
PROBE_INTERVAL per worker however often it is asked; concurrent asks share one probe."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from ..storage import Storage
from .keys import STORAGE

PROBE_INTERVAL = 1.5  # seconds a probe's answer is reused
NO_STORE = {"Cache-Control": "no-store"}


class Readiness:
    """This worker's readiness: the shutdown flag the process sets, and the cached probe."""

    def __init__(self) -> None:
        self.stopping = False
        self._checked_at = float("-inf")
        self._problem: str | None = None
        self._probe: asyncio.Future[None] | None = None

    async def problem(self, app: web.Application) -> str | None:
        if self.stopping:
            return "shutting down"
        storage = app.get(STORAGE)
        if storage is None:
            return "storage not open"
        if time.monotonic() - self._checked_at >= PROBE_INTERVAL:
            if self._probe is None:
                self._probe = asyncio.ensure_future(self._run_probe(storage))
            await asyncio.shield(self._probe)  # a client that goes away does not cancel it for others
        return "shutting down" if self.stopping else self._problem

    async def _run_probe(self, storage: Storage) -> None:
        try:
            self._problem = await storage.problem()
            self._checked_at = time.monotonic()
        finally:
            self._probe = None


READINESS = web.AppKey("readiness", Readiness)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok\n", headers=NO_STORE)


async def ready(request: web.Request) -> web.Response:
    problem = await request.app[READINESS].problem(request.app)
    if problem is not None:
        return web.Response(status=503, text=f"not ready: {problem}\n", headers=NO_STORE)
    return web.Response(text="ready\n", headers=NO_STORE)


def routes() -> list[web.RouteDef]:
    return [web.get("/health", health), web.get("/ready", ready)]


def install(app: web.Application) -> None:
    app[READINESS] = Readiness()
    app.router.add_routes(routes())


def begin_shutdown(app: web.Application) -> None:
    """From now on /ready answers 503 (called before the server stops accepting)."""
    app[READINESS].stopping = True
