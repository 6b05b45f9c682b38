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
    return Route(template, kind, UPLOADS.get(template), "{token}" in template or resource is None)


def streamed_bytes(response: web.StreamResponse) -> int:
    """Body bytes of an answer the handler streamed (a file, which goes out by sendfile): its
    Content-Length, or what was written. (A page's are its body's length: see the middleware.)"""
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
            method = request.method  # cached already: the router read it
            sent, cache = 0, None
            # aiohttp's fields, not its properties: each property is a Python call, and these
            # seven were a third of what observing a warm page cost (callgrind). Another
            # aiohttp that names them otherwise takes the public spellings.
            try:
                peer, target, match_info = request._transport_peername, request._message.path, request._match_info
                route = match_info._route
                if response is not None:
                    status, headers, body = response._status, response._headers, getattr(response, "_body", None)
            except AttributeError:
                peer, target, match_info = request.remote, request.raw_path, request.match_info
                route = match_info.route
                if response is not None:
                    status, headers, body = response.status, response.headers, getattr(response, "body", None)
            if response is not None:
                if method != "HEAD" and status != 304 and status != 204:
                    # A page's body as it is sent (compressed already, if at all). Not
                    # Response.content_length: its isinstance() test of an abstract class costs
                    # more than the rest of this block (callgrind).
                    sent = len(body) if type(body) is bytes else streamed_bytes(response)
                cache = headers.get(CACHE)
            labels = routes.get(route)
            if labels is None:
                labels = route_of(route)
                if route.resource is not None:  # not aiohttp's route of one refusal (404, 405)
                    routes[route] = labels
            # In the order of observe.journal.Entry. target: as sent, a string the parser made
            # already (the log takes the path out of it, in a batch); peer: the log makes it
            # an address, also in a batch.
            record((start, end, peer, method, target, labels,
                    match_info.get("filename") if labels.kind == "file" else None, status, sent, cache,
                    ",".join(asked) if asked else None))

    return observe
