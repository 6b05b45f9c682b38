"""`tidegate serve` as a user runs it: a process with several workers sharing the caches."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import aiohttp

JSON = "application/vnd.pypi.simple.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_serve_with_two_workers_shares_the_cache_and_stops_cleanly(fake_index, dists, tmp_path):
    idx = await fake_index("html")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    port = free_port()
    env = {**os.environ, "TIDEGATE_LOG_LEVEL": "warning"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidegate", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
        "--upstream", idx.url, "--workers", "2", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/simple/demo-pkg/"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(url, headers={"Accept": JSON}) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("tidegate did not start")
            # Many new connections land on both workers; the page is fetched from upstream
            # once per worker at most, then served from the shared disk cache.
            for _ in range(40):
                async with aiohttp.ClientSession() as fresh:
                    async with fresh.get(url, headers={"Accept": JSON}) as r:
                        assert r.status == 200
            assert 1 <= idx.index.requests["/simple/demo-pkg/"] <= 2
            async with session.get(f"http://127.0.0.1:{port}/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl") as r:
                assert r.status == 200
                assert await r.read() == idx.index.file("demo_pkg-1.0-py3-none-any.whl").path.read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, out.decode()
    # Every worker exited too: nothing listens on the port any more.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_startup_log_does_not_print_upstream_password(tmp_path):
    """The start-up line names each upstream without the password its URL carries."""
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
