"""What every request leaves behind: its metrics and its line in the request log. One
middleware, outermost, so it sees the status of every answer, refusals and errors included."""

from __future__ import annotations

import asyncio
from time import perf_counter, time

from aiohttp import hdrs, web

from ..observe.metrics import Metrics
from ..observe.requestlog import RequestLog
from ..observe.trace import UPSTREAMS

CLIENT_GONE = 499  # the client closed the connection before its answer was sent (nginx's convention)
UNMATCHED = "(unmatched)"  # the route label of requests that match no route: never the raw path
# Routes whose answers are the outcome of an uploaded file, by API.
UPLOADS = {"/legacy/": "legacy", "/legacy": "legacy", "/upload/session/{token}/files/{upload}/complete": "upload2"}
FILE_KINDS = {".metadata": "metadata", ".provenance": "provenance"}
_routes: dict[str, tuple[str, str | None]] = {}  # route template -> (kind, upload API)


def route_info(route: str) -> tuple[str, str | None]:
    """What a route serves (page, file, which is split further by filename, or other) and the
    upload API whose outcome its POST answers are, worked out once per route."""
    info = _routes.get(route)
    if info is None:
        kind = "page" if "/simple" in route else "file" if route.endswith("/files/{project}/{filename}") else "other"
        info = _routes[route] = (kind, UPLOADS.get(route))
    return info


def upload_result(status: int) -> str:
    if status == 202:
        return "processing"  # validated in the background (deferred_validation)
    if status < 300:
        return "ok"
    return "refused" if status < 500 else "error"


def sent_bytes(request: web.Request, response: web.StreamResponse) -> int:
    """Body bytes of the answer (files go out by sendfile, which the response does not count)."""
    if request.method == hdrs.METH_HEAD or response.status in (204, 304):
        return 0
    if response.prepared:
        length = response.content_length
        return length if length is not None else response.body_length
    body = getattr(response, "body", None)
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    return response.content_length or 0


def middleware(metrics: Metrics | None, request_log: RequestLog | None):
    add_line = request_log.add if request_log is not None else None

    @web.middleware
    async def observe(request: web.Request, handler) -> web.StreamResponse:
        start = perf_counter()
        asked: list[str] = []
        context = UPSTREAMS.set(asked)
        response: web.StreamResponse | None = None
        status = 500
        try:
            response = await handler(request)
            return response
        except web.HTTPException as exc:
            response = exc
            raise
        except (ConnectionError, asyncio.CancelledError):
            status = CLIENT_GONE
            raise
        finally:
            UPSTREAMS.reset(context)
            seconds = perf_counter() - start
            sent, cache = 0, None
            if response is not None:
                status = response.status
                sent = sent_bytes(request, response)
                cache = response.headers.get("X-Tidegate-Cache")
            method = request.method
            if metrics is not None:
                match_info = request.match_info
                resource = match_info.route.resource
                route = resource.canonical if resource is not None else UNMATCHED
                kind, api = _routes.get(route) or route_info(route)
                if kind == "file":
                    filename = match_info.get("filename", "")
                    kind = FILE_KINDS.get(filename[filename.rfind("."):], "file")
                metrics.request(route, method, status, seconds, kind, sent, cache)
                if api is not None and method == hdrs.METH_POST:
                    metrics.upload(api, upload_result(status))
            if add_line is not None:
                # Plain values only: a tuple of them is not followed by the garbage collector,
                # so lines waiting for the next write add nothing to its work.
                # rel_url: the origin-form path even of an absolute-form request line.
                add_line((time(), request.remote, method, request.rel_url.raw_path, status, sent, seconds, cache,
                          ",".join(asked) if asked else None))

    return observe
