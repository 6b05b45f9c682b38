"""A real `tidegate serve` (supervisor and workers in their own process group), for tests that
kill the whole server or load it like production does."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until_serving(url: str, proc: subprocess.Popen, describe) -> None:
    """Wait (up to 15 s) until `url` answers 200; AssertionError with describe() if `proc` exits
    first or it never does."""
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if proc.poll() is not None:
                raise AssertionError(f"exited: {describe()}")
            try:
                async with session.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"did not start: {describe()}")


class Serve:
    def __init__(self, config: Path, data_dir: Path, workers: int = 2, log: Path | None = None,
                 max_files: int | None = None) -> None:
        self.config, self.data_dir, self.workers = config, data_dir, workers
        self.max_files = max_files  # RLIMIT_NOFILE of the server, to run it out of descriptors
        self.log = log or data_dir.parent / "serve.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tidegate", "serve", "--config", str(self.config), "--port", str(self.port),
                 "--data-dir", str(self.data_dir), "--workers", str(self.workers)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                preexec_fn=self._limit if self.max_files else None)
        await until_serving(self.origin + "/", self.proc, lambda: f"tidegate serve: {self.log.read_text()[-2000:]}")

    def _limit(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_files, self.max_files))

    def kill(self) -> None:
        """SIGKILL the whole process group: supervisor and every worker at once."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None

    def tracebacks(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback (most recent call last)")
