"""`tidegate backup DEST`: taken while a real server serves and takes uploads, restored into a
new data dir that serves the same local files."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import signal
import sys

import aiohttp
import pytest

from support.dists import build_wheel
from support.processes import WAIT, free_port, start_serve

JSON = "application/vnd.pypi.simple.v1+json"
CONFIG = '[[users]]\nname = "ci"\npassword = "s3cret"\nupload = ["demo-*"]\n'


async def run(*cmd: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    return proc.returncode, out.decode()


def twine(origin: str, *files) -> list[str]:
    return [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
            "--repository-url", f"{origin}/legacy/", "-u", "ci", "-p", "s3cret", *map(str, files)]


def tidegate(*args: str) -> list[str]:
    return [sys.executable, "-m", "tidegate", *args]


async def listing(origin: str) -> dict[str, str]:
    """filename -> sha256 of demo-pkg's files, each downloaded and checked against its hash."""
    files = {}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin}/simple/demo-pkg/", headers={"Accept": JSON}) as r:
            assert r.status == 200, await r.text()
            page = json.loads(await r.read())
        for f in page["files"]:
            async with session.get(f"{origin}/simple/demo-pkg/" + f["url"]) as r:
                assert r.status == 200
                assert hashlib.sha256(await r.read()).hexdigest() == f["hashes"]["sha256"]
            files[f["filename"]] = f["hashes"]["sha256"]
    return files


async def test_online_backup_restores_into_a_new_data_dir(tmp_path, installer_env, fake_index, dists):
    idx = await fake_index("html")
    idx.index.add(dists.wheel("public-pkg", "1.0"))
    config = tmp_path / "tidegate.toml"
    config.write_text(CONFIG)
    env = {**installer_env, "TIDEGATE_CONFIG": str(config)}
    data, dest = tmp_path / "data", tmp_path / "backup"
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    proc = await start_serve(data, port, "--upstream", idx.url, TIDEGATE_CONFIG=str(config))
    try:
        before = [build_wheel(tmp_path / "dist", "demo-pkg", f"1.{i}") for i in range(3)]
        code, out = await run(*twine(origin, *before), env=env)
        assert code == 0, out
        async with aiohttp.ClientSession() as session:  # a cached upstream file too
            async with session.get(f"{origin}/files/public-pkg/public_pkg-1.0-py3-none-any.whl") as r:
                assert r.status == 200
        # Uploads go on while the backup is taken.
        during = [build_wheel(tmp_path / "dist2", "demo-pkg", f"2.{i}") for i in range(3)]
        uploading = asyncio.ensure_future(run(*twine(origin, *during), env=env))
        code, out = await run(*tidegate("backup", str(dest), "--data-dir", str(data)), env=env)
        assert code == 0, out
        assert out.startswith(f"backed up {data} to {dest} in "), out
        shutil.copytree(dest, tmp_path / "restored-1")  # restore of the backup taken mid-upload
        code, upload_out = await uploading
        assert code == 0, upload_out
        served = await listing(origin)
        assert set(served) == {w.name for w in before + during}
        # A second backup into the same place copies only what is new; a third, nothing.
        code, out = await run(*tidegate("backup", str(dest), "--data-dir", str(data)), env=env)
        assert code == 0, out
        shutil.copytree(dest, tmp_path / "restored-2")
        code, out = await run(*tidegate("backup", str(dest), "--data-dir", str(data)), env=env)
        assert code == 0 and "(0 new, 0.0 MB copied)" in out, out
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, out.decode()
    assert not (dest / "pagecache").exists()  # re-fetchable, left out
    assert len(list((dest / "blobs" / "files").glob("*/*"))) == 1  # the cached upstream file

    # Each restored data dir serves, offline, every local file its backup lists, byte for byte.
    for restored in ("restored-1", "restored-2"):
        port = free_port()
        proc = await start_serve(tmp_path / restored, port, "--offline", TIDEGATE_CONFIG=str(config))
        try:
            back = await listing(f"http://127.0.0.1:{port}")
            if restored == "restored-2":  # and pip installs from it
                code, out = await run(sys.executable, "-m", "pip", "download", "--no-deps", "--dest",
                                      str(tmp_path / "got"), "--index-url", f"http://127.0.0.1:{port}/simple/",
                                      "demo-pkg==2.2", env=installer_env)
                assert code == 0, out
                assert (tmp_path / "got" / during[2].name).read_bytes() == during[2].read_bytes()
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.communicate(), WAIT)
        assert {w.name for w in before} <= set(back)  # uploaded before the backup began
        assert back.items() <= served.items()  # nothing the server did not serve, same bytes
        if restored == "restored-2":
            assert back == served


@pytest.mark.parametrize("where, message", [
    ("inside", "must be outside the data dir"),
    ("empty", "holds no tidegate data"),
])
async def test_backup_refusals_are_one_line(tmp_path, where, message):
    data = tmp_path / "data"
    if where == "inside":
        from tidegate.config import build
        from tidegate.storage import open_storage

        storage = await open_storage(build({"data_dir": str(data)}))
        await storage.close()
        dest = data / "backup"
    else:
        data.mkdir()
        dest = tmp_path / "backup"
    code, out = await run(*tidegate("backup", str(dest), "--data-dir", str(data)), env={"PATH": "/usr/bin"})
    assert code == 1
    assert out.startswith("tidegate: ") and message in out and out.count("\n") == 1, out
