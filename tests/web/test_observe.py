"""The observing middleware reads aiohttp's fields rather than its properties (each property is
a Python call on every request); these tests hold those fields to the public values, and show
that an aiohttp without them is observed as well, through the public spellings."""

from __future__ import annotations

from types import SimpleNamespace

from aiohttp import web
from multidict import CIMultiDict

from tidegate.observe.journal import Entry, Journal
from tidegate.web.observe import middleware


async def test_the_fields_read_are_aiohttps_public_values(aiohttp_client):
    seen: list[str] = []

    async def page(request: web.Request) -> web.StreamResponse:
        assert request._transport_peername[0] == request.remote == "127.0.0.1"
        assert request._message.path == request.raw_path == "/simple/demo/?x=1"
        assert request._match_info is request.match_info
        assert request.match_info._route is request.match_info.route
        response = web.Response(body=b"a page", headers={"X-Tidegate-Cache": "hit"}, status=203)
        assert response._status == response.status == 203
        assert response._headers is response.headers
        assert response._body is response.body
        assert getattr(web.FileResponse("/dev/null"), "_body", None) is None  # a file's length is counted otherwise
        seen.append("checked")
        return response

    app = web.Application()
    app.router.add_get("/simple/{project}/", page)
    client = await aiohttp_client(app)
    async with client.get("/simple/demo/?x=1") as r:
        assert r.status == 203
    assert seen == ["checked"]


async def test_an_aiohttp_without_those_fields_is_observed_through_its_properties(aiohttp_client):
    """The same request, answered once by a real aiohttp and once by objects that have only the
    public properties, makes the same journal entry."""
    journal = Journal(None, None)
    observe = middleware(journal)

    async def page(request) -> web.StreamResponse:
        return web.Response(body=b"a page", headers={"X-Tidegate-Cache": "hit"})

    app = web.Application(middlewares=[observe])
    route = app.router.add_get("/simple/{project}/", page)
    client = await aiohttp_client(app)
    async with client.get("/simple/demo/?x=1") as r:
        assert r.status == 200
    real = Entry(*journal._entries.pop())

    public_response = SimpleNamespace(status=200, headers=CIMultiDict({"X-Tidegate-Cache": "hit"}), body=b"a page")
    match_info = {"project": "demo"}
    public_request = SimpleNamespace(method="GET", remote="127.0.0.1", raw_path="/simple/demo/?x=1",
                                     match_info=SimpleNamespace(route=route, get=match_info.get))

    async def answer(request):
        return public_response

    assert await observe(public_request, answer) is public_response
    public = Entry(*journal._entries.pop())
    assert real.peer[0] == public.peer == "127.0.0.1"
    same = ("method", "target", "route", "filename", "status", "sent", "cache", "upstreams")
    assert [getattr(real, f) for f in same] == [getattr(public, f) for f in same]
    assert (real.target, real.status, real.sent, real.cache) == ("/simple/demo/?x=1", 200, 6, "hit")
