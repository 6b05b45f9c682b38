"""The upload client (`tidegate upload` / `tidegate session`) against a fake Upload 2.0 server.

The fake implements just enough of PEP 694 plus tidegate's URL layout, and records every
request, so tests can check what the client sent. The CLI runs in-process on the test's loop
(`run_cli`), except for the Ctrl-C test, which needs a real process to signal.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from support.dists import build_sdist, build_wheel, sha256_of
from tidegate.cli import build_parser
from tidegate.client import cli as client_cli
from tidegate.client import upload as up

MEDIA = "application/vnd.pypi.upload.v2+json"


# --- the fake server -----------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    auth: tuple[str, str] | None
    content_type: str
    json: Any = None


@dataclass
class FakeFile:
    filename: str
    size: int
    hashes: dict[str, str]
    status: str = "pending"
    data: bytes = b""
    content_length: int | None = None
    chunked: bool = False


@dataclass
class FakeSession:
    token: str
    name: str
    version: str
    status: str = "open"
    files: dict[str, FakeFile] = field(default_factory=dict)


class FakeUploadServer:
    """Options: `upload_api=False` answers 404 on /upload/ (legacy only); `fail_bytes` maps a
    filename to the HTTP status its bytes POST gets; `deferred` makes complete and publish
    answer 202 (processing) so the client must poll; `stall_bytes` never answers the bytes
    POST; `existing_legacy` filenames get the legacy "File already exists" 400; `conflicts`
    filenames get 409 on file upload session creation (already published); `serial` refuses
    parallel uploads with 409."""

    def __init__(self, *, upload_api: bool = True, fail_bytes: dict[str, int] | None = None,
                 deferred: bool = False, stall_bytes: bool = False,
                 existing_legacy: set[str] | None = None, conflicts: set[str] | None = None,
                 serial: bool = False, expires_at: str = "2099-01-01T00:00:00Z") -> None:
        self.upload_api = upload_api
        self.fail_bytes = fail_bytes or {}
        self.deferred = deferred
        self.stall_bytes = stall_bytes
        self.existing_legacy = existing_legacy or set()
        self.conflicts = conflicts or set()
        self.serial = serial
        self.expires_at = expires_at
        self.requests: list[Recorded] = []
        self.sessions: dict[str, FakeSession] = {}
        self.legacy: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0
        self.base = ""
        self.bytes_started = asyncio.Event()
        self.release = asyncio.Event()  # ends a stalled bytes POST (set at teardown)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record], client_max_size=1 << 30)
        s = "/upload/session/{token}"
        app.router.add_post("/upload/", self.create)
        app.router.add_get(s, self.status)
        app.router.add_delete(s, self.cancel)
        app.router.add_post(s + "/publish", self.publish)
        app.router.add_post(s + "/extend", self.extend)
        app.router.add_post(s + "/files", self.file_create)
        app.router.add_get(s + "/files/{filename}", self.file_status)
        app.router.add_delete(s + "/files/{filename}", self.file_delete)
        app.router.add_post(s + "/files/{filename}/bytes", self.file_bytes)
        app.router.add_post(s + "/files/{filename}/complete", self.file_complete)
        app.router.add_post("/legacy/", self.legacy_upload)
        return app

    # helpers

    def calls(self, method: str, suffix: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    def new_session(self, name: str, version: str) -> FakeSession:
        session = FakeSession(secrets.token_urlsafe(8), name, version)
        self.sessions[session.token] = session
        return session

    def body(self, session: FakeSession) -> dict:
        url = f"{self.base}/upload/session/{session.token}"
        return {
            "meta": {"api-version": "2.0"},
            "links": {"session": url, "upload": url + "/files", "publish": url + "/publish",
                      "extend": url + "/extend", "stage": f"{self.base}/stage/{session.token}/simple/"},
            "mechanisms": ["http-post-bytes"],
            "session-token": session.token,
            "expires-at": self.expires_at,
            "status": session.status,
            "files": {f.filename: {"status": f.status, "link": url + "/files/" + f.filename}
                      for f in session.files.values()},
            "notices": [],
        }

    def file_body(self, session: FakeSession, f: FakeFile) -> dict:
        url = f"{self.base}/upload/session/{session.token}/files/{f.filename}"
        return {
            "meta": {"api-version": "2.0"},
            "links": {"file-upload-session": url, "complete": url + "/complete"},
            "status": f.status, "expires-at": self.expires_at,
            "mechanism": {"identifier": "http-post-bytes", "file_url": url + "/bytes"},
        }

    @staticmethod
    def reply(body: dict, status: int = 200, **headers: str) -> web.Response:
        return web.json_response(body, status=status, content_type=MEDIA, headers=headers)

    @staticmethod
    def problem(status: int, title: str, detail: str = "") -> web.Response:
        body = {"status": status, "title": title, "detail": detail,
                "errors": [{"source": "fake", "message": f"fake says {status}"}]}
        return web.json_response(body, status=status, content_type="application/problem+json")

    def _session(self, request: web.Request) -> FakeSession:
        session = self.sessions.get(request.match_info["token"])
        if session is None:
            raise web.HTTPNotFound()
        return session

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        auth = None
        if request.headers.get("Authorization", "").startswith("Basic "):
            user, _, password = base64.b64decode(request.headers["Authorization"][6:]).decode().partition(":")
            auth = (user, password)
        body = None
        if request.content_type == MEDIA:
            body = await request.json()
            assert body["meta"] == {"api-version": "2.0"}
        self.requests.append(Recorded(request.method, request.path, auth, request.content_type, body))
        return await handler(request)

    # Upload 2.0

    async def create(self, request: web.Request) -> web.Response:
        if not self.upload_api:
            raise web.HTTPNotFound()
        data = await request.json()
        for session in self.sessions.values():
            if (session.name, session.version) == (data["name"], data["version"]) and session.status in ("open", "error"):
                return web.json_response({"status": 409, "title": "Conflict"}, status=409,
                                         content_type="application/problem+json",
                                         headers={"Location": f"/upload/session/{session.token}"})
        session = self.new_session(data["name"], data["version"])
        body = self.body(session)
        return self.reply(body, 201, Location=body["links"]["session"])

    async def status(self, request: web.Request) -> web.Response:
        return self.reply(self.body(self._session(request)))

    async def cancel(self, request: web.Request) -> web.Response:
        self._session(request).status = "canceled"
        return web.Response(status=204)

    async def extend(self, request: web.Request) -> web.Response:
        return self.reply(self.body(self._session(request)))

    async def publish(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if any(f.status != "completed" for f in session.files.values()):
            return self.problem(409, "Files not completed")
        location = {"Location": f"{self.base}/upload/session/{session.token}"}
        if self.deferred:
            session.status = "processing"
            asyncio.get_running_loop().call_later(0.05, setattr, session, "status", "published")
            return self.reply(self.body(session), 202, **{"Retry-After": "0", **location})
        session.status = "published"
        return self.reply(self.body(session), 201, **location)

    async def file_create(self, request: web.Request) -> web.Response:
        session = self._session(request)
        data = await request.json()
        assert data["mechanism"] == "http-post-bytes"
        if data["filename"] in self.conflicts:
            return self.problem(409, "File already exists", f"{data['filename']} is published")
        if self.serial and any(f.status == "pending" for f in session.files.values()):
            return self.problem(409, "One upload at a time")
        f = FakeFile(data["filename"], data["size"], data["hashes"])
        session.files[f.filename] = f
        return self.reply(self.file_body(session, f), 202, **{"Retry-After": "0"})

    async def file_status(self, request: web.Request) -> web.Response:
        session = self._session(request)
        f = session.files[request.match_info["filename"]]
        return self.reply(self.file_body(session, f), **{"Retry-After": "0"})

    async def file_delete(self, request: web.Request) -> web.Response:
        session = self._session(request)
        session.files.pop(request.match_info["filename"], None)
        return web.Response(status=204)

    async def file_bytes(self, request: web.Request) -> web.Response:
        session = self._session(request)
        f = session.files[request.match_info["filename"]]
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.bytes_started.set()
        try:
            if self.stall_bytes:
                await self.release.wait()
                return self.problem(503, "Stalled")
            await asyncio.sleep(0.05)  # let parallel uploads overlap
            if f.filename in self.fail_bytes:
                return self.problem(self.fail_bytes[f.filename], "Storage exploded", "try again later")
            f.content_length = request.content_length
            f.chunked = request.headers.get("Transfer-Encoding", "") == "chunked"
            f.data = await request.read()
            assert request.content_type == "application/octet-stream"
            return web.Response(status=204)
        finally:
            self.in_flight -= 1

    async def file_complete(self, request: web.Request) -> web.Response:
        session = self._session(request)
        f = session.files[request.match_info["filename"]]
        ok = len(f.data) == f.size and hashlib.sha256(f.data).hexdigest() == f.hashes["sha256"]
        if not ok:
            f.status = "error"
            return self.problem(400, "Hash mismatch")
        if self.deferred:
            f.status = "processing"
            asyncio.get_running_loop().call_later(0.05, setattr, f, "status", "completed")
            return self.reply(self.file_body(session, f), 202, **{"Retry-After": "0"})
        f.status = "completed"
        return self.reply(self.file_body(session, f), 201)

    # legacy

    async def legacy_upload(self, request: web.Request) -> web.Response:
        fields: dict[str, Any] = {}
        async for part in await request.multipart():
            if part.name == "content":
                fields["content"] = (part.filename, part.headers.get("Content-Type"), await part.read())
            else:
                fields[part.name] = await part.text()
        if fields["content"][0] in self.existing_legacy:
            return web.Response(status=400, text="File already exists. See /help#file-name-reuse")
        self.legacy.append(fields)
        return web.Response(text="OK")


@pytest.fixture
async def server(aiohttp_server: Any) -> AsyncIterator[Any]:
    """Factory: `fake = await server(**FakeUploadServer options)`; `fake.base` is its URL."""
    started: list[FakeUploadServer] = []

    async def start(**opts: Any) -> FakeUploadServer:
        fake = FakeUploadServer(**opts)
        running = await aiohttp_server(fake.app(), host="127.0.0.1")
        fake.base = str(running.make_url("")).rstrip("/")
        started.append(fake)
        return fake

    yield start
    for fake in started:  # a stalled handler would hold up the server's shutdown
        fake.release.set()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME (for ~/.pypirc) and no TIDEGATE_* credentials from the real environment."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for key in ("TIDEGATE_USERNAME", "TIDEGATE_PASSWORD", "TIDEGATE_REPOSITORY", "TWINE_USERNAME", "TWINE_PASSWORD",
                "TWINE_REPOSITORY_URL"):
        monkeypatch.delenv(key, raising=False)
    return home


async def run_cli(*argv: str) -> int:
    """`tidegate ARGV` in-process, on the running loop (the fake server lives on it too)."""
    args = build_parser().parse_args(list(argv))
    return await client_cli.run_async(args)


@pytest.fixture
def dists(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "dist"
    return {
        "foo-whl": build_wheel(d, "Foo", "1.0", padding=600_000),
        "foo-whl2": build_wheel(d, "Foo", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64", padding=300_000),
        "foo-sdist": build_sdist(d, "Foo", "1.0"),
        "foo2-sdist": build_sdist(d, "foo", "2.0"),
        "bar-whl": build_wheel(d, "bar.baz", "0.1"),
    }


def files_of(fake: FakeUploadServer, name: str, version: str) -> dict[str, FakeFile]:
    (session,) = [s for s in fake.sessions.values() if (s.name, s.version) == (name, version)]
    return session.files


# --- tests -------------------------------------------------------------------------------------


def test_group_by_name_version(dists: dict[str, Path]) -> None:
    groups = up.group_dists([dists[k] for k in ("foo-whl", "bar-whl", "foo2-sdist", "foo-sdist", "foo-whl2")])
    assert list(groups) == [("foo", "1.0"), ("bar-baz", "0.1"), ("foo", "2.0")]
    assert [d.filename for d in groups[("foo", "1.0")]] == [
        "foo-1.0-py3-none-any.whl", "foo-1.0.tar.gz", "foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"]
    assert {d.filetype for d in groups[("foo", "1.0")]} == {"bdist_wheel", "sdist"}


async def test_bad_file_name_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("x")
    assert await run_cli("upload", "--repository", "http://127.0.0.1:9", str(junk)) == 2
    assert "not a wheel or sdist" in capsys.readouterr().err


async def test_file_chunks_stream_in_bounded_pieces(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(300_000))
    seen: list[int] = []
    chunks = [c async for c in up.file_chunks(path, seen.append, chunk_size=64 * 1024)]
    assert b"".join(chunks) == path.read_bytes()
    assert len(chunks) == 5 and max(map(len, chunks)) == 64 * 1024 and sum(seen) == 300_000


async def test_upload_and_publish_one_session_per_name_version(
        server: Any, dists: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    fake = await server()
    paths = [str(p) for p in dists.values()]
    assert await run_cli("upload", "--repository", fake.base, *paths) == 0

    created = [r.json for r in fake.calls("POST", "/upload/")]
    assert sorted((c["name"], c["version"]) for c in created) == [("bar-baz", "0.1"), ("foo", "1.0"), ("foo", "2.0")]
    assert all(s.status == "published" for s in fake.sessions.values())
    foo = files_of(fake, "foo", "1.0")
    assert sorted(foo) == sorted(dists[k].name for k in ("foo-whl", "foo-whl2", "foo-sdist"))
    for key, path in dists.items():
        (f,) = [f for s in fake.sessions.values() for f in s.files.values() if f.filename == path.name]
        # The bytes arrived intact, announced with the right size and hash, with a Content-Length.
        assert f.data == path.read_bytes() and f.status == "completed"
        assert f.hashes == {"sha256": sha256_of(path)} and f.size == path.stat().st_size
        assert f.content_length == f.size and not f.chunked
    out = capsys.readouterr().out
    assert "foo 1.0: published 3 file(s)" in out and "bar-baz 0.1: published 1 file(s)" in out
    # Everything staged before anything was published: the first publish follows the last complete.
    order = [r.path for r in fake.requests if r.path.endswith(("/complete", "/publish"))]
    assert order.index(next(p for p in order if p.endswith("/publish"))) == len(order) - 3


async def test_files_of_a_session_upload_in_parallel(server: Any, dists: dict[str, Path]) -> None:
    fake = await server()
    foo = [str(dists[k]) for k in ("foo-whl", "foo-whl2", "foo-sdist")]
    assert await run_cli("upload", "--repository", fake.base, *foo) == 0
    assert fake.max_in_flight == 3

    fake = await server()
    assert await run_cli("upload", "--repository", fake.base, "--jobs", "1", *foo) == 0
    assert fake.max_in_flight == 1


async def test_deferred_processing_is_polled(server: Any, dists: dict[str, Path]) -> None:
    fake = await server(deferred=True)
    assert await run_cli("upload", "--repository", fake.base, str(dists["foo-whl"]), str(dists["foo-sdist"])) == 0
    (session,) = fake.sessions.values()
    assert session.status == "published"
    assert fake.calls("GET", ".whl") and fake.calls("GET", ".tar.gz")  # file status polls
    assert fake.calls("GET", f"/upload/session/{session.token}")  # publish status polls


async def test_stage_does_not_publish_and_prints_urls(
        server: Any, dists: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    fake = await server()
    assert await run_cli("upload", "--stage", "--repository", fake.base, str(dists["foo-whl"])) == 0
    assert not fake.calls("POST", "/publish")
    (session,) = fake.sessions.values()
    assert session.status == "open"
    out = capsys.readouterr().out
    assert f"stage:   {fake.base}/stage/{session.token}/simple/" in out
    assert f"session: {fake.base}/upload/session/{session.token}" in out
    assert f"tidegate session publish {fake.base}/upload/session/{session.token}" in out


async def test_session_status_publish_cancel(
        server: Any, dists: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    fake = await server()
    assert await run_cli("upload", "--stage", "--repository", fake.base, str(dists["foo-whl"])) == 0
    (session,) = fake.sessions.values()
    url = f"{fake.base}/upload/session/{session.token}"
    capsys.readouterr()

    assert await run_cli("session", "status", url) == 0
    out = capsys.readouterr().out
    assert "status:  open" in out and "foo-1.0-py3-none-any.whl  completed" in out

    # By token with --repository, the documented <repository>/upload/session/<token> form.
    assert await run_cli("session", "publish", session.token, "--repository", fake.base) == 0
    assert session.status == "published" and len(fake.calls("POST", "/publish")) == 1
    assert "published" in capsys.readouterr().out

    assert await run_cli("upload", "--stage", "--repository", fake.base, str(dists["foo2-sdist"])) == 0
    other = next(s for s in fake.sessions.values() if s.version == "2.0")
    assert await run_cli("session", "cancel", f"{fake.base}/upload/session/{other.token}") == 0
    assert other.status == "canceled"

    assert await run_cli("session", "status", "no-such-token", "--repository", fake.base) == 1
    assert "does not exist" in capsys.readouterr().err


async def test_skip_existing_files(
        server: Any, dists: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    wheel, sdist = dists["foo-whl"], dists["foo-sdist"]
    fake = await server(conflicts={sdist.name})
    assert await run_cli("upload", "--repository", fake.base, str(wheel), str(sdist)) == 1
    assert "File already exists (HTTP 409)" in capsys.readouterr().err
    assert [s.status for s in fake.sessions.values()] == ["canceled"]

    fake.sessions.clear()
    assert await run_cli("upload", "--skip-existing", "--repository", fake.base, str(wheel), str(sdist)) == 0
    assert "published 1 file(s), skipped 1 already there" in capsys.readouterr().out
    (session,) = fake.sessions.values()
    assert session.status == "published" and list(session.files) == [wheel.name]

    # Nothing left to upload: the empty session is canceled rather than published.
    fake.sessions.clear()
    assert await run_cli("upload", "--skip-existing", "--repository", fake.base, str(sdist)) == 0
    assert [s.status for s in fake.sessions.values()] == ["canceled"]
    assert "nothing uploaded" in capsys.readouterr().out


async def test_server_refusing_parallel_uploads(server: Any, dists: dict[str, Path]) -> None:
    fake = await server(serial=True)
    foo = [str(dists[k]) for k in ("foo-whl", "foo-whl2", "foo-sdist")]
    assert await run_cli("upload", "--repository", fake.base, *foo) == 0
    (session,) = fake.sessions.values()
    assert session.status == "published" and len(session.files) == 3
    assert fake.max_in_flight == 1


async def test_session_near_expiry_is_extended(server: Any, dists: dict[str, Path]) -> None:
    soon = (datetime.now(timezone.utc) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fake = await server(expires_at=soon)
    assert await run_cli("upload", "--repository", fake.base, str(dists["foo-whl"])) == 0
    (extend,) = fake.calls("POST", "/extend")
    assert extend.json["extend-for"] == up.EXTEND_FOR


async def test_joins_existing_session_on_409(server: Any, dists: dict[str, Path]) -> None:
    fake = await server()
    existing = fake.new_session("foo", "1.0")
    assert await run_cli("upload", "--stage", "--repository", fake.base, str(dists["foo-whl"])) == 0
    assert len(fake.sessions) == 1  # joined, not created
    assert list(existing.files) == [dists["foo-whl"].name] and existing.status == "open"
    assert fake.calls("GET", f"/upload/session/{existing.token}")


async def test_failure_cancels_created_session(
        server: Any, dists: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    fake = await server(fail_bytes={dists["foo-whl2"].name: 500})
    paths = [str(dists[k]) for k in ("foo-whl", "foo-whl2", "foo-sdist")]
    assert await run_cli("upload", "--repository", fake.base, *paths) == 1
    (session,) = fake.sessions.values()
    assert session.status == "canceled"
    assert [r.path for r in fake.calls("DELETE")] == [f"/upload/session/{session.token}"]
    assert not fake.calls("POST", "/publish")
    err = capsys.readouterr().err
    assert "Storage exploded (HTTP 500)" in err and "try again later" in err and "fake: fake says 500" in err
    assert f"canceled session {fake.base}/upload/session/{session.token}" in err


async def test_failure_in_a_later_session_cancels_earlier_staged_ones(server: Any, dists: dict[str, Path]) -> None:
    fake = await server(fail_bytes={dists["foo2-sdist"].name: 500})
    assert await run_cli("upload", "--repository", fake.base, str(dists["foo-whl"]), str(dists["foo2-sdist"])) == 1
    assert {s.version: s.status for s in fake.sessions.values()} == {"1.0": "canceled", "2.0": "canceled"}
    assert not fake.calls("POST", "/publish")


async def test_failure_in_joined_session_only_discards_own_unfinished_files(
        server: Any, dists: dict[str, Path]) -> None:
    fake = await server(fail_bytes={dists["foo-sdist"].name: 503})
    existing = fake.new_session("foo", "1.0")
    assert await run_cli("upload", "--repository", fake.base, "--jobs", "1",
                         str(dists["foo-whl"]), str(dists["foo-sdist"])) == 1
    assert existing.status == "open"  # not ours to cancel
    assert [r.path for r in fake.calls("DELETE")] == [
        f"/upload/session/{existing.token}/files/{dists['foo-sdist'].name}"]
    assert list(existing.files) == [dists["foo-whl"].name]


async def test_ctrl_c_cancels_created_session(server: Any, dists: dict[str, Path], home: Path) -> None:
    fake = await server(stall_bytes=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidegate", "upload", "--repository", fake.base, str(dists["foo-whl"]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await asyncio.wait_for(fake.bytes_started.wait(), 30)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    (session,) = fake.sessions.values()
    assert session.status == "canceled"
    assert b"interrupted" in err and b"canceled session" in err


async def test_legacy_fallback_sends_twine_fields(server: Any, dists: dict[str, Path]) -> None:
    fake = await server(upload_api=False)
    wheel, sdist = dists["foo-whl2"], dists["foo-sdist"]
    assert await run_cli("upload", "--repository", fake.base, str(wheel), str(sdist)) == 0
    got = {f["content"][0]: f for f in fake.legacy}
    for path, filetype, pyversion in ((wheel, "bdist_wheel", "cp311"), (sdist, "sdist", "source")):
        data = path.read_bytes()
        fields = got[path.name]
        assert fields == {
            ":action": "file_upload", "protocol_version": "1", "name": "Foo", "version": "1.0",
            "filetype": filetype, "pyversion": pyversion, "metadata_version": "2.1",
            "sha256_digest": hashlib.sha256(data).hexdigest(),
            "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
            "content": (path.name, "application/octet-stream", data),
        }


async def test_legacy_existing_file(server: Any, dists: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    sdist = dists["foo-sdist"]
    fake = await server(upload_api=False, existing_legacy={sdist.name})
    assert await run_cli("upload", "--repository", fake.base, str(sdist)) == 1
    assert "already has this file" in capsys.readouterr().err
    assert await run_cli("upload", "--skip-existing", "--repository", fake.base, str(sdist), str(dists["foo-whl"])) == 0
    assert "skipped 1 already there" in capsys.readouterr().out
    assert [f["content"][0] for f in fake.legacy] == [dists["foo-whl"].name]


async def test_stage_without_upload_api_fails(server: Any, dists: dict[str, Path]) -> None:
    fake = await server(upload_api=False)
    assert await run_cli("upload", "--stage", "--repository", fake.base, str(dists["foo-whl"])) == 1
    assert not fake.legacy


PYPIRC = """\
[distutils]
index-servers =
    other
    local

[other]
repository = https://example.invalid/
username = nobody
password = nothing

[local]
repository = {base}/
username = rc-user
password = rc-%pass
"""


async def test_credentials_precedence(
        server: Any, dists: dict[str, Path], home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = await server()
    (home / ".pypirc").write_text(PYPIRC.format(base=fake.base))
    wheel = str(dists["foo-whl"])

    async def auths(*argv: str) -> set[Any]:
        fake.requests.clear()
        assert await run_cli("upload", "--stage", *argv, wheel) == 0
        fake.sessions.clear()
        return {r.auth for r in fake.requests}

    # ~/.pypirc: the index server whose repository matches.
    assert await auths("--repository", fake.base) == {("rc-user", "rc-%pass")}
    # ... or the one named, which also supplies the repository URL.
    assert await auths("--repository-name", "local") == {("rc-user", "rc-%pass")}
    # The environment wins over ~/.pypirc, each value on its own.
    monkeypatch.setenv("TIDEGATE_REPOSITORY", fake.base)
    monkeypatch.setenv("TIDEGATE_PASSWORD", "env-pass")
    assert await auths() == {("rc-user", "env-pass")}
    monkeypatch.setenv("TIDEGATE_USERNAME", "env-user")
    assert await auths() == {("env-user", "env-pass")}
    # Flags win over everything.
    assert await auths("-u", "flag-user", "--password", "flag-pass") == {("flag-user", "flag-pass")}
    # twine's variables come after tidegate's.
    monkeypatch.setenv("TWINE_USERNAME", "__token__")
    monkeypatch.setenv("TWINE_PASSWORD", "tdg_secret")
    assert await auths() == {("env-user", "env-pass")}
    for key in ("TIDEGATE_REPOSITORY", "TIDEGATE_USERNAME", "TIDEGATE_PASSWORD"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("TWINE_REPOSITORY_URL", fake.base + "/legacy/")
    assert await auths() == {("__token__", "tdg_secret")}


@pytest.mark.parametrize("url, base", [("http://h:1/legacy/", "http://h:1"), ("http://h:1/legacy", "http://h:1"),
                                       ("http://h/upload/", "http://h"), ("http://h/simple/", "http://h"),
                                       ("https://h/pypi/", "https://h/pypi"), ("https://h/", "https://h")])
def test_any_of_the_servers_urls_names_it(url: str, base: str) -> None:
    assert client_cli.base_url(url) == base


async def test_unknown_repository_name_is_a_usage_error(dists: dict[str, Path]) -> None:
    assert await run_cli("upload", "--repository-name", "nope", str(dists["foo-whl"])) == 2


def test_progress_plain_lines_when_not_a_tty(capsys: pytest.CaptureFixture[str]) -> None:
    progress = client_cli.Progress(sys.stderr)
    progress.file("a.whl", "queued", 0, 2048)
    progress.file("a.whl", "uploading", 0, 2048)
    progress.file("a.whl", "uploading", 1024, 2048)
    progress.file("a.whl", "done", 2048, 2048)
    assert capsys.readouterr().err == "a.whl: uploading (2.0 KiB)\na.whl: done\n"


def test_problem_formatting() -> None:
    text = up.format_problem({"title": "Bad", "status": 400, "detail": "d1", "details": "d2",
                              "errors": [{"source": "filename", "message": "nope"}]})
    assert text.splitlines()[1:] == ["  Bad (HTTP 400)", "  d1", "  d2", "  - filename: nope"]
