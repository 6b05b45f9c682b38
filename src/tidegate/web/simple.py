"""Handlers for the Simple API index pages: /simple/ and /simple/<project>/."""

from __future__ import annotations

import time

from aiohttp import hdrs, web

from ..simple.html_page import render_index_html
from ..simple.json_page import render_index_json
from ..simple.model import is_valid_name, normalize
from ..simple.negotiate import NOT_ACCEPTABLE_BODY, Representation, negotiate
from ..upstream.client import UpstreamError
from .keys import PROXY, ROOT_MEMO, SETTINGS
from .responses import error, etag_matches

VARY = {hdrs.VARY: "Accept"}
_NEGOTIATED: dict[tuple[str | None, str | None], Representation | None] = {}


def representation(request: web.Request) -> Representation | None:
    """Negotiate, memoized: clients send the same few Accept headers over and over."""
    key = (request.headers.get(hdrs.ACCEPT), request.query.get("format"))
    try:
        return _NEGOTIATED[key]
    except KeyError:
        if len(_NEGOTIATED) > 512:
            _NEGOTIATED.clear()
        result = _NEGOTIATED[key] = negotiate(*key)
        return result


def not_acceptable() -> web.Response:
    return web.Response(status=406, body=NOT_ACCEPTABLE_BODY, content_type="text/plain", headers=VARY)


def wants_revalidation(request: web.Request) -> bool:
    """`Cache-Control: no-cache` or `max-age=0` (uv --refresh, pip --no-cache-dir do not, but
    `uv publish --check-url` and curl -H do): ask the upstream before answering."""
    value = request.headers.get(hdrs.CACHE_CONTROL)
    if value:
        directives = {d.strip().lower().replace(" ", "") for d in value.split(",")}
        if "no-cache" in directives or "max-age=0" in directives:
            return True
    return request.headers.get(hdrs.PRAGMA, "").strip().lower() == "no-cache"


def redirect(location: str, request: web.Request) -> web.Response:
    if request.rel_url.raw_query_string:
        location += "?" + request.rel_url.raw_query_string
    return web.Response(status=301, headers={hdrs.LOCATION: location, **VARY})


def not_modified(request: web.Request, etag: str, last_modified_at: float) -> bool:
    inm = request.headers.get(hdrs.IF_NONE_MATCH)
    if inm is not None:
        return etag_matches(inm, etag)
    since = request.if_modified_since
    return since is not None and int(last_modified_at) <= since.timestamp()


async def project_page(request: web.Request) -> web.StreamResponse:
    raw = request.match_info["project"]
    if not is_valid_name(raw):
        return error(404, f"{raw[:100]!r} is not a valid project name.", VARY)
    name = normalize(raw)
    if raw != name or not request.path.endswith("/"):
        return redirect(f"/simple/{name}/", request)
    rep = representation(request)
    if rep is None:
        return not_acceptable()
    try:
        record, how = await request.app[PROXY].page(name, revalidate=wants_revalidation(request))
    except UpstreamError as exc:
        return error(502, f"No cached copy of {name} and the upstream failed: {exc}", VARY)
    if record is None or record.served is None:
        return error(404, f"Project {name} was not found on any upstream.", VARY)
    etag = record.etags[rep]
    headers = {
        hdrs.ETAG: etag,
        hdrs.LAST_MODIFIED: record.last_modified,
        hdrs.CACHE_CONTROL: request.app[SETTINGS].cache_control,
        hdrs.VARY: "Accept",
        "X-Tidegate-Cache": how,
    }
    if not_modified(request, etag, record.changed_at):
        return web.Response(status=304, headers=headers)
    headers[hdrs.CONTENT_TYPE] = rep.content_type
    return web.Response(body=record.bodies[rep], headers=headers)


ROOT_MEMO_SECONDS = 10.0


async def root_index(request: web.Request) -> web.StreamResponse:
    """The list of projects this index knows: every cached or (later) local project."""
    rep = representation(request)
    if rep is None:
        return not_acceptable()
    memos = request.app[ROOT_MEMO]
    memo = memos.get("root")
    if memo is None or time.monotonic() - memo[0] > ROOT_MEMO_SECONDS:
        names = request.app[PROXY].pages.names()
        bodies = {Representation.JSON: render_index_json(names), Representation.HTML: render_index_html(names)}
        bodies[Representation.TEXT] = bodies[Representation.HTML]
        memo = memos["root"] = (time.monotonic(), bodies)
    headers = {hdrs.CONTENT_TYPE: rep.content_type, hdrs.VARY: "Accept", hdrs.CACHE_CONTROL: "max-age=60"}
    return web.Response(body=memo[1][rep], headers=headers)


async def simple_redirect(request: web.Request) -> web.Response:
    return redirect("/simple/", request)


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/simple/", root_index),
        web.get("/simple", simple_redirect),
        web.get("/simple/{project}/", project_page),
        web.get("/simple/{project}", project_page),
    ]
