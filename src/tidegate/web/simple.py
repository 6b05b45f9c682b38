"""Handlers for the Simple API index pages: /simple/ and /simple/<project>/."""

from __future__ import annotations

from aiohttp import hdrs, web

from ..readpath.answers import CacheResult, PageAnswer, PageQuery
from ..readpath.errors import ReadError
from ..readpath.proxy import Proxy
from ..simple.names import checked_name
from ..simple.negotiate import NOT_ACCEPTABLE_BODY, Encoding, Representation, negotiate, negotiate_encoding
from .keys import PROXY, SETTINGS
from .responses import error, etag_matches, read_refusal, send_file

# Pages are negotiated on both: a shared cache must never hand one client's JSON, or gzip, to
# another that asked for HTML, or no compression.
VARY = {hdrs.VARY: "Accept, Accept-Encoding"}
_NEGOTIATED: dict[tuple[str | None, str | None], Representation | None] = {}
_ENCODINGS: dict[str | None, Encoding] = {}


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


def encoding(request: web.Request) -> Encoding:
    """Negotiate the content coding, memoized like the representation."""
    header = request.headers.get(hdrs.ACCEPT_ENCODING)
    try:
        return _ENCODINGS[header]
    except KeyError:
        if len(_ENCODINGS) > 512:
            _ENCODINGS.clear()
        result = _ENCODINGS[header] = negotiate_encoding(header)
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


async def project_page(request: web.Request, proxy: Proxy | None = None, prefix: str = "") -> web.StreamResponse:
    """/simple/<project>/ (and, with a stage's proxy and prefix, the same page of a stage)."""
    raw = request.match_info["project"]
    name = checked_name(raw)
    if name is None:
        return error(404, f"{raw[:100]!r} is not a valid project name.", VARY)
    if raw != name or not request.path.endswith("/"):
        return redirect(f"{prefix}/simple/{name}/", request)
    rep = representation(request)
    if rep is None:
        return not_acceptable()
    try:
        answer = await (proxy or request.app[PROXY]).answer(PageQuery(name, revalidate=wants_revalidation(request)))
    except ReadError as exc:
        return read_refusal(exc, VARY)
    assert isinstance(answer, PageAnswer)
    return await page_response(request, answer, rep)


async def page_response(request: web.Request, answer: PageAnswer, rep: Representation) -> web.Response:
    """A rendered page as the negotiated representation and content coding, or 304."""
    page = answer.page
    coding = encoding(request)
    rendered = page.cached(rep, coding) or await page.rendered(rep, coding)
    headers = {
        hdrs.ETAG: rendered.etag,
        hdrs.LAST_MODIFIED: page.last_modified,
        # A stale copy (the upstream is failing) must not be kept by downstream caches.
        hdrs.CACHE_CONTROL: "no-cache" if answer.how is CacheResult.STALE else request.app[SETTINGS].cache_control,
        **VARY,
        "X-Tidegate-Cache": answer.how,
    }
    if not_modified(request, rendered.etag, page.changed_at):
        return web.Response(status=304, headers=headers)
    headers[hdrs.CONTENT_TYPE] = rep.content_type
    if rendered.encoding is not Encoding.IDENTITY:
        headers[hdrs.CONTENT_ENCODING] = rendered.encoding.value
    return web.Response(body=rendered.body, headers=headers)


async def root_index(request: web.Request, proxy: Proxy | None = None) -> web.StreamResponse:
    """The list of projects this index knows: every cached or local project, every project of
    the upstreams that list theirs (and, through a stage's proxy, its session's project, which
    may be a first release nobody else sees)."""
    rep = representation(request)
    if rep is None:
        return not_acceptable()
    root = await (proxy or request.app[PROXY]).root()
    if isinstance(root, PageAnswer):
        return await page_response(request, root, rep)
    coding = encoding(request)
    path, etag = root.files[rep, coding]
    headers = {hdrs.LAST_MODIFIED: root.last_modified, hdrs.CACHE_CONTROL: request.app[SETTINGS].cache_control,
               **VARY, "X-Tidegate-Cache": "local"}
    if coding is not Encoding.IDENTITY:
        headers[hdrs.CONTENT_ENCODING] = coding.value
    if not_modified(request, etag, root.changed_at):
        return web.Response(status=304, headers={hdrs.ETAG: etag, **headers})
    return await send_file(request, open(path, "rb"), etag=etag, content_type=rep.content_type, extra=headers)


async def simple_redirect(request: web.Request) -> web.Response:
    return redirect("/simple/", request)


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/simple/", root_index),
        web.get("/simple", simple_redirect),
        web.get("/simple/{project}/", project_page),
        web.get("/simple/{project}", project_page),
    ]
