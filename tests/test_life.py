"""Process life of a real `tidegate serve --workers 2`, with real signals: a graceful stop that
lets a slow download finish, Ctrl-C of the whole process group, and kill -9 of the master."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from support.fakeindex import Fault
from support.processes import WAIT, free_port, start_serve

def children_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def test_sigterm_lets_an_in_flight_slow_download_finish_and_exits_0(fake_index, dists, tmp_path):
    idx = await fake_index("html")
    wheel = dists.wheel("slow-pkg", "1.0", padding=96 * 1024)
    idx.index.add(wheel)
    # The upstream sends the file 4 KB at a time, 0.2 s apart: about 5 s in all.
    idx.index.faults[f"/files/{wheel.name}"] = Fault(slow=0.2, chunk_size=4096)
    port = free_port()
    proc = await start_serve(tmp_path / "data", port, "--upstream", idx.url, TIDEGATE_SHUTDOWN_TIMEOUT="60")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/simple/slow-pkg/") as r:
            assert r.status == 200
        async with session.get(f"http://127.0.0.1:{port}/files/slow-pkg/{wheel.name}") as r:
            assert r.status == 200
            first = await r.content.readexactly(4096)  # the download is under way
            proc.send_signal(signal.SIGTERM)
            # New connections are refused soon, while the download goes on.
            for _ in range(WAIT * 10):
                if await refused(port):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("tidegate still accepts connections after SIGTERM")
            assert proc.returncode is None
            body = first + await r.read()
    assert body == wheel.read_bytes()
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, out.decode()
    assert b"Traceback" not in out and b"Error" not in out, out.decode()


async def test_shutdown_timeout_bounds_the_wait_for_a_download_that_would_take_too_long(fake_index, dists, tmp_path):
    idx = await fake_index("html")
    wheel = dists.wheel("endless-pkg", "1.0", padding=400 * 1024)
    idx.index.add(wheel)
    idx.index.faults[f"/files/{wheel.name}"] = Fault(slow=0.2, chunk_size=4096)  # some 20 s in all
    port = free_port()
    proc = await start_serve(tmp_path / "data", port, "--upstream", idx.url, TIDEGATE_SHUTDOWN_TIMEOUT="1s")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/simple/endless-pkg/") as r:
            assert r.status == 200
        async with session.get(f"http://127.0.0.1:{port}/files/endless-pkg/{wheel.name}") as r:
            assert r.status == 200
            await r.content.readexactly(4096)
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()  # cut when shutdown_timeout ran out, long before the file was whole
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, out.decode()
    assert b"Traceback" not in out, out.decode()


async def test_ctrl_c_of_the_process_group_stops_every_worker_cleanly(fake_index, tmp_path):
    """A terminal's Ctrl-C sends SIGINT to the master and every worker at once, and the master
    then signals the workers again: each stops once, quietly."""
    idx = await fake_index("html")
    port = free_port()
    proc = await start_serve(tmp_path / "data", port, "--upstream", idx.url)
    workers = children_of(proc.pid)
    assert len(workers) == 2
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, out.decode()
    assert b"Traceback" not in out and b"Event loop stopped" not in out, out.decode()
    assert not any(alive(pid) for pid in workers)
    assert await refused(port)


async def test_kill_9_of_the_master_takes_the_workers_down_and_frees_the_port(fake_index, tmp_path):
    idx = await fake_index("html")
    port = free_port()
    proc = await start_serve(tmp_path / "data", port, "--upstream", idx.url)
    workers = children_of(proc.pid)
    assert len(workers) == 2
    proc.kill()
    await proc.wait()
    for _ in range(WAIT * 10):
        if not any(alive(pid) for pid in workers):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"workers outlived their master: {sorted(p for p in workers if alive(p))}")
    # A restart binds the same port at once and serves.
    again = await start_serve(tmp_path / "data", port, "--upstream", idx.url)
    again.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(again.communicate(), WAIT)
    assert again.returncode == 0, out.decode()


@pytest.mark.parametrize("make_bad, message", [
    (lambda tmp: (tmp / "passwd").write_text("x") and tmp / "passwd", "is not a directory"),
    (lambda tmp: (tmp / "passwd").write_text("x") and tmp / "passwd" / "tidegate", "is not a directory"),
])
async def test_a_data_dir_that_cannot_be_one_is_one_line_and_exit_1(tmp_path, make_bad, message):
    bad = make_bad(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidegate", "serve", "--port", "0", "--data-dir", str(bad),
        env={**os.environ, "TIDEGATE_CONFIG": ""}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 1
    assert err.decode() == f"tidegate: data dir {bad} {message}\n"


async def test_a_data_dir_this_user_cannot_write_is_one_line_and_exit_1(tmp_path):
    """Root writes through permission bits, so as root the server runs as nobody (setpriv)."""
    import shutil
    import tempfile

    bad = Path(tempfile.mkdtemp(prefix="tidegate-locked-"))
    try:
        bad.chmod(0o555)
        drop = []
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: cannot run the server as another user")
            drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        uid = 65534 if drop else os.geteuid()
        proc = await asyncio.create_subprocess_exec(
            *drop, sys.executable, "-m", "tidegate", "serve", "--port", "0", "--data-dir", str(bad),
            env={**os.environ, "TIDEGATE_CONFIG": "", "HOME": str(bad)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
        assert proc.returncode == 1
        assert err.decode() == f"tidegate: data dir {bad} is not writable by this user (uid {uid})\n"
        sub = bad / "tidegate"
        proc = await asyncio.create_subprocess_exec(
            *drop, sys.executable, "-m", "tidegate", "serve", "--port", "0", "--data-dir", str(sub),
            env={**os.environ, "TIDEGATE_CONFIG": "", "HOME": str(bad)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
        assert proc.returncode == 1
        assert err.decode() == f"tidegate: cannot create data dir {sub}: Permission denied\n"
    finally:
        bad.chmod(0o755)
        bad.rmdir()
