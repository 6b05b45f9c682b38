#!/usr/bin/env python3
"""What authenticating an upload or management request costs, side by side: a configured
user's plaintext password, the same user's PBKDF2 hash (600,000 iterations, as
`tidegate hash-password` makes; verified once, then remembered by the worker for 5 minutes),
and an API token (sha256 and one indexed SQLite read), each
against a cheap authenticated endpoint (GET /manage/sessions) of one `tidegate serve` worker,
next to /health (no authentication) as the floor.

    python bench/auth.py [--requests 400] [--concurrency 8]   # writes bench/auth-results.json

Everything listens on 127.0.0.1; no upstream is configured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Procs, free_port, wait_http  # noqa: E402

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "auth-results.json"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def measure(url: str, headers: dict[str, str], requests: int, concurrency: int) -> dict[str, float]:
    """Requests per second and median latency of `requests` GETs, `concurrency` at a time."""
    latencies: list[float] = []
    queue = iter(range(requests))

    async with aiohttp.ClientSession() as http:
        async def worker() -> None:
            for _ in queue:
                start = time.perf_counter()
                async with http.get(url, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{url}: HTTP {r.status}")
                latencies.append(time.perf_counter() - start)

        async with http.get(url, headers=headers) as r:  # warm the connection
            await r.read()
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {"requests_per_s": round(requests / elapsed, 1),
            "median_ms": round(statistics.median(latencies) * 1000, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    tidegate = [sys.executable, "-m", "tidegate"]
    hashed = subprocess.run(tidegate + ["hash-password", "--password", "pw"], capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="tidegate-bench-auth-") as tmp:
        tmp_path = Path(tmp)
        port = free_port()
        config = tmp_path / "tidegate.toml"
        config.write_text(
            f'data_dir = "{tmp_path / "data"}"\nupstreams = []\nworkers = 1\nport = {port}\n'
            '[[users]]\nname = "plain"\npassword = "pw"\nupload = ["acme-*"]\n'
            f'[[users]]\nname = "hashed"\npassword = "{hashed}"\nupload = ["acme-*"]\n')
        token = subprocess.run(tidegate + ["token", "create", "--user", "plain", "--config", str(config)],
                               capture_output=True, text=True, check=True).stdout.strip()
        procs = Procs(tmp_path)
        try:
            proc = procs.start("tidegate", tidegate + ["serve", "--config", str(config)])
            origin = f"http://127.0.0.1:{port}"
            wait_http(origin + "/health", proc, what="tidegate")
            cases = {
                "no authentication (/health)": (origin + "/health", {}),
                "plaintext password": (origin + "/manage/sessions", basic("plain", "pw")),
                "API token": (origin + "/manage/sessions", basic("__token__", token)),
                "PBKDF2 password": (origin + "/manage/sessions", basic("hashed", "pw")),
            }
            results = {}
            for name, (url, headers) in cases.items():
                results[name] = asyncio.run(measure(url, headers, args.requests, args.concurrency))
        finally:
            procs.stop_all()
    base = results["plaintext password"]["median_ms"]
    for name, figures in results.items():
        figures["median_vs_plaintext"] = round(figures["median_ms"] / base, 2)
        print(f"{name:<30} {figures['requests_per_s']:>9.1f} req/s  median {figures['median_ms']:>8.2f} ms  "
              f"{figures['median_vs_plaintext']:>7.2f}x plaintext")
    RESULTS.write_text(json.dumps({"requests": args.requests, "concurrency": args.concurrency,
                                   "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
