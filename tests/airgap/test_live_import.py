"""A running `tidegate serve` (two workers, online or --offline) sees an imported bundle on the
very next request: no restart, no waiting for a page's ttl or the root list's memo."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from support.serveproc import Serve

from .mirror import tidegate_cmd

JSON = "application/vnd.pypi.simple.v1+json"
# Online, the server's upstream refuses connections: whatever it shows came from the bundles.
CONFIG = """
offline = {offline}
[[upstreams]]
url = "http://127.0.0.1:9/simple/"
ttl = "1d"
timeout = 2
retries = 0
"""
REQUESTS = 12  # one connection each, so both workers answer


async def _fill(tidegate, idx, data_dir, paths):
    tg = await tidegate(upstreams=[idx.url], data_dir=str(data_dir), min_refresh=0)
    for path in paths:
        async with tg.get(path, headers={"Cache-Control": "max-age=0"}) as r:
            assert r.status == 200, path
            await r.read()
    await tg.close()


async def _every_worker(origin: str, path: str) -> list[tuple[int, bytes]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        async def one():
            async with session.get(origin + path, headers={"Accept": JSON}) as r:
                return r.status, await r.read()
        return await asyncio.gather(*(one() for _ in range(REQUESTS)))


def _files(body: bytes) -> list[str]:
    return [f["filename"] for f in json.loads(body)["files"]]


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
async def test_a_serving_process_sees_an_import_on_the_next_request(fake_index, dists, tidegate, tmp_path, offline):
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-lib", "1.0"))
    source = tmp_path / "source"
    await _fill(tidegate, idx, source, ["/simple/demo-lib/", "/files/demo-lib/demo_lib-1.0-py3-none-any.whl"])
    first, second = tmp_path / "one.tgb", tmp_path / "two.tgb"
    code, out = await tidegate_cmd("export", "--data-dir", str(source), "--output", str(first))
    assert code == 0, out
    target = tmp_path / "target"
    code, out = await tidegate_cmd("import", str(first), "--data-dir", str(target))
    assert code == 0, out

    config = tmp_path / "serve.toml"
    config.write_text(CONFIG.format(offline=str(offline).lower()))
    server = Serve(config, target, workers=2)
    await server.start()
    try:
        # Every worker holds the page and the root list in memory now.
        for status, body in await _every_worker(server.origin, "/simple/demo-lib/"):
            assert status == 200 and _files(body) == ["demo_lib-1.0-py3-none-any.whl"]
        for status, body in await _every_worker(server.origin, "/simple/"):
            assert status == 200 and [p["name"] for p in json.loads(body)["projects"]] == ["demo-lib"]

        idx.index.add(dists.wheel("demo-lib", "2.0"))
        idx.index.add(dists.wheel("demo-new", "1.0"))
        await _fill(tidegate, idx, source, [
            "/simple/demo-lib/", "/files/demo-lib/demo_lib-2.0-py3-none-any.whl",
            "/simple/demo-new/", "/files/demo-new/demo_new-1.0-py3-none-any.whl"])
        code, out = await tidegate_cmd("export", "--data-dir", str(source), "--since", str(first),
                                       "--output", str(second))
        assert code == 0, out
        for status, body in await _every_worker(server.origin, "/simple/"):  # remembered anew, for 10 s
            assert status == 200 and [p["name"] for p in json.loads(body)["projects"]] == ["demo-lib"]
        code, out = await tidegate_cmd("import", str(second), "--data-dir", str(target))
        assert code == 0, out

        for status, body in await _every_worker(server.origin, "/simple/demo-lib/"):
            assert status == 200 and _files(body) == ["demo_lib-1.0-py3-none-any.whl", "demo_lib-2.0-py3-none-any.whl"]
        for status, body in await _every_worker(server.origin, "/simple/"):
            assert status == 200 and [p["name"] for p in json.loads(body)["projects"]] == ["demo-lib", "demo-new"]
        for status, body in await _every_worker(server.origin, "/simple/demo-new/"):
            assert status == 200 and _files(body) == ["demo_new-1.0-py3-none-any.whl"]
        async with aiohttp.ClientSession() as session:
            async with session.get(server.origin + "/files/demo-lib/demo_lib-2.0-py3-none-any.whl") as r:
                wheel = idx.index.file("demo_lib-2.0-py3-none-any.whl").path.read_bytes()
                assert r.status == 200 and await r.read() == wheel
        assert server.tracebacks() == 0
    finally:
        server.stop()
