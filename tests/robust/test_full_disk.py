"""A full disk is a state tidegate serves through: what it has is still served (pages, files,
local releases, stage previews), every write is refused with 507 and a one-line reason, start-up
works, and nothing stored before is lost. On a real 8 MB tmpfs, filled to the last block."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import warnings
from pathlib import Path

import aiohttp
import pytest

from support.dists import build_wheel
from support.uploadapi import PROBLEM, SIMPLE_JSON, UploadApi, basic

USERS = [{"name": "ci", "password": "s3cret", "upload": ["*"]}]
AUTH = basic("ci", "s3cret")


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"FULL-DISK TEST NOT RUN: cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})"
        warnings.warn(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write until the file system refuses even one more byte."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == 28
    finally:
        os.close(fd)
    assert os.statvfs(path.parent).f_bavail == 0


async def legacy_upload(tg, wheel: Path, name: str) -> tuple[int, str]:
    data = aiohttp.FormData()
    version = wheel.name.split("-")[1]
    for k, v in {":action": "file_upload", "name": name, "version": version}.items():
        data.add_field(k, v)
    data.add_field("content", wheel.read_bytes(), filename=wheel.name)
    async with tg.session.post(tg.origin + "/legacy/", data=data, headers=AUTH) as r:
        return r.status, await r.text()


async def test_a_full_disk_refuses_writes_with_507_and_serves_what_it_has(small_disk, tidegate, fake_index,
                                                                         dist_dir, caplog):
    caplog.set_level(logging.INFO)
    idx = await fake_index()
    warm, cold = build_wheel(dist_dir, "warm", "1.0"), build_wheel(dist_dir, "cold", "1.0")
    idx.index.add(warm)
    idx.index.add(cold)
    tg = await tidegate(upstreams=[idx.url], users=USERS, data_dir=str(small_disk / "data"))
    api = UploadApi(tg, AUTH)
    async with tg.get("/simple/warm/") as r:
        assert r.status == 200
    async with tg.get(f"/files/warm/{warm.name}") as r:
        assert await r.read() == warm.read_bytes()
    mine = build_wheel(dist_dir, "mine", "1.0")
    assert (await legacy_upload(tg, mine, "mine"))[0] == 200
    staged = build_wheel(dist_dir, "staged", "1.0")
    status, session, _ = await api.call("POST", "/upload/", {"name": "staged", "version": "1.0"})
    assert status == 201
    status, doc = await api.add_file(session, staged)
    assert status in (200, 201), doc
    stage = session["links"]["stage"]

    fill(small_disk / "filler")
    statuses: list[int] = []

    async def get(url: str, **kw) -> tuple[int, bytes, str]:
        async with tg.session.get(url if url.startswith("http") else tg.origin + url, **kw) as r:
            body = await r.read()
            statuses.append(r.status)
            return r.status, body, r.headers.get("Content-Type", "")

    # What is stored is served.
    assert (await get("/simple/warm/"))[0] == 200
    assert (await get(f"/files/warm/{warm.name}"))[1] == warm.read_bytes()
    assert (await get(f"/files/mine/{mine.name}"))[1] == mine.read_bytes()
    assert (await get(f"/files/warm/{warm.name}.metadata"))[0] == 200
    status, body, _ = await get(stage + "staged/", headers={"Accept": SIMPLE_JSON})
    assert status == 200 and staged.name in body.decode()
    # A cold page is served from the upstream, just not kept; a cold file cannot be: 507.
    assert (await get("/simple/cold/"))[0] == 200
    status, body, _ = await get(f"/files/cold/{cold.name}")
    assert status == 507 and body.decode().count("\n") == 1 and "full" in body.decode()
    # Every write is refused with 507 and says why.
    status, doc, headers = await api.call("POST", "/upload/", {"name": "other", "version": "1.0"})
    statuses.append(status)
    assert status == 507 and headers["Content-Type"] == PROBLEM and "full" in doc["detail"]
    status, text = await legacy_upload(tg, build_wheel(dist_dir, "mine", "2.0"), "mine")
    statuses.append(status)
    assert status == 507 and text.count("\n") == 1
    assert 500 not in statuses

    # Start-up on the full disk works: read-only, and it says so once.
    await tg.restart()
    assert (await get("/simple/warm/"))[0] == 200
    assert (await get(f"/files/mine/{mine.name}"))[1] == mine.read_bytes()
    assert (await get(stage + "staged/"))[0] == 200

    # Space freed: writes work again, and nothing stored before was lost.
    (small_disk / "filler").unlink()
    status, text = await legacy_upload(tg, build_wheel(dist_dir, "mine", "2.0"), "mine")
    assert status == 200, text
    status, body, _ = await get(f"/files/cold/{cold.name}")
    assert status == 200 and body == cold.read_bytes()
    status, body, _ = await get("/simple/mine/", headers={"Accept": SIMPLE_JSON})
    assert sorted(f["filename"] for f in json.loads(body)["files"]) == sorted([mine.name, "mine-2.0-py3-none-any.whl"])
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert 500 not in statuses
