"""A cold file through an S3 blob store: the client gets its last byte once the file is verified
on local disk, while the upload to S3 finishes after; a failed upload, or a crash before it
ends, leaves nothing visible and the next request downloads the file again. S3 is reached
through a TCP proxy that can hold back or refuse the writes (PUT and POST requests), as a slow
or failing S3 server would."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import obstore
import pytest
from obstore.store import S3Store

from support.processes import free_port, start_serve


class WriteGate:
    """A TCP proxy to S3 whose connections, once they send a PUT or POST, wait while `held`
    (mode "hold") or are cut (mode "refuse"); reads (GET, HEAD, LIST) pass."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.host, self.port_to = parts.hostname, parts.port
        self.mode = "open"
        self.opened = asyncio.Event()
        self.opened.set()
        self.writes_seen = 0

    def set(self, mode: str) -> None:
        self.mode = mode
        if mode == "open":
            self.opened.set()
        else:
            self.opened.clear()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        self.server.close()

    async def _hold(self, reader: asyncio.StreamReader, first: bytes) -> list[bytes] | None:
        """What the client sends until the gate opens, or None if it closes the connection first."""
        held = [first]
        while not self.opened.is_set():
            read, opened = asyncio.ensure_future(reader.read(65536)), asyncio.ensure_future(self.opened.wait())
            await asyncio.wait({read, opened}, return_when=asyncio.FIRST_COMPLETED)
            opened.cancel()
            if not read.done():
                read.cancel()
                continue
            if not read.result():
                return None
            held.append(read.result())
        return held

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port_to)
        except OSError:
            writer.close()
            return

        async def to_server() -> None:
            while chunk := await reader.read(65536):
                held = [chunk]
                if chunk.startswith((b"PUT ", b"POST ")):
                    self.writes_seen += 1
                    if self.mode == "refuse":
                        raise ConnectionResetError("refused a write")
                    held = await self._hold(reader, chunk)
                    if held is None:  # the client went away meanwhile: S3 never gets its request
                        return
                for data in held:
                    up_writer.write(data)
                await up_writer.drain()

        async def to_client() -> None:
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
                await writer.drain()

        tasks = [asyncio.ensure_future(to_server()), asyncio.ensure_future(to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for w in (writer, up_writer):
                w.transport.abort()


async def gated_setup(seaweedfs, fake_index, dists, label: str):
    """A gate in front of SeaweedFS, a fresh bucket prefix, an upstream with one 3 MB wheel,
    and a client of the bucket that bypasses the gate: (gate, gated endpoint, blob_store, idx,
    wheel, direct client)."""
    gate = WriteGate(seaweedfs.endpoint)
    endpoint = await gate.start()
    bucket, prefix = seaweedfs.bucket("cold"), f"{label}-{uuid.uuid4().hex[:8]}"
    idx = await fake_index("html")
    wheel = dists.wheel("cold-pkg", "1.0", padding=3_000_000)
    idx.index.add(wheel, serve_metadata=False)
    direct = S3Store(bucket, prefix=prefix, endpoint=seaweedfs.endpoint, region="us-east-1",
                     client_options={"allow_http": True})
    return gate, endpoint, f"s3://{bucket}/{prefix}", idx, wheel, direct


@pytest.fixture
async def gated(seaweedfs, tidegate, fake_index, dists):
    gate, endpoint, blob_store, idx, wheel, direct = await gated_setup(seaweedfs, fake_index, dists, "cold")
    tg = await tidegate(upstreams=[idx.url], blob_store=blob_store, s3_endpoint_url=endpoint)
    yield gate, tg, idx, wheel, direct
    gate.set("open")
    await gate.close()


def in_bucket(store: S3Store, key: str) -> bool:
    try:
        obstore.head(store, key)
        return True
    except FileNotFoundError:
        return False


async def fetch(tg, wheel) -> bytes:
    async with tg.get(f"/files/cold-pkg/{wheel.name}") as r:
        assert r.status == 200
        return await r.read()


async def fetch_from(origin: str, wheel) -> bytes:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin}/files/cold-pkg/{wheel.name}") as r:
            assert r.status == 200
            return await r.read()


async def in_bucket_soon(store: S3Store, key: str) -> bool:
    for _ in range(200):
        if in_bucket(store, key):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_the_client_gets_every_byte_while_the_upload_is_held_back(gated):
    gate, tg, idx, wheel, direct = gated
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    gate.set("hold")
    body = await asyncio.wait_for(fetch(tg, wheel), 20)
    assert hashlib.sha256(body).hexdigest() == sha256
    for _ in range(200):  # the upload's PUT reaches the gate (sent as the download ends)
        if gate.writes_seen:
            break
        await asyncio.sleep(0.05)
    assert gate.writes_seen >= 1
    await asyncio.sleep(0.5)
    assert not in_bucket(direct, f"cache/{sha256}")  # the body came while the upload was held
    # A request during the upload joins it: served from the verified part file, no new download.
    assert await asyncio.wait_for(fetch(tg, wheel), 20) == wheel.read_bytes()
    assert not in_bucket(direct, f"cache/{sha256}")
    gate.set("open")
    for _ in range(200):
        if in_bucket(direct, f"cache/{sha256}"):
            break
        await asyncio.sleep(0.05)
    assert bytes(obstore.get(direct, f"cache/{sha256}").bytes()) == wheel.read_bytes()
    assert await fetch(tg, wheel) == wheel.read_bytes()
    assert idx.index.requests[f"/files/{wheel.name}"] == 1


async def test_a_failed_upload_leaves_no_blob_and_the_next_request_downloads_again(gated):
    gate, tg, idx, wheel, direct = gated
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    path = f"/files/{wheel.name}"
    gate.set("refuse")
    assert await asyncio.wait_for(fetch(tg, wheel), 20) == wheel.read_bytes()  # verified: served
    part = list(Path(tg.settings.data_dir).rglob(f"{sha256}.part"))
    assert part, "the download's part file, kept until the upload ends"
    for _ in range(600):  # the background upload fails after obstore's retries: the part file goes
        if not part[0].exists():
            break
        await asyncio.sleep(0.05)
    assert not part[0].exists()
    assert gate.writes_seen >= 2  # the streamed upload, then commit()'s whole retry, were both refused
    assert not in_bucket(direct, f"cache/{sha256}")
    assert idx.index.requests[path] == 1
    gate.set("open")
    assert await fetch(tg, wheel) == wheel.read_bytes()  # nothing was kept: fetched again
    assert idx.index.requests[path] == 2
    for _ in range(200):
        if in_bucket(direct, f"cache/{sha256}"):
            break
        await asyncio.sleep(0.05)
    assert bytes(obstore.get(direct, f"cache/{sha256}").bytes()) == wheel.read_bytes()


async def test_a_worker_stopping_finishes_the_uploads_of_files_it_served(gated):
    gate, tg, idx, wheel, direct = gated
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    gate.set("hold")
    assert await asyncio.wait_for(fetch(tg, wheel), 20) == wheel.read_bytes()
    asyncio.get_running_loop().call_later(0.5, gate.set, "open")  # S3 answers after the stop began
    started = time.monotonic()
    await tg.stop()
    assert time.monotonic() - started < 10
    assert in_bucket(direct, f"cache/{sha256}")  # kept: the next instance need not fetch it again
    assert bytes(obstore.get(direct, f"cache/{sha256}").bytes()) == wheel.read_bytes()


async def test_a_crash_before_the_upload_ends_loses_nothing_and_the_file_is_fetched_again(
        seaweedfs, fake_index, dists, tmp_path):
    """`tidegate serve` killed (SIGKILL) after its client got the file, while the upload is held:
    the bucket has nothing under the key, the next start sweeps the part file, and the next
    request downloads the file again and stores it."""
    gate, endpoint, blob_store, idx, wheel, direct = await gated_setup(seaweedfs, fake_index, dists, "crash")
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    data, port = tmp_path / "data", free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {"TIDEGATE_BLOB_STORE": blob_store, "TIDEGATE_S3_ENDPOINT_URL": endpoint}
    proc = await start_serve(data, port, "--upstream", idx.url, workers=1, **env)
    try:
        gate.set("hold")
        assert await asyncio.wait_for(fetch_from(origin, wheel), 20) == wheel.read_bytes()
        for _ in range(200):
            if gate.writes_seen:
                break
            await asyncio.sleep(0.05)
        assert gate.writes_seen >= 1  # the upload had begun, and is held
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    gate.set("open")
    assert not in_bucket(direct, f"cache/{sha256}")
    assert list(data.rglob(f"{sha256}.part")), "the part file the killed server left"
    proc = await start_serve(data, port, "--upstream", idx.url, workers=1, **env)
    try:
        assert not list(data.rglob(f"{sha256}.part"))  # swept at start-up
        assert await fetch_from(origin, wheel) == wheel.read_bytes()
        assert idx.index.requests[f"/files/{wheel.name}"] == 2  # downloaded again: nothing was kept
        assert await in_bucket_soon(direct, f"cache/{sha256}")
        assert bytes(obstore.get(direct, f"cache/{sha256}").bytes()) == wheel.read_bytes()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        await gate.close()
