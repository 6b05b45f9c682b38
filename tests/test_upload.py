"""Upload 2.0 (PEP 694) over HTTP: every status code the protocol names, stage previews,
atomic publication, the local index, and restart safety."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re

import pytest

from support.dists import build_sdist, build_wheel
from support.uploadapi import META, PROBLEM, SIMPLE_JSON, UPLOAD, UploadApi, basic
from support.wrappers import GatedBlobs
from tidegate.storage import open_storage

ALICE = basic("alice", "wonderland")
BOB = basic("bob", "builder")
USERS = [
    {"name": "alice", "password": "wonderland", "upload": ["demo-*", "first-*"]},
    {"name": "bob", "password": "builder", "upload": ["other-*"]},
]


class Client(UploadApi):
    def __init__(self, tg, auth=ALICE):
        super().__init__(tg, auth)

    async def create(self, name="demo-pkg", version="1.0", **kw):
        return await self.call("POST", "/upload/", {"name": name, "version": version}, **kw)

    async def start(self, session, path, hashes=None):
        """Start a file upload session for `path` (its sha256 unless `hashes` says otherwise)."""
        data = path.read_bytes()
        status, upload, headers = await self.call("POST", session["links"]["upload"], {
            "filename": path.name, "size": len(data), "hashes": hashes or {"sha256": hashlib.sha256(data).hexdigest()},
            "mechanism": "http-post-bytes"})
        assert status == 202, upload
        assert headers["Retry-After"]
        return upload

    async def add_file(self, session, path, *, complete=True, content=None, hashes=None):
        upload = await self.start(session, path, hashes)
        status, _, _ = await self.call("POST", upload["mechanism"]["file_url"], data=content if content is not None else path.read_bytes(),
                                       headers={"Content-Type": "application/octet-stream"})
        if complete:
            status, upload, _ = await self.call("POST", upload["links"]["complete"], {})
        return status, upload


@pytest.fixture
async def tg(tidegate):
    return await tidegate(upstreams=[], users=USERS)


@pytest.fixture
def wheels(tmp_path):
    d = tmp_path / "dist"
    d.mkdir()
    return {
        "w10": build_wheel(d, "demo-pkg", "1.0"),
        "s10": build_sdist(d, "demo-pkg", "1.0"),
        "w10b": build_wheel(d, "demo-pkg", "1.0", tag="py2.py3-none-any"),
        "w20": build_wheel(d, "demo-pkg", "2.0"),
    }


def local_blobs(tg):
    root = tg.settings.data_dir / "local"
    return sorted(p.name for p in root.rglob("*") if p.is_file() and len(p.name) == 64)


async def simple_files(tg, name="demo-pkg", prefix=""):
    async with tg.session.get(f"{tg.origin}{prefix}/simple/{name}/", headers={"Accept": SIMPLE_JSON}) as r:
        if r.status != 200:
            return r.status, None
        return 200, sorted(f["filename"] for f in json.loads(await r.read())["files"])


async def test_create_session_shape(tg):
    c = Client(tg)
    status, body, headers = await c.create()
    assert status == 201
    assert headers["Location"] == body["links"]["session"]
    assert headers["Content-Type"] == UPLOAD
    assert body["meta"] == META and body["status"] == "open" and body["files"] == {}
    assert body["mechanisms"] == ["http-post-bytes"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["expires-at"])
    assert len(base64.urlsafe_b64decode(body["session-token"] + "==")) * 8 >= 128
    assert body["session-token"] in body["links"]["stage"]
    assert set(body["links"]) == {"stage", "upload", "session", "publish", "extend"}


async def test_auth_and_request_validation(tg):
    c = Client(tg)
    assert (await c.create(auth={}))[0] == 401
    status, body, headers = await c.create(auth=basic("alice", "wrong"))
    assert status == 401 and "WWW-Authenticate" in headers and body["errors"][0]["message"]
    assert (await c.create(auth=BOB))[0] == 403
    status, body, _ = await c.create(name="not a name!")
    assert status == 400 and body["status"] == 400 and body["meta"] == META
    assert (await c.create(version="one point oh"))[0] == 400
    # wrong content type, wrong api version, not JSON
    status, _, _ = await c.call("POST", "/upload/", data=b"{}", headers={"Content-Type": "application/json"})
    assert status == 415
    async with tg.session.post(tg.origin + "/upload/", data=json.dumps({"meta": {"api-version": "3.0"}, "name": "demo-pkg", "version": "1"}),
                               headers={**ALICE, "Content-Type": UPLOAD}) as r:
        assert r.status == 400 and r.content_type == "application/problem+json"
    async with tg.session.post(tg.origin + "/upload/", data=b"{nope", headers={**ALICE, "Content-Type": UPLOAD}) as r:
        assert r.status == 400


async def test_extend_for_nan_is_400_not_500(tg):
    c = Client(tg)
    _, session, _ = await c.create()
    status, body, _ = await c.call("POST", session["links"]["extend"], raw=b'{"meta": {"api-version": "2.0"}, "extend-for": NaN}')
    assert status in (200, 400), (status, body)
    status, body, _ = await c.call("GET", session["links"]["session"])
    assert status == 200, body


async def test_extend_for_huge_integer_is_not_500(tg):
    c = Client(tg)
    _, session, _ = await c.create()
    status, body, _ = await c.call("POST", session["links"]["extend"], raw=b'{"meta": {"api-version": "2.0"}, "extend-for": 1' + b"0" * 400 + b"}")
    assert status in (200, 400), (status, body)


async def test_deeply_nested_json_is_400_not_500(tg):
    c = Client(tg)
    status, body, _ = await c.call("POST", "/upload/", raw=b"[" * 200_000 + b"]" * 200_000)
    assert status == 400, (status, body)


async def test_deeply_nested_attestations_is_400_not_500(tg, wheels):
    c = Client(tg)
    _, session, _ = await c.create()
    upload = await c.start(session, wheels["w10"])
    status, body, _ = await c.call("POST", upload["mechanism"]["attestations_url"], data=b"[" * 200_000,
                                   headers={"Content-Type": "application/json"})
    assert status == 400, (status, body)


async def test_oversized_json_body_is_a_413_problem_document(tg):
    c = Client(tg)
    status, body, headers = await c.call("POST", "/upload/", raw=b" " * (2 * 1024 * 1024) + b"{}")
    assert status == 413
    assert headers["Content-Type"].startswith(PROBLEM), headers["Content-Type"]


async def test_wheel_filename_with_lone_surrogate_tag_is_400_not_500(tg):
    c = Client(tg)
    _, session, _ = await c.create()
    status, body, _ = await c.call("POST", session["links"]["upload"], {
        "filename": "demo_pkg-1.0-py3-none-\ud800.whl", "size": 10,
        "hashes": {"sha256": "0" * 64}, "mechanism": "http-post-bytes"})
    assert status == 400, (status, body)


async def test_session_for_a_local_version_is_refused(tg):
    """PEP 440 local versions (1.0+local) are not publishable, as on PyPI."""
    c = Client(tg)
    status, body, _ = await c.call("POST", "/upload/", {"name": "demo-pkg", "version": "1.0+local"})
    assert status == 400, body


async def test_second_session_conflicts_403_before_409(tg):
    c = Client(tg)
    _, first, _ = await c.create()
    status, _, headers = await c.create()
    assert status == 409 and headers["Location"] == first["links"]["session"]
    assert (await c.create(auth=BOB))[0] == 403  # no disclosure of the session to outsiders


async def test_full_flow_stage_then_publish(tg, wheels):
    c = Client(tg)
    _, session, _ = await c.create()
    status, upload = await c.add_file(session, wheels["w10"])
    assert status == 201 and upload["status"] == "completed"
    status, upload = await c.add_file(session, wheels["s10"])
    assert status == 201
    # Staged files appear only under the stage URL.
    assert (await simple_files(tg))[0] == 404
    stage = session["links"]["stage"].removeprefix(tg.origin).removesuffix("/simple/")
    status, names = await simple_files(tg, prefix=stage)
    assert names == ["demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"]
    async with tg.session.get(f"{tg.origin}{stage}/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl") as r:
        assert r.status == 200 and await r.read() == wheels["w10"].read_bytes()
    async with tg.session.get(f"{tg.origin}{stage}/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl.metadata") as r:
        assert r.status == 200 and b"Name: demo-pkg" in await r.read()
    status, body, _ = await c.call("GET", session["links"]["session"])
    assert {k: v["status"] for k, v in body["files"].items()} == {
        "demo_pkg-1.0-py3-none-any.whl": "completed", "demo_pkg-1.0.tar.gz": "completed"}
    status, body, headers = await c.call("POST", session["links"]["publish"], {})
    assert status == 201 and body["status"] == "published" and headers["Location"] == session["links"]["session"]
    assert (await simple_files(tg))[1] == ["demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"]
    async with tg.session.get(f"{tg.origin}/simple/demo-pkg/", headers={"Accept": SIMPLE_JSON}) as r:
        page = json.loads(await r.read())
    wheel = next(f for f in page["files"] if f["filename"].endswith(".whl"))
    assert wheel["upload-time"].endswith("Z") and wheel["size"] == wheels["w10"].stat().st_size
    assert wheel["core-metadata"]["sha256"]
    async with tg.session.get(f"{tg.origin}/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl.metadata") as r:
        assert hashlib.sha256(await r.read()).hexdigest() == wheel["core-metadata"]["sha256"]
    # After publishing, the stage is gone and the status URL still reports the outcome.
    assert (await simple_files(tg, prefix=stage))[0] == 404
    assert (await c.call("GET", session["links"]["session"]))[1]["status"] == "published"


async def test_file_upload_session_rules(tg, wheels):
    c = Client(tg)
    _, session, _ = await c.create()
    data = wheels["w10"].read_bytes()
    good = {"filename": wheels["w10"].name, "size": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
            "mechanism": "http-post-bytes"}
    up = session["links"]["upload"]
    assert (await c.call("POST", up, {**good, "filename": "demo_pkg-2.0-py3-none-any.whl"}))[0] == 400  # wrong version
    assert (await c.call("POST", up, {**good, "filename": "other-1.0.tar.gz"}))[0] == 400  # wrong project
    assert (await c.call("POST", up, {**good, "filename": "demo-pkg-1.0.exe"}))[0] == 400
    assert (await c.call("POST", up, {k: v for k, v in good.items() if k != "size"}))[0] == 400
    assert (await c.call("POST", up, {k: v for k, v in good.items() if k != "hashes"}))[0] == 400
    assert (await c.call("POST", up, {**good, "hashes": {"md5": hashlib.md5(data).hexdigest()}}))[0] == 400
    assert (await c.call("POST", up, {**good, "mechanism": "vnd-acme-postal"}))[0] == 422
    status, upload, _ = await c.call("POST", up, good)
    assert status == 202 and upload["status"] == "pending"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", upload["expires-at"])
    assert (await c.call("POST", up, good))[0] == 409  # already in progress
    # Publishing with a pending file: 409 naming it.
    status, problem, _ = await c.call("POST", session["links"]["publish"], {})
    assert status == 409 and problem["errors"][0]["source"] == wheels["w10"].name
    # Wrong bytes are refused and the upload stays pending.
    status, _, _ = await c.call("POST", upload["mechanism"]["file_url"], data=b"x" * len(data),
                                headers={"Content-Type": "application/octet-stream"})
    assert status == 400
    status, _, _ = await c.call("POST", upload["mechanism"]["file_url"], data=data[:-1],
                                headers={"Content-Type": "application/octet-stream"})
    assert status == 400
    assert (await c.call("GET", upload["links"]["file-upload-session"]))[1]["status"] == "pending"
    status, _, _ = await c.call("POST", upload["mechanism"]["file_url"], data=data,
                                headers={"Content-Type": "application/octet-stream"})
    assert status == 204
    status, done, headers = await c.call("POST", upload["links"]["complete"], {})
    assert status == 201 and done["status"] == "completed" and headers["Location"] == upload["links"]["file-upload-session"]
    # Delete (204), it leaves the files mapping, its own URL reports canceled; replace it.
    assert (await c.call("DELETE", upload["links"]["file-upload-session"]))[0] == 204
    assert (await c.call("GET", upload["links"]["file-upload-session"]))[1]["status"] == "canceled"
    assert (await c.call("GET", session["links"]["session"]))[1]["files"] == {}
    status, again = await c.add_file(session, wheels["w10"])
    assert status == 201
    # Extending a file upload session answers its (maybe unchanged) expiry.
    status, body, _ = await c.call("POST", again["links"]["extend"], {"extend-for": 60})
    assert status == 200 and body["expires-at"]


async def test_published_file_advertises_sha256_even_if_client_sent_other_hash(tg, wheels):
    c = Client(tg)
    _, session, _ = await c.create()
    sha512 = {"sha512": hashlib.sha512(wheels["w10"].read_bytes()).hexdigest()}
    assert (await c.add_file(session, wheels["w10"], hashes=sha512))[0] == 201
    assert (await c.call("POST", session["links"]["publish"], {}))[0] == 201
    async with tg.session.get(f"{tg.origin}/simple/demo-pkg/", headers={"Accept": SIMPLE_JSON}) as r:
        assert r.status == 200
        files = json.loads(await r.read())["files"]
    assert "sha256" in files[0]["hashes"], files[0]["hashes"]


async def test_invalid_archive_moves_file_to_error_then_delete(tg, tmp_path):
    c = Client(tg)
    _, session, _ = await c.create()
    bogus = tmp_path / "demo_pkg-1.0-py3-none-any.whl"
    bogus.write_bytes(b"this is not a zip file at all")
    status, upload = await c.add_file(session, bogus)
    assert status == 400
    status, body, _ = await c.call("GET", session["links"]["session"])
    assert body["files"][bogus.name]["status"] == "error" and body["files"][bogus.name]["notices"]
    assert (await c.call("POST", session["links"]["publish"], {}))[0] == 409
    link = body["files"][bogus.name]["link"]
    assert (await c.call("DELETE", link))[0] == 204
    assert (await c.call("GET", session["links"]["session"]))[1]["files"] == {}


async def test_complete_without_bytes_fails(tg, wheels):
    c = Client(tg)
    _, session, _ = await c.create()
    upload = await c.start(session, wheels["w10"])
    status, _, _ = await c.call("POST", upload["links"]["complete"], {})
    assert status == 400
    assert (await c.call("GET", upload["links"]["file-upload-session"]))[1]["status"] == "error"


@pytest.fixture
async def held(tidegate):
    """tidegate validating every upload in the background, held in `processing` until the
    test sets the returned event (validation reads the uploaded blob: that read waits)."""
    gate = asyncio.Event()

    async def storage(settings):
        opened = await open_storage(settings)
        opened.local_blobs = GatedBlobs(opened.local_blobs, gate)
        return opened

    tg = await tidegate(upstreams=[], users=USERS, deferred_validation=1, storage=storage)
    return tg, gate


async def test_deferred_validation_and_409_while_processing(held, wheels):
    tg, gate = held
    c = Client(tg)
    _, session, _ = await c.create()
    status, upload = await c.add_file(session, wheels["w10"])
    assert status == 202 and upload["status"] == "processing"
    assert (await c.call("DELETE", upload["links"]["file-upload-session"]))[0] == 409
    assert (await c.call("POST", session["links"]["publish"], {}))[0] == 409
    gate.set()
    for _ in range(200):
        status, body, headers = await c.call("GET", upload["links"]["file-upload-session"])
        assert headers["Retry-After"]
        if body["status"] != "processing":
            break
        await asyncio.sleep(0.02)
    assert body["status"] == "completed"
    assert (await c.call("POST", session["links"]["publish"], {}))[0] == 201


async def test_cancel_allowed_while_a_file_is_processing(held, wheels):
    tg, gate = held
    c = Client(tg)
    _, session, _ = await c.create()
    await c.add_file(session, wheels["w10"])
    status, body, _ = await c.call("DELETE", session["links"]["session"])
    assert status == 200 and body["status"] == "canceled"
    gate.set()
    await asyncio.sleep(0.1)
    assert (await c.call("GET", session["links"]["session"]))[1]["status"] == "canceled"


async def test_upload_canceled_mid_transfer_leaves_no_blob(tg, tmp_path):
    """A session canceled while http-post-bytes streams refuses the bytes and keeps no blob."""
    c = Client(tg)
    _, session, _ = await c.create()
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0", padding=64 * 1024)
    data = wheel.read_bytes()
    upload = await c.start(session, wheel)
    first_sent, go = asyncio.Event(), asyncio.Event()

    async def body():
        yield data[:1000]
        first_sent.set()
        await go.wait()
        yield data[1000:]

    async def send():
        async with tg.session.post(upload["mechanism"]["file_url"], data=body(),
                                   headers={**ALICE, "Content-Type": "application/octet-stream"}) as r:
            return r.status

    task = asyncio.ensure_future(send())
    await first_sent.wait()
    await asyncio.sleep(0.1)
    assert (await c.call("DELETE", session["links"]["session"]))[0] == 200
    go.set()
    assert await task == 409
    assert local_blobs(tg) == [], "orphan blob left by a canceled upload"


async def test_cancel_releases_first_release_name_and_purges_stage(tg, wheels):
    c = Client(tg)
    _, session, _ = await c.create(name="first-thing")
    stage = session["links"]["stage"]
    status, body, _ = await c.call("DELETE", session["links"]["session"])
    assert status == 200 and body["status"] == "canceled"
    async with tg.session.get(stage) as r:
        assert r.status == 404
    assert (await c.call("POST", session["links"]["upload"], {"filename": "x"}))[0] == 404
    assert (await c.call("GET", session["links"]["session"]))[1]["status"] == "canceled"  # retained status
    # The name is free again, and a new session gets new URLs and token.
    status, again, _ = await c.create(name="first-thing")
    assert status == 201 and again["session-token"] != session["session-token"]


async def test_published_filename_conflicts_and_new_session_for_same_release(tg, wheels):
    c = Client(tg)
    _, s1, _ = await c.create()
    await c.add_file(s1, wheels["w10"])
    assert (await c.call("POST", s1["links"]["publish"], {}))[0] == 201
    # A new session for the published release may add another wheel...
    status, s2, _ = await c.create()
    assert status == 201
    data = wheels["w10"].read_bytes()
    status, _, _ = await c.call("POST", s2["links"]["upload"], {
        "filename": wheels["w10"].name, "size": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
        "mechanism": "http-post-bytes"})
    assert status == 409  # ...but never replace a published file
    assert (await c.add_file(s2, wheels["w10b"]))[0] == 201
    assert (await c.call("POST", s2["links"]["publish"], {}))[0] == 201
    assert (await simple_files(tg))[1] == sorted([wheels["w10"].name, wheels["w10b"].name])


async def test_publish_conflict_is_409_and_leaves_session_editable(tg, wheels):
    """A legacy upload of the same filename wins the race: publish answers 409 and stays open."""
    c = Client(tg)
    _, session, _ = await c.create()
    await c.add_file(session, wheels["w10"])
    status = await legacy_upload(tg, wheels["w10"], ALICE)
    assert status == 200
    status, problem, _ = await c.call("POST", session["links"]["publish"], {})
    assert status == 409 and wheels["w10"].name in problem["detail"]
    assert (await c.call("GET", session["links"]["session"]))[1]["status"] == "open"


async def test_publish_racing_legacy_upload_publishes_one_file(tg, wheels):
    for attempt in range(5):
        version = f"1.{attempt}"
        d = wheels["w10"].parent / version
        d.mkdir()
        wheel = build_wheel(d, "demo-pkg", version)
        c = Client(tg)
        _, session, _ = await c.create(version=version)
        await c.add_file(session, wheel)
        publish, legacy = await asyncio.gather(c.call("POST", session["links"]["publish"], {}),
                                               legacy_upload(tg, wheel, ALICE))
        # Same bytes: either order ends with exactly one published file and no error but a 409.
        assert publish[0] in (201, 409) and legacy == 200
        assert (await simple_files(tg))[1].count(wheel.name) == 1


async def test_concurrent_session_creation_makes_one(tg):
    c = Client(tg)
    results = await asyncio.gather(*(c.create(version="3.0") for _ in range(8)))
    statuses = sorted(r[0] for r in results)
    assert statuses.count(201) == 1 and statuses.count(409) == 7


async def test_parallel_file_uploads(tg, tmp_path):
    c = Client(tg)
    _, session, _ = await c.create(version="5.0")
    paths = [build_wheel(tmp_path, "demo-pkg", "5.0", tag=f"cp3{i}-cp3{i}-manylinux1_x86_64") for i in range(6)]
    results = await asyncio.gather(*(c.add_file(session, p) for p in paths))
    assert all(status == 201 for status, _ in results)
    assert (await c.call("POST", session["links"]["publish"], {}))[0] == 201
    assert len((await simple_files(tg))[1]) == 6


async def test_session_extension_is_capped(tidegate):
    tg = await tidegate(upstreams=[], users=USERS, session_lifetime=100, session_max_lifetime=150)
    c = Client(tg)
    _, session, _ = await c.create()
    status, body, _ = await c.call("POST", session["links"]["extend"], {"extend-for": 3600})
    assert status == 200
    from datetime import datetime
    created = datetime.fromisoformat(session["expires-at"].replace("Z", "+00:00")).timestamp() - 100
    extended = datetime.fromisoformat(body["expires-at"].replace("Z", "+00:00")).timestamp()
    assert extended <= created + 151 and extended >= created + 149
    assert (await c.call("POST", session["links"]["extend"], {"extend-for": "soon"}))[0] == 400


async def test_expiry_purges_the_session(tidegate, wheels):
    tg = await tidegate(upstreams=[], users=USERS, session_lifetime=1)
    c = Client(tg)
    _, session, _ = await c.create()
    await c.add_file(session, wheels["w10"])
    await asyncio.sleep(1.2)
    # Past expires-at the session is expired at once (not at the next periodic sweep).
    assert (await c.call("GET", session["links"]["session"]))[1]["status"] == "canceled"
    async with tg.session.get(session["links"]["stage"]) as r:
        assert r.status == 404
    assert not list((tg.settings.data_dir / "local" / "files").glob("*/*"))


async def test_sessions_survive_restart(tg, wheels):
    c = Client(tg)
    _, session, _ = await c.create()
    await c.add_file(session, wheels["w10"])
    await tg.restart()  # on a new port: find the session again by its token
    status, body, _ = await c.call("GET", tg.origin + "/upload/session/" + session["session-token"])
    assert status == 200 and body["files"][wheels["w10"].name]["status"] == "completed"
    assert (await c.call("POST", body["links"]["publish"], {}))[0] == 201
    assert (await simple_files(tg))[1] == [wheels["w10"].name]


async def test_local_project_shadowing_is_refused_unless_configured(fake_index, dists, tidegate, wheels):
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "0.1"))
    tg = await tidegate(upstreams=[idx.url], users=USERS)
    status, problem, _ = await Client(tg).create()
    assert status == 403 and "shadow" in problem["detail"]
    tg2 = await tidegate(upstreams=[idx.url], users=USERS, shadow=["demo-*"])
    c = Client(tg2)
    _, session, _ = await c.create()
    await c.add_file(session, wheels["w10"])
    assert (await c.call("POST", session["links"]["publish"], {}))[0] == 201
    # The local project now shadows the upstream one entirely (no merging).
    assert (await simple_files(tg2))[1] == [wheels["w10"].name]


async def test_stage_root_lists_first_release_project(tg, tmp_path):
    """With --index-url <stage> alone the stage is the whole index: its root list names the
    staged first-release project, which the regular /simple/ does not."""
    c = Client(tg)
    _, session, _ = await c.create(name="first-thing")
    assert (await c.add_file(session, build_wheel(tmp_path, "first-thing", "1.0")))[0] == 201
    async with tg.session.get(session["links"]["stage"], headers={"Accept": SIMPLE_JSON}) as r:
        assert r.status == 200
        names = [p["name"] for p in json.loads(await r.read())["projects"]]
    async with tg.session.get(tg.url, headers={"Accept": SIMPLE_JSON}) as r:
        regular = [p["name"] for p in json.loads(await r.read())["projects"]]
    assert "first-thing" not in regular
    assert "first-thing" in names, names


async def test_stage_works_as_the_only_index_url(fake_index, dists, tidegate, wheels):
    idx = await fake_index("html")
    idx.index.add(dists.wheel("dep-lib", "1.0"))
    tg = await tidegate(upstreams=[idx.url], users=USERS)
    c = Client(tg)
    _, session, _ = await c.create()
    await c.add_file(session, wheels["w10"])
    prefix = session["links"]["stage"].removeprefix(tg.origin).removesuffix("/simple/")
    assert (await simple_files(tg, "dep-lib", prefix=prefix))[1] == ["dep_lib-1.0-py3-none-any.whl"]
    async with tg.session.get(f"{tg.origin}{prefix}/simple/Demo_Pkg/", allow_redirects=False) as r:
        assert r.status == 301 and r.headers["Location"] == f"{prefix}/simple/demo-pkg/"


async def test_attestations_become_provenance(tg, wheels):
    c = Client(tg)
    _, session, _ = await c.create()
    data = wheels["w10"].read_bytes()
    upload = await c.start(session, wheels["w10"])
    att = [{"version": 1, "verification_material": {"certificate": "x"}, "envelope": {"statement": "e30=", "signature": "c2ln"}}]
    status, _, _ = await c.call("POST", upload["mechanism"]["attestations_url"], data=json.dumps(att).encode(),
                                headers={"Content-Type": "application/json"})
    assert status == 204
    assert (await c.call("POST", upload["mechanism"]["attestations_url"], data=b"{}",
                         headers={"Content-Type": "application/json"}))[0] == 400
    await c.call("POST", upload["mechanism"]["file_url"], data=data, headers={"Content-Type": "application/octet-stream"})
    await c.call("POST", upload["links"]["complete"], {})
    await c.call("POST", session["links"]["publish"], {})
    async with tg.session.get(f"{tg.origin}/simple/demo-pkg/", headers={"Accept": SIMPLE_JSON}) as r:
        provenance = json.loads(await r.read())["files"][0]["provenance"]
    async with tg.session.get(f"{tg.origin}/simple/demo-pkg/{provenance}") as r:
        assert r.status == 200
        assert (await r.json())["attestation_bundles"][0]["attestations"] == att


async def legacy_upload(tg, path, auth, **fields):
    import aiohttp

    form = aiohttp.FormData()
    name, version = path.name.split("-")[0].replace("_", "-"), path.name.split("-")[1].removesuffix(".tar.gz")
    defaults = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
                "filetype": "bdist_wheel" if path.suffix == ".whl" else "sdist",
                "sha256_digest": hashlib.sha256(path.read_bytes()).hexdigest()}
    for k, v in {**defaults, **fields}.items():
        form.add_field(k, v)
    form.add_field("content", path.read_bytes(), filename=path.name, content_type="application/octet-stream")
    async with tg.session.post(tg.origin + "/legacy/", data=form, headers=auth, allow_redirects=False) as r:
        return r.status


async def test_read_auth_protects_the_index_but_not_stages(tidegate, wheels):
    tg = await tidegate(upstreams=[], users=USERS, read_auth=True)
    c = Client(tg)
    _, session, _ = await c.create()
    await c.add_file(session, wheels["w10"])
    async with tg.session.get(session["links"]["stage"] + "demo-pkg/") as r:
        assert r.status == 200  # the stage token is the capability
    await c.call("POST", session["links"]["publish"], {})
    async with tg.session.get(tg.url + "demo-pkg/") as r:
        assert r.status == 401 and "WWW-Authenticate" in r.headers
    async with tg.session.get(tg.url + "demo-pkg/", headers=BOB) as r:
        assert r.status == 200  # any configured user may read
    async with tg.session.get(f"{tg.origin}/files/demo-pkg/{wheels['w10'].name}", headers=basic("bob", "nope")) as r:
        assert r.status == 401


async def test_yank_and_unyank_a_local_file(tg, wheels, installer_env):
    import os
    import sys

    c = Client(tg)
    _, session, _ = await c.create()
    await c.add_file(session, wheels["w10"])
    await c.call("POST", session["links"]["publish"], {})

    async def yank(*args):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tidegate", "yank", "--data-dir", str(tg.settings.data_dir), *args,
            env={**os.environ, **installer_env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode, out.decode()

    async def entry():
        async with tg.session.get(tg.url + "demo-pkg/", headers={"Accept": SIMPLE_JSON}) as r:
            return json.loads(await r.read())["files"][0]

    assert (await yank(wheels["w10"].name, "--reason", "broken <build>"))[0] == 0
    assert (await entry())["yanked"] == "broken <build>"  # the running server sees it at once
    assert (await yank(wheels["w10"].name, "--undo"))[0] == 0
    assert "yanked" not in await entry()
    code, out = await yank("nope-1.0.tar.gz")
    assert code == 1 and "not a published file" in out


async def test_a_published_session_takes_no_more_file_changes(tg, wheels):
    c = Client(tg)
    _, session, _ = await c.create()
    status, upload = await c.add_file(session, wheels["w10"])
    assert (await c.call("POST", session["links"]["publish"], {}))[0] == 201
    data = wheels["w20"].read_bytes()
    status, problem, _ = await c.call("POST", session["links"]["upload"], {
        "filename": wheels["s10"].name, "size": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
        "mechanism": "http-post-bytes"})
    assert status == 409 and problem["status"] == 409
    assert (await c.call("DELETE", upload["links"]["file-upload-session"]))[0] == 409
    assert (await c.call("POST", session["links"]["publish"], {}))[0] == 409
    assert (await simple_files(tg))[1] == [wheels["w10"].name]  # the published file stays
