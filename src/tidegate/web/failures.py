"""The last line of defence: what an exception no handler answered becomes. A bug answers a
clear 500 and is logged, never a traceback page; a passing condition (a full disk, a shared
engine down, too many open files) answers what the client can act on."""

from __future__ import annotations

import logging

from aiohttp import web

from ..observe.requestlog import redact
from ..readpath.errors import StorageFull
from ..storage import EngineUnavailable
from ..storage.full import FULL_MESSAGE, disk_full, out_of_files
from . import serverlog
from .responses import error, read_refusal

log = logging.getLogger("tidegate.app")
_exhausted = serverlog.Once(log)


def answer(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The answer to an exception that is neither an HTTP answer nor a client gone away."""
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
async def errors(request: web.Request, handler) -> web.StreamResponse:
    """The middleware of an application that is not observed (web.observe answers the same)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except ConnectionError:
        raise  # the client went away; nothing to answer
    except Exception as exc:
        return answer(request, exc)
