"""Review tests for the write path (issue 3 / PEP 694). Each test states the expected behaviour;
the ones that fail document a finding."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import pytest

from support.dists import build_sdist, build_wheel
from support.uploadapi import PROBLEM, SIMPLE_JSON, UploadApi, basic

ALICE = basic("alice", "wonderland")
USERS = [{"name": "alice", "password": "wonderland", "upload": ["demo-*", "first-*"]}]


class C(UploadApi):
    def __init__(self, tg):
        super().__init__(tg, ALICE)

    async def create(self, name="demo-pkg", version="1.0"):
        status, body, _ = await self.call("POST", "/upload/", {"name": name, "version": version})
        assert status == 201, body
        return body

    async def start(self, session, path, hashes=None):
        data = path.read_bytes()
        status, up, _ = await self.call("POST", session["links"]["upload"], {
            "filename": path.name, "size": len(data),
            "hashes": hashes or {"sha256": hashlib.sha256(data).hexdigest()}, "mechanism": "http-post-bytes"})
        assert status == 202, up
        return up

    async def put(self, up, data):
        return await self.call("POST", up["mechanism"]["file_url"], data=data,
                               headers={"Content-Type": "application/octet-stream"})

    async def add(self, session, path, hashes=None):
        up = await self.start(session, path, hashes)
        status, _, _ = await self.put(up, path.read_bytes())
        assert status == 204
        status, up2, _ = await self.call("POST", up["links"]["complete"], {})
        assert status in (201, 202), up2
        return up


@pytest.fixture
async def tg(tidegate):
    return await tidegate(upstreams=[], users=USERS)


@pytest.fixture
def dist(tmp_path):
    d = tmp_path / "dist"
    d.mkdir()
    return d


def publisher(tg):
    from tidegate.web.keys import PUBLISHER
    return tg.app[PUBLISHER]


def local_blobs(tg):
    root = tg.settings.data_dir / "local"
    return sorted(p.name for p in root.rglob("*") if p.is_file() and len(p.name) == 64)


async def legacy(tg, path, *, name="demo-pkg", version="1.0", filename=None, data=None):
    """A multipart body as twine (requests/urllib3) writes it: the filename unquoted."""
    boundary = "reviewboundary1234"
    parts = []
    for key, value in ((":action", "file_upload"), ("protocol_version", "1"), ("name", name), ("version", version)):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{filename or path.name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode())
    parts.append(data if data is not None else path.read_bytes())
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    headers = {**ALICE, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with tg.session.post(tg.origin + "/legacy/", data=b"".join(parts), headers=headers, allow_redirects=False) as r:
        return r.status, (await r.text())


async def simple_files(tg, name="demo-pkg"):
    async with tg.session.get(f"{tg.origin}/simple/{name}/", headers={"Accept": SIMPLE_JSON}) as r:
        if r.status != 200:
            return r.status, None
        return 200, json.loads(await r.read())["files"]


# --- bad input must never be a 500 --------------------------------------------------------------


async def test_extend_for_nan_is_400_not_500(tg):
    c = C(tg)
    s = await c.create()
    status, body, _ = await c.call("POST", s["links"]["extend"], raw=b'{"meta": {"api-version": "2.0"}, "extend-for": NaN}')
    assert status in (200, 400), (status, body)
    status, body, _ = await c.call("GET", s["links"]["session"])
    assert status == 200, body


async def test_extend_for_huge_integer_is_not_500(tg):
    c = C(tg)
    s = await c.create()
    status, body, _ = await c.call("POST", s["links"]["extend"], raw=b'{"meta": {"api-version": "2.0"}, "extend-for": 1' + b"0" * 400 + b"}")
    assert status in (200, 400), (status, body)


async def test_deeply_nested_json_is_400_not_500(tg):
    c = C(tg)
    status, body, _ = await c.call("POST", "/upload/", raw=b"[" * 200_000 + b"]" * 200_000)
    assert status == 400, (status, body)


async def test_deeply_nested_attestations_is_400_not_500(tg, dist):
    c = C(tg)
    s = await c.create()
    up = await c.start(s, build_wheel(dist, "demo-pkg", "1.0"))
    status, body, _ = await c.call("POST", up["mechanism"]["attestations_url"], data=b"[" * 200_000,
                                   headers={"Content-Type": "application/json"})
    assert status == 400, (status, body)


async def test_oversized_json_body_is_a_problem_document(tg):
    c = C(tg)
    status, body, headers = await c.call("POST", "/upload/", raw=b" " * (2 * 1024 * 1024) + b"{}")
    assert status == 413
    assert headers["Content-Type"].startswith(PROBLEM), headers["Content-Type"]


async def test_wheel_filename_with_lone_surrogate_tag_is_400_not_500(tg):
    c = C(tg)
    s = await c.create()
    status, body, _ = await c.call("POST", s["links"]["upload"], {
        "filename": "demo_pkg-1.0-py3-none-\ud800.whl", "size": 10,
        "hashes": {"sha256": "0" * 64}, "mechanism": "http-post-bytes"})
    assert status == 400, (status, body)


# --- lifetimes ----------------------------------------------------------------------------------


async def test_upload_canceled_mid_transfer_leaves_no_blob(tg, dist):
    """Session canceled (or file deleted, or session expired) while http-post-bytes streams: the
    bytes are committed and then refused, and the committed blob is never removed."""
    c = C(tg)
    s = await c.create()
    wheel = build_wheel(dist, "demo-pkg", "1.0", padding=64 * 1024)
    data = wheel.read_bytes()
    up = await c.start(s, wheel)
    first_sent, go = asyncio.Event(), asyncio.Event()

    async def body():
        yield data[:1000]
        first_sent.set()
        await go.wait()
        yield data[1000:]

    async def send():
        async with tg.session.post(up["mechanism"]["file_url"], data=body(),
                                   headers={**ALICE, "Content-Type": "application/octet-stream"}) as r:
            return r.status

    task = asyncio.ensure_future(send())
    await first_sent.wait()
    await asyncio.sleep(0.1)
    assert (await c.call("DELETE", s["links"]["session"]))[0] == 200
    go.set()
    assert await task == 409
    assert local_blobs(tg) == [], "orphan blob left by a canceled upload"


# --- Warehouse rules / the local index ----------------------------------------------------------


async def test_legacy_only_one_sdist_per_release(tg, dist):
    sdist = build_sdist(dist, "demo-pkg", "1.0")
    assert (await legacy(tg, sdist))[0] == 200
    status, text = await legacy(tg, sdist, filename="demo-pkg-1.0.tar.gz")
    assert status == 400, "a second sdist (other spelling of the same name) was published"


async def test_same_wheel_under_unnormalized_version_is_refused(tg, dist):
    wheel = build_wheel(dist, "demo-pkg", "1.0")
    assert (await legacy(tg, wheel))[0] == 200
    status, text = await legacy(tg, wheel, filename="demo_pkg-1.0.0-py3-none-any.whl")
    assert status in (400, 409), "two filenames for the same release and tags were both published"


async def test_legacy_local_version_refused(tg, dist):
    wheel = build_wheel(dist, "demo-pkg", "1.0+local")
    status, text = await legacy(tg, wheel, version="1.0+local")
    assert status == 400 and "local" in text.lower(), ("Warehouse refuses PEP 440 local versions", status, text)


async def test_session_local_version_refused(tg):
    c = C(tg)
    status, body, _ = await c.call("POST", "/upload/", {"name": "demo-pkg", "version": "1.0+local"})
    assert status == 400, body


async def test_legacy_different_invalid_bytes_still_file_already_exists(tg, dist):
    """twine --skip-existing keys on 'File already exists'; a corrupt re-upload is validated first."""
    wheel = build_wheel(dist, "demo-pkg", "1.0")
    assert (await legacy(tg, wheel))[0] == 200
    status, text = await legacy(tg, wheel, data=b"not a zip at all")
    assert status == 400 and text.startswith("File already exists"), text


async def test_published_file_advertises_sha256_even_if_client_sent_other_hash(tg, dist):
    c = C(tg)
    s = await c.create()
    wheel = build_wheel(dist, "demo-pkg", "1.0")
    await c.add(s, wheel, hashes={"sha512": hashlib.sha512(wheel.read_bytes()).hexdigest()})
    assert (await c.call("POST", s["links"]["publish"], {}))[0] == 201
    status, files = await simple_files(tg)
    assert status == 200
    assert "sha256" in files[0]["hashes"], files[0]["hashes"]


async def test_stage_root_lists_first_release_project(tg, dist):
    """With --index-url <stage> alone the stage is the whole index; its root list should name the
    staged first-release project (the regular /simple/ must not)."""
    c = C(tg)
    s = await c.create(name="first-thing")
    await c.add(s, build_wheel(dist, "first-thing", "1.0"))
    async with tg.session.get(s["links"]["stage"], headers={"Accept": SIMPLE_JSON}) as r:
        assert r.status == 200
        names = [p["name"] for p in json.loads(await r.read())["projects"]]
    async with tg.session.get(tg.url, headers={"Accept": SIMPLE_JSON}) as r:
        regular = [p["name"] for p in json.loads(await r.read())["projects"]]
    assert "first-thing" not in regular
    assert "first-thing" in names, names
