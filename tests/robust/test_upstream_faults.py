"""Upstream fault injection for pages and files: whatever the upstream does (reset, short body,
wrong bytes, trickle, hang, 5xx, garbage), no client gets a 500, and no client ever gets a
complete 200 with wrong bytes; once the upstream heals, the right file is served."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
from collections import Counter

import aiohttp
import pytest

from support.dists import build_wheel
from support.fakeindex import Fault

TIMEOUT = 0.3  # the upstream's read timeout here; its page deadline is 4 times that
CLIENT_PATIENCE = 5.0  # a file trickled to the client is streamed as it comes: the client gives up

FAULTS = {
    "reset": Fault(reset_after=0),
    "short": Fault(reset_after=700),
    "wrong-bytes": Fault(corrupt=True),
    "trickle": Fault(slow=TIMEOUT / 2, chunk_size=2048),  # never TIMEOUT without a byte; ~5 s for the file
    "hang": Fault(delay=TIMEOUT * 4),
    "5xx": Fault(status=503),
    "4xx": Fault(status=403),
    "redirect-loop": Fault(status=302),  # to itself
}
GARBAGE_PAGES = {
    "binary": ("text/html", os.urandom(4096)),
    "json-garbage": ("application/vnd.pypi.simple.v1+json", b'{"files": [{"filename": 1}], "meta": "x"'),
    "json-wrong-types": ("application/vnd.pypi.simple.v1+json", b'{"meta": {"api-version": 1}, "files": {}}'),
    "deep": ("application/vnd.pypi.simple.v1+json", b"[" * 100_000),
    "unclosed-tags": ("text/html", b"<a " * 20_000),
    "hostile-links": ("text/html", b'<a href="javascript:alert(1)">x-1.0.tar.gz</a><a href="../../../etc/passwd">'
                                   b'passwd</a><a href="file:///etc/shadow">y-1.0.tar.gz</a>'),
}


tally: Counter[str] = Counter()  # requests, statuses and wrong bytes over the module


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print(f"\nupstream faults: {tally['cases']} cases, {tally['requests']} requests; complete 200s "
          f"{tally['complete 200']}, wrong bytes {tally['wrong bytes']}, cut short {tally['cut short']}, "
          f"500s {tally['500']}; statuses {dict((k, v) for k, v in tally.items() if k.isdigit())}", file=sys.__stdout__)


def upstream(idx, **kw) -> dict:
    return {"url": idx.url, "timeout": TIMEOUT, "retries": 1, **kw}


async def fetch(tg, path: str) -> tuple[int, bytes | None]:
    """(status, body) or (status, None) when the transfer was cut short."""
    tally["requests"] += 1
    status, body = await _fetch(tg, path)
    tally[str(status)] += 1
    tally["cut short" if body is None else "answered"] += 1
    return status, body


async def _fetch(tg, path: str) -> tuple[int, bytes | None]:
    try:
        async with tg.get(path, timeout=aiohttp.ClientTimeout(total=CLIENT_PATIENCE)) as r:
            try:
                return r.status, await r.read()
            except (aiohttp.ClientPayloadError, TimeoutError):  # cut short, or still trickling
                return r.status, None
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return 0, None


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize("what", ["file", "cold page", "stale page"])
async def test_upstream_faults_never_give_wrong_bytes_or_a_500(tidegate, fake_index, dist_dir, caplog, kind, what):
    tally["cases"] += 1
    idx = await fake_index()
    wheel = build_wheel(dist_dir, "victim", "1.0", padding=64 * 1024)
    idx.index.add(wheel)
    tg = await tidegate(upstreams=[upstream(idx, ttl=0)])  # every page request asks the upstream
    page = "/simple/victim/"
    file = f"/files/victim/{wheel.name}"
    if what == "stale page":
        assert (await fetch(tg, page))[0] == 200
    fault = FAULTS[kind]
    target = f"/files/{wheel.name}" if what == "file" else "/simple/victim/"
    if what == "file":
        assert (await fetch(tg, page))[0] == 200  # the page is fine, the file is not
    headers = {"Location": target} if fault.status == 302 else fault.headers
    idx.index.faults[target] = Fault(**{**fault.__dict__, "times": None, "headers": headers})
    for _ in range(2):
        if what == "file":
            status, body = await fetch(tg, file)
            assert status != 500
            if status == 200 and body is not None:
                tally["complete 200"] += 1
                tally["wrong bytes"] += body != wheel.read_bytes()
                assert hashlib.sha256(body).digest() == hashlib.sha256(wheel.read_bytes()).digest()
        else:
            status, body = await fetch(tg, page)
            # Cold: nothing to serve but a refusal; stale: the last good copy.
            assert status in ((200, 502, 503, 504) if what == "cold page" else (200,)), (status, body)
            if status == 200:
                assert wheel.name.encode() in body  # the stale copy, or the page itself
    del idx.index.faults[target]
    await asyncio.sleep(0)
    # Healed: the real file, the real page (after the back-off, if it was tripped).
    for _ in range(40):
        status, body = await fetch(tg, file if what == "file" else page)
        if status == 200 and body is not None:
            break
        await asyncio.sleep(0.5)
    assert status == 200 and body is not None
    if what == "file":
        assert body == wheel.read_bytes()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("kind", GARBAGE_PAGES)
async def test_garbage_pages_are_a_502_never_a_500(tidegate, fake_index, caplog, kind):
    tally["cases"] += 1
    idx = await fake_index()
    idx.index.raw_pages["victim"] = GARBAGE_PAGES[kind]
    tg = await tidegate(upstreams=[upstream(idx)])
    status, body = await fetch(tg, "/simple/victim/")
    assert status in (200, 404, 502), (status, body)
    if status == 200:  # only http(s) links survive, and each as a link of ours
        assert b"javascript" not in body and b"file:" not in body and b"/etc/" not in body
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_slow_request_never_puts_a_healthy_upstream_into_back_off(tidegate, fake_index, dist_dir):
    idx = await fake_index()
    for name in ("slow", "fine", "also-fine"):
        idx.index.add(build_wheel(dist_dir, name, "1.0"))
    tg = await tidegate(upstreams=[upstream(idx)])
    idx.index.faults["/simple/slow/"] = Fault(delay=TIMEOUT * 6)
    status, _ = await fetch(tg, "/simple/slow/")
    assert status in (502, 504)
    # The upstream answers everything else: nothing is refused for an outage that is not one.
    assert (await fetch(tg, "/simple/fine/"))[0] == 200
    assert (await fetch(tg, "/simple/also-fine/"))[0] == 200


async def test_an_upstream_trickling_a_page_forever_is_cut_at_the_page_deadline(tidegate, fake_index, dist_dir):
    idx = await fake_index()
    idx.index.add(build_wheel(dist_dir, "drip", "1.0"))
    idx.index.raw_pages["drip"] = ("text/html", b"<!-- " + b"x" * 100_000 + b" -->")
    idx.index.faults["/simple/drip/"] = Fault(slow=TIMEOUT / 2, chunk_size=8)  # a byte well within the timeout
    tg = await tidegate(upstreams=[upstream(idx)])
    started = asyncio.get_running_loop().time()
    status, body = await fetch(tg, "/simple/drip/")
    assert status == 502 and b"in time" in body
    # Generous: the deadline is 4 read timeouts per attempt (2 attempts), far below the trickle's 50 min.
    assert asyncio.get_running_loop().time() - started < 60
