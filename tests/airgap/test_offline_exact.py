"""Offline serving lists exactly what the mirror has: real pip and uv, offline, pick the one
version whose file is cached even though newer ones are on the cached page."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

JSON = "application/vnd.pypi.simple.v1+json"


async def run(cmd: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    return proc.returncode or 0, out.decode()


@pytest.mark.parametrize("installer", ["pip", "uv"])
async def test_offline_installers_pick_only_cached_files(fake_index, dists, tidegate, installer_env, tmp_path,
                                                         installer):
    idx = await fake_index("json")
    for version in ("1.0", "1.1", "2.0", "3.0"):
        idx.index.add(dists.wheel("demo-lib", version))
    idx.index.add(dists.sdist("demo-lib", "3.0"))
    online = await tidegate(upstreams=[idx.url])
    async with online.get("/simple/demo-lib/", headers={"Accept": JSON}) as r:
        assert len(json.loads(await r.read())["files"]) == 5
    async with online.get("/files/demo-lib/demo_lib-1.1-py3-none-any.whl") as r:
        assert r.status == 200 and await r.read()  # one file of five cached
    await online.stop()
    await idx.close()  # nothing but the mirror from here on

    offline = await tidegate(upstreams=[idx.url], offline=True, data_dir=str(online.settings.data_dir))
    async with offline.get("/simple/demo-lib/", headers={"Accept": JSON}) as r:
        page = json.loads(await r.read())
    assert [f["filename"] for f in page["files"]] == ["demo_lib-1.1-py3-none-any.whl"]
    async with offline.get("/files/demo-lib/demo_lib-1.1-py3-none-any.whl.metadata") as r:
        assert r.status == 200 and b"Version: 1.1" in await r.read()
    async with offline.get("/files/demo-lib/demo_lib-3.0-py3-none-any.whl") as r:
        assert r.status == 404 and "not in this mirror" in await r.text()
    async with offline.get("/simple/unknown-project/") as r:
        assert r.status == 404 and "not in this mirror" in await r.text()

    target = tmp_path / "target"
    if installer == "pip":
        cmd = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--index-url", offline.url,
               "--target", str(target), "demo-lib"]
    else:
        cmd = [sys.executable, "-m", "uv", "pip", "install", "--no-config", "--no-cache", "--index-url", offline.url,
               "--python", sys.executable, "--target", str(target), "demo-lib"]
    code, out = await run(cmd, installer_env)
    assert code == 0, out
    assert '__version__ = "1.1"' in (target / "demo_lib" / "__init__.py").read_text()
