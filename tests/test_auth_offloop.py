"""Checking passwords never stalls the worker: PBKDF2 runs in a few threads, off the event loop."""

from __future__ import annotations

import asyncio
import base64
import time

from tidegate.passwords import hash_password


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


async def test_wrong_passwords_do_not_stall_other_requests(tidegate):
    users = [{"name": "ci", "password": hash_password("s3cret"), "upload": ["demo-*"]}]
    tg = await tidegate(upstreams=[], users=users)
    done: dict[str, float] = {}

    async def post(i: int) -> int:
        # Half wrong passwords of a known user, half unknown names (checked against a dummy hash).
        headers = basic("ci" if i % 2 else f"nobody{i}", f"guess{i}")
        async with tg.session.post(f"{tg.origin}/legacy/", data=b"", headers=headers) as r:
            await r.read()
            done[f"wrong{i}"] = time.perf_counter()
            return r.status

    async def health() -> int:
        async with tg.get("/health") as r:
            await r.read()
            done["health"] = time.perf_counter()
            return r.status

    wrong = [asyncio.create_task(post(i)) for i in range(10)]
    await asyncio.sleep(0.05)  # the guesses are being checked
    assert await health() == 200
    assert await asyncio.gather(*wrong) == [401] * 10
    first_wrong = min(t for k, t in done.items() if k != "health")
    assert done["health"] < first_wrong, "a request waited for wrong passwords to be checked"


async def test_right_password_after_the_check_is_remembered(tidegate):
    users = [{"name": "ci", "password": hash_password("s3cret"), "upload": ["demo-*"]}]
    tg = await tidegate(upstreams=[], users=users)
    for _ in range(2):
        async with tg.session.post(f"{tg.origin}/legacy/", data=b"", headers=basic("ci", "s3cret")) as r:
            assert r.status == 400  # authenticated; the body is not an upload
