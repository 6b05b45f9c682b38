"""Root lists the size of PyPI's: fetched, stored and written out in bounded memory."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tidegate.config import build
from tidegate.readpath.roots import RootLists
from tidegate.simple.negotiate import Encoding, Representation
from tidegate.storage import open_storage
from tidegate.upstream.client import UpstreamClient

NAMES = 150_000  # a quarter of PyPI's list: big enough that holding it would show


@pytest.fixture
async def big_root() -> str:
    """An upstream whose root list has NAMES projects, sent as it is generated."""

    async def root(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        await response.write(b"<!DOCTYPE html>\n<html><body>\n")
        for start in range(0, NAMES, 10_000):
            await response.write("".join(f'<a href="/simple/p{i:07d}/">P_{i:07d}</a>\n'
                                         for i in range(start, min(start + 10_000, NAMES))).encode())
        await response.write(b"</body></html>\n")
        return response

    app = web.Application()
    app.router.add_get("/simple/", root)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/simple/"
    await runner.cleanup()


async def test_a_root_list_the_size_of_pypis_in_bounded_memory(big_root: str, tmp_path: Path):
    settings = build({"data_dir": str(tmp_path / "data"), "upstreams": [big_root]})
    storage = await open_storage(settings)
    async with aiohttp.ClientSession() as session:
        roots = RootLists(settings, storage, [UpstreamClient(settings.upstreams[0], session, settings.max_page_size)])
        tracemalloc.start()
        page = await roots.page({"local-only"})
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    await storage.close()
    html_path, _ = page.files[Representation.HTML, Encoding.IDENTITY]
    size = html_path.stat().st_size
    assert size > 5_000_000  # the page: 150,000 links
    # Holding the names alone would take ~12 MB; the whole path peaked far below that.
    assert peak < 5_000_000, peak
    with open(page.files[Representation.JSON, Encoding.GZIP][0], "rb") as fh:
        listed = gzip.decompress(fh.read())
    assert listed.count(b'"name"') == NAMES + 1 and b'"local-only"' in listed
    assert listed.index(b'"local-only"') < listed.index(b'"p-0000000"')  # sorted
