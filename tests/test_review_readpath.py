"""Review of the read path against issue 2: each test pins one finding (most fail today)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web

from support.dists import wheel_metadata
from support.fakeindex import Fault

JSON = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"
FILE_PATH = f"/files/demo-pkg/{WHEEL}"
UPSTREAM_FILE = f"/files/{WHEEL}"


async def raw_request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return data


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


# --- metadata: StreamReader.read(n) returns what is buffered, not n bytes ----------------------


async def test_upstream_metadata_larger_than_one_read_is_fetched_whole(fake_index, dists, tidegate):
    """proxy._upstream_metadata -> client.fetch_bytes uses response.content.read(limit + 1),
    which returns as soon as *some* bytes are buffered. A METADATA with a long description that
    arrives in several TCP reads is truncated: hash mismatch -> 502 (or, with no advertised
    hash, a truncated METADATA is cached forever)."""
    idx = await fake_index("json")
    description = b"".join(b"line %d of a long README\n" % i for i in range(4000))  # ~100 KB
    body = b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n\n" + description
    idx.index.add(dists.wheel("demo-pkg", "1.0"), metadata=body)
    idx.index.faults[UPSTREAM_FILE + ".metadata"] = Fault(slow=0.001, chunk_size=16384)
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get(FILE_PATH + ".metadata") as r:
        text = await r.read()
        assert r.status == 200, text
    assert text == body


async def test_ranged_metadata_tail_read_is_not_truncated(fake_index, dists, tidegate):
    """Same bug on the Range path: the first `bytes=-TAIL` read comes back short when the upstream
    sends the tail in several chunks, and extraction fails with a 502."""
    idx = await fake_index("negotiate")
    idx.index.add(dists.wheel("demo-pkg", "1.0", padding=300_000), serve_metadata=False)
    idx.index.faults[UPSTREAM_FILE] = Fault(slow=0.001, chunk_size=4096, times=1)
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get(FILE_PATH + ".metadata") as r:
        text = await r.read()
        assert r.status == 200, text
    assert text == wheel_metadata(idx.index.file(WHEEL).path)


# --- bad input that still produces a 500 ---------------------------------------------------------


async def test_range_with_unicode_digit_is_not_a_500(fake_index, dists, tidegate):
    """ranges.parse_range uses str.isdigit(), true for '²' (U+00B2), then int('²') raises
    ValueError: a client-controlled header gives 500."""
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get(FILE_PATH) as r:
        await r.read()
    for digit in ("\u00b2", "\u0663"):  # superscript two; Arabic-Indic three (int() takes that one)
        for encoding in ("utf-8", "latin-1"):
            try:
                raw = digit.encode(encoding)
            except UnicodeEncodeError:
                continue
            request = (
                f"GET {FILE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nRange: bytes=".encode()
                + raw + b"-\r\n\r\n"
            )
            answer = await raw_request(tg.port, request)
            status_line = answer.split(b"\r\n", 1)[0]
            assert b" 500 " not in status_line, (digit, encoding, status_line)


async def test_metadata_fallback_when_wheel_larger_than_cache_is_not_a_500(fake_index, dists, tidegate):
    """proxy._ranged_metadata (upstream ignores Range) -> fetch_file commits the wheel, commit()
    evicts it at once (larger than files_max_size), then read_wheel_metadata_from_path raises
    FileNotFoundError, which web/files.metadata does not catch: 500. The same race exists
    between blobs.exists() and the read in _find_metadata."""
    idx = await fake_index("html", ranges=False)
    idx.index.add(dists.wheel("demo-pkg", "1.0", padding=200_000), serve_metadata=False)
    tg = await tidegate(upstreams=[idx.url], files_max_size=50_000)
    async with tg.get(FILE_PATH + ".metadata") as r:
        assert r.status != 500, await r.text()


async def test_head_on_file_larger_than_cache_is_answered(fake_index, dists, tidegate):
    """A file bigger than files_max_size is evicted by the commit that stores it: HEAD and Range
    requests then answer 503 forever, and every GET downloads it again."""
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "1.0", padding=200_000))
    tg = await tidegate(upstreams=[idx.url], files_max_size=50_000)
    async with tg.head(FILE_PATH) as r:
        assert r.status == 200
    async with tg.get(FILE_PATH, headers={"Range": "bytes=0-9"}) as r:
        assert r.status == 206


# --- negotiation ---------------------------------------------------------------------------------


async def test_q0_on_v1_json_is_not_bypassed_through_latest(fake_index, dists, tidegate):
    """negotiate() can pick `latest+json` (reached via application/*) and answer it with the v1
    JSON type the client just excluded with q=0."""
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    tg = await tidegate(upstreams=[idx.url])
    accept = f"application/*, {JSON};q=0"
    async with tg.get("/simple/demo-pkg/", headers={"Accept": accept}) as r:
        assert r.status in (200, 406)
        assert not r.headers.get("Content-Type", "").startswith(JSON), r.headers["Content-Type"]


async def test_root_index_has_validators_and_configured_max_age(fake_index, dists, tidegate):
    """/simple/ has no ETag, no Last-Modified, never answers 304 and hardcodes max-age=60
    (issue: strong ETag per representation, Last-Modified, configurable max-age, 304)."""
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    tg = await tidegate(upstreams=[idx.url], max_age=123)
    async with tg.get("/simple/demo-pkg/") as r:
        await r.read()
    async with tg.get("/simple/", headers={"Accept": JSON}) as r:
        assert r.status == 200
        assert "ETag" in r.headers and "Last-Modified" in r.headers
        assert r.headers["Cache-Control"].endswith("max-age=123")
        etag = r.headers["ETag"]
    async with tg.get("/simple/", headers={"Accept": JSON, "If-None-Match": etag}) as r:
        assert r.status == 304 and r.headers["Vary"] == "Accept"


# --- upstream handling ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault(status=403), Fault(status=401), "huge"])
async def test_one_projects_error_does_not_take_the_upstream_down(fake_index, dists, tidegate, fault):
    """client.fetch_page sets the 15 s FAILURE_BACKOFF for any UpstreamError except UnusablePage:
    a 401/403 or an over-max_page_size page for ONE project makes every other uncached project
    of that upstream 502 for 15 s."""
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


async def test_merge_with_cooldown_serves_the_file_the_page_lists(fake_index, dists, tidegate, tmp_path):
    """policy.combine hides upstream A's too-new file and lists B's (same filename, B's hash), but
    proxy.source_of returns the first part that has the filename, A: the client downloads A's
    (cooled-down!) bytes, which do not match the hash on the page."""
    a = await fake_index("json")
    b = await fake_index("json")
    recent = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    a.index.add(dists.wheel("demo-pkg", "1.0", module_code="A = 1\n"), upload_time=recent)
    b.index.add(dists.wheel("demo-pkg", "1.0", module_code="B = 1\n"), upload_time="2020-01-01T00:00:00Z")
    tg = await tidegate(
        upstreams=[{"url": a.url, "cooldown": "1d"}, {"url": b.url}], merge=["demo-pkg"]
    )
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        page = json.loads(await r.read())
    (entry,) = page["files"]
    assert entry["hashes"]["sha256"] == b.index.file(WHEEL).real_sha256()
    async with tg.get(FILE_PATH) as r:
        body = await r.read()
    assert hashlib.sha256(body).hexdigest() == entry["hashes"]["sha256"]
    assert a.index.requests[UPSTREAM_FILE] == 0  # A's file is under cooldown


async def test_files_sent_with_content_encoding_are_stored_as_sent(tidegate, dists):
    """A static host that serves .tar.gz with `Content-Encoding: gzip` (a common S3/nginx
    misconfiguration): the ClientSession has auto_decompress=True, so tidegate hashes the
    *decompressed* tar and refuses the file; pip (decode_content=False) downloads it fine."""
    sdist = dists.sdist("demo-pkg", "1.0").read_bytes()
    digest = hashlib.sha256(sdist).hexdigest()
    assert gzip.decompress(sdist)  # it really is gzip data

    async def page(request):
        doc = {"meta": {"api-version": "1.1"}, "name": "demo-pkg", "versions": ["1.0"], "files": [
            {"filename": "demo_pkg-1.0.tar.gz", "url": "/f/demo_pkg-1.0.tar.gz",
             "hashes": {"sha256": digest}, "size": len(sdist)}]}
        return web.Response(body=json.dumps(doc).encode(), content_type=JSON)

    async def file(request):
        return web.Response(body=sdist, headers={"Content-Type": "application/x-tar", "Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/simple/demo-pkg/", page)
    app.router.add_get("/f/demo_pkg-1.0.tar.gz", file)
    runner, origin = await serve_app(app)
    try:
        tg = await tidegate(upstreams=[{"url": f"{origin}/simple/", "retries": 0}])
        async with tg.get("/files/demo-pkg/demo_pkg-1.0.tar.gz") as r:
            assert r.status == 200
            body = await r.read()
        assert body == sdist
    finally:
        await runner.cleanup()


async def test_max_connections_bounds_concurrent_file_downloads(fake_index, dists, tidegate):
    """UpstreamClient.open holds the semaphore only until the response headers arrive; the body
    is read outside it, so max_connections does not bound downloads."""
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


# --- metadata served must match what the page advertises ----------------------------------------


async def test_extracted_metadata_matches_the_advertised_hash(fake_index, dists, tidegate):
    """When the upstream advertises core-metadata sha256=X but its .metadata URL fails, tidegate
    falls back to extracting METADATA from the wheel and serves it without checking X: the client
    gets 200 with bytes that fail the hash the page lists."""
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "1.0"), metadata=b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\nSummary: upstream copy\n\n")
    idx.index.faults[UPSTREAM_FILE + ".metadata"] = Fault(status=404)
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        page = json.loads(await r.read())
    advertised = page["files"][0]["core-metadata"]["sha256"]
    async with tg.get(FILE_PATH + ".metadata") as r:
        body = await r.read()
        status = r.status
    assert status != 200 or hashlib.sha256(body).hexdigest() == advertised


# --- credentials ---------------------------------------------------------------------------------


def test_startup_log_does_not_print_upstream_password(tmp_path):
    """cli.serve logs `u.url` for every upstream; config keeps user:password in the URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidegate", "serve", "--port", "0", "--workers", "1",
         "--data-dir", str(tmp_path / "d"), "--upstream", "http://ci:hunter2@127.0.0.1:9/simple/"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env={**os.environ, "TIDEGATE_CONFIG": ""},
    )
    try:
        deadline = time.monotonic() + 10
        line = b""
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if b"serving" in line or not line:
                break
        assert b"serving" in line, line
        assert b"hunter2" not in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)


async def test_authorization_not_forwarded_on_cross_origin_redirect(fake_index, dists, tidegate):
    """Credentials go only to the upstream origin, also when it redirects a file elsewhere."""
    seen: list[str | None] = []
    wheel = dists.wheel("demo-pkg", "1.0")

    async def file(request):
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=wheel.read_bytes())

    app = web.Application()
    app.router.add_get("/elsewhere/{name}", file)
    runner, other = await serve_app(app)
    try:
        idx = await fake_index("json")
        idx.index.add(wheel)
        idx.index.basic_auth = ("ci", "secret")
        idx.index.faults[UPSTREAM_FILE] = Fault(status=302, headers={"Location": f"{other}/elsewhere/{WHEEL}"})
        tg = await tidegate(upstreams=[{"url": idx.url, "username": "ci", "password": "secret"}])
        async with tg.get(FILE_PATH) as r:
            assert r.status == 200
            assert await r.read() == wheel.read_bytes()
        assert seen == [None]
    finally:
        await runner.cleanup()


async def test_change_within_the_same_second_is_not_answered_304(fake_index, dists, tidegate):
    """Last-Modified has 1 s resolution and not_modified() compares int(changed_at) <= IMS: a page
    that changes in the same second it was fetched answers a revalidating client (no-cache +
    If-Modified-Since, as `uv publish --check-url` style checks do) 304 with the OLD page.
    Fix: make changed_at strictly increase by >= 1 s per change (as the fake upstream does), or
    only answer 304 on If-Modified-Since when Last-Modified is at least 1 s in the past."""
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    tg = await tidegate(upstreams=[idx.url])
    while time.time() % 1 > 0.3:  # start early in a second so everything below shares it
        await asyncio.sleep(0.05)
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        last_modified = r.headers["Last-Modified"]
        await r.read()
    idx.index.add(dists.wheel("demo-pkg", "2.0"))
    headers = {"Accept": JSON, "Cache-Control": "no-cache", "If-Modified-Since": last_modified}
    async with tg.get("/simple/demo-pkg/", headers=headers) as r:
        assert r.status == 200, (r.status, r.headers.get("X-Tidegate-Cache"))
        assert len(json.loads(await r.read())["files"]) == 2
