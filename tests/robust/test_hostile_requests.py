"""Requests no client should send: every one gets a 4xx with a one-line reason, nothing is
lost, and the log holds at most one line per refused request, never a traceback."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import pytest

from support.dists import build_wheel
from support.uploadapi import PROBLEM, UploadApi, basic

USERS = [{"name": "ci", "password": "s3cret", "upload": ["*"]}]
AUTH = basic("ci", "s3cret")
LONG = "a" * 300


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def legacy_post(tg, body: bytes, boundary: str = "B") -> tuple[int, str]:
    headers = {**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with tg.session.post(tg.origin + "/legacy/", data=body, headers=headers) as r:
        return r.status, await r.text()


def form(fields: dict[str, str], content_headers: bytes) -> bytes:
    parts = [f'--B\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts.append(b"--B\r\n" + content_headers + b"\r\n\r\nnot a wheel\r\n--B--\r\n")
    return b"".join(parts)


async def test_overlong_project_names_are_refused_by_both_upload_apis(tidegate, dist_dir, caplog):
    tg = await tidegate(upstreams=[], users=USERS)
    api = UploadApi(tg, AUTH)
    status, doc, headers = await api.call("POST", "/upload/", {"name": LONG, "version": "1.0"})
    assert status == 400 and headers["Content-Type"] == PROBLEM and "not a valid project name" in doc["detail"]
    fields = {":action": "file_upload", "name": LONG, "version": "1.0"}
    disposition = f'Content-Disposition: form-data; name="content"; filename="{LONG}-1.0.tar.gz"'.encode()
    status, text = await legacy_post(tg, form(fields, disposition))
    assert status == 400 and text.count("\n") == 1, text
    # A 300-character filename for a valid name: refused before anything is written.
    status, doc, _ = await api.call("POST", "/upload/", {"name": "demo", "version": "1.0"})
    assert status == 201
    add = doc["links"]["upload"]
    status, doc, _ = await api.call("POST", add, {"filename": LONG + ".whl", "size": 10, "hashes": {"sha256": "0" * 64}})
    assert status == 400 and doc["errors"][0]["source"] == "filename"
    # Names of every length up to the limit still work end to end.
    wheel = build_wheel(dist_dir, "b" * 200, "1.0")
    fields = {":action": "file_upload", "name": "b" * 200, "version": "1.0"}
    data = aiohttp.FormData()
    for k, v in fields.items():
        data.add_field(k, v)
    data.add_field("content", wheel.read_bytes(), filename=wheel.name)
    async with tg.session.post(tg.origin + "/legacy/", data=data, headers=AUTH) as r:
        assert r.status == 200, await r.text()
    async with tg.get(f"/files/{'b' * 200}/{wheel.name}") as r:
        assert r.status == 200 and await r.read() == wheel.read_bytes()
    assert not tracebacks(caplog)


@pytest.mark.parametrize("content_headers", [
    b'Content-Disposition: form-data; name="content"; filename="a\x00b-1.0.tar.gz"',  # NUL
    b'Content-Disposition: form-data; name="content"; filename="ab-1.0.tar.gz"\r\nno colon here',
    b'Content-Disposition: form-data; name="content"; filename="ab-1.0.tar.gz"\r\n: empty name',
    b'Content-Disposition: form-data; name="content"; filename="../../etc/passwd"',
    b'Content-Disposition: form-data; name="content"; filename="' + b"x" * 70_000 + b'"',
])
async def test_unparseable_multipart_part_headers_are_a_400(tidegate, caplog, content_headers):
    tg = await tidegate(upstreams=[], users=USERS)
    fields = {":action": "file_upload", "name": "ab", "version": "1.0"}
    status, text = await legacy_post(tg, form(fields, content_headers))
    assert status in (400, 413), text
    assert text.strip() and text.count("\n") == 1, text  # one line
    assert not tracebacks(caplog)


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)  # (no half-close: aiohttp drops a connection at EOF without answering)
        reply = b""
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return reply


MALFORMED = [
    b"GET /simple/ HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /simple/ HTTP/9.9\r\nHost: x\r\n\r\n",
    b"G\x01T / HTTP/1.1\r\n\r\n",
    b"GET /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET /simple/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n",
    b"GET /simple/ HTTP/1.1\r\n" + b"X: " + b"y" * 20_000 + b"\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", MALFORMED, ids=range(len(MALFORMED)))
async def test_malformed_requests_get_a_400_and_one_log_line(tidegate, caplog, request_bytes):
    tg = await tidegate(upstreams=[])
    caplog.set_level(logging.INFO)
    reply = await asyncio.to_thread(raw_exchange, tg.port, request_bytes)
    assert reply.split(b"\r\n", 1)[0].split(b" ")[1][:1] == b"4", reply[:200]
    assert not tracebacks(caplog)
    refused = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(refused) <= 1 and all("\n" not in r.getMessage() for r in refused)
    async with tg.get("/simple/") as r:  # and the server carries on
        assert r.status == 200


async def test_a_client_that_disconnects_mid_response_logs_no_error(tidegate, fake_index, dist_dir, caplog):
    idx = await fake_index()
    big = dist_dir / "big-1.0.tar.gz"
    big.write_bytes(b"\x1f\x8b" + bytes(range(256)) * (64 * 1024))  # 16 MB
    idx.index.add(big)
    tg = await tidegate(upstreams=[idx.url])
    path = "/files/big/big-1.0.tar.gz"
    async with tg.get(path) as r:  # cached first, then sent with sendfile
        assert r.status == 200 and len(await r.read()) == big.stat().st_size

    def cut_short() -> None:
        s = socket.create_connection(("127.0.0.1", tg.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        s.recv(1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset
        s.close()

    for _ in range(3):
        await asyncio.to_thread(cut_short)
    await asyncio.sleep(0.3)
    async with tg.get(path) as r:
        assert r.status == 200 and len(await r.read()) == big.stat().st_size
    assert not tracebacks(caplog)
