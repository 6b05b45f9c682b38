#!/usr/bin/env python3
"""Warm-page latency while a worker digests a 60,000-link page (issue 8).

An upstream on 127.0.0.1 serves a 60,000-link HTML page (about 3.9 MB, like the issue's) under
a new name each round, and a one-file page. One `tidegate serve --workers 1` (so both requests
land on the same worker) is asked for the warm small page back to back while it fetches, parses,
renders and stores the big one. Printed side by side: the warm page's latency alone and during
the digest (p50 / p99 / max), and their ratio. Nothing here contacts a public index.

    python bench/bigpage.py [--rounds 5] [--links 60000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def big_page(name: str, links: int) -> bytes:
    rows = "".join(f'<a href="../../f/{name}-1.{i}.tar.gz">{name}-1.{i}.tar.gz</a>\n' for i in range(links))
    return f"<!DOCTYPE html><html><body>\n{rows}</body></html>\n".encode()


def upstream_process(port: int, links: int) -> None:
    pages: dict[str, bytes] = {}

    async def page(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name.startswith("big"):
            body = pages.get(name) or pages.setdefault(name, big_page(name, links))
            return web.Response(body=body, content_type="text/html")
        return web.Response(text=f'<a href="https://files.example/p/{name}-1.0.tar.gz">{name}-1.0.tar.gz</a>',
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/simple/{name}/", page)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def quantiles(samples: list[float]) -> tuple[float, float, float]:
    s = sorted(samples)
    return s[len(s) // 2] * 1000, s[min(len(s) - 1, int(len(s) * 0.99))] * 1000, s[-1] * 1000


async def warm_latencies(session: aiohttp.ClientSession, url: str, until: asyncio.Future | float) -> list[float]:
    samples = []
    while (not until.done()) if isinstance(until, asyncio.Future) else time.monotonic() < until:
        t = time.perf_counter()
        async with session.get(url) as r:
            await r.read()
            assert r.status == 200 and r.headers.get("X-Tidegate-Cache") == "hit", r.status
        samples.append(time.perf_counter() - t)
        await asyncio.sleep(0.002)
    return samples


async def run(origin: str, rounds: int) -> None:
    async with aiohttp.ClientSession() as session:
        small = f"{origin}/simple/small/"
        async with session.get(small) as r:
            assert r.status == 200
        alone: list[float] = []
        during: list[float] = []
        digest: list[float] = []
        for i in range(rounds):
            alone += await warm_latencies(session, small, time.monotonic() + 2.0)

            async def big(i: int = i) -> float:
                t = time.perf_counter()
                async with session.get(f"{origin}/simple/big-{i}/") as r:
                    body = await r.read()
                    assert r.status == 200 and len(body) > 1_000_000, r.status
                return time.perf_counter() - t

            task = asyncio.ensure_future(big())
            during += await warm_latencies(session, small, task)
            digest.append(await task)
            await asyncio.sleep(1.0)  # the record is stored after the answer
        a, d = quantiles(alone), quantiles(during)
        print(f"big page answered in {min(digest):.2f}-{max(digest):.2f} s ({rounds} rounds)")
        print(f"warm page alone:        p50 {a[0]:6.1f} ms  p99 {a[1]:6.1f} ms  max {a[2]:6.1f} ms  ({len(alone)} requests)")
        print(f"warm page during digest: p50 {d[0]:6.1f} ms  p99 {d[1]:6.1f} ms  max {d[2]:6.1f} ms  ({len(during)} requests)")
        print(f"ratio during/alone:      p50 {d[0] / a[0]:6.2f}x    p99 {d[1] / a[1]:6.2f}x    max {d[2] / a[2]:6.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--links", type=int, default=60_000)
    args = parser.parse_args()
    print(f"page of {args.links} links: {len(big_page('big-0', args.links)) / 1e6:.1f} MB")
    up_port, tg_port = free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--upstream", str(up_port), str(args.links)],
                                start_new_session=True)
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "TIDEGATE_CONFIG": os.devnull}
        server = subprocess.Popen([sys.executable, "-m", "tidegate", "serve", "--port", str(tg_port), "--workers", "1",
                                   "--data-dir", data, "--upstream", f"http://127.0.0.1:{up_port}/simple/"],
                                  env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", tg_port), timeout=1).close()
                    socket.create_connection(("127.0.0.1", up_port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            asyncio.run(run(f"http://127.0.0.1:{tg_port}", args.rounds))
        finally:
            for p in (server, upstream):
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--upstream":
        upstream_process(int(sys.argv[2]), int(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
