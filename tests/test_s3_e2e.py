"""`tidegate serve` with blob_store = s3://...: pip installs an uploaded package and a cached
upstream file, both kept in the bucket; with the S3 server down, what needs it answers 503."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sys
import uuid

import aiohttp
import obstore
from obstore.store import S3Store

from support.dists import build_wheel
from support.processes import WAIT, free_port, run, start_serve

CONFIG = '[[users]]\nname = "ci"\npassword = "s3cret"\nupload = ["demo-*"]\n'


def pip_install(origin: str, target, *reqs: str) -> list[str]:
    return [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), "--index-url",
            f"{origin}/simple/", *reqs]


async def test_pip_installs_an_upload_and_a_cached_file_kept_in_the_bucket(tmp_path, seaweedfs, installer_env,
                                                                           fake_index, dists):
    idx = await fake_index("html")
    public = dists.wheel("public-pkg", "1.0")
    idx.index.add(public)
    idx.index.add(dists.wheel("public-pkg", "2.0"))  # listed, not fetched until S3 is down
    bucket, prefix = seaweedfs.bucket("e2e"), f"tidegate-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "tidegate.toml"
    config.write_text(CONFIG)
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {**installer_env, **seaweedfs.env}
    proc = await start_serve(tmp_path / "data", port, "--upstream", idx.url, "--blob-store", f"s3://{bucket}/{prefix}",
                             "--s3-endpoint-url", seaweedfs.endpoint, TIDEGATE_CONFIG=str(config), **seaweedfs.env)
    try:
        demo = build_wheel(tmp_path / "dist", "demo-pkg", "1.0")
        await run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                   "--repository-url", f"{origin}/legacy/", "-u", "ci", "-p", "s3cret", str(demo)], env)
        await run(pip_install(origin, tmp_path / "site", "demo-pkg==1.0", "public-pkg==1.0"), env)
        assert (tmp_path / "site" / "demo_pkg").is_dir() and (tmp_path / "site" / "public_pkg").is_dir()

        store = S3Store(bucket, prefix=prefix, endpoint=seaweedfs.endpoint, region="us-east-1",
                        client_options={"allow_http": True})
        held = {meta["path"]: meta["size"] for batch in obstore.list(store) for meta in batch}
        for kind, wheel in (("local", demo), ("cache", public)):
            sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
            assert held.get(f"{kind}/{sha256}") == wheel.stat().st_size, held
            assert bytes(obstore.get(store, f"{kind}/{sha256}").bytes()) == wheel.read_bytes()

        # The S3 server goes away: readiness, and a file only in the bucket (as one another
        # instance stored is: here its local copy is dropped), answer 503 with the reason; a cold
        # download fails short of its length (never served whole unless stored); files in the
        # local tier are still served. Back, it serves again without a restart.
        demo_sha = hashlib.sha256(demo.read_bytes()).hexdigest()
        for copy in (tmp_path / "data" / "blobtier" / "local" / "files").glob(f"*/{demo_sha}"):
            copy.unlink()
        seaweedfs.stop()
        try:
            await asyncio.sleep(5.5)  # the readiness answer is cached for 5 s
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{origin}/ready") as r:
                    assert r.status == 503 and "S3 is unavailable" in await r.text()
                async with session.get(f"{origin}/simple/demo-pkg/") as r:
                    assert r.status == 200
                async with session.get(f"{origin}/files/demo-pkg/{demo.name}") as r:
                    assert r.status == 503 and "S3 is unavailable" in await r.text()
                async with session.get(f"{origin}/files/public-pkg/public_pkg-1.0-py3-none-any.whl") as r:
                    assert r.status == 200 and await r.read() == public.read_bytes()
                try:
                    async with session.get(f"{origin}/files/public-pkg/public_pkg-2.0-py3-none-any.whl") as r:
                        await r.read()
                        assert r.status != 200, "a file S3 could not store was served whole"
                except aiohttp.ClientPayloadError:
                    pass  # cut short: the client knows it did not get the file
        finally:
            seaweedfs.start()
        await run(pip_install(origin, tmp_path / "site3", "demo-pkg==1.0"), env)
        await run(pip_install(origin, tmp_path / "site2", "public-pkg==2.0"), env)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, out.decode()


async def test_backup_refuses_a_data_dir_whose_files_are_in_a_bucket(tmp_path):
    code, _, out = await run([sys.executable, "-m", "tidegate", "backup", str(tmp_path / "backup"), "--data-dir",
                              str(tmp_path / "data")], {"PATH": "/usr/bin", "TIDEGATE_BLOB_STORE": "s3://bucket/prefix"},
                             ok=False)
    assert code == 1
    assert out.startswith("tidegate: the files are in s3://bucket/prefix") and out.count("\n") == 1, out
