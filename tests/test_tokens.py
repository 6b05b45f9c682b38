"""API tokens end to end: created with `tidegate token create` on the server's data directory,
used as the password of `__token__` by twine, `uv publish` and `tidegate upload`, limited to
their scopes, refused once expired or revoked, and kept only as a hash."""

from __future__ import annotations

import base64
import json
import sys
import time

from support.dists import build_sdist, build_wheel
from tidegate.publish.actor import Actor
from tidegate.publish.tokens import Tokens
from tidegate.web.keys import STORAGE
from support.processes import run

USERS = [{"name": "rm", "password": "pw", "upload": ["acme-*"]}]
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def config_file(tmp_path, tg):
    """The settings file an operator's commands would use: the running server's data dir and users."""
    path = tmp_path / "tidegate.toml"
    users = "".join(f'[[users]]\nname = "{u["name"]}"\npassword = "{u["password"]}"\nupload = {json.dumps(u["upload"])}\n'
                    for u in USERS)
    path.write_text(f'data_dir = "{tg.settings.data_dir}"\nupstreams = []\n{users}')
    return path


async def token_cli(tmp_path, tg, env, *args, ok=True):
    return await run([sys.executable, "-m", "tidegate", "token", *args, "--config", str(config_file(tmp_path, tg))],
                     env, ok=ok)


async def published(tg, name="acme-core"):
    async with tg.session.get(f"{tg.url}{name}/", headers={"Accept": SIMPLE_JSON}) as r:
        return sorted(f["filename"] for f in json.loads(await r.read())["files"]) if r.status == 200 else []


def twine(tg, token, *files):
    return [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
            "--repository-url", f"{tg.origin}/legacy/", "-u", "__token__", "-p", token, *map(str, files)]


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_a_token_works_with_twine_uv_and_tidegate_upload(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    _, token, note = await token_cli(tmp_path, tg, installer_env, "create", "--user", "rm", "--scope", "acme-*")
    token = token.strip()
    assert token.startswith("tdg_") and "__token__" in note
    dist = tmp_path / "dist"
    dist.mkdir()
    w1, s1 = build_wheel(dist, "acme-core", "1.0"), build_sdist(dist, "acme-core", "1.0")
    await run(twine(tg, token, w1, s1), installer_env)
    w2 = build_wheel(dist, "acme-core", "2.0")
    await run([sys.executable, "-m", "uv", "publish", "--no-config", "--publish-url", f"{tg.origin}/legacy/",
               "--token", token, str(w2)], installer_env)
    w3 = build_wheel(dist, "acme-core", "3.0")
    await run([sys.executable, "-m", "tidegate", "upload", "--repository", tg.origin, "-u", "__token__",
               "-p", token, str(w3)], installer_env)
    assert await published(tg) == sorted(f.name for f in (w1, s1, w2, w3))

    # The store holds the token's hash, never the token.
    index = next(tg.settings.data_dir.rglob("index.db*"))
    assert all(token.encode() not in p.read_bytes() for p in index.parent.glob("index.db*"))
    _, listing, _ = await token_cli(tmp_path, tg, installer_env, "list", "--json")
    entry = json.loads(listing.splitlines()[0])
    assert entry["user"] == "rm" and entry["scopes"] == ["acme-*"] and entry["state"] == "active"
    assert token not in listing and entry["id"] not in token


async def test_a_token_is_limited_to_its_scopes(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    _, token, _ = await token_cli(tmp_path, tg, installer_env, "create", "--user", "rm", "--scope", "acme-core")
    token = token.strip()
    dist = tmp_path / "dist"
    dist.mkdir()
    other = build_wheel(dist, "acme-other", "1.0")
    code, out, err = await run(twine(tg, token, other), installer_env, ok=False)
    assert code != 0 and "403" in out + err and "not scoped to acme-other" in out + err
    # Upload 2.0 says it in one problem document.
    async with tg.session.post(f"{tg.origin}/upload/", headers={**basic("__token__", token),
                               "Content-Type": "application/vnd.pypi.upload.v2+json"},
                               data=json.dumps({"meta": {"api-version": "2.0"}, "name": "acme-other",
                                                "version": "1.0"})) as r:
        problem = json.loads(await r.read())
        assert r.status == 403 and problem["detail"].count("\n") == 0 and "not scoped" in problem["detail"]
    # A scope beyond the user's rights is refused when the token is made.
    code, _, err = await token_cli(tmp_path, tg, installer_env, "create", "--user", "rm", "--scope", "*", ok=False)
    assert code == 1 and "not within what rm may upload" in err
    code, _, err = await token_cli(tmp_path, tg, installer_env, "create", "--user", "nobody", ok=False)
    assert code == 1 and "No configured user" in err


async def test_expired_and_revoked_tokens_are_refused(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    storage = tg.app[STORAGE]
    # Made an hour ago with a minute to live: expired now, whatever the clock says next.
    old = Tokens(tg.settings, storage.index, clock=lambda: time.time() - 3600)
    expired = await old.create(Actor(tg.settings.user("rm")), "rm", (), 60.0)
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = build_wheel(dist, "acme-core", "1.0")
    code, out, err = await run(twine(tg, expired.secret, wheel), installer_env, ok=False)
    assert code != 0 and f"API token {expired.token.id} is expired" in out + err

    _, token, _ = await token_cli(tmp_path, tg, installer_env, "create", "--user", "rm", "--expires", "never")
    token = token.strip()
    async with tg.session.get(f"{tg.origin}/manage/sessions", headers=basic("__token__", token)) as r:
        assert r.status == 200
    token_id = json.loads((await token_cli(tmp_path, tg, installer_env, "list", "--json"))[1].splitlines()[-1])["id"]
    _, out, _ = await token_cli(tmp_path, tg, installer_env, "revoke", token_id)
    assert f"revoked token {token_id}" in out
    code, out, err = await run(twine(tg, token, wheel), installer_env, ok=False)
    assert code != 0 and f"API token {token_id} is revoked" in out + err
    async with tg.session.get(f"{tg.origin}/manage/sessions", headers=basic("__token__", token)) as r:
        assert r.status == 401 and "revoked" in (await r.json(content_type=None))["detail"]
    # A made-up token, or a token as a normal user's password, is just wrong credentials.
    for headers in (basic("__token__", "tdg_" + "x" * 43), basic("rm", token)):
        async with tg.session.get(f"{tg.origin}/manage/sessions", headers=headers) as r:
            assert r.status == 401 and "WWW-Authenticate" in r.headers
    states = {json.loads(line)["id"]: json.loads(line)["state"]
              for line in (await token_cli(tmp_path, tg, installer_env, "list", "--json"))[1].splitlines()}
    assert states == {expired.token.id: "expired", token_id: "revoked"}


async def test_with_read_auth_pip_installs_with_a_token(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS, read_auth=True)
    _, token, _ = await token_cli(tmp_path, tg, installer_env, "create", "--user", "rm")
    token = token.strip()
    dist = tmp_path / "dist"
    dist.mkdir()
    await run(twine(tg, token, build_wheel(dist, "acme-core", "1.0")), installer_env)
    index = f"http://__token__:{token}@127.0.0.1:{tg.port}/simple/"
    await run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--index-url", index, "--target",
               str(tmp_path / "t"), "acme-core"], installer_env)
    assert (tmp_path / "t" / "acme_core" / "__init__.py").exists()
    async with tg.session.get(tg.url, headers=basic("__token__", "tdg_wrong")) as r:
        assert r.status == 401
