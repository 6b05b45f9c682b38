"""GET /health and GET /ready: liveness without touching storage or upstreams, readiness that
tells a full disk, a read-only mount or a shutdown from a good state."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from pathlib import Path

import pytest

from tidegate.storage import DataDirError, check_data_dir
from tidegate.storage.health import probe_writable
from tidegate.config import build
from tidegate.web import health


async def _ready(tg) -> tuple[int, str]:
    async with tg.get("/ready") as r:
        assert r.headers["Cache-Control"] == "no-store"
        return r.status, await r.text()


async def _ready_becomes(tg, status: int) -> str:
    """Poll /ready until it answers `status` (its probe is cached for PROBE_INTERVAL)."""
    for _ in range(100):
        got, text = await _ready(tg)
        if got == status:
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"/ready stayed {got}: {text}")


async def test_health_and_ready_answer_200_with_a_dead_upstream(tidegate):
    tg = await tidegate(upstreams=["http://127.0.0.1:9/simple/"])
    async with tg.get("/health") as r:
        assert r.status == 200
        assert await r.text() == "ok\n"
        assert r.headers["Cache-Control"] == "no-store"
    assert await _ready(tg) == (200, "ready\n")


async def test_ready_is_503_while_shutting_down(tidegate):
    tg = await tidegate(upstreams=["http://127.0.0.1:9/simple/"])
    health.begin_shutdown(tg.app)
    assert await _ready(tg) == (503, "not ready: shutting down\n")
    async with tg.get("/health") as r:
        assert r.status == 200  # still alive: in-flight requests are being finished


async def test_ready_is_503_when_storage_writes_fail_with_enospc(tidegate, tmp_path):
    """/dev/full answers every write with ENOSPC, as a full disk does: a probe file that leads
    there is a full disk for the probe, on any machine and for any user."""
    tg = await tidegate(upstreams=["http://127.0.0.1:9/simple/"])
    probe = tg.settings.data_dir / f".ready-probe.{os.getpid()}"
    probe.symlink_to("/dev/full")
    try:
        text = await _ready_becomes(tg, 503)
        assert text.startswith(f"not ready: storage not writable: {tg.settings.data_dir}: ")
        assert os.strerror(errno.ENOSPC) in text
    finally:
        probe.unlink(missing_ok=True)  # the failed probe removed it already: it leaves nothing behind
    assert await _ready_becomes(tg, 200) == "ready\n"


def test_probe_reports_each_refusal(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    assert probe_writable((good,)) is None
    assert list(good.iterdir()) == []  # the probe leaves nothing behind
    missing = tmp_path / "gone"
    assert probe_writable((good, missing)) == f"{missing}: {os.strerror(errno.ENOENT)}"
    if os.geteuid() != 0:  # root writes through permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert probe_writable((locked,)) == f"{locked}: {os.strerror(errno.EACCES)}"


def test_data_dir_that_is_a_file_is_refused_in_one_line(tmp_path):
    afile = tmp_path / "passwd"
    afile.write_text("root:x:0:0\n")
    for bad in (afile, afile / "sub"):
        with pytest.raises(DataDirError, match=f"^data dir {bad} is not a directory$"):
            check_data_dir(build({"data_dir": str(bad)}))


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A 2 MB tmpfs, a real file system that can be filled and remounted read-only (root only)."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


async def test_ready_on_a_really_full_disk_and_a_read_only_remount(tidegate, tmpfs):
    tg = await tidegate(upstreams=["http://127.0.0.1:9/simple/"], data_dir=str(tmpfs / "data"))
    assert await _ready(tg) == (200, "ready\n")
    filler = tmpfs / "filler"
    with open(filler, "wb") as fh:
        with pytest.raises(OSError) as full:
            while True:
                fh.write(os.urandom(1 << 16))
                fh.flush()
    assert full.value.errno == errno.ENOSPC
    text = await _ready_becomes(tg, 503)
    assert text == f"not ready: storage not writable: {tg.settings.data_dir}: {os.strerror(errno.ENOSPC)}\n"
    async with tg.get("/health") as r:
        assert r.status == 200  # alive: what is stored can still be served
    filler.unlink()
    assert await _ready_becomes(tg, 200) == "ready\n"

    # A read-only remount under a running server (the databases stay open for writing, so the
    # tmpfs itself cannot go read-only: a read-only bind mount over the data dir does).
    data = str(tg.settings.data_dir)
    subprocess.run(["mount", "--bind", data, data], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", data], check=True)
        text = await _ready_becomes(tg, 503)
        assert text == f"not ready: storage not writable: {data}: {os.strerror(errno.EROFS)}\n"
    finally:
        subprocess.run(["umount", data], check=True)
    assert await _ready_becomes(tg, 200) == "ready\n"


def test_read_only_data_dir_is_refused_at_start(tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(DataDirError, match=f"^data dir {tmpfs} is on a read-only file system$"):
        check_data_dir(build({"data_dir": str(tmpfs)}))
    with pytest.raises(DataDirError, match=f"^cannot create data dir {tmpfs / 'data'}: Read-only file system$"):
        check_data_dir(build({"data_dir": str(tmpfs / "data")}))


async def test_ready_is_503_with_the_reason_a_shared_engine_gives(tidegate):
    """A database or bucket that is down makes the instance unready, saying which and why."""
    from tidegate.web.keys import STORAGE

    tg = await tidegate(upstreams=["http://127.0.0.1:9/simple/"])
    storage = tg.app[STORAGE]
    down = {"now": True}

    async def probe() -> str | None:
        return "PostgreSQL is unavailable: connection refused" if down["now"] else None

    storage.probes = (probe,)
    assert await _ready_becomes(tg, 503) == "not ready: PostgreSQL is unavailable: connection refused\n"
    down["now"] = False
    assert await _ready_becomes(tg, 200) == "ready\n"


async def test_an_engine_that_is_down_is_a_503_with_its_reason_not_a_500():
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from tidegate.web.failures import errors
    from tidegate.storage import EngineUnavailable

    async def handler(request):
        raise EngineUnavailable("PostgreSQL", "connection refused")

    app = web.Application(middlewares=[errors])
    app.router.add_get("/x", handler)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        async with client.get("/x") as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "2"
            assert "PostgreSQL is unavailable: connection refused" in await r.text()
