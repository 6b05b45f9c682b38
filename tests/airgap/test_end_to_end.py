"""The air-gap workflow end to end: prefetch a closure with markers, extras and platform wheels
for two Pythons and two platforms from a fake upstream, export it, import it into a fresh data
dir, serve that offline, and install from it with real pip and uv, then take the whole closure
for the other platform and both Pythons (`pip download --platform --python-version
--only-binary :all:`, and uv's --python-platform), the offline server being the only index."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from support.fakeindex import Fault

from .mirror import tidegate_cmd

SPEEDUP = [f"demo_speedup-1.0-{tag}.whl" for tag in (
    "cp311-cp311-manylinux_2_17_x86_64", "cp312-cp312-manylinux_2_17_x86_64", "cp311-cp311-win_amd64",
    "cp312-cp312-win_amd64")]
TARGETS = ["--python", "3.11", "--python", "3.12", "--platform", "manylinux_2_28_x86_64", "--platform", "win_amd64"]


@pytest.fixture
async def upstream(fake_index, dists):
    idx = await fake_index("json")
    add = idx.index.add
    add(dists.wheel("demo-app", "1.0", requires_dist=[
        "demo-lib[speed]>=1.0", "demo-old; python_version < '3.12'", "demo-win; sys_platform == 'win32'"]))
    add(dists.wheel("demo-lib", "1.0", requires_dist=["demo-speedup; extra == 'speed'"], provides_extra=["speed"]))
    add(dists.wheel("demo-lib", "2.0", requires_python=">=4"), requires_python=">=4")
    for filename in SPEEDUP:
        add(dists.wheel("demo-speedup", "1.0", tag=filename[len("demo_speedup-1.0-"):-len(".whl")]))
    add(dists.sdist("demo-speedup", "1.0"))
    add(dists.wheel("demo-old", "1.0"))
    add(dists.wheel("demo-win", "1.0"))
    add(dists.wheel("demo-unused", "1.0"))
    return idx


def blobs(data_dir: Path) -> int:
    return len(list((data_dir / "blobs" / "files").glob("*/*")))


async def test_prefetch_export_import_and_install_offline(upstream, tidegate, installer_env, tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    common = ["--data-dir", str(source), "--upstream", upstream.url]
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("demo-app\nno-such-project>=1\n")
    code, out = await tidegate_cmd("prefetch", *common, "-r", str(reqs), *TARGETS)
    assert code == 1, out
    unresolved = [line for line in out.splitlines() if line.startswith("unresolved:")]
    assert unresolved and all("no-such-project" in line for line in unresolved), out
    # The closure of what could be resolved is there: app, lib 1.0, speedup for every target,
    # old (3.11 only), win (Windows only); not the sdist, nor lib 2.0, nor an unused project.
    assert blobs(source) == 8, out
    code, out = await tidegate_cmd("prefetch", *common, "demo-app", *TARGETS)
    assert code == 0 and "0 files fetched, 8 already cached" in out, out

    bundle = tmp_path / "mirror.tgb"
    code, out = await tidegate_cmd("export", "--data-dir", str(source), "--output", str(bundle))
    assert code == 0, out
    await upstream.close()
    code, out = await tidegate_cmd("import", str(bundle), "--data-dir", str(target))
    assert code == 0, out
    offline = await tidegate(upstreams=["http://upstream.invalid/simple/"], offline=True, data_dir=str(target))

    async def run(*cmd: str) -> str:
        proc = await asyncio.create_subprocess_exec(*cmd, env=installer_env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
        assert proc.returncode == 0, out.decode()
        return out.decode()

    pip_target, uv_target, download = tmp_path / "pip", tmp_path / "uv", tmp_path / "download"
    await run(sys.executable, "-m", "pip", "install", "--no-cache-dir", "--index-url", offline.url,
              "--target", str(pip_target), "demo-app")
    await run(sys.executable, "-m", "uv", "pip", "install", "--no-config", "--no-cache", "--index-url", offline.url,
              "--python", sys.executable, "--target", str(uv_target), "demo-app")
    for installed in (pip_target, uv_target):
        modules = sorted(p.name for p in installed.iterdir() if not p.name.endswith(".dist-info") and p.name.startswith("demo"))
        expected = ["demo_app", "demo_lib", "demo_speedup"] + (["demo_old"] if sys.version_info < (3, 12) else [])
        assert modules == sorted(expected), (installed, modules)
    # The other platform, for both Pythons: the whole closure downloaded, wheels only. pip
    # evaluates markers for the interpreter it runs on, whatever --platform says, so its closure
    # holds demo-old when this Python is older than 3.12 and never demo-win on Linux.
    for version in ("3.11", "3.12"):
        dest = download / version
        await run(sys.executable, "-m", "pip", "download", "--no-cache-dir", "--index-url", offline.url,
                  "--platform", "win_amd64", "--python-version", version, "--only-binary", ":all:",
                  "--dest", str(dest), "demo-app")
        tag = "cp" + version.replace(".", "")
        expected = {"demo_app-1.0-py3-none-any.whl", "demo_lib-1.0-py3-none-any.whl",
                    f"demo_speedup-1.0-{tag}-{tag}-win_amd64.whl"}
        expected |= {"demo_old-1.0-py3-none-any.whl"} if sys.version_info < (3, 12) else set()
        expected |= {"demo_win-1.0-py3-none-any.whl"} if sys.platform == "win32" else set()
        assert {p.name for p in dest.iterdir()} == expected, version
        # uv evaluates the markers for the target itself: the closure as Windows sees it.
        target_dir = tmp_path / f"uv-win-{version}"
        await run(sys.executable, "-m", "uv", "pip", "install", "--no-config", "--no-cache", "--index-url", offline.url,
                  "--python", sys.executable, "--python-platform", "x86_64-pc-windows-msvc", "--python-version",
                  version, "--only-binary", ":all:", "--target", str(target_dir), "demo-app")
        installed = sorted(p.name.split("-")[0] for p in target_dir.iterdir() if p.name.endswith(".dist-info"))
        assert installed == ["demo_app", "demo_lib"] + (["demo_old"] if version == "3.11" else []) + \
            ["demo_speedup", "demo_win"], (version, installed)
        record = next(target_dir.glob("demo_speedup-*.dist-info")) / "WHEEL"
        assert f"Tag: {tag}-{tag}-win_amd64" in record.read_text()


async def test_prefetch_resumes_after_being_killed(upstream, tmp_path):
    source = tmp_path / "source"
    slow = "/files/" + SPEEDUP[3]
    upstream.index.faults[slow] = Fault(delay=60)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidegate", "prefetch", "--data-dir", str(source), "--upstream", upstream.url,
        "demo-app", *TARGETS, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        env=dict(os.environ))
    for _ in range(1200):  # every file but the stuck one, then kill it mid-transfer
        if blobs(source) == 7 and upstream.index.requests[slow]:
            break
        await asyncio.sleep(0.1)
    assert blobs(source) == 7
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    del upstream.index.faults[slow]
    before = dict(upstream.index.requests)
    code, out = await tidegate_cmd("prefetch", "--data-dir", str(source), "--upstream", upstream.url,
                                   "demo-app", *TARGETS)
    assert code == 0 and "1 files fetched, 7 already cached" in out, out
    assert blobs(source) == 8
    fetched_again = [p for p, n in upstream.index.requests.items() if p.startswith("/files/") and
                     not p.endswith((".metadata", ".provenance")) and n > before.get(p, 0)]
    assert fetched_again == [slow]


def pylock(upstream, *packages) -> str:
    """A pylock.toml (PEP 751) of (project, filename, hashes, named) packages at version 1.0, one
    wheel each: `named` gives the wheel's name, otherwise only its URL says it."""
    out = 'lock-version = "1.0"\ncreated-by = "hand"\n'
    for project, filename, hashes, named in packages:
        digests = ", ".join(f'{n} = "{v}"' for n, v in hashes.items())
        name = f'name = "{filename}", ' if named else ""
        out += (f'\n[[packages]]\nname = "{project}"\nversion = "1.0"\n'
                f'wheels = [{{ {name}url = "{upstream.file_url(filename)}", hashes = {{ {digests} }} }}]\n')
    return out


async def test_prefetch_reads_pylock_files_and_checks_their_hashes(upstream, tmp_path):
    lib = upstream.index.file("demo_lib-1.0-py3-none-any.whl")
    win = upstream.index.file(SPEEDUP[2])
    lock = tmp_path / "pylock.toml"
    lock.write_text(pylock(upstream, ("demo-lib", lib.filename, {"sha256": lib.real_sha256()}, True),
                           ("demo-speedup", win.filename, {"sha256": win.real_sha256()}, False)))
    source = tmp_path / "source"
    code, out = await tidegate_cmd("prefetch", "--data-dir", str(source), "--upstream", upstream.url, "--lock", str(lock))
    assert code == 0 and "2 files fetched" in out, out
    assert blobs(source) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text(lock.read_text().replace(win.real_sha256(), "0" * 64).replace(lib.filename, "demo_lib-2.0-py3-none-any.whl"))
    code, out = await tidegate_cmd("prefetch", "--data-dir", str(tmp_path / "other"), "--upstream", upstream.url,
                                   "--lock", str(bad))
    assert code == 1 and f"failed: {win.filename}: sha256 does not match" in out, out


async def test_a_lock_files_other_hash_algorithm_is_checked_on_the_stored_bytes(upstream, tmp_path):
    """The page gives sha256 (what the download is verified against); a lock file may pin
    sha512 only: that one is computed from the stored file, and a wrong one fails the file."""
    import hashlib

    lib = upstream.index.file("demo_lib-1.0-py3-none-any.whl")
    sha512 = hashlib.sha512(lib.path.read_bytes()).hexdigest()

    def lock(digest: str) -> Path:
        path = tmp_path / f"pylock-{digest[:8]}.toml"
        path.write_text(pylock(upstream, ("demo-lib", lib.filename, {"sha512": digest}, True)))
        return path

    code, out = await tidegate_cmd("prefetch", "--data-dir", str(tmp_path / "good"), "--upstream", upstream.url,
                                   "--lock", str(lock(sha512)))
    assert code == 0 and "1 files fetched" in out, out
    code, out = await tidegate_cmd("prefetch", "--data-dir", str(tmp_path / "bad"), "--upstream", upstream.url,
                                   "--lock", str(lock("0" * 128)))
    assert code == 1 and f"failed: {lib.filename}: sha512 does not match" in out, out


async def test_prefetch_takes_requirements_files_with_hashes_and_markers(upstream, tmp_path):
    old = upstream.index.file("demo_old-1.0-py3-none-any.whl")
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(f"demo-old==1.0 \\\n    --hash=sha256:{old.real_sha256()}\n"
                    "demo-win==1.0 ; sys_platform == 'win32'\n")
    source = tmp_path / "source"
    code, out = await tidegate_cmd("prefetch", "--data-dir", str(source), "--upstream", upstream.url, "-r", str(reqs),
                                   "--platform", "manylinux_2_28_x86_64")
    assert code == 0 and "1 files fetched" in out, out  # demo-win is for Windows only


async def test_prefetch_shares_the_data_dir_with_a_running_server(upstream, tidegate, tmp_path):
    server = await tidegate(upstreams=[upstream.url], data_dir=str(tmp_path / "shared"))
    async with server.get("/simple/demo-app/") as r:
        assert r.status == 200  # the running server has the page cached already
    code, out = await tidegate_cmd("prefetch", "--data-dir", str(tmp_path / "shared"), "--upstream", upstream.url,
                                   "demo-app", "--platform", "manylinux_2_28_x86_64", "--python", "3.11")
    assert code == 0, out
    before = upstream.index.requests["/files/demo_app-1.0-py3-none-any.whl"]
    async with server.get("/files/demo-app/demo_app-1.0-py3-none-any.whl") as r:
        assert r.status == 200 and r.headers["X-Tidegate-Cache"] == "hit" and await r.read()
    assert upstream.index.requests["/files/demo_app-1.0-py3-none-any.whl"] == before == 1
