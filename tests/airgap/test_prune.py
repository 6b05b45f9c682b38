"""`tidegate prune`: the rules (--keep-latest, --older-than, -r/--lock closures, --project), a dry
run, local uploads only with --local, and a running server that stops listing what went at its
next request while a download already under way still gets every byte."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import aiohttp
import pytest

from support.serveproc import Serve

from .mirror import publish_locally, tidegate_cmd

JSON = "application/vnd.pypi.simple.v1+json"
LIB = {v: f"demo_lib-{v}-py3-none-any.whl" for v in ("1.0", "2.0", "3.0")}
APP, UNUSED, BIG = "demo_app-1.0-py3-none-any.whl", "demo_unused-1.0-py3-none-any.whl", "demo_big-1.0-py3-none-any.whl"
TOOL = {v: f"acme_tool-{v}-py3-none-any.whl" for v in ("1.0", "2.0")}
BIG_SHA256: dict[str, str] = {}  # data dir -> demo-big's sha256
LIB_TIMES = {"1.0": "2020-01-01T00:00:00.000000Z", "2.0": "2024-01-01T00:00:00.000000Z", "3.0": None}


@pytest.fixture
async def mirror(fake_index, dists, tidegate, tmp_path):
    """A data dir holding demo-lib 1.0, 2.0 (uploaded long ago) and 3.0 (no upload time: cached
    now), demo-app (needs demo-lib), demo-unused, demo-big (16 MB), every wheel's metadata, and
    a local project acme-tool 1.0 and 2.0 (uploaded 2024)."""
    idx = await fake_index("json")
    data_dir = tmp_path / "mirror"
    for version, uploaded in LIB_TIMES.items():
        idx.index.add(dists.wheel("demo-lib", version), upload_time=uploaded)
    idx.index.add(dists.wheel("demo-app", "1.0", requires_dist=["demo-lib>=2"]))
    idx.index.add(dists.wheel("demo-unused", "1.0"))
    big = dists.wheel("demo-big", "1.0", padding=16 * 1024 * 1024)
    idx.index.add(big)
    BIG_SHA256[str(data_dir)] = hashlib.sha256(big.read_bytes()).hexdigest()
    tg = await tidegate(upstreams=[idx.url], data_dir=str(data_dir))
    for project, filename in [("demo-lib", f) for f in LIB.values()] + [("demo-app", APP), ("demo-unused", UNUSED),
                                                                       ("demo-big", BIG)]:
        for suffix in ("", ".metadata"):
            async with tg.get(f"/files/{project}/{filename}{suffix}") as r:
                assert r.status == 200, filename
                await r.read()
    from tidegate.web.keys import STORAGE

    for version in TOOL:
        await publish_locally(tg.app[STORAGE], "acme-tool", version, f"PK acme {version} ".encode() * 64)
    await tg.close()
    await idx.close()  # from here on, the mirror alone
    return data_dir


def cached(data_dir: Path) -> int:
    return len(list((data_dir / "blobs" / "files").glob("*/*")))


def metadata_files(data_dir: Path) -> int:
    return len(list((data_dir / "pagecache" / "metadata").glob("*/*")))


async def _listed(tidegate, data_dir: Path, *names: str) -> dict[str, list[str]]:
    server = await tidegate(upstreams=["http://upstream.invalid/simple/"], offline=True, data_dir=str(data_dir))
    out = {}
    for name in names:
        async with server.get(f"/simple/{name}/", headers={"Accept": JSON}) as r:
            out[name] = [f["filename"] for f in json.loads(await r.read())["files"]] if r.status == 200 else []
    await server.close()
    return out


async def prune(data_dir: Path, *args: str) -> tuple[int, str]:
    return await tidegate_cmd("prune", "--data-dir", str(data_dir), "--upstream", "http://upstream.invalid/simple/",
                              *args)


async def test_prune_needs_a_rule_and_says_what_it_does(mirror):
    code, out = await tidegate_cmd("prune", "--help")
    assert code == 0 and "--keep-latest" in out and "--local" in out and "--dry-run" in out
    code, out = await prune(mirror)
    assert code == 2 and "prune needs a rule" in out, out
    code, out = await prune(mirror, "--keep-latest", "0")
    assert code == 2 and "1 or more" in out, out


async def test_keep_latest_with_a_dry_run_first(mirror, tidegate):
    before = cached(mirror), metadata_files(mirror)
    code, out = await prune(mirror, "--keep-latest", "1", "--project", "demo-lib", "--dry-run")
    assert code == 0, out
    assert f"would remove: cached {LIB['1.0']}" in out and f"would remove: cached {LIB['2.0']}" in out
    assert LIB["3.0"] not in out and "2 files" in out, out
    assert (cached(mirror), metadata_files(mirror)) == before  # a dry run removes nothing
    code, out = await prune(mirror, "--keep-latest", "1", "--project", "demo-lib")
    assert code == 0 and f"removed: cached {LIB['1.0']}" in out and "2 files" in out, out
    assert (cached(mirror), metadata_files(mirror)) == (before[0] - 2, before[1] - 2)  # metadata went too
    listed = await _listed(tidegate, mirror, "demo-lib", "demo-app", "acme-tool")
    assert listed == {"demo-lib": [LIB["3.0"]], "demo-app": [APP], "acme-tool": list(TOOL.values())}


async def test_older_than_spares_local_uploads_unless_asked(mirror, tidegate):
    code, out = await prune(mirror, "--older-than", "180d", "--project", "demo-lib", "--project", "acme-*")
    assert code == 0, out
    assert f"removed: cached {LIB['1.0']}" in out and f"removed: cached {LIB['2.0']}" in out
    assert LIB["3.0"] not in out  # no upload time on its page: cached just now
    for filename in TOOL.values():
        assert f"kept: local upload {filename} (selected, but local uploads go only with --local)" in out, out
    assert (await _listed(tidegate, mirror, "acme-tool"))["acme-tool"] == list(TOOL.values())
    code, out = await prune(mirror, "--older-than", "180d", "--keep-latest", "1", "--project", "acme-tool", "--local")
    assert code == 0 and f"removed: local upload {TOOL['1.0']} (--local)" in out and TOOL["2.0"] not in out, out
    assert (await _listed(tidegate, mirror, "acme-tool"))["acme-tool"] == [TOOL["2.0"]]
    code, out = await tidegate_cmd("audit", "--data-dir", str(mirror))
    assert f"delete {TOOL['1.0']}" in out, out  # a deletion by the operator, in the audit log


async def test_a_closure_keeps_what_it_needs_and_an_incomplete_one_removes_nothing(mirror, tidegate, tmp_path):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("demo-app\n")
    target = ["--python", "3.12", "--platform", "manylinux_2_28_x86_64"]
    code, out = await prune(mirror, "-r", str(reqs), *target, "--project", "demo-*", "--dry-run")
    assert code == 0, out
    going = sorted(line.split()[3].rstrip(",") for line in out.splitlines() if line.startswith("would remove:"))
    assert going == sorted([LIB["1.0"], LIB["2.0"], UNUSED, BIG]), out  # demo-app and demo-lib 3.0 stay
    bad = tmp_path / "bad.txt"
    bad.write_text("demo-app\nno-such-project\n")
    before = cached(mirror)
    code, out = await prune(mirror, "-r", str(bad), *target)
    assert code == 1 and "unresolved: no-such-project" in out and "nothing removed" in out, out
    assert cached(mirror) == before
    lock = tmp_path / "pylock.toml"
    lock.write_text(f'lock-version = "1.0"\ncreated-by = "hand"\n\n'
                    f'[[packages]]\nname = "demo-unused"\nversion = "1.0"\n'
                    f'wheels = [{{ name = "{UNUSED}", url = "http://x.invalid/{UNUSED}" }}]\n')
    code, out = await prune(mirror, "--lock", str(lock), "--project", "demo-unused", "--project", "demo-big")
    assert code == 0 and f"removed: cached {BIG}" in out and UNUSED not in out, out
    assert await _listed(tidegate, mirror, "demo-unused", "demo-big") == {"demo-unused": [UNUSED], "demo-big": []}


async def test_a_running_server_stops_listing_what_went_and_finishes_what_it_sends(mirror, tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text('offline = true\nupstreams = ["http://upstream.invalid/simple/"]\n')
    server = Serve(config, mirror, workers=2)
    await server.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            async def listed(name: str) -> set[tuple[str, ...]]:
                async def one():
                    async with session.get(f"{server.origin}/simple/{name}/", headers={"Accept": JSON}) as r:
                        return tuple(f["filename"] for f in json.loads(await r.read())["files"])
                return set(await asyncio.gather(*(one() for _ in range(10))))

            assert await listed("demo-big") == {(BIG,)}  # every worker holds the page now
            async with session.get(f"{server.origin}/files/demo-big/{BIG}") as download:
                assert download.status == 200
                digest = hashlib.sha256(await download.content.readexactly(64 * 1024))
                code, out = await prune(mirror, "--older-than", "0", "--project", "demo-big", "--project", "demo-lib",
                                        "--keep-latest", "1")
                assert code == 0 and f"removed: cached {BIG}" not in out, out  # its one release is its latest
                code, out = await prune(mirror, "--older-than", "0", "--project", "demo-big")
                assert code == 0 and f"removed: cached {BIG}" in out, out
                while chunk := await download.content.read(1024 * 1024):
                    digest.update(chunk)
            assert digest.hexdigest() == BIG_SHA256[str(mirror)]  # every byte, though removed meanwhile
            assert await listed("demo-big") == {()}  # the next request, on every worker
            assert await listed("demo-lib") == {(LIB["3.0"],)}
            async with session.get(f"{server.origin}/files/demo-big/{BIG}") as r:
                assert r.status == 404
        assert server.tracebacks() == 0
    finally:
        server.stop()


def test_a_file_goes_only_when_every_rule_given_selects_it():
    from tidegate.airgap.prune import Candidate, Rules, select

    day = 86400.0
    files = [Candidate("demo", f"demo-{v}.tar.gz", f"k{v}", 1, when) for v, when in
             (("1.0", 0.0), ("2.0", 50 * day), ("3.0", 99 * day), ("3.1", None))]
    files.append(Candidate("demo", "demo-not-a-version.zip", "kx", 1, 0.0))
    gone = lambda rules: sorted(c.filename for c in select(files, rules, now=100 * day))  # noqa: E731
    assert gone(Rules(keep_latest=2)) == ["demo-1.0.tar.gz", "demo-2.0.tar.gz"]  # 3.0 and 3.1 are the latest
    assert gone(Rules(older_than=30 * day)) == ["demo-1.0.tar.gz", "demo-2.0.tar.gz", "demo-not-a-version.zip"]
    assert gone(Rules(keep_latest=1, older_than=60 * day)) == ["demo-1.0.tar.gz"]
    assert gone(Rules(older_than=30 * day, closure=frozenset({"demo-1.0.tar.gz"}))) == [
        "demo-2.0.tar.gz", "demo-not-a-version.zip"]
    assert gone(Rules(closure=frozenset())) == sorted(c.filename for c in files)
