"""Handlers for the Simple API index pages: /simple/ and /simple/<project>/."""

from __future__ import annotations

import hashlib
import time
from typing import Callable

from aiohttp import hdrs, web

from ..cache.pages import PageRecord, http_date
from ..simple.html_page import render_index_html
from ..simple.json_page import render_index_json
from ..simple.model import checked_name
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


async def project_page(request: web.Request, overlay: Callable[[str], PageRecord | None] | None = None,
                       prefix: str = "") -> web.StreamResponse:
    """/simple/<project>/ (and, with an overlay and a prefix, the same page of a stage)."""
    raw = request.match_info["project"]
    name = checked_name(raw)
    if name is None:
        return error(404, f"{raw[:100]!r} is not a valid project name.", VARY)
    if raw != name or not request.path.endswith("/"):
        return redirect(f"{prefix}/simple/{name}/", request)
    rep = representation(request)
    if rep is None:
        return not_acceptable()
    record, how = (overlay(name), "stage") if overlay else (None, "")
    if record is None:
        try:
            record, how = await request.app[PROXY].page(name, revalidate=wants_revalidation(request))
        except UpstreamError as exc:
            return error(502, f"No cached copy of {name} and the upstream failed: {exc}", VARY)
    if record is None or record.served is None:
        return error(404, f"Project {name} was not found locally or on any upstream.", VARY)
    return page_response(request, record, rep, how)


def page_response(request: web.Request, record: PageRecord, rep: Representation, how: str) -> web.Response:
    """A rendered page as the negotiated representation, or 304."""
    etag = record.etags[rep]
    headers = {
        hdrs.ETAG: etag,
        hdrs.LAST_MODIFIED: record.last_modified,
        # A stale copy (the upstream is failing) must not be kept by downstream caches.
        hdrs.CACHE_CONTROL: "no-cache" if how == "stale" else request.app[SETTINGS].cache_control,
        hdrs.VARY: "Accept",
        "X-Tidegate-Cache": how,
    }
    if not_modified(request, etag, record.changed_at):
        return web.Response(status=304, headers=headers)
    headers[hdrs.CONTENT_TYPE] = rep.content_type
    return web.Response(body=record.bodies[rep], headers=headers)


ROOT_MEMO_SECONDS = 10.0


async def root_index(request: web.Request, extra: str | None = None) -> web.StreamResponse:
    """The list of projects this index knows: every cached or local project (and, for a stage,
    `extra`: its session's project, which may be a first release nobody else sees)."""
    rep = representation(request)
    if rep is None:
        return not_acceptable()
    memos = request.app[ROOT_MEMO]
    proxy = request.app[PROXY]
    key, generation = f"root:{extra}", proxy.local.generation() if proxy.local else 0
    record = memos.get(key)
    if record is None or time.monotonic() - memos[key + ":built"] > ROOT_MEMO_SECONDS or memos[key + ":gen"] != generation:
        names = set(proxy.pages.names()) | (proxy.local.names() if proxy.local else set())
        names = sorted(names | {extra} if extra else names)
        record = PageRecord(name="", parts=(), served=None, fetched_at=time.time(), changed_at=time.time())
        html = render_index_html(names)
        record.bodies = {Representation.JSON: render_index_json(names), Representation.HTML: html,
                         Representation.TEXT: html}
        record.etags = {rep: f'"{hashlib.sha256(body).hexdigest()[:32]}-{rep.name.lower()}"'
                        for rep, body in record.bodies.items()}
        previous = memos.get(key)
        if previous is not None and previous.bodies == record.bodies:
            record = previous  # unchanged: keep its Last-Modified
        else:
            record.last_modified = http_date(record.changed_at)
        memos[key], memos[key + ":built"], memos[key + ":gen"] = record, time.monotonic(), generation
    return page_response(request, record, rep, "local")


async def simple_redirect(request: web.Request) -> web.Response:
    return redirect("/simple/", request)


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/simple/", root_index),
        web.get("/simple", simple_redirect),
        web.get("/simple/{project}/", project_page),
        web.get("/simple/{project}", project_page),
    ]
