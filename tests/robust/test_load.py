"""A bounded load test: 1,000 concurrent connections against a real `tidegate serve` (2 workers)
with a mixed workload (warm HTML and JSON pages, 304s, cached files, ranges, metadata), once with
warm pages only and once with 10% cold pages. Asserts 0 errors; prints p50/p99 of each phase
(timings are reported, not asserted, beyond a generous bound)."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from typing import Callable

import aiohttp

from support.dists import build_wheel
from support.serveproc import Serve

CONNECTIONS = 1000
REQUESTS_PER_CONNECTION = 8
CONFIG = """
[[upstreams]]
url = "{url}"
list_projects = false
"""
JSON = "application/vnd.pypi.simple.v1+json"


def quantile(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q))] * 1000


Request = tuple[str, dict[str, str], set[int]]  # path, headers, acceptable statuses


async def phase(origin: str, requests: list[Request] | Callable[[random.Random], Request], label: str) -> dict:
    timings: list[float] = []
    errors: list[str] = []
    rng = random.Random(label)
    async def one_connection(i: int) -> None:
        # One connection each: aiohttp keeps it alive across this task's requests.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as own:
            for _ in range(REQUESTS_PER_CONNECTION):
                path, headers, ok = rng.choice(requests) if not callable(requests) else requests(rng)
                t = time.perf_counter()
                try:
                    async with own.get(origin + path, headers=headers, allow_redirects=False) as r:
                        await r.read()
                        if r.status not in ok:
                            errors.append(f"{path}: {r.status}")
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    errors.append(f"{path}: {type(exc).__name__}: {exc}")
                timings.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(one_connection(i) for i in range(CONNECTIONS)))
    elapsed = time.perf_counter() - started
    result = {"label": label, "requests": len(timings), "errors": errors, "p50": quantile(timings, 0.5),
              "p99": quantile(timings, 0.99), "max": max(timings) * 1000, "elapsed": elapsed}
    print(f"\nload {label}: {CONNECTIONS} connections, {result['requests']} requests in {elapsed:.1f} s, "
          f"{len(errors)} errors, p50 {result['p50']:.0f} ms, p99 {result['p99']:.0f} ms, max {result['max']:.0f} ms",
          file=sys.__stdout__)
    return result


async def test_a_thousand_connections_get_no_errors(fake_index, tmp_path):
    idx = await fake_index()
    dists = tmp_path / "dists"
    dists.mkdir()
    wheels = [build_wheel(dists, f"warm{i}", "1.0") for i in range(20)]
    for w in wheels:
        idx.index.add(w)
    for i in range(CONNECTIONS * REQUESTS_PER_CONNECTION // 5):  # more cold names than cold requests
        idx.index.raw_pages[f"cold{i}"] = ("text/html", f'<a href="../../f/cold{i}-1.0.tar.gz">cold{i}-1.0.tar.gz</a>'
                                           .encode())
    config = tmp_path / "tidegate.toml"
    config.write_text(CONFIG.format(url=idx.url))
    server = Serve(config, tmp_path / "data", workers=2)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:  # everything warm first
            for w in wheels:
                name = w.name.split("-")[0]
                for path in (f"/simple/{name}/", f"/files/{name}/{w.name}", f"/files/{name}/{w.name}.metadata"):
                    async with session.get(server.origin + path) as r:
                        assert r.status == 200
                async with session.get(server.origin + f"/simple/{name}/", headers={"Accept": JSON}) as r:
                    assert r.status == 200
        warm: list[tuple[str, dict[str, str], set[int]]] = []
        for w in wheels:
            name = w.name.split("-")[0]
            warm += [(f"/simple/{name}/", {}, {200}), (f"/simple/{name}/", {"Accept": JSON}, {200}),
                     (f"/simple/{name}/", {"Accept-Encoding": "gzip, zstd"}, {200}),
                     (f"/files/{name}/{w.name}", {}, {200}), (f"/files/{name}/{w.name}", {"Range": "bytes=0-99"}, {206}),
                     (f"/files/{name}/{w.name}.metadata", {}, {200}), (f"/simple/{name.upper()}", {}, {301})]
        cold_names = iter(range(10**9))

        def mixed(rng: random.Random):
            if rng.random() < 0.10:
                return f"/simple/cold{next(cold_names)}/", {}, {200}
            return rng.choice(warm)

        warm_only = await phase(server.origin, warm, "warm only")
        with_cold = await phase(server.origin, mixed, "10% cold pages")
        assert warm_only["errors"] == [] and with_cold["errors"] == [], (warm_only["errors"][:5], with_cold["errors"][:5])
        assert warm_only["requests"] == with_cold["requests"] == CONNECTIONS * REQUESTS_PER_CONNECTION
        assert with_cold["max"] < 60_000  # generous: nobody waits a minute
        assert server.tracebacks() == 0
    finally:
        server.stop()
