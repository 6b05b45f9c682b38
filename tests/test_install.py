"""End to end: real pip and real uv install through tidegate from a fake upstream."""

from __future__ import annotations

import asyncio
import sys

import pytest


async def run(cmd: list[str], env: dict[str, str]) -> str:
    """Run an installer without blocking the event loop that serves tidegate and the upstream."""
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def installed_version(target, module: str) -> str:
    init = (target / module / "__init__.py").read_text()
    return init.split("=")[1].strip().strip("\"'")


@pytest.mark.parametrize("mode", ["html", "json"])
@pytest.mark.parametrize("installer", ["pip", "uv"])
async def test_install_through_tidegate(fake_index, dists, tidegate, installer_env, tmp_path, mode, installer):
    idx = await fake_index(mode)
    idx.index.add(dists.wheel("demo-app", "1.0", requires_dist=["demo-lib>=1.0"]), serve_metadata=False)
    idx.index.add(dists.wheel("demo-lib", "1.0"), serve_metadata=False)
    idx.index.add(dists.wheel("demo-lib", "1.1"), yanked="broken", serve_metadata=False)
    idx.index.add(dists.wheel("demo-lib", "1.2", requires_python=">=4"), serve_metadata=False)
    tg = await tidegate(upstreams=[idx.url])
    target = tmp_path / "target"
    if installer == "pip":
        cmd = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--index-url", tg.url, "--target", str(target), "demo-app"]
    else:
        cmd = [sys.executable, "-m", "uv", "pip", "install", "--no-config", "--index-url", tg.url,
               "--python", sys.executable, "--target", str(target), "demo-app"]
    await run(cmd, installer_env)
    assert installed_version(target, "demo_app") == "1.0"
    assert installed_version(target, "demo_lib") == "1.0"  # yanked 1.1 and >=4-only 1.2 skipped
    # Everything came through tidegate: the upstream saw the installer's files exactly once.
    # (Range requests for metadata aside: the static upstream has no .metadata files.)
    for wheel in ("demo_app-1.0-py3-none-any.whl", "demo_lib-1.0-py3-none-any.whl"):
        whole = [e for e in idx.index.log if e.path == f"/files/{wheel}" and "Range" not in e.headers]
        assert len(whole) == 1, wheel
    blobs = list((tg.settings.data_dir / "blobs" / "files").glob("*/*"))
    assert len(blobs) == 2


async def test_warm_install_works_with_upstream_down(fake_index, dists, tidegate, installer_env, tmp_path):
    idx = await fake_index("negotiate")
    idx.index.add(dists.wheel("demo-lib", "1.0"), serve_metadata=False)
    tg = await tidegate(upstreams=[{"url": idx.url, "ttl": 0, "retries": 0}])
    base = [sys.executable, "-m", "uv", "pip", "install", "--no-config", "--index-url", tg.url,
            "--python", sys.executable, "--no-cache"]
    await run(base + ["--target", str(tmp_path / "one"), "demo-lib"], installer_env)
    await idx.down()
    await run(base + ["--target", str(tmp_path / "two"), "demo-lib"], installer_env)
    assert installed_version(tmp_path / "two", "demo_lib") == "1.0"
