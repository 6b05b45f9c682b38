"""SIGKILL of the whole server (a real `tidegate serve` process group, 2 workers) at random
points during downloads, Upload 2.0 uploads and publishes, and legacy uploads; after each restart
the invariants hold: no partial or wrong file is ever served, every release is all-or-nothing,
and every acknowledged upload is kept."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys

import aiohttp
import pytest

from support.dists import build_wheel, build_sdist
from support.fakeindex import Fault
from support.serveproc import Serve
from support.uploadapi import SIMPLE_JSON, UploadApi, basic

ROUNDS = 10
AUTH = basic("ci", "s3cret")
CONFIG = """
[[upstreams]]
url = "{url}"
timeout = 5
retries = 0

[[users]]
name = "ci"
password = "s3cret"
upload = ["*"]
"""


class Client:
    """What UploadApi needs of a server: an origin and a session."""

    def __init__(self, origin: str, session: aiohttp.ClientSession) -> None:
        self.origin, self.session = origin, session


async def download(session, origin, project, path, expected, seen):
    try:
        async with session.get(f"{origin}/files/{project}/{path.name}") as r:
            body = await r.read()
            if r.status == 200:
                seen.append(body == expected)  # a complete 200: must be the right bytes
    except (aiohttp.ClientError, asyncio.CancelledError):
        pass


async def publish_release(api, name, files, acks):
    status, session, _ = await api.call("POST", "/upload/", {"name": name, "version": "1.0"})
    if status != 201:
        return
    acks[name] = {"token": session["session-token"], "files": [f.name for f in files], "completed": [],
                  "published": False}
    for f in files:
        status, _ = await api.add_file(session, f)
        if status in (200, 201):
            acks[name]["completed"].append(f.name)
    status, _, _ = await api.call("POST", session["links"]["publish"], {})
    if status in (200, 201, 202):
        acks[name]["published"] = True


async def legacy(session, origin, name, wheel, acks):
    data = aiohttp.FormData()
    for k, v in {":action": "file_upload", "name": name, "version": "1.0"}.items():
        data.add_field(k, v)
    data.add_field("content", wheel.read_bytes(), filename=wheel.name)
    async with session.post(origin + "/legacy/", data=data, headers=AUTH) as r:
        if r.status == 200:
            acks[name] = wheel


async def files_of(session, origin, name) -> list[str]:
    async with session.get(f"{origin}/simple/{name}/", headers={"Accept": SIMPLE_JSON}) as r:
        if r.status == 404:
            return []
        assert r.status == 200, r.status
        return sorted(f["filename"] for f in json.loads(await r.read())["files"])


async def test_sigkill_at_random_points_loses_nothing_acknowledged(fake_index, tmp_path):
    rng = random.Random(8)
    idx = await fake_index()
    dists = tmp_path / "dists"
    dists.mkdir()
    downloads = []
    for i in range(4):
        wheel = build_wheel(dists, f"big{i}", "1.0", padding=(1 + i) * 400_000)
        idx.index.add(wheel)
        downloads.append((f"big{i}", wheel, wheel.read_bytes()))
        idx.index.faults[f"/files/{wheel.name}"] = Fault(slow=0.01, chunk_size=32 * 1024)  # ~0.2-0.5 s each
    config = tmp_path / "tidegate.toml"
    config.write_text(CONFIG.format(url=idx.url))
    server = Serve(config, tmp_path / "data", workers=2)
    served_right: list[bool] = []
    releases: dict[str, dict] = {}
    legacies: dict[str, object] = {}
    kills = []
    try:
        for rnd in range(ROUNDS):
            await server.start()
            # A fresh client per round: nothing of a killed server's connections is reused.
            async with aiohttp.ClientSession() as session:
                api = UploadApi(Client(server.origin, session), AUTH)
                rel_files = [build_wheel(dists / f"r{rnd}", f"rel{rnd}", "1.0", padding=200_000),
                             build_sdist(dists / f"r{rnd}", f"rel{rnd}", "1.0")]
                leg = build_wheel(dists / f"l{rnd}", f"leg{rnd}", "1.0", padding=300_000)
                work = [asyncio.ensure_future(download(session, server.origin, p, w, b, served_right))
                        for p, w, b in downloads]
                work.append(asyncio.ensure_future(publish_release(api, f"rel{rnd}", rel_files, releases)))
                work.append(asyncio.ensure_future(legacy(session, server.origin, f"leg{rnd}", leg, legacies)))
                delay = rng.uniform(0.0, 0.12) if rnd % 2 else rng.uniform(0.12, 1.0)  # early: mid-upload
                kills.append(round(delay, 2))
                await asyncio.sleep(delay)
                server.kill()
                for task in work:
                    task.cancel()
                await asyncio.gather(*work, return_exceptions=True)
        # The invariants, after one more restart (recovery included).
        await server.start()
        async with aiohttp.ClientSession() as session:
            for project, wheel, expected in downloads:  # no partial file: the whole, right file
                async with session.get(f"{server.origin}/files/{project}/{wheel.name}") as r:
                    assert r.status == 200 and await r.read() == expected
            for name, ack in releases.items():
                visible = await files_of(session, server.origin, name)
                assert visible in ([], sorted(ack["files"])), (name, visible)  # all or nothing
                if ack["published"]:
                    assert visible == sorted(ack["files"]), (name, ack)
                else:  # an acknowledged file is still in its session (or published with it)
                    async with session.get(f"{server.origin}/upload/session/{ack['token']}", headers=AUTH) as r:
                        if r.status == 200 and not visible:
                            kept = json.loads(await r.read())["files"]
                            assert set(ack["completed"]) <= set(kept), (name, ack, kept)
            for name, wheel in legacies.items():
                async with session.get(f"{server.origin}/files/{name}/{wheel.name}") as r:
                    assert r.status == 200 and await r.read() == wheel.read_bytes()
        assert all(served_right)
        tracebacks = server.tracebacks()
        print(f"\nkill: {ROUNDS} SIGKILLs at {kills} s; complete 200s during the rounds: {len(served_right)}, "
              f"wrong bytes: {served_right.count(False)}; releases: {len(releases)} "
              f"({sum(a['published'] for a in releases.values())} acknowledged published), legacy uploads "
              f"acknowledged: {len(legacies)}; lost: 0; tracebacks in the server log: {tracebacks}", file=sys.__stdout__)
        assert tracebacks == 0, server.log.read_text()[-3000:]
    finally:
        server.kill()
