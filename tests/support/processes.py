"""`tidegate serve` as a real process, the way an operator starts it."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import aiohttp

WAIT = 30  # seconds any one step may take before a test gives up (never asserted as a timing)


async def run(cmd, env, *, ok=True) -> tuple[int | None, str, str]:
    """Run a command (twine, uv, pip, tidegate) to its end: (status, stdout, stderr); with
    ok, a non-zero status fails the test with everything it printed."""
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
    if ok:
        assert proc.returncode == 0, (out + err).decode()
    return proc.returncode, out.decode(), err.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_serve(data_dir: Path, port: int, *args: str, workers: int = 2,
                      **env: str) -> asyncio.subprocess.Process:
    """Start `tidegate serve` in a session of its own (so a test can signal its process group)
    and wait until /health answers 200."""
    environ = {**os.environ, "TIDEGATE_CONFIG": "", "TIDEGATE_LOG_LEVEL": "warning", **env}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidegate", "serve", "--port", str(port), "--data-dir", str(data_dir),
        "--workers", str(workers), *args, env=environ, start_new_session=True,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    async with aiohttp.ClientSession() as session:
        for _ in range(WAIT * 10):
            try:
                async with session.get(f"http://127.0.0.1:{port}/health") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                pass
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
    proc.kill()
    out, _ = await proc.communicate()
    raise AssertionError(f"tidegate did not start: {out.decode()}")
