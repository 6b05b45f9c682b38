"""A release manager's day, end to end with real tools: stage with `tidegate upload --stage`,
install the exact artifacts from the stage URL with pip and uv, publish with `tidegate session
publish`, then install from /simple/."""

from __future__ import annotations

import asyncio
import re
import sys

from support.dists import build_sdist, build_wheel

USERS = [{"name": "rm", "password": "pw", "upload": ["acme-*"]}]


async def run(cmd, env):
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode == 0, (out + err).decode()
    return out.decode()


def installed(target):
    text = (target / "acme_core" / "__init__.py").read_text()
    return text.split("=")[1].strip().strip("\"'")


async def test_stage_install_publish_install(fake_index, dists, tidegate, installer_env, tmp_path):
    upstream = await fake_index("json")
    upstream.index.add(dists.wheel("acme-dep", "1.0"))  # a dependency the release pulls from upstream
    tg = await tidegate(upstreams=[upstream.url], users=USERS)
    dist = tmp_path / "dist"
    dist.mkdir()
    build_wheel(dist, "acme-core", "2.0", requires_dist=["acme-dep"])
    build_sdist(dist, "acme-core", "2.0")
    env = {**installer_env, "TIDEGATE_USERNAME": "rm", "TIDEGATE_PASSWORD": "pw"}
    tidegate_cmd = [sys.executable, "-m", "tidegate"]

    out = await run(tidegate_cmd + ["upload", "--stage", "--repository", tg.origin, *map(str, dist.iterdir())], env)
    stage = re.search(r"(http://\S+/stage/\S+/simple/)", out).group(1)
    session = re.search(r"(http://\S+/upload/session/\S+)", out).group(1)

    # Nothing is public yet.
    async with tg.session.get(tg.url + "acme-core/") as r:
        assert r.status == 404

    pip = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target"]
    uv = [sys.executable, "-m", "uv", "pip", "install", "--no-config", "--python", sys.executable, "--target"]
    # The stage alone as the index (it shows the regular index with the staged files overlaid)...
    await run(pip + [str(tmp_path / "pip-stage"), "--index-url", stage, "acme-core==2.0"], env)
    await run(uv + [str(tmp_path / "uv-stage"), "--index-url", stage, "acme-core==2.0"], env)
    # ...and as an extra index next to the regular one.
    await run(pip + [str(tmp_path / "pip-extra"), "--index-url", tg.url, "--extra-index-url", stage, "acme-core==2.0"], env)
    await run(uv + [str(tmp_path / "uv-extra"), "--index-url", tg.url, "--extra-index-url", stage,
                    "--index-strategy", "unsafe-best-match", "acme-core==2.0"], env)
    for name in ("pip-stage", "uv-stage", "pip-extra", "uv-extra"):
        assert installed(tmp_path / name) == "2.0", name
        assert (tmp_path / name / "acme_dep").is_dir(), name

    out = await run(tidegate_cmd + ["session", "publish", session], env)
    async with tg.session.get(stage) as r:
        assert r.status == 404  # the stage is gone once published
    await run(pip + [str(tmp_path / "pip-public"), "--index-url", tg.url, "acme-core==2.0"], env)
    await run(uv + [str(tmp_path / "uv-public"), "--index-url", tg.url, "acme-core==2.0"], env)
    assert installed(tmp_path / "pip-public") == installed(tmp_path / "uv-public") == "2.0"
    out = await run(tidegate_cmd + ["session", "status", session], env)
    assert "published" in out


async def test_upload_publishes_directly_and_cancel_discards(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = build_wheel(dist, "acme-core", "1.0")
    env = {**installer_env, "TIDEGATE_USERNAME": "rm", "TIDEGATE_PASSWORD": "pw"}
    await run([sys.executable, "-m", "tidegate", "upload", "--repository", tg.origin, str(wheel)], env)
    async with tg.session.get(tg.url + "acme-core/") as r:
        assert r.status == 200 and wheel.name in await r.text()
    other = build_wheel(dist, "acme-core", "1.1")
    out = await run([sys.executable, "-m", "tidegate", "upload", "--stage", "--repository", tg.origin, str(other)], env)
    session = re.search(r"(http://\S+/upload/session/\S+)", out).group(1)
    await run([sys.executable, "-m", "tidegate", "session", "cancel", session], env)
    async with tg.session.get(tg.url + "acme-core/") as r:
        assert other.name not in await r.text()
