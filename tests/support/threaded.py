"""Servers on an event loop in a background thread, for tests whose body is synchronous (the
property-based fuzz tests: hypothesis drives plain functions, which talk plain HTTP)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="servers", daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def start_tidegate(layers: dict[str, Any]) -> tuple[Any, int]:
    """tidegate as `tidegate serve` runs it in a worker (after the start-up recovery): (runner, port)."""
    from aiohttp import web

    from tidegate.app import make_app
    from tidegate.config import build
    from tidegate.recovery import recover

    settings = build(layers)
    await recover(settings)
    runner = web.AppRunner(make_app(settings), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]
