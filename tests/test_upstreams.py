"""Several upstreams: priority, dependency-confusion safety, opt-in merging, cooldown, auth."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web

from support.fakeindex import Fault
from support.servers import serve

JSON = "application/vnd.pypi.simple.v1+json"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"


async def page(tg, name):
    async with tg.get(f"/simple/{name}/", headers={"Accept": JSON}) as r:
        return r.status, (json.loads(await r.read()) if r.status == 200 else None)


async def test_first_upstream_that_has_the_project_wins_without_merging(fake_index, dists, tidegate):
    private, public = await fake_index("html"), await fake_index("json")
    private.index.add(dists.wheel("internal-tool", "1.0"))
    public.index.add(dists.wheel("internal-tool", "99.0"))  # a dependency-confusion upload
    public.index.add(dists.wheel("requests-like", "2.0"))
    tg = await tidegate(upstreams=[private.url, public.url])
    status, body = await page(tg, "internal-tool")
    assert [f["filename"] for f in body["files"]] == ["internal_tool-1.0-py3-none-any.whl"]
    status, body = await page(tg, "requests-like")  # only on the second upstream
    assert status == 200 and body["versions"] == ["2.0"]
    async with tg.get("/files/internal-tool/internal_tool-99.0-py3-none-any.whl") as r:
        assert r.status == 404


async def test_a_failing_priority_upstream_never_lets_a_lower_one_answer(fake_index, dists, tidegate):
    private, public = await fake_index("html"), await fake_index("json")
    private.index.add(dists.wheel("internal-tool", "1.0"))
    public.index.add(dists.wheel("internal-tool", "99.0"))
    tg = await tidegate(upstreams=[{"url": private.url, "retries": 0}, public.url])
    private.index.faults["/simple/internal-tool/"] = Fault(status=503)
    status, _ = await page(tg, "internal-tool")
    assert status == 502
    assert public.index.requests["/simple/internal-tool/"] == 0


async def test_merge_is_opt_in_per_project(fake_index, dists, tidegate):
    first, second = await fake_index("json"), await fake_index("html")
    first.index.add(dists.wheel("torchish", "1.0"))
    second.index.add(dists.wheel("torchish", "1.0"))  # same filename: the first upstream wins
    second.index.add(dists.wheel("torchish", "1.1"))
    tg = await tidegate(upstreams=[first.url, second.url], merge=["torch*"])
    _, body = await page(tg, "torchish")
    assert sorted(f["filename"] for f in body["files"]) == [
        "torchish-1.0-py3-none-any.whl", "torchish-1.1-py3-none-any.whl"]
    async with tg.get("/files/torchish/torchish-1.1-py3-none-any.whl") as r:
        assert r.status == 200
    async with tg.get("/files/torchish/torchish-1.0-py3-none-any.whl") as r:
        assert r.status == 200
    assert first.index.requests["/files/torchish-1.0-py3-none-any.whl"] == 1
    assert second.index.requests["/files/torchish-1.0-py3-none-any.whl"] == 0


async def test_merge_with_cooldown_serves_the_file_the_page_lists(fake_index, dists, tidegate):
    """When merging hides A's too-new file and lists B's of the same name, the download is B's
    file (the bytes whose hash the page lists), and A's cooled-down file is never fetched."""
    a = await fake_index("json")
    b = await fake_index("json")
    recent = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    a.index.add(dists.wheel("demo-pkg", "1.0", module_code="A = 1\n"), upload_time=recent)
    b.index.add(dists.wheel("demo-pkg", "1.0", module_code="B = 1\n"), upload_time="2020-01-01T00:00:00Z")
    tg = await tidegate(
        upstreams=[{"url": a.url, "cooldown": "1d"}, {"url": b.url}], merge=["demo-pkg"]
    )
    _, body = await page(tg, "demo-pkg")
    (entry,) = body["files"]
    assert entry["hashes"]["sha256"] == b.index.file(WHEEL).real_sha256()
    async with tg.get(f"/files/demo-pkg/{WHEEL}") as r:
        data = await r.read()
    assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"]
    assert a.index.requests[f"/files/{WHEEL}"] == 0  # A's file is under cooldown


async def test_cooldown_hides_recent_files(fake_index, dists, tidegate):
    idx = await fake_index("json")
    recent = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    idx.index.add(dists.wheel("fresh", "1.0"), upload_time="2020-01-01T00:00:00Z")
    idx.index.add(dists.wheel("fresh", "2.0"), upload_time=recent)
    tg = await tidegate(upstreams=[{"url": idx.url, "cooldown": "1d"}])
    _, body = await page(tg, "fresh")
    assert [f["filename"] for f in body["files"]] == ["fresh-1.0-py3-none-any.whl"]
    async with tg.get("/files/fresh/fresh-2.0-py3-none-any.whl") as r:
        assert r.status == 404


async def test_absolute_file_urls_and_credentials(fake_index, dists, tidegate):
    idx = await fake_index("html", relative_urls=False)
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    idx.index.basic_auth = ("ci", "p@ss")
    url = idx.url.replace("http://", "http://ci:p%40ss@")
    tg = await tidegate(upstreams=[url])
    status, body = await page(tg, "demo-pkg")
    assert status == 200, body
    async with tg.get("/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl") as r:
        assert r.status == 200
    assert all(e.path.startswith(("/simple/", "/files/")) for e in idx.index.log)


async def test_authorization_not_forwarded_on_cross_origin_redirect(fake_index, dists, tidegate):
    """Credentials go only to the upstream origin, also when it redirects a file elsewhere."""
    seen: list[str | None] = []
    wheel = dists.wheel("demo-pkg", "1.0")

    async def file(request):
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=wheel.read_bytes())

    app = web.Application()
    app.router.add_get("/elsewhere/{name}", file)
    async with serve(app) as other:
        idx = await fake_index("json")
        idx.index.add(wheel)
        idx.index.basic_auth = ("ci", "secret")
        idx.index.faults[f"/files/{WHEEL}"] = Fault(status=302, headers={"Location": f"{other}/elsewhere/{WHEEL}"})
        tg = await tidegate(upstreams=[{"url": idx.url, "username": "ci", "password": "secret"}])
        async with tg.get(f"/files/demo-pkg/{WHEEL}") as r:
            assert r.status == 200
            assert await r.read() == wheel.read_bytes()
        assert seen == [None]


async def test_retries_on_5xx(fake_index, dists, tidegate):
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    idx.index.faults["/simple/demo-pkg/"] = Fault(status=503, times=2)
    tg = await tidegate(upstreams=[{"url": idx.url, "retries": 2}])
    status, _ = await page(tg, "demo-pkg")
    assert status == 200
    assert idx.index.requests["/simple/demo-pkg/"] == 3


@pytest.mark.parametrize("fault", [Fault(status=403), Fault(status=401), "huge"])
async def test_one_projects_error_does_not_take_the_upstream_down(fake_index, dists, tidegate, fault):
    """A 401/403 or an over-max_page_size page for one project does not put the whole upstream
    into back-off: its other projects are still fetched."""
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    idx.index.add(dists.wheel("other", "1.0"))
    layers = {}
    if fault == "huge":
        idx.index.raw_pages["demo-pkg"] = (JSON, b'{"meta":{"api-version":"1.0"},"files":[]' + b" " * 20_000 + b"}")
        layers["max_page_size"] = 10_000
    else:
        idx.index.faults["/simple/demo-pkg/"] = fault
    tg = await tidegate(upstreams=[{"url": idx.url, "retries": 0}], **layers)
    async with tg.get("/simple/demo-pkg/") as r:
        assert r.status == 502
    async with tg.get("/simple/other/") as r:
        assert r.status == 200, await r.text()


async def test_max_connections_bounds_concurrent_file_downloads(fake_index, dists, tidegate):
    """max_connections holds for whole downloads, bodies included, not just until the headers."""
    idx = await fake_index("json")
    idx.index.add(dists.wheel("one", "1.0", padding=40_000))
    idx.index.add(dists.wheel("two", "1.0", padding=40_000))
    for name in ("one", "two"):
        idx.index.faults[f"/files/{name}-1.0-py3-none-any.whl"] = Fault(slow=0.02, chunk_size=4096)
    tg = await tidegate(upstreams=[{"url": idx.url, "max_connections": 1}])
    for name in ("one", "two"):
        async with tg.get(f"/simple/{name}/") as r:
            await r.read()

    async def get(name):
        async with tg.get(f"/files/{name}/{name}-1.0-py3-none-any.whl") as r:
            return await r.read()

    first = asyncio.ensure_future(get("one"))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(get("two"))
    await asyncio.sleep(0.1)
    # "one" needs ~0.2 s; while it is downloading, "two" must not have been requested yet.
    in_flight = not first.done()
    started_two = idx.index.requests["/files/two-1.0-py3-none-any.whl"]
    await asyncio.gather(first, second)
    assert in_flight
    assert started_two == 0


async def test_upstream_redirects_are_followed_for_pages_and_files(fake_index, dists, tidegate):
    idx = await fake_index("html")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    wheel = "/files/demo_pkg-1.0-py3-none-any.whl"
    idx.index.faults["/simple/demo-pkg/"] = Fault(status=301, headers={"Location": "/simple/demo-pkg/?moved=1"}, times=1)
    idx.index.faults[wheel] = Fault(status=302, headers={"Location": wheel + "?moved=1"}, times=1)
    tg = await tidegate(upstreams=[idx.url])
    status, body = await page(tg, "demo-pkg")
    assert status == 200 and body["files"][0]["filename"] == "demo_pkg-1.0-py3-none-any.whl"
    async with tg.get("/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl") as r:
        assert r.status == 200
        assert await r.read() == idx.index.file("demo_pkg-1.0-py3-none-any.whl").path.read_bytes()
    assert idx.index.requests["/simple/demo-pkg/"] == 2 and idx.index.requests[wheel] == 2


async def test_http_proxy_from_the_environment_and_no_proxy(fake_index, dists, tidegate, monkeypatch):
    """Corporate gateways: upstream traffic goes through HTTP_PROXY unless NO_PROXY exempts it."""
    import aiohttp

    seen: list[str] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        seen.append(str(request.url))  # a forward proxy gets the absolute URL
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            async with s.request(request.method, str(request.url), headers=request.headers,
                                 allow_redirects=False) as upstream:
                body = await upstream.read()
                return web.Response(status=upstream.status, body=body, headers={
                    k: v for k, v in upstream.headers.items()
                    if k.lower() not in ("transfer-encoding", "content-length", "connection")})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    async with serve(app) as proxy_url:
        idx = await fake_index("json")
        idx.index.add(dists.wheel("demo-pkg", "1.0"))
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        tg = await tidegate(upstreams=[idx.url])
        status, _ = await page(tg, "demo-pkg")
        assert status == 200
        async with tg.get("/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl") as r:
            assert r.status == 200
        assert any(u.endswith("/simple/demo-pkg/") for u in seen)
        assert any(u.endswith("/files/demo_pkg-1.0-py3-none-any.whl") for u in seen)

        seen.clear()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        tg2 = await tidegate(upstreams=[idx.url])
        assert (await page(tg2, "demo-pkg"))[0] == 200
        assert seen == []


async def test_connections_to_an_upstream_are_kept_alive(fake_index, dists, tidegate):
    idx = await fake_index("json")
    for i in range(10):
        idx.index.add(dists.wheel("demo-pkg", "1.0"), project=f"demo-{i}")
    tg = await tidegate(upstreams=[idx.url])
    for i in range(10):
        async with tg.get(f"/simple/demo-{i}/") as r:
            assert r.status == 200
        async with tg.get(f"/files/demo-{i}/demo_pkg-1.0-py3-none-any.whl") as r:
            assert r.status == 200
            await r.read()
    assert len(idx.index.connections) <= 2  # pages and files, one after another, over one connection


async def test_a_burst_of_cold_pages_is_fetched_concurrently(fake_index, dists, tidegate):
    """uv asks for dozens of pages at once: they reach the upstream at once, not one by one."""
    idx = await fake_index("json")
    wheel = dists.wheel("demo-pkg", "1.0")
    for i in range(24):
        idx.index.add(wheel, project=f"demo-{i}")
        idx.index.faults[f"/simple/demo-{i}/"] = Fault(delay=0.2)
    tg = await tidegate(upstreams=[idx.url])

    async def get(i):
        async with tg.get(f"/simple/demo-{i}/") as r:
            return r.status

    assert set(await asyncio.gather(*(get(i) for i in range(24)))) == {200}
    assert idx.index.max_in_flight >= 20
