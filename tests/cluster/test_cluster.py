"""Issue 11 end to end: three tidegate instances on S3 (SeaweedFS) and PostgreSQL behind nginx
round robin, with real pip, uv and `tidegate upload`.

Every file a test receives is hashed; every answer must be a 200, or a 503 that says which engine
is down: never a 500, never a file short or other than its sha256.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
import time

import aiohttp

from support.dists import build_wheel, sha256_of
from support.fakeindex import Fault
from support.processes import run

JSON = "application/vnd.pypi.simple.v1+json"
UPLOADER = {"TIDEGATE_USERNAME": "rm", "TIDEGATE_PASSWORD": "pw"}


async def get(url: str, **headers: str) -> tuple[int, bytes, str]:
    """(status, body, Retry-After)"""
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers={"Accept": JSON, **headers}) as r:
            return r.status, await r.read(), r.headers.get("Retry-After", "")


async def filenames(origin: str, project: str) -> set[str]:
    status, body, _ = await get(f"{origin}/simple/{project}/")
    assert status == 200, body
    return {f["filename"] for f in json.loads(body)["files"]}


async def ready_everywhere(cluster, within: float = 30) -> None:
    deadline = time.monotonic() + within
    for origin in cluster.origins():
        while True:
            status, body, _ = await get(origin + "/ready")
            if status == 200:
                break
            assert time.monotonic() < deadline, f"{origin}: {body!r}"
            await asyncio.sleep(0.1)


async def test_staged_on_one_previewed_on_another_published_on_the_third(cluster, installer_env, tmp_path):
    first, second, third = cluster.origins()
    env = {**installer_env, "TIDEGATE_CONFIG": ""}
    wheel = build_wheel(tmp_path / "dist", "acme-core", "1.0")
    _, out, _ = await run([sys.executable, "-m", "tidegate", "upload", "--stage", "--repository", first, str(wheel)],
                          {**env, **UPLOADER})
    stage = re.search(r"(http://\S+/stage/\S+/simple/)", out).group(1).replace(first, second)
    session = re.search(r"(http://\S+/upload/session/\S+)", out).group(1).replace(first, third)
    # The preview through the second instance: pip installs from the stage alone.
    await run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(tmp_path / "staged"),
               "--index-url", stage, "acme-core==1.0"], env)
    assert (tmp_path / "staged" / "acme_core-1.0.dist-info").is_dir()
    for origin in cluster.origins():  # staged only: the index does not list it yet
        status, _, _ = await get(f"{origin}/simple/acme-core/")
        assert status == 404
    await run([sys.executable, "-m", "tidegate", "session", "publish", session], {**env, **UPLOADER})
    # Published through the third: on every instance's very next request, asked directly.
    for origin in cluster.origins():
        assert await filenames(origin, "acme-core") == {wheel.name}
        status, body, _ = await get(f"{origin}/files/acme-core/{wheel.name}")
        assert status == 200 and hashlib.sha256(body).hexdigest() == sha256_of(wheel)
    # Real pip and uv through the load balancer.
    index = cluster.origin + "/simple/"
    await run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(tmp_path / "pip"),
               "--index-url", index, "acme-core"], env)
    await run([sys.executable, "-m", "uv", "pip", "install", "--no-config", "--no-cache", "--python", sys.executable,
               "--target", str(tmp_path / "uv"), "--index-url", index, "acme-core"], env)
    assert (tmp_path / "pip" / "acme_core-1.0.dist-info").is_dir() and (tmp_path / "uv" / "acme_core").is_dir()


async def test_twenty_cold_downloads_over_three_instances_make_one_upstream_request(cluster, upstream, dists,
                                                                                    installer_env, tmp_path):
    wheel = dists.wheel("spread-lib", "1.0", padding=1_500_000)
    upstream.index.add(wheel, serve_metadata=False)
    path = f"/files/{wheel.name}"
    upstream.index.faults[path] = Fault(slow=0.01, chunk_size=65536)  # mid-download while all 20 ask
    url = f"{cluster.origin}/files/spread-lib/{wheel.name}"
    answers = await asyncio.gather(*(get(url) for _ in range(20)))
    assert {status for status, _, _ in answers} == {200}
    assert {hashlib.sha256(body).hexdigest() for _, body, _ in answers} == {sha256_of(wheel)}
    assert upstream.index.requests[path] == 1  # the file, for the whole cluster
    assert upstream.index.requests["/simple/spread-lib/"] == 1  # and its page
    # pip and uv with a dependency, through the balancer: what they fetch is what is cached.
    upstream.index.add(dists.wheel("spread-app", "1.0", requires_dist=["spread-lib"]), serve_metadata=False)
    env = {**installer_env, "TIDEGATE_CONFIG": ""}
    await run([sys.executable, "-m", "uv", "pip", "install", "--no-config", "--no-cache", "--python", sys.executable,
               "--target", str(tmp_path / "uv"), "--index-url", cluster.origin + "/simple/", "spread-app"], env)
    assert (tmp_path / "uv" / "spread_lib").is_dir()
    assert upstream.index.requests[path] == 1


async def test_sigkill_of_the_download_holder_and_another_instance_completes_it(cluster, upstream, dists):
    wheel = dists.wheel("killed-lib", "1.0", padding=2_000_000)
    upstream.index.add(wheel, serve_metadata=False)
    path = f"/files/{wheel.name}"
    holder, *followers = cluster.origins()
    for origin in cluster.origins():  # the page everywhere first, so only the file is in flight
        assert await filenames(origin, "killed-lib") == {wheel.name}
    upstream.index.faults[path] = Fault(slow=0.02, chunk_size=32768, times=1)  # ~1.3 s for the holder only
    cut = asyncio.ensure_future(get(f"{holder}/files/killed-lib/{wheel.name}"))
    while upstream.index.requests[path] == 0:
        await asyncio.sleep(0.01)
    waiting = [asyncio.ensure_future(get(f"{origin}/files/killed-lib/{wheel.name}")) for origin in followers]
    await asyncio.sleep(0.3)
    assert not any(w.done() for w in waiting)  # they follow the holder's download
    cluster.kill(0)
    try:
        answers = await asyncio.wait_for(asyncio.gather(*waiting), 60)
        assert [status for status, _, _ in answers] == [200, 200]
        assert {hashlib.sha256(body).hexdigest() for _, body, _ in answers} == {sha256_of(wheel)}
        assert upstream.index.requests[path] == 2  # the holder's, cut, and one take-over
        try:
            status, body, _ = await cut
            assert status != 200 or hashlib.sha256(body).hexdigest() == sha256_of(wheel)
        except aiohttp.ClientError:
            pass  # the holder's own client sees its transfer cut: never a wrong file
        status, body, _ = await get(f"{cluster.origin}/files/killed-lib/{wheel.name}")  # nginx skips the dead one
        assert status == 200 and hashlib.sha256(body).hexdigest() == sha256_of(wheel)
    finally:
        await cluster.instances[0].start()
    assert "taking over the download" in cluster.log(1) + cluster.log(2)


class Load:
    """Clients asking the balancer, as fast as answers come, for pages and files of projects
    cached before: each answer a 200 with the right bytes, or a 503 naming the engine."""

    def __init__(self, origin: str, files: dict[str, str], engine: str) -> None:
        self.origin, self.files, self.engine = origin, files, engine
        self.statuses: dict[int, int] = {}
        self.problems: list[str] = []
        self._stop = asyncio.Event()

    async def _client(self, session: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            for url, digest in self.files.items():
                try:
                    async with session.get(self.origin + url, headers={"Accept": JSON}) as r:
                        body = await r.read()
                        self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                        if r.status == 200 and digest and hashlib.sha256(body).hexdigest() != digest:
                            self.problems.append(f"{url}: other bytes than its sha256")
                        elif r.status == 503 and self.engine.encode() not in body:
                            self.problems.append(f"{url}: 503 without the reason: {body[:200]!r}")
                        elif r.status not in (200, 503):
                            self.problems.append(f"{url}: {r.status} {body[:300]!r}")
                except aiohttp.ClientPayloadError:
                    pass  # a transfer cut as an instance lost its engine: short, so never taken for the file
                await asyncio.sleep(0.005)

    async def during(self, outage) -> None:
        async with aiohttp.ClientSession() as session:
            clients = [asyncio.ensure_future(self._client(session)) for _ in range(4)]
            try:
                await asyncio.sleep(0.5)
                await asyncio.to_thread(outage)
                await asyncio.sleep(0.5)
            finally:
                self._stop.set()
                await asyncio.gather(*clients)


async def cached_files(cluster, upstream, dists, project: str) -> dict[str, str]:
    """URLs of an upstream project (page and file) and a local one, each asked once through
    every instance, with the sha256 each file must have ('' for pages)."""
    wheel = dists.wheel(project, "1.0", padding=50_000)
    upstream.index.add(wheel, serve_metadata=False)
    urls = {f"/simple/{project}/": "", f"/files/{project}/{wheel.name}": sha256_of(wheel),
            "/simple/acme-core/": ""}
    for origin in cluster.origins():
        for url, digest in urls.items():
            status, body, _ = await get(origin + url)
            assert status == 200, (origin + url, body)
            assert not digest or hashlib.sha256(body).hexdigest() == digest
    return urls


async def restarted_under(load: Load, engine, seconds: float = 1.5) -> None:
    """Stop `engine` for `seconds` while `load` runs: every answer was a good 200 or a clean 503."""

    def outage() -> None:
        engine.stop()
        time.sleep(seconds)
        engine.start()

    await load.during(outage)
    assert not load.problems, load.problems[:5]
    assert load.statuses.get(200), load.statuses


async def test_postgresql_restarted_under_load(cluster, upstream, dists, postgres):
    await restarted_under(Load(cluster.origin, await cached_files(cluster, upstream, dists, "pg-outage"), "PostgreSQL"),
                          postgres)
    await ready_everywhere(cluster)  # back without restarting tidegate
    for origin in cluster.origins():
        assert await filenames(origin, "acme-core")
    assert cluster.tracebacks() == 0


async def test_s3_restarted_under_load(cluster, upstream, dists, seaweedfs):
    await restarted_under(Load(cluster.origin, await cached_files(cluster, upstream, dists, "s3-outage"), "S3"),
                          seaweedfs)
    await ready_everywhere(cluster, within=60)
    # A file no instance has on local disk comes from the bucket again.
    wheel = dists.wheel("after-s3", "1.0", padding=10_000)
    upstream.index.add(wheel, serve_metadata=False)
    status, body, _ = await get(f"{cluster.origin}/files/after-s3/{wheel.name}")
    assert status == 200 and hashlib.sha256(body).hexdigest() == sha256_of(wheel)
    assert cluster.tracebacks() == 0
