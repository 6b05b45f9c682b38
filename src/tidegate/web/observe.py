"""What every request leaves behind: an entry in the journal, from which come its metrics and
its line in the request log. One middleware, outermost, so it sees the status of every answer,
refusals and errors included; it is also the last line of defence (web.failures), so that an
observed request passes through one middleware, not two.

Everything here runs once per request, warm pages included: plain attribute reads and one
append (see observe.journal for why, and for what becomes of the entries)."""

from __future__ import annotations

import asyncio
from time import perf_counter

from aiohttp import web
from multidict import istr

from ..observe.journal import Journal, Route
from ..observe.trace import UPSTREAMS
from . import failures

CLIENT_GONE = 499  # the client closed the connection before its answer was sent (nginx's convention)
UNMATCHED = "(unmatched)"  # the route label of requests that match no route: never the raw path
# Routes whose answers are the outcome of an uploaded file, by API.
UPLOADS = {"/legacy/": "legacy", "/legacy": "legacy", "/upload/session/{token}/files/{upload}/complete": "upload2"}
CACHE = istr("X-Tidegate-Cache")  # an istr: CIMultiDict finds it without folding its case


def route_of(route: web.AbstractRoute) -> Route:
    resource = route.resource
    template = resource.canonical if resource is not None else UNMATCHED
    kind = "page" if "/simple" in template else "file" if template.endswith("/files/{project}/{filename}") else "other"
    return Route(template, kind, UPLOADS.get(template))


def sent_bytes(method: str, status: int, response: web.StreamResponse) -> int:
    """Body bytes of the answer: of a response not sent yet (a page), its body's length; of one
    the handler streamed (a file, which goes out by sendfile), its Content-Length.

    The page's case first and without Response.content_length, whose isinstance() test of an
    abstract class costs more than the rest of this function (callgrind)."""
    if method == "HEAD" or status == 304 or status == 204:
        return 0
    if not response.prepared:
        body = getattr(response, "body", None)
        if type(body) is bytes:
            return len(body)
    length = response.content_length
    return length if length is not None else response.body_length


def middleware(journal: Journal):
    record = journal.record
    routes: dict[object, Route] = {}  # aiohttp's route object -> its labels

    @web.middleware
    async def observe(request: web.Request, handler) -> web.StreamResponse:
        start = perf_counter()
        asked: list[str] = []
        # Not reset after: aiohttp runs each request in a task of its own, with a copy of the
        # context that ends with it.
        UPSTREAMS.set(asked)
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
        except Exception as exc:
            response = failures.answer(request, exc)
            return response
        finally:
            end = perf_counter()
            method = request.method
            sent, cache = 0, None
            if response is not None:
                status = response.status
                sent = sent_bytes(method, status, response)
                cache = response.headers.get(CACHE)
            match_info = request.match_info
            route = match_info.route
            labels = routes.get(route)
            if labels is None:
                labels = route_of(route)
                if route.resource is not None:  # not aiohttp's route of one refusal (404, 405)
                    routes[route] = labels
            # In the order of observe.journal.Entry. rel_url: the origin-form path even of an
            # absolute-form request line.
            record((start, end, request.remote, method, request.rel_url.raw_path, labels,
                    match_info.get("filename") if labels.kind == "file" else None, status, sent, cache,
                    ",".join(asked) if asked else None))

    return observe
