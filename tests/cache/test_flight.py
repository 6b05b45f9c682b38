"""Single-flight: concurrent callers for one key share one call."""

from __future__ import annotations

import asyncio

import pytest

from tidegate.cache.flight import SingleFlight


async def test_concurrent_callers_share_one_call_and_its_result():
    flight: SingleFlight = SingleFlight()
    calls, gate = [], asyncio.Event()

    async def work() -> str:
        calls.append(1)
        await gate.wait()
        return "page"

    waiters = [asyncio.ensure_future(flight.run("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    assert "k" in flight
    gate.set()
    assert await asyncio.gather(*waiters) == ["page"] * 5
    assert calls == [1] and "k" not in flight
    assert await flight.run("k", work) == "page" and calls == [1, 1]  # a later call runs again


async def test_a_caller_that_goes_away_does_not_cancel_the_others():
    flight: SingleFlight = SingleFlight()
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 42

    leaving = asyncio.ensure_future(flight.run("k", work))
    staying = asyncio.ensure_future(flight.run("k", work))
    await asyncio.sleep(0)
    leaving.cancel()
    gate.set()
    assert await staying == 42
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_an_error_reaches_every_caller():
    flight: SingleFlight = SingleFlight()

    async def work() -> None:
        await asyncio.sleep(0)
        raise LookupError("upstream said no")

    results = await asyncio.gather(*(flight.run("k", work) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)
