"""Single-flight: concurrent callers asking for the same key share one in-progress task."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Hashable, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[T]] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """Await work() for key, or join the call already running for it.

        The work runs in its own task, so a caller that goes away (a client disconnecting) does
        not cancel it for the others; shield keeps each waiter's cancellation its own.
        """
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._tasks[key] = task
            task.add_done_callback(lambda _t, key=key: self._tasks.pop(key, None))
        return await asyncio.shield(task)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._tasks
