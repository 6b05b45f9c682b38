"""GET /metrics: Prometheus text from prometheus-client, real requests through a started app,
and the sum over the workers of `tidegate serve --workers 2`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from support.fakeindex import Fault
from support.uploadapi import UPLOAD, basic
from test_legacy import run, twine
from test_serve import free_port
from tidegate.publish.actor import Actor
from tidegate.web.keys import TOKENS

JSON = "application/vnd.pypi.simple.v1+json"
USERS = [{"name": "ci", "password": "s3cret", "upload": ["demo-*"]}]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[s.name, tuple(sorted(s.labels.items()))] = s.value
    return found


def value(found, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(tg, **kwargs) -> dict:
    async with tg.get("/metrics", **kwargs) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return samples(await r.text())


async def test_requests_pages_files_and_upstreams_are_counted(tidegate, fake_index, dists):
    idx = await fake_index("html")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    tg = await tidegate(upstreams=[idx.url])
    for _ in range(3):
        async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
            assert r.status == 200
            page = await r.read()
    wheel = "/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl"
    async with tg.get(wheel) as r:
        body = await r.read()
    async with tg.get(wheel) as r:
        assert r.headers["X-Tidegate-Cache"] == "hit" and await r.read() == body
    async with tg.get(wheel + ".metadata") as r:
        assert r.status == 200 and r.headers["X-Tidegate-Cache"] == "miss"
    async with tg.get("/simple/no-such-thing-at-all/") as r:
        assert r.status == 404
    async with tg.get("/nowhere/abc123") as r:
        assert r.status == 404

    found = await scrape(tg)
    # Route templates, never raw paths.
    assert value(found, "tidegate_http_requests_total", route="/simple/{project}/", method="GET", status="200") == 3
    assert value(found, "tidegate_http_requests_total", route="/simple/{project}/", method="GET", status="404") == 1
    assert value(found, "tidegate_http_requests_total", route="(unmatched)", method="GET", status="404") == 1
    assert not any("demo-pkg" in dict(labels).get("route", "") or "abc123" in dict(labels).get("route", "")
                   for _, labels in found)
    assert value(found, "tidegate_http_request_duration_seconds_count", route="/simple/{project}/") == 4
    assert value(found, "tidegate_cache_lookups_total", kind="page", result="miss") == 1
    assert value(found, "tidegate_cache_lookups_total", kind="page", result="hit") == 2
    assert value(found, "tidegate_cache_lookups_total", kind="file", result="miss") == 1
    assert value(found, "tidegate_cache_lookups_total", kind="file", result="hit") == 1
    assert value(found, "tidegate_cache_lookups_total", kind="metadata", result="miss") == 1
    assert value(found, "tidegate_served_bytes_total", kind="file") == 2 * len(body)
    assert value(found, "tidegate_served_bytes_total", kind="page") >= 3 * len(page)
    upstream = tg.settings.upstreams[0].name
    assert value(found, "tidegate_upstream_requests_total", upstream=upstream, outcome="200") >= 3
    assert value(found, "tidegate_upstream_requests_total", upstream=upstream, outcome="404") == 1
    assert value(found, "tidegate_upstream_request_duration_seconds_count", upstream=upstream) >= 4
    # The file cache as its index knows it.
    assert value(found, "tidegate_cache_files", store="files") == 1
    assert value(found, "tidegate_cache_size_bytes", store="files") == len(body)
    # The page cache's count comes from a directory walk at most a minute old (tests/storage).
    assert ("tidegate_cache_files", (("store", "pages"),)) in found


async def test_upstream_failures_count_by_outcome_and_stale_pages(tidegate, fake_index, dists):
    idx = await fake_index("html")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    tg = await tidegate(upstreams=[{"url": idx.url, "ttl": 0, "retries": 1}])
    async with tg.get("/simple/demo-pkg/") as r:
        assert r.status == 200
    idx.index.faults["/simple/demo-pkg/"] = Fault(status=503)
    async with tg.get("/simple/demo-pkg/") as r:
        assert r.status == 200 and r.headers["X-Tidegate-Cache"] == "stale"
    found = await scrape(tg)
    upstream = tg.settings.upstreams[0].name
    assert value(found, "tidegate_upstream_requests_total", upstream=upstream, outcome="503") == 2  # with its retry
    assert value(found, "tidegate_cache_lookups_total", kind="page", result="stale") == 1


async def test_an_unreachable_upstream_counts_errors(tidegate, fake_index):
    idx = await fake_index("html")
    await idx.down()
    tg = await tidegate(upstreams=[{"url": idx.url, "retries": 1}])
    async with tg.get("/simple/other-pkg/") as r:
        assert r.status == 502
    found = await scrape(tg)
    upstream = tg.settings.upstreams[0].name
    assert value(found, "tidegate_upstream_requests_total", upstream=upstream, outcome="error") == 2
    assert value(found, "tidegate_http_requests_total", route="/simple/{project}/", method="GET", status="502") == 1


async def test_uploads_and_sessions(tidegate, dist_dir, dists, installer_env):
    tg = await tidegate(upstreams=[], users=USERS)
    wheel = dists.wheel("demo-pkg", "1.0")
    await run(twine(tg, wheel), installer_env)
    _, text = await run(twine(tg, wheel, password="wrong"), installer_env, ok=False)
    body = b'{"meta": {"api-version": "2.0"}, "name": "demo-pkg", "version": "2.0"}'
    async with tg.session.post(tg.origin + "/upload/", data=body,
                               headers={**basic("ci", "s3cret"), "Content-Type": UPLOAD}) as r:
        assert r.status == 201, await r.text()
    found = await scrape(tg)
    assert value(found, "tidegate_uploads_total", api="legacy", result="ok") == 1
    assert value(found, "tidegate_uploads_total", api="legacy", result="refused") == 1
    assert value(found, "tidegate_sessions", state="open") == 1
    assert value(found, "tidegate_sessions", state="published") == 0
    # The session token is a secret: routes carry the template only.
    assert value(found, "tidegate_http_requests_total", route="/upload/", method="POST", status="201") == 1


async def test_metrics_auth_requires_a_configured_user(tidegate):
    tg = await tidegate(upstreams=[], users=USERS, metrics_auth=True)
    async with tg.get("/metrics") as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    async with tg.get("/metrics", headers=basic("ci", "wrong")) as r:
        assert r.status == 401
    found = await scrape(tg, headers=basic("ci", "s3cret"))
    assert value(found, "tidegate_http_requests_total", route="/metrics", method="GET", status="401") == 2


async def test_metrics_auth_takes_an_api_token(tidegate):
    """A scraper can hold a token of its own (`__token__`), revoked without touching the user."""
    tg = await tidegate(upstreams=[], users=USERS, metrics_auth=True)
    tokens = tg.app[TOKENS]
    made = await tokens.create(Actor(tg.settings.user("ci")), "ci", (), None)
    await scrape(tg, headers=basic("__token__", made.secret))
    await tokens.revoke(Actor(tg.settings.user("ci")), made.token.id)
    async with tg.get("/metrics", headers=basic("__token__", made.secret)) as r:
        assert r.status == 401
    async with tg.get("/metrics", headers=basic("__token__", "tdg_" + "x" * 43)) as r:
        assert r.status == 401


async def test_metrics_off_means_no_endpoint(tidegate):
    tg = await tidegate(upstreams=[], metrics=False)
    async with tg.get("/metrics") as r:
        assert r.status == 404


async def test_two_workers_are_summed(fake_index, dists, tmp_path):
    """`tidegate serve --workers 2`: every scrape, whichever worker answers it, counts the
    requests both workers served."""
    idx = await fake_index("html")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    port = free_port()
    env = {**os.environ, "TIDEGATE_LOG_LEVEL": "warning"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidegate", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
        "--upstream", idx.url, "--workers", "2", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    origin = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                async with aiohttp.ClientSession() as s, s.get(origin + "/simple/demo-pkg/") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("tidegate did not start")
        metrics_dir = tmp_path / "data" / "metrics"
        assert len(list(metrics_dir.iterdir())) == 1  # this server's, made fresh at start

        def workers_counted() -> int:
            return len({p.name.rsplit("_", 1)[-1] for p in next(metrics_dir.iterdir()).iterdir()})

        served = 1
        for _ in range(50):  # new connections until both workers served some (the kernel picks)
            for _ in range(20):
                async with aiohttp.ClientSession() as s, s.get(origin + "/simple/demo-pkg/") as r:
                    assert r.status == 200
                served += 1
            await asyncio.sleep(1.2)  # each worker hands its counts over once a second
            if workers_counted() == 2:
                break
        assert workers_counted() == 2
        for _ in range(10):  # whichever worker answers, it reports both workers' requests
            async with aiohttp.ClientSession() as s, s.get(origin + "/metrics") as r:
                found = samples(await r.text())
            assert value(found, "tidegate_http_requests_total", route="/simple/{project}/", method="GET",
                         status="200") == served
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, out.decode()
    assert list(metrics_dir.iterdir()) == []  # removed at exit
