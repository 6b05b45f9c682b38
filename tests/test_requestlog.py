"""The request log: one line per request, text or JSON, never a secret; upstream failures
logged once with their reason."""

from __future__ import annotations

import json
import logging
import re

import pytest

from support.fakeindex import Fault
from support.uploadapi import UPLOAD, basic
from tidegate.observe.requestlog import redact
from tidegate.web.keys import JOURNAL

USERS = [{"name": "ci", "password": "s3cret", "upload": ["demo-*"]}]


def access(tg, capsys) -> list[str]:
    """The request log's lines written so far."""
    if JOURNAL in tg.app:
        tg.app[JOURNAL].flush()
    return [line for line in capsys.readouterr().err.splitlines() if "tidegate.access" in line]


def test_redact_replaces_tokens_of_stage_and_session_urls():
    assert redact("/stage/abcDEF123/simple/demo/") == "/stage/<token>/simple/demo/"
    assert redact("/upload/session/abcDEF123/files/x/content") == "/upload/session/<token>/files/x/content"
    assert redact("/simple/demo/") == "/simple/demo/"


async def test_a_line_per_request_with_cache_result_and_upstream(tidegate, fake_index, dists, capsys):
    idx = await fake_index("html")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    tg = await tidegate(upstreams=[idx.url])
    for _ in range(2):
        async with tg.get("/simple/demo-pkg/?format=text/html") as r:
            body = await r.read()
    first, second = access(tg, capsys)
    upstream = tg.settings.upstreams[0].name
    # The text format of every log line: time, pid, level, logger, then the request.
    assert re.fullmatch(rf'\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} \d+ INFO tidegate.access: 127.0.0.1 '
                        rf'"GET /simple/demo-pkg/" 200 {len(body)} \d+\.\d\dms cache=miss upstream={re.escape(upstream)}',
                        first), first
    assert second.endswith("cache=hit upstream=-")


async def test_json_lines(tidegate, fake_index, dists, capsys):
    idx = await fake_index("html")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    tg = await tidegate(upstreams=[idx.url], log_format="json")
    async with tg.get("/simple/demo-pkg/?format=text/html") as r:
        body = await r.read()
    async with tg.head("/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl") as r:
        assert r.status == 200
    page, head = (json.loads(line) for line in access(tg, capsys))
    assert page["logger"] == "tidegate.access" and page["level"] == "info" and page["time"].endswith("Z")
    assert page["method"] == "GET" and page["path"] == "/simple/demo-pkg/"  # no query string
    assert page["status"] == 200 and page["bytes"] == len(body) and page["duration_ms"] > 0
    assert page["cache"] == "miss" and page["upstream"] == tg.settings.upstreams[0].name
    assert head["method"] == "HEAD" and head["bytes"] == 0 and head["cache"] == "miss"


async def test_no_token_or_credential_reaches_the_log(tidegate, capsys):
    tg = await tidegate(upstreams=[], users=USERS)
    body = b'{"meta": {"api-version": "2.0"}, "name": "demo-pkg", "version": "1.0"}'
    async with tg.session.post(tg.origin + "/upload/", data=body,
                               headers={**basic("ci", "s3cret"), "Content-Type": UPLOAD}) as r:
        session = json.loads(await r.read())
    token = session["links"]["session"].rstrip("/").rsplit("/", 1)[1]
    async with tg.session.get(session["links"]["stage"]) as r:
        assert r.status == 200
    async with tg.session.get(session["links"]["session"], headers=basic("ci", "s3cret")) as r:
        assert r.status == 200
    lines = access(tg, capsys)
    assert len(lines) == 3
    assert not any(token in line or "s3cret" in line for line in lines), lines
    assert '"GET /stage/<token>/simple/"' in lines[1] and '"GET /upload/session/<token>"' in lines[2]


@pytest.mark.parametrize("settings", [{"request_log": False}, {"log_level": "warning"}])
async def test_request_log_off(tidegate, capsys, settings):
    tg = await tidegate(upstreams=[], **settings)
    async with tg.get("/simple/") as r:
        assert r.status == 200
    assert access(tg, capsys) == []


@pytest.mark.parametrize("cached", [True, False])
async def test_an_upstream_failure_is_logged_once_with_its_reason(tidegate, fake_index, dists, caplog, cached):
    idx = await fake_index("html")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    tg = await tidegate(upstreams=[{"url": idx.url, "ttl": 0, "retries": 0}])
    if cached:
        async with tg.get("/simple/demo-pkg/") as r:
            assert r.status == 200
    idx.index.faults["/simple/demo-pkg/"] = Fault(status=503)
    caplog.clear()
    caplog.set_level(logging.WARNING)
    async with tg.get("/simple/demo-pkg/") as r:
        assert r.status == (200 if cached else 502)
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failures) == 1, failures
    assert "answered 503" in failures[0] and "demo-pkg" in failures[0]
    assert ("stale" in failures[0]) == cached


async def raw_get(tg, target: str) -> int:
    """Send `GET <target>` as written (aiohttp's client would normalize it); the status."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", tg.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    await reader.read()
    writer.close()
    return status


async def open_stage(tg) -> str:
    body = b'{"meta": {"api-version": "2.0"}, "name": "demo-pkg", "version": "1.0"}'
    async with tg.session.post(tg.origin + "/upload/", data=body,
                               headers={**basic("ci", "s3cret"), "Content-Type": UPLOAD}) as r:
        assert r.status == 201
        session = json.loads(await r.read())
    return session["links"]["session"].rstrip("/").rsplit("/", 1)[1]


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("spelling", ["http://localhost/stage/{t}/simple/", "/%73tage/{t}/simple/",
                                      "/stage/%{hex}/simple/", "/upload/%73ession/{t}"])
async def test_no_spelling_of_a_token_url_puts_the_token_in_the_log(tidegate, capsys, spelling, log_format):
    tg = await tidegate(upstreams=[], users=USERS, log_format=log_format)
    token = await open_stage(tg)
    access(tg, capsys)
    target = spelling.format(t=token, hex="%".join(f"{b:02X}" for b in token.encode()))
    status = await raw_get(tg, target)
    assert status != 500
    if "/stage/" in spelling or "%73tage" in spelling:
        assert status == 200, target  # served: so it must be redacted
    lines = access(tg, capsys)
    assert len(lines) == 1
    assert token not in lines[0] and "<token>" in lines[0], lines


def test_redact_decodes_before_matching():
    assert redact("/%73tage/abc/simple/") == "/stage/<token>/simple/"
    assert redact("/stage/%61bc/simple/") == "/stage/<token>/simple/"
    assert redact("/upload/session/abc?x=1") == "/upload/session/<token>?x=1"
    assert redact("/simple/a%20b/") == "/simple/a%20b/"  # not a token URL: unchanged
    assert redact("//stage//abc/simple/") == "//stage//<token>/simple/"  # 404s, but a token all the same
    assert redact("/./stage/abc/simple/") == "/./stage/<token>/simple/"
    assert redact("/stage%2Fabc/simple/") == "/stage/<token>/simple/"
    assert redact("/files/stage/stage-1.0.tar.gz") == "/files/stage/stage-1.0.tar.gz"


@pytest.mark.parametrize("failure", [RuntimeError("a bug"), OSError(28, "No space left on device")])
async def test_error_lines_redact_the_token_too(tidegate, capsys, caplog, monkeypatch, failure):
    from tidegate.web import simple

    tg = await tidegate(upstreams=[], users=USERS)
    token = await open_stage(tg)

    async def broken(*args, **kwargs):
        raise failure

    monkeypatch.setattr(simple, "root_index", broken)
    caplog.set_level(logging.WARNING)
    status = await raw_get(tg, f"/%73tage/{token}/simple/?q=1")
    assert status in (500, 503, 507)  # a bug, or a refusal for want of room
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("tidegate")]
    assert any("/stage/<token>/simple/" in m for m in logged), logged
    assert not any(token in m for m in logged), logged
    assert token not in "".join(access(tg, capsys))
