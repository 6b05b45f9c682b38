"""The audit log: every upload, publish, cancel, yank, unyank, delete and token change leaves
one append-only row (who, when, what, from which address), printed by `tidegate audit`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time

import pytest

from support.dists import build_wheel
from tidegate.storage.records import AuditEntry
from tidegate.web.keys import STORAGE

USERS = [{"name": "rm", "password": "pw", "upload": ["acme-*"]}]


async def run(cmd, env):
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode == 0, (out + err).decode()
    return out.decode(), err.decode()


def remote(tg, *args, user="rm", password="pw"):
    return [sys.executable, "-m", "tidegate", *args, "--repository", tg.origin, "-u", user, "-p", password]


async def entries(tg):
    return await tg.app[STORAGE].index.read(lambda rows: rows.audit_since(0))


async def test_every_change_is_audited_and_printed(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    config = tmp_path / "tidegate.toml"
    config.write_text(f'data_dir = "{tg.settings.data_dir}"\nupstreams = []\n'
                      '[[users]]\nname = "rm"\npassword = "pw"\nupload = ["acme-*"]\n')
    local = [sys.executable, "-m", "tidegate"]
    dist = tmp_path / "dist"
    dist.mkdir()
    w1, w2, w3 = (build_wheel(dist, "acme-core", v) for v in ("1.0", "2.0", "3.0"))

    token = (await run(local + ["token", "create", "--user", "rm", "--config", str(config)], installer_env))[0].strip()
    await run(remote(tg, "upload", str(w1), user="__token__", password=token), installer_env)  # session + upload + publish
    await run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
               "--repository-url", f"{tg.origin}/legacy/", "-u", "rm", "-p", "pw", str(w2)], installer_env)
    await run(remote(tg, "upload", "--stage", str(w3)), installer_env)
    session = next(s.token for s in await tg.app[STORAGE].index.read(lambda rows: rows.sessions_live()))
    await run(remote(tg, "session", "cancel", session), installer_env)
    await run(remote(tg, "yank", w1.name, "--reason", "bad"), installer_env)
    await run(remote(tg, "yank", w1.name, "--undo"), installer_env)
    await run(remote(tg, "delete", w2.name), installer_env)
    await run(local + ["yank", w1.name, "--config", str(config)], installer_env)
    token_id = json.loads((await run(local + ["token", "list", "--json", "--config", str(config)], installer_env))[0])["id"]
    await run(local + ["token", "revoke", token_id, "--config", str(config)], installer_env)

    log = await entries(tg)
    via_token = f"rm (token {token_id})"
    assert [(e.action, e.subject, e.actor) for e in log] == [
        ("token-create", token_id, log[0].actor),
        ("session-create", "acme-core 1.0", via_token),
        ("upload", w1.name, via_token),
        ("publish", "acme-core 1.0", via_token),
        ("upload", w2.name, "rm"),
        ("session-create", "acme-core 3.0", "rm"),
        ("upload", w3.name, "rm"),
        ("cancel", "acme-core 3.0", "rm"),
        ("yank", w1.name, "rm"),
        ("unyank", w1.name, "rm"),
        ("delete", w2.name, "rm"),
        ("yank", w1.name, log[0].actor),
        ("token-revoke", token_id, log[0].actor),
    ]
    assert log[0].address == "local" and "@" in log[0].actor  # the operator's login@host
    assert {e.address for e in log[1:-2]} == {"127.0.0.1"}
    assert log[2].detail["api"] == "upload-2.0" and log[4].detail["api"] == "legacy"
    assert log[3].detail["files"] == [w1.name] and log[8].detail == {"reason": "bad"}
    assert token not in json.dumps([e.detail for e in log])

    text, _ = await run(local + ["audit", "--config", str(config)], installer_env)
    lines = text.splitlines()
    assert len(lines) == len(log)
    assert lines[8].endswith(f"rm  from 127.0.0.1  yank {w1.name}  reason=bad")
    assert "token-create" in lines[0] and "user=rm" in lines[0] and "expires_at=20" in lines[0]  # a date
    printed = [json.loads(line) for line in (await run(local + ["audit", "--json", "--config", str(config)],
                                                         installer_env))[0].splitlines()]
    assert [p["action"] for p in printed] == [e.action for e in log]
    assert printed[3]["detail"]["files"] == [w1.name]


async def test_since_filters_by_date_and_age(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    index = tg.app[STORAGE].index
    now = time.time()
    for at, subject in ((now - 10 * 86400, "old"), (now - 3600, "recent")):
        await index.write(lambda rows, at=at, subject=subject: rows.append_audit(
            AuditEntry(at=at, actor="rm", address="127.0.0.1", action="yank", subject=subject)))
    config = tmp_path / "t.toml"
    config.write_text(f'data_dir = "{tg.settings.data_dir}"\nupstreams = []\n')
    audit = [sys.executable, "-m", "tidegate", "audit", "--config", str(config)]
    assert len((await run(audit, installer_env))[0].splitlines()) == 2
    assert "recent" in (await run(audit + ["--since", "2d"], installer_env))[0]
    assert "old" not in (await run(audit + ["--since", "2d"], installer_env))[0]
    day = time.strftime("%Y-%m-%d", time.gmtime(now - 5 * 86400))
    assert (await run(audit + ["--since", day], installer_env))[0].count("\n") == 1


async def test_the_log_is_append_only(tidegate):
    tg = await tidegate(upstreams=[], users=USERS)
    index = tg.app[STORAGE].index
    await index.write(lambda rows: rows.append_audit(AuditEntry(at=1.0, actor="rm", address="x", action="yank",
                                                                subject="s")))
    for sql in ("UPDATE audit SET actor = 'someone else'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await index.write(lambda rows, sql=sql: rows._db.execute(sql))
    assert [e.actor for e in await entries(tg)] == ["rm"]


async def test_tokens_and_the_audit_log_are_in_every_backup(tidegate, installer_env, tmp_path):
    tg = await tidegate(upstreams=[], users=USERS)
    config = tmp_path / "tidegate.toml"
    config.write_text(f'data_dir = "{tg.settings.data_dir}"\nupstreams = []\n'
                      '[[users]]\nname = "rm"\npassword = "pw"\nupload = ["acme-*"]\n')
    local = [sys.executable, "-m", "tidegate"]
    token = (await run(local + ["token", "create", "--user", "rm", "--config", str(config)], installer_env))[0].strip()
    dist = tmp_path / "dist"
    dist.mkdir()
    await run(remote(tg, "upload", str(build_wheel(dist, "acme-core", "1.0")), user="__token__", password=token),
              installer_env)
    await run(local + ["backup", str(tmp_path / "backup"), "--config", str(config)], installer_env)
    before = [(e.action, e.subject) for e in await entries(tg)]

    restored = await tidegate(upstreams=[], users=USERS, data_dir=str(tmp_path / "backup"))
    assert [(e.action, e.subject) for e in await entries(restored)] == before
    # The restored server takes the same token.
    await run(remote(restored, "upload", str(build_wheel(dist, "acme-core", "2.0")), user="__token__",
                     password=token), installer_env)
    assert [e.action for e in await entries(restored)][-3:] == ["session-create", "upload", "publish"]


@pytest.mark.parametrize("remote, forwarded, trusted, expected", [
    ("10.0.0.5", "", (), "10.0.0.5"),
    ("10.0.0.5", "203.0.113.9", (), "10.0.0.5"),  # an untrusted peer's header is ignored
    ("10.0.0.5", "203.0.113.9", ("10.0.0.0/8",), "203.0.113.9"),
    ("10.0.0.5", "198.51.100.1, 203.0.113.9, 10.0.0.7", ("10.0.0.0/8",), "203.0.113.9"),  # left of it: forgeable
    ("10.0.0.5", "10.0.0.9", ("10.0.0.0/8",), "10.0.0.9"),  # every hop trusted: the first
    ("10.0.0.5", "not-an-ip", ("10.0.0.0/8",), "not-an-ip"),
    ("::1", "2001:db8::1", ("::1",), "2001:db8::1"),
])
def test_the_client_address_behind_trusted_fronts(remote, forwarded, trusted, expected):
    from tidegate.config import parse_networks
    from tidegate.web.auth import client_address

    assert client_address(remote, forwarded, parse_networks("t", list(trusted))) == expected


async def test_the_audit_log_names_the_client_behind_a_trusted_front(tidegate, tmp_path):
    import base64

    headers = {"Authorization": "Basic " + base64.b64encode(b"rm:pw").decode(), "X-Forwarded-For": "203.0.113.9"}
    for trusted, expected in (([], "127.0.0.1"), (["127.0.0.0/8"], "203.0.113.9")):
        tg = await tidegate(upstreams=[], users=USERS, trusted_proxies=trusted)
        async with tg.session.post(f"{tg.origin}/upload/", headers={**headers, "Content-Type":
                                   "application/vnd.pypi.upload.v2+json"},
                                   data=json.dumps({"meta": {"api-version": "2.0"}, "name": "acme-core",
                                                    "version": "1.0"})) as r:
            assert r.status == 201
        assert [e.address for e in await entries(tg)] == [expected]


async def test_a_forged_first_forwarded_line_is_not_believed(tidegate):
    # Found in review: HAProxy appends its own X-Forwarded-For line after the client's.
    import base64

    from multidict import CIMultiDict

    tg = await tidegate(upstreams=[], users=USERS, trusted_proxies=["127.0.0.0/8"])
    headers = CIMultiDict([("Authorization", "Basic " + base64.b64encode(b"rm:pw").decode()),
                           ("Content-Type", "application/vnd.pypi.upload.v2+json"),
                           ("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.9")])
    async with tg.session.post(f"{tg.origin}/upload/", headers=headers, data=json.dumps(
            {"meta": {"api-version": "2.0"}, "name": "acme-core", "version": "1.0"})) as r:
        assert r.status == 201
    assert [e.address for e in await entries(tg)] == ["203.0.113.9"]


async def test_deleting_a_staged_file_and_extending_are_audited(tidegate, tmp_path):
    """What changes a session without publishing it is on record too: a staged file deleted
    (DELETE of its upload URL) and each extension of the session or of a file."""
    from support.uploadapi import UploadApi, basic

    tg = await tidegate(upstreams=[], users=USERS)
    api = UploadApi(tg, basic("rm", "pw"))
    status, session, _ = await api.call("POST", "/upload/", {"name": "acme-core", "version": "1.0"})
    assert status == 201
    wheel = build_wheel(tmp_path, "acme-core", "1.0")
    status, upload = await api.add_file(session, wheel)
    assert status in (200, 201), upload
    status, _, _ = await api.call("POST", session["links"]["extend"], {"extend-for": 600})
    assert status == 200
    status, _, _ = await api.call("POST", upload["links"]["extend"], {"extend-for": 600})
    assert status == 200
    status, _, _ = await api.call("DELETE", upload["links"]["file-upload-session"])
    assert status in (200, 204)
    log = [(e.action, e.subject, e.actor, e.address) for e in await entries(tg)]
    assert log[-3:] == [("extend", "acme-core 1.0", "rm", "127.0.0.1"), ("extend", "acme-core 1.0", "rm", "127.0.0.1"),
                        ("delete-staged", wheel.name, "rm", "127.0.0.1")]
    detail = [e.detail for e in await entries(tg)][-3:]
    assert "file" not in detail[0] and detail[1]["file"] == wheel.name and detail[2]["session"] == "acme-core 1.0"
