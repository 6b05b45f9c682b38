"""Slow and stuck clients are bounded by `client_timeout`: an upload body that stops arriving is
answered 408 and leaves nothing behind; a connection that never completes its request is closed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import time

from support.dists import build_wheel
from support.serveproc import Serve
from support.uploadapi import UploadApi, basic

AUTH = basic("ci", "s3cret")
USERS = [{"name": "ci", "password": "s3cret", "upload": ["*"]}]


async def stalled_post(port: int, path: str, headers: dict[str, str], first: bytes, length: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Host": "x", "Content-Length": str(length)}.items())
    writer.write(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + first)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4096), 30)  # then nothing more is sent
    finally:
        writer.close()


async def test_a_stalled_upload_body_is_a_408_and_the_upload_can_be_retried(tidegate, dist_dir, caplog):
    tg = await tidegate(upstreams=[], users=USERS, client_timeout=1)
    api = UploadApi(tg, AUTH)
    wheel = build_wheel(dist_dir, "slow", "1.0")
    data = wheel.read_bytes()
    status, session, _ = await api.call("POST", "/upload/", {"name": "slow", "version": "1.0"})
    status, upload, _ = await api.call("POST", session["links"]["upload"], {
        "filename": wheel.name, "size": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
        "mechanism": "http-post-bytes"})
    content = upload["mechanism"]["file_url"].removeprefix(tg.origin)
    reply = await stalled_post(tg.port, content, {**AUTH, "Content-Type": "application/octet-stream"}, data[:100],
                               len(data))
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["status"] == 408
    assert not list((tg.settings.data_dir / "local" / "tmp").iterdir())  # the partial body is gone
    # The same upload, sent whole, goes through.
    status, _, _ = await api.call("POST", upload["mechanism"]["file_url"], data=data,
                                  headers={"Content-Type": "application/octet-stream"})
    assert status == 204
    # The legacy API too.
    boundary = "B"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{wheel.name}"\r\n\r\n').encode()
    reply = await stalled_post(tg.port, "/legacy/", {**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"},
                               body + data[:100], len(body) + len(data) + 100)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_connection_that_never_completes_its_request_is_closed(fake_index, tmp_path):
    idx = await fake_index()
    config = tmp_path / "tidegate.toml"
    config.write_text(f'client_timeout = "1s"\n[[upstreams]]\nurl = "{idx.url}"\n')
    server = Serve(config, tmp_path / "data", workers=1)
    await server.start()
    try:
        def trickle() -> tuple[bytes, float]:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            started = time.monotonic()
            s.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
            got = s.recv(100)
            s.close()
            return got, time.monotonic() - started

        got, _ = await asyncio.to_thread(trickle)
        assert got == b""  # closed by the server
        assert "Traceback" not in server.log.read_text()
    finally:
        server.stop()
