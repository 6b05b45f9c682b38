"""A served page: each representation and content coding rendered once, on first use, each with
its own strong ETag."""

from __future__ import annotations

import asyncio
import gzip

import zstandard

from tidegate.readpath.pages import Page, file_link, public_view
from tidegate.simple.model import File, Project
from tidegate.simple.negotiate import Encoding, Representation

HTML_BODY = b"<html>" + b"x" * 2000
JSON_BODY = b'{"files": []}'


def counting_page(*, big: bool = False) -> tuple[Page, dict[str, int]]:
    calls = {"html": 0, "json": 0}

    def html() -> bytes:
        calls["html"] += 1
        return HTML_BODY

    def json() -> bytes:
        calls["json"] += 1
        return JSON_BODY

    return Page(html, json, 1700000000.0, big=big), calls


async def test_nothing_is_rendered_before_it_is_asked_for_and_nothing_twice():
    page, calls = counting_page()
    assert calls == {"html": 0, "json": 0} and page.weight == 256
    assert page.cached(Representation.JSON) is None
    for _ in range(3):
        await page.rendered(Representation.JSON)
    assert calls == {"html": 0, "json": 1} and page.cached(Representation.JSON) is not None
    await page.rendered(Representation.HTML)
    await page.rendered(Representation.TEXT)
    await page.rendered(Representation.HTML, Encoding.GZIP)
    assert calls == {"html": 1, "json": 1}


async def test_every_representation_and_coding_has_its_own_etag():
    page, _ = counting_page()
    rendered = [await page.rendered(rep, enc) for rep in (Representation.HTML, Representation.TEXT)
                for enc in Encoding]
    assert len({r.etag for r in rendered}) == 6
    assert page.last_modified == "Tue, 14 Nov 2023 22:13:20 GMT"


async def test_compressed_bodies_decompress_to_the_same_page():
    page, _ = counting_page()
    gz = await page.rendered(Representation.HTML, Encoding.GZIP)
    zst = await page.rendered(Representation.HTML, Encoding.ZSTD)
    assert (gz.encoding, zst.encoding) == (Encoding.GZIP, Encoding.ZSTD)
    assert gzip.decompress(gz.body) == HTML_BODY
    assert zstandard.ZstdDecompressor().decompress(zst.body) == HTML_BODY
    assert page.weight == 256 + len(HTML_BODY) + len(gz.body) + len(zst.body)  # shared bodies once


async def test_a_small_body_is_not_compressed():
    page, _ = counting_page()
    small = await page.rendered(Representation.JSON, Encoding.GZIP)
    assert small.encoding is Encoding.IDENTITY and small.body == JSON_BODY
    assert small.etag == (await page.rendered(Representation.JSON)).etag


async def test_concurrent_requests_for_a_big_page_render_it_once_off_the_loop():
    page, calls = counting_page(big=True)
    results = await asyncio.gather(*(page.rendered(Representation.HTML, Encoding.ZSTD) for _ in range(5)))
    assert len({r.etag for r in results}) == 1 and calls["html"] == 1


def test_clients_see_links_to_tidegate_and_metadata_for_every_wheel():
    project = Project("demo-pkg", (
        File("demo_pkg-1.0-py3-none-any.whl", "https://files.example/a/demo_pkg-1.0-py3-none-any.whl"),
        File("demo_pkg-1.0.tar.gz", "https://files.example/b/demo_pkg-1.0.tar.gz"),
    ))
    wheel, sdist = public_view(project).files
    assert wheel.url == file_link("demo-pkg", wheel.filename) == "../../files/demo-pkg/demo_pkg-1.0-py3-none-any.whl"
    assert wheel.core_metadata is True and sdist.core_metadata is None
