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
from tidegate.web.keys import REQUEST_LOG

USERS = [{"name": "ci", "password": "s3cret", "upload": ["demo-*"]}]


def access(tg, capsys) -> list[str]:
    """The request log's lines written so far."""
    if REQUEST_LOG in tg.app:
        tg.app[REQUEST_LOG].flush()
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
