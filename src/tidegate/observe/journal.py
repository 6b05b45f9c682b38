"""Answered requests on their way to the metrics and the request log.

A warm page costs about 70 us of CPU (~275k instructions), and being observed should add
under a tenth of that. So answering a request only appends one tuple of plain values (an
Entry) here; every INTERVAL the waiting entries are summed for the metrics and formatted for
the log, each in one loop over the batch, which costs less than a call per request into each
(counted with callgrind: bench/observe.py --instructions). At most INTERVAL of the log is lost if the process
is killed; the metrics' own push to prometheus-client happens at most once a second (see
metrics.FLUSH_INTERVAL).
"""

from __future__ import annotations

import asyncio
from time import perf_counter, time
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .metrics import Metrics
    from .requestlog import RequestLog


class Route(NamedTuple):
    """What the metrics label a route by, worked out once per route (see web.observe)."""

    template: str  # the route's template, never the raw path
    kind: str  # page, file or other
    upload_api: str | None  # the upload API whose outcome its POST answers are
    secret: bool  # its paths may hold a stage or session token (or it is no route): the log redacts them


class Entry(NamedTuple):
    """An answered request, as the observing middleware saw it. It appends plain tuples in this
    order (building a NamedTuple is a Python call); the names are for the readers. Only
    strings, numbers and tuples of them, so the garbage collector does not follow the entries
    waiting for the next batch."""

    start: float  # perf_counter() when the request arrived
    end: float  # perf_counter() when its answer was ready
    peer: object  # the client's address as its transport gave it: (host, port, ...), a str (a UNIX socket) or None
    method: str
    target: str  # the request target as sent: origin-form (path and query) or, rarely, absolute-form
    route: Route
    filename: str | None  # of a file route: .metadata and .provenance are kinds of their own
    status: int
    sent: int  # body bytes
    cache: str | None  # X-Tidegate-Cache
    upstreams: str | None  # the upstreams asked while answering it, in order, comma-separated


class Journal:
    INTERVAL = 0.2  # seconds between batches

    def __init__(self, metrics: Metrics | None, request_log: RequestLog | None) -> None:
        self.metrics = metrics
        self.request_log = request_log
        self._entries: list[tuple] = []
        # What the middleware calls: the list's own append, with no method of ours in between.
        self.record = self._entries.append
        self._task: asyncio.Task | None = None

    def flush(self) -> None:
        """Hand every waiting entry to the metrics and the request log now."""
        pending = self._entries.copy()
        self._entries.clear()  # the same list: `record` stays bound to it
        if pending:
            # perf_counter() times become wall-clock times with one offset per batch.
            offset = time() - perf_counter()
            if self.metrics is not None:
                self.metrics.tally(pending)
            if self.request_log is not None:
                self.request_log.write(pending, offset)
        if self.metrics is not None:
            self.metrics.push_due()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.flush()
        if self.metrics is not None:
            self.metrics.push()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.INTERVAL)
            self.flush()
