"""The legacy upload API with the real tools people use today: twine and `uv publish`."""

from __future__ import annotations

import asyncio
import base64
import json
import sys

import pytest

from support.dists import build_sdist, build_wheel

USERS = [{"name": "ci", "password": "s3cret", "upload": ["demo-*"]}]
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


async def run(cmd, env, *, ok=True):
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    text = out.decode()
    if ok:
        assert proc.returncode == 0, text
    return proc.returncode, text


async def published(tg, name="demo-pkg"):
    async with tg.session.get(f"{tg.url}{name}/", headers={"Accept": SIMPLE_JSON}) as r:
        if r.status != 200:
            return []
        return sorted(f["filename"] for f in json.loads(await r.read())["files"])


def twine(tg, *files, user="ci", password="s3cret", extra=()):
    return [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
            "--repository-url", f"{tg.origin}/legacy/", "-u", user, "-p", password, *extra, *map(str, files)]


def uv_publish(tg, *files, user="ci", password="s3cret", extra=()):
    return [sys.executable, "-m", "uv", "publish", "--no-config", "--publish-url", f"{tg.origin}/legacy/",
            "--username", user, "--password", password, *extra, *map(str, files)]


@pytest.fixture
def dist(tmp_path):
    d = tmp_path / "dist"
    d.mkdir()
    return d


async def test_twine_upload_and_skip_existing(tidegate, installer_env, dist):
    tg = await tidegate(upstreams=[], users=USERS)
    wheel, sdist = build_wheel(dist, "demo-pkg", "1.0"), build_sdist(dist, "demo-pkg", "1.0")
    await run(twine(tg, wheel, sdist), installer_env)
    assert await published(tg) == sorted([wheel.name, sdist.name])
    # Identical re-upload: 200, nothing changes.
    await run(twine(tg, wheel), installer_env)
    # Different bytes, same name: "File already exists"; --skip-existing carries on.
    other = dist / "other"
    other.mkdir()
    changed = build_wheel(other, "demo-pkg", "1.0", module_code="CHANGED = True\n")
    code, out = await run(twine(tg, changed), installer_env, ok=False)
    assert code != 0 and "File already exists" in out
    # What --skip-existing matches (twine 7 offers the flag for PyPI URLs only): a 400 whose
    # reason phrase and body start "File already exists".
    fields = {":action": "file_upload", "name": "demo-pkg", "version": "1.0"}
    status, reason, text = await multipart(tg, fields, changed.read_bytes(), filename=changed.name)
    assert status == 400 and reason.startswith("File already exists") and text.startswith("File already exists")
    async with tg.session.get(f"{tg.origin}/files/demo-pkg/{wheel.name}") as r:
        assert await r.read() == wheel.read_bytes()  # never replaced


async def test_twine_bad_credentials_and_forbidden_project(tidegate, installer_env, dist):
    tg = await tidegate(upstreams=[], users=USERS)
    wheel = build_wheel(dist, "demo-pkg", "1.0")
    code, out = await run(twine(tg, wheel, password="wrong"), installer_env, ok=False)
    assert code != 0 and "401" in out
    other = build_wheel(dist, "someone-else", "1.0")
    code, out = await run(twine(tg, other), installer_env, ok=False)
    assert code != 0 and "403" in out
    assert await published(tg) == []


async def test_uv_publish(tidegate, installer_env, dist):
    tg = await tidegate(upstreams=[], users=USERS)
    wheel, sdist = build_wheel(dist, "demo-pkg", "2.0"), build_sdist(dist, "demo-pkg", "2.0")
    await run(uv_publish(tg, wheel, sdist), installer_env)
    assert await published(tg) == sorted([wheel.name, sdist.name])
    # Re-publishing the same files succeeds (uv treats an identical upload as done).
    await run(uv_publish(tg, wheel, sdist), installer_env)


async def test_install_what_was_uploaded(tidegate, installer_env, dist, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    await run(twine(tg, build_wheel(dist, "demo-pkg", "1.0")), installer_env)
    target = tmp_path / "target"
    await run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--index-url", tg.url,
               "--target", str(target), "demo-pkg"], installer_env)
    assert (target / "demo_pkg" / "__init__.py").exists()


AUTH = {"Authorization": "Basic " + base64.b64encode(b"ci:s3cret").decode()}


async def multipart(tg, fields, content=None, filename="demo_pkg-1.0-py3-none-any.whl"):
    import aiohttp

    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, v)
    if content is not None:
        form.add_field("content", content, filename=filename)  # no Content-Type of its own
    async with tg.session.post(f"{tg.origin}/legacy/", data=form, headers=AUTH, allow_redirects=False) as r:
        return r.status, r.reason, await r.text()


async def twine_style_upload(tg, path, *, name="demo-pkg", version="1.0", filename=None, data=None):
    """Upload `path` in a multipart body written as twine (requests/urllib3) writes it: the filename
    as is (aiohttp would percent-encode a '+'). Returns (status, text)."""
    boundary = "twinestyleboundary1234"
    parts = []
    for key, value in ((":action", "file_upload"), ("protocol_version", "1"), ("name", name), ("version", version)):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{filename or path.name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode())
    parts.append(data if data is not None else path.read_bytes())
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    headers = {**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with tg.session.post(tg.origin + "/legacy/", data=b"".join(parts), headers=headers, allow_redirects=False) as r:
        return r.status, (await r.text())


async def test_legacy_validation(tidegate, dist):
    tg = await tidegate(upstreams=[], users=USERS)
    wheel = build_wheel(dist, "demo-pkg", "1.0")
    data = wheel.read_bytes()
    base = {":action": "file_upload", "name": "demo-pkg", "version": "1.0", "protocol_version": "1"}
    assert (await multipart(tg, base))[0] == 400  # no content part
    assert (await multipart(tg, {**base, ":action": "submit"}, data))[0] == 400
    assert (await multipart(tg, {**base, "version": "2.0"}, data))[0] == 400  # filename/version mismatch
    assert (await multipart(tg, {**base, "name": "bad name!"}, data))[0] == 400
    status, reason, text = await multipart(tg, {**base, "sha256_digest": "0" * 64}, data)
    assert status == 400 and "sha256_digest" in text
    assert (await multipart(tg, {**base, "md5_digest": "0" * 32}, data))[0] == 400
    assert (await multipart(tg, base, b"not a zip"))[0] == 400
    assert await published(tg) == []
    # :action in the query string works too, and no digest is required.
    import aiohttp
    form = aiohttp.FormData()
    for k, v in {k: v for k, v in base.items() if k != ":action"}.items():
        form.add_field(k, v)
    form.add_field("content", data, filename=wheel.name)
    async with tg.session.post(f"{tg.origin}/legacy?:action=file_upload", data=form,
                               headers=AUTH, allow_redirects=False) as r:
        assert r.status == 200, await r.text()
    assert await published(tg) == [wheel.name]
    async with tg.session.post(f"{tg.origin}/legacy/", data=b"plain",
                               headers={**AUTH, "Content-Type": "text/plain"}) as r:
        assert r.status == 400


async def test_only_one_sdist_per_release(tidegate, dist):
    tg = await tidegate(upstreams=[], users=USERS)
    sdist = build_sdist(dist, "demo-pkg", "1.0")
    assert (await twine_style_upload(tg, sdist))[0] == 200
    status, text = await twine_style_upload(tg, sdist, filename="demo-pkg-1.0.tar.gz")
    assert status == 400, "a second sdist (other spelling of the same name) was published"


async def test_same_wheel_under_unnormalized_version_is_refused(tidegate, dist):
    tg = await tidegate(upstreams=[], users=USERS)
    wheel = build_wheel(dist, "demo-pkg", "1.0")
    assert (await twine_style_upload(tg, wheel))[0] == 200
    status, text = await twine_style_upload(tg, wheel, filename="demo_pkg-1.0.0-py3-none-any.whl")
    assert status in (400, 409), "two filenames for the same release and tags were both published"


async def test_local_version_is_refused(tidegate, dist):
    tg = await tidegate(upstreams=[], users=USERS)
    wheel = build_wheel(dist, "demo-pkg", "1.0+local")
    status, text = await twine_style_upload(tg, wheel, version="1.0+local")
    assert status == 400 and "local" in text.lower(), ("Warehouse refuses PEP 440 local versions", status, text)


async def test_corrupt_reupload_of_a_published_file_says_file_already_exists(tidegate, dist):
    """twine --skip-existing keys on 'File already exists'; a corrupt re-upload gets it too,
    though its bytes would not validate."""
    tg = await tidegate(upstreams=[], users=USERS)
    wheel = build_wheel(dist, "demo-pkg", "1.0")
    assert (await twine_style_upload(tg, wheel))[0] == 200
    status, text = await twine_style_upload(tg, wheel, data=b"not a zip at all")
    assert status == 400 and text.startswith("File already exists"), text
