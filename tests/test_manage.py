"""Release management over HTTP (/manage/) with the tidegate CLI against a started server:
yank and delete seen by pip and uv, the caller's open sessions, and per-user authorization."""

from __future__ import annotations

import base64
import json
import re
import sys
from urllib.parse import urljoin

from support.dists import build_sdist, build_wheel
from support.processes import run

USERS = [{"name": "rm", "password": "pw", "upload": ["acme-*"]},
         {"name": "eve", "password": "pw2", "upload": ["other-*"]}]
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def tidegate_cmd(tg, *args, user="rm", password="pw"):
    return [sys.executable, "-m", "tidegate", *args, "--repository", tg.origin, "-u", user, "-p", password]


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def files(tg, name="acme-core"):
    async with tg.session.get(f"{tg.url}{name}/", headers={"Accept": SIMPLE_JSON}) as r:
        return {f["filename"]: f for f in json.loads(await r.read())["files"]} if r.status == 200 else {}


def installed(target):
    return (target / "acme_core" / "__init__.py").read_text().split("=")[1].strip().strip("\"'")


async def test_remote_yank_is_seen_by_pip_and_uv(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    dist = tmp_path / "dist"
    dist.mkdir()
    old, new = build_wheel(dist, "acme-core", "1.0"), build_wheel(dist, "acme-core", "2.0")
    await run(tidegate_cmd(tg, "upload", str(old), str(new)), installer_env)

    _, out, _ = await run(tidegate_cmd(tg, "yank", new.name, "--reason", "broken build"), installer_env)
    assert out == f"{new.name}: yanked\n"
    assert (await files(tg))[new.name]["yanked"] == "broken build"
    async with tg.session.get(f"{tg.url}acme-core/") as r:
        assert 'data-yanked="broken build"' in await r.text()

    pip = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--index-url", tg.url, "--target"]
    uv = [sys.executable, "-m", "uv", "pip", "install", "--no-config", "--python", sys.executable,
          "--index-url", tg.url, "--target"]
    for tool, cmd in (("pip", pip), ("uv", uv)):
        await run(cmd + [str(tmp_path / f"{tool}-any"), "acme-core"], installer_env)
        assert installed(tmp_path / f"{tool}-any") == "1.0", tool  # the yanked release is skipped
        _, out, err = await run(cmd + [str(tmp_path / f"{tool}-pinned"), "acme-core==2.0"], installer_env)
        assert installed(tmp_path / f"{tool}-pinned") == "2.0", tool  # ...unless pinned exactly
        assert "broken build" in out + err, tool  # and both tell why

    _, out, _ = await run(tidegate_cmd(tg, "yank", "acme-core", "2.0", "--undo"), installer_env)
    assert out == f"{new.name}: un-yanked\n"
    assert "yanked" not in (await files(tg))[new.name]
    await run(pip + [str(tmp_path / "pip-again"), "acme-core"], installer_env)
    assert installed(tmp_path / "pip-again") == "2.0"


async def test_remote_delete_of_a_file_and_a_release(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    dist = tmp_path / "dist"
    dist.mkdir()
    w1, s1, w2 = build_wheel(dist, "acme-core", "1.0"), build_sdist(dist, "acme-core", "1.0"), build_wheel(dist, "acme-core", "2.0")
    await run(tidegate_cmd(tg, "upload", str(w1), str(s1), str(w2)), installer_env)
    url = urljoin(f"{tg.url}acme-core/", (await files(tg))[w2.name]["url"])

    _, out, _ = await run(tidegate_cmd(tg, "delete", w2.name), installer_env)
    assert out == f"{w2.name}: deleted\n"
    assert set(await files(tg)) == {w1.name, s1.name}
    async with tg.session.get(url) as r:
        assert r.status == 404  # its bytes are gone too
    _, out, _ = await run(tidegate_cmd(tg, "delete", "acme-core", "1.0"), installer_env)
    assert sorted(out.splitlines()) == sorted([f"{w1.name}: deleted", f"{s1.name}: deleted"])
    assert await files(tg) == {}
    code, _, err = await run(tidegate_cmd(tg, "delete", w1.name), installer_env, ok=False)
    assert code == 1 and "not a published file" in err
    # The same file can be uploaded again; other bytes under a deleted name never can (caches
    # in front keep the old bytes of an immutable URL), through either API.
    await run(tidegate_cmd(tg, "upload", str(w2)), installer_env)
    assert set(await files(tg)) == {w2.name}
    changed = build_wheel(tmp_path / "changed", "acme-core", "1.0", module_code="__version__ = 'other'\n")
    for api, said in (([], "was deleted from this index"), (["--legacy"], "already has this file")):
        code, _, err = await run(tidegate_cmd(tg, "upload", *api, str(changed)), installer_env, ok=False)
        assert code == 1 and said in err, api
    await run(tidegate_cmd(tg, "upload", str(w1)), installer_env)
    assert set(await files(tg)) == {w1.name, w2.name}


async def test_management_is_authorized_per_user(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = build_wheel(dist, "acme-core", "1.0")
    await run(tidegate_cmd(tg, "upload", str(wheel)), installer_env)
    for args in (("yank", wheel.name), ("delete", wheel.name), ("delete", "acme-core", "1.0")):
        code, _, err = await run(tidegate_cmd(tg, *args, user="eve", password="pw2"), installer_env, ok=False)
        assert code == 1 and "User eve may not upload to acme-core" in err, args
    async with tg.session.delete(f"{tg.origin}/manage/files/{wheel.name}") as r:
        assert r.status == 401 and r.content_type == "application/problem+json"
    async with tg.session.post(f"{tg.origin}/manage/files/{wheel.name}/yank", headers=basic("rm", "pw"),
                               data=b"{not json", ) as r:
        assert r.status == 415
    async with tg.session.post(f"{tg.origin}/manage/files/{wheel.name}/yank",
                               headers={**basic("rm", "pw"), "Content-Type": "application/json"},
                               data=json.dumps({"reason": ["a list"]})) as r:
        assert r.status == 400 and "reason must be a string" in (await r.json(content_type=None))["detail"]
    async with tg.session.get(f"{tg.origin}/manage/nothing", headers=basic("rm", "pw")) as r:
        assert r.status == 404 and "release management" in (await r.json(content_type=None))["detail"]
    assert "yanked" not in (await files(tg))[wheel.name]


async def test_session_list_status_publish_cancel_against_a_server(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    dist = tmp_path / "dist"
    dist.mkdir()
    one, two = build_wheel(dist, "acme-core", "1.0"), build_wheel(dist, "acme-lib", "1.0")
    for wheel in (one, two):
        await run(tidegate_cmd(tg, "upload", "--stage", str(wheel)), installer_env)
    _, listing, _ = await run(tidegate_cmd(tg, "session", "list"), installer_env)
    sessions = dict(re.findall(r"^(acme-\S+) 1\.0  open  1 file\(s\).*\n  stage: .*\n  session: (\S+)$", listing, re.M))
    assert set(sessions) == {"acme-core", "acme-lib"}, listing
    assert listing.count("/stage/") == 2
    # Another user's list does not show them.
    _, other, err = await run(tidegate_cmd(tg, "session", "list", user="eve", password="pw2"), installer_env)
    assert other == "" and "no open sessions" in err

    _, status, _ = await run(tidegate_cmd(tg, "session", "status", sessions["acme-core"]), installer_env)
    assert "status:  open" in status and "stage:" in status and one.name in status
    _, out, _ = await run(tidegate_cmd(tg, "session", "publish", sessions["acme-core"]), installer_env)
    assert out.startswith("published ")
    _, status, _ = await run(tidegate_cmd(tg, "session", "status", sessions["acme-core"]), installer_env)
    assert "status:  published" in status and "stage:" not in status  # its stage URL is dead now
    token = sessions["acme-lib"].rsplit("/", 1)[1]
    _, out, _ = await run(tidegate_cmd(tg, "session", "cancel", token), installer_env)
    assert out.startswith("canceled ")
    _, listing, err = await run(tidegate_cmd(tg, "session", "list"), installer_env)
    assert listing == "" and "no open sessions" in err
    assert set(await files(tg)) == {one.name} and await files(tg, "acme-lib") == {}
