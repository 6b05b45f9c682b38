"""The landing page at /: copy-paste configuration built from the URL the client used, as plain
text and as HTML (escaped, and checked in a real browser when chromium is installed)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

UPSTREAM = "http://mirror-user:hunter2@127.0.0.1:9/simple/"


async def text_of(tg, **headers) -> str:
    async with tg.get("/", headers=headers) as r:
        assert r.status == 200 and r.headers["Vary"] == "Accept"
        return await r.text()


async def test_plain_text_for_curl_with_every_client_configuration(tidegate):
    tg = await tidegate(upstreams=[UPSTREAM])
    text = await text_of(tg, Accept="*/*")
    index, legacy = f"{tg.origin}/simple/", f"{tg.origin}/legacy/"
    assert f"Index URL: {index}" in text
    assert f"pip install --index-url {index} PACKAGE" in text
    assert f"index-url = {index}" in text  # pip.conf
    assert f'url = "{index}"' in text and "[[tool.uv.index]]" in text and f'publish-url = "{legacy}"' in text
    assert f"repository = {legacy}" in text  # .pypirc
    assert f"uv publish --publish-url {legacy}" in text
    assert "http://127.0.0.1:9/simple/" in text and "hunter2" not in text and "mirror-user" not in text
    assert "Cache: files: 0 (0 bytes); pages and metadata: 0 (0 bytes)" in text


async def test_built_from_the_host_the_client_used(tidegate):
    tg = await tidegate(upstreams=[])
    text = await text_of(tg, Host="pypi.example.test:8080")
    assert "Index URL: http://pypi.example.test:8080/simple/" in text
    # Plain http on another machine: pip needs it named a trusted host.
    assert "--trusted-host pypi.example.test:8080" in text and "trusted-host = pypi.example.test:8080" in text
    # A forwarded header from an untrusted peer changes nothing.
    text = await text_of(tg, Host="pypi.example.test", **{"X-Forwarded-Proto": "https",
                                                            "X-Forwarded-Host": "evil.test"})
    assert "http://pypi.example.test/simple/" in text and "evil.test" not in text
    # A Host that is no host name is not used.
    text = await text_of(tg, Host="<script>x</script>")
    assert "<script>" not in text and f"Index URL: {tg.origin}/simple/" in text


async def test_trusted_proxies_forwarded_url(tidegate):
    tg = await tidegate(upstreams=[], trusted_proxies=["127.0.0.0/8"])
    text = await text_of(tg, Host="internal:5780", **{"X-Forwarded-Proto": "https",
                                                      "X-Forwarded-Host": "pypi.corp.example"})
    assert "Index URL: https://pypi.corp.example/simple/" in text and "trusted-host" not in text


async def test_html_for_browsers_is_escaped(tidegate):
    tg = await tidegate(upstreams=["http://127.0.0.1:9/simple/<b>x</b>/"])
    async with tg.get("/", headers={"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}) as r:
        assert r.headers["Content-Type"].startswith("text/html")
        page = await r.text()
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert f'<code id="index-url">{tg.origin}/simple/</code>' in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
async def test_renders_in_headless_chromium(tidegate, tmp_path):
    tg = await tidegate(upstreams=[UPSTREAM])
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path}",
        "--dump-dom", tg.origin + "/", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    dom, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    dom = dom.decode()
    assert f'<code id="index-url">{tg.origin}/simple/</code>' in dom
    assert "<h2>uv.toml</h2>" in dom and "<h2>.pypirc</h2>" in dom
    assert "http://127.0.0.1:9/simple/" in dom and "hunter2" not in dom
