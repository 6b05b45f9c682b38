"""Too many open files: a server run out of descriptors by more connections than its limit
answers what it can, refuses the rest with 503 (never a 500), logs it once, and recovers."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp

from support.dists import build_wheel
from support.serveproc import Serve


async def test_running_out_of_descriptors_is_a_503_logged_once(fake_index, tmp_path):
    idx = await fake_index()
    dists = tmp_path / "dists"
    dists.mkdir()
    for i in range(30):
        idx.index.add(build_wheel(dists, f"p{i}", "1.0"))
    config = tmp_path / "tidegate.toml"
    config.write_text(f'[[upstreams]]\nurl = "{idx.url}"\nlist_projects = false\n')
    server = Serve(config, tmp_path / "data", workers=1, max_files=64)
    await server.start()
    try:
        statuses: Counter[int | str] = Counter()
        held: list[asyncio.StreamWriter] = []

        async def hold(i: int) -> None:
            """A client that keeps its connection (and so a descriptor of the server's) open."""
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(f"GET /simple/p{i % 30}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 30)
                statuses[int(line.split()[1]) if line else "closed"] += 1
                held.append(writer)
            except (OSError, asyncio.TimeoutError) as exc:
                statuses[type(exc).__name__] += 1

        await asyncio.gather(*(hold(i) for i in range(150)))
        # "closed": a connection libuv accepted and closed at once because no descriptor was
        # left to serve it with (its EMFILE reserve), rather than leaving the client hanging.
        assert 500 not in statuses and set(statuses) - {200, 503, "closed", "ConnectionResetError"} == set(), statuses
        for writer in held:
            writer.close()
        await asyncio.sleep(1.5)
        async with aiohttp.ClientSession() as session:  # recovered once the connections closed
            async with session.get(f"{server.origin}/simple/p1/") as r:
                assert r.status == 200
        log = server.log.read_text()
        assert "Traceback" not in log, log[-3000:]
        assert log.count("too many open files") <= 1
        print(f"\nopen files: 150 connections against a limit of 64 descriptors: {dict(statuses)}")
    finally:
        server.stop()
