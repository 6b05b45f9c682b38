"""A Host header yarl cannot build a URL from (x:99999) never makes a 500: links fall back to
the address the request came in on."""

from __future__ import annotations

import pytest

from support.uploadapi import UploadApi, basic

USERS = [{"name": "ci", "password": "s3cret", "upload": ["demo-*"]}]
BAD_HOSTS = ["x:99999", "x:0", "bad host", "[::1"]


@pytest.mark.parametrize("host", BAD_HOSTS)
async def test_upload_links_with_a_malformed_host(tidegate, host):
    tg = await tidegate(upstreams=[], users=USERS)
    api = UploadApi(tg, basic("ci", "s3cret"))
    bad = {"Host": host}
    status, session, _ = await api.call("POST", "/upload/", {"name": "demo-pkg", "version": "1.0"}, headers=bad)
    assert status == 201, session
    assert session["links"]["session"].startswith(tg.origin + "/upload/session/")
    assert session["links"]["stage"].startswith(tg.origin + "/stage/")
    status, again, _ = await api.call("GET", session["links"]["session"], headers=bad)
    assert status == 200 and again["links"] == session["links"]
    # A second session for the release: the conflict's Location is built the same way.
    status, _, headers = await api.call("POST", "/upload/", {"name": "demo-pkg", "version": "1.0"}, headers=bad)
    assert status == 409 and headers["Location"] == session["links"]["session"]
    status, listed, _ = await api.call("GET", "/manage/sessions", headers=bad)
    assert status == 200 and [s["links"]["session"] for s in listed["sessions"]] == [session["links"]["session"]]


async def test_a_valid_host_is_still_used(tidegate):
    tg = await tidegate(upstreams=[], users=USERS)
    api = UploadApi(tg, basic("ci", "s3cret"))
    status, session, _ = await api.call("POST", "/upload/", {"name": "demo-pkg", "version": "1.0"},
                                        headers={"Host": "index.example:8443"})
    assert status == 201 and session["links"]["session"].startswith("http://index.example:8443/upload/session/")


async def test_session_and_manage_pages_with_a_malformed_host(tidegate):
    """Each endpoint on its own: the session was opened with a good Host."""
    tg = await tidegate(upstreams=[], users=USERS)
    api = UploadApi(tg, basic("ci", "s3cret"))
    status, session, _ = await api.call("POST", "/upload/", {"name": "demo-pkg", "version": "1.0"})
    assert status == 201
    bad = {"Host": "x:99999"}
    status, body, _ = await api.call("GET", session["links"]["session"], headers=bad)
    assert status == 200 and body["links"]["session"] == session["links"]["session"]
    status, body, _ = await api.call("GET", "/manage/sessions", headers=bad)
    assert status == 200 and body["sessions"][0]["links"]["stage"] == session["links"]["stage"]
