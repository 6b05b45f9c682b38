"""A request for a page whose lock another worker holds (fetching it) tries the lock again less
and less often: 10 ms, doubling up to 200 ms. With shared engines each try is a PostgreSQL round
trip, so a waiter must not cost a hundred a second while a slow upstream answers the holder."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tidegate.storage import open_storage
from tidegate.storage.layout import layout
from tidegate.storage.locks import FileLocks


class CountingLocks:
    """The storage's locks, counting the tries per name."""

    def __init__(self, inner: Any) -> None:
        self._inner, self.tries = inner, Counter()

    async def try_acquire(self, name: str) -> Any:
        self.tries[name] += 1
        return await self._inner.try_acquire(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_waiter_for_a_page_lock_backs_off_and_still_takes_it_soon(tidegate, fake_index, dists, tmp_path):
    idx = await fake_index("json")
    idx.index.add(dists.wheel("slow-pkg", "1.0"))
    counting: list[CountingLocks] = []

    async def storage(settings):
        opened = await open_storage(settings)
        opened.locks = CountingLocks(opened.locks)
        counting.append(opened.locks)
        return opened

    data = tmp_path / "data"
    tg = await tidegate(storage=storage, upstreams=[idx.url], data_dir=str(data))
    other_worker = FileLocks(layout(Path(data)).locks)
    held = await other_worker.try_acquire("page:slow-pkg")
    assert held is not None

    async def get() -> tuple[int, float]:
        async with tg.get("/simple/slow-pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}) as r:
            await r.read()
            return r.status, time.monotonic()

    asking = asyncio.ensure_future(get())
    await asyncio.sleep(1.5)  # the other worker's upstream is slow
    assert not asking.done()
    released = time.monotonic()
    await held.release()
    status, answered = await asyncio.wait_for(asking, 5)
    assert status == 200
    assert answered - released < 0.5  # at most one 200 ms interval, and the fetch
    tries = counting[0].tries["page:slow-pkg"]
    # 1.5 s: 10+20+40+80+160 ms, then every 200 ms: about 12 tries (every 10 ms: about 150).
    assert 5 <= tries <= 16, tries
