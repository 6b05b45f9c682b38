"""The lock contract, run against every implementation (see conftest.py)."""

from __future__ import annotations

import asyncio
import signal
import sys


async def test_a_lock_has_one_holder_until_released(new_locks):
    locks, other = await new_locks(), await new_locks()
    lease = await locks.try_acquire("page:demo-pkg")
    assert lease is not None
    assert await locks.try_acquire("page:demo-pkg") is None
    assert await other.try_acquire("page:demo-pkg") is None  # another worker
    assert await other.try_acquire("page:other") is not None  # names are independent
    await lease.release()
    again = await other.try_acquire("page:demo-pkg")
    assert again is not None
    await again.release()
    await again.release()  # releasing twice is harmless


async def test_any_name_is_a_lock_name(new_locks):
    locks = await new_locks()
    for name in ("p" * 300, "../../etc/passwd", "with\x00nul", "ünïcödé", "\ud800"):
        lease = await locks.try_acquire(name)
        assert lease is not None, name
        assert await locks.try_acquire(name) is None
        await lease.release()


async def test_a_holder_that_dies_releases_its_lock(new_locks):
    locks = await new_locks()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", new_locks.holder, "download:x",
                                                stdout=asyncio.subprocess.PIPE)
    try:
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"held"
        assert await locks.try_acquire("download:x") is None
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    lease = await locks.try_acquire("download:x")
    assert lease is not None
    await lease.release()


async def test_concurrent_acquirers_get_one_lease(new_locks):
    instances = [await new_locks() for _ in range(4)]
    for _ in range(50):
        leases = await asyncio.gather(*(i.try_acquire("race") for i in instances))
        held = [lease for lease in leases if lease is not None]
        assert len(held) == 1
        await held[0].release()
