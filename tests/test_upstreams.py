"""Several upstreams: priority, dependency-confusion safety, opt-in merging, cooldown, auth."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from support.fakeindex import Fault

JSON = "application/vnd.pypi.simple.v1+json"


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


async def test_retries_on_5xx(fake_index, dists, tidegate):
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    idx.index.faults["/simple/demo-pkg/"] = Fault(status=503, times=2)
    tg = await tidegate(upstreams=[{"url": idx.url, "retries": 2}])
    status, _ = await page(tg, "demo-pkg")
    assert status == 200
    assert idx.index.requests["/simple/demo-pkg/"] == 3


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
    from aiohttp import web

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
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    proxy_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
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
    finally:
        await runner.cleanup()
