"""`tidegate serve` with database_url, as an operator runs it: two instances (each its own data
dir and workers) on one PostgreSQL database. A release uploaded with twine through one and
staged with a PEP 694 session through the other is installed by pip through either; `tidegate
yank` on the database is seen by both; `tidegate migrate` is idempotent; a stopped PostgreSQL
makes /ready say why, and service resumes when it is back, without restarting tidegate."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

import aiohttp

from support.dists import build_wheel
from support.processes import free_port, run, start_serve
from support.uploadapi import META, UPLOAD, basic

CONFIG = '[[users]]\nname = "rm"\npassword = "pw"\nupload = ["acme-*"]\n'
JSON = "application/vnd.pypi.simple.v1+json"
PASSWORD = "pw-never-printed"


async def page(origin: str, project: str) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin}/simple/{project}/", headers={"Accept": JSON}) as r:
            assert r.status == 200, await r.text()
            return json.loads(await r.read())


async def ready(origin: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin}/ready") as r:
            return r.status, await r.text()


async def ready_becomes(origin: str, status: int) -> str:
    for _ in range(150):
        got, text = await ready(origin)
        if got == status:
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"/ready stayed {got}: {text}")


async def test_two_instances_on_one_database(postgres, database_url, fake_index, installer_env, tmp_path):
    upstream = await fake_index("json")
    config = tmp_path / "tidegate.toml"
    config.write_text(CONFIG)
    # Trust authentication ignores the password: it is there to be looked for in every output.
    database_url = database_url.replace("postgres@", f"postgres:{PASSWORD}@")
    env = {**installer_env, "TIDEGATE_CONFIG": str(config), "TIDEGATE_DATABASE_URL": database_url}
    tidegate = [sys.executable, "-m", "tidegate"]
    _, out, _ = await run(tidegate + ["migrate"], env)  # before any server: applies the schema
    assert "applied migration 1:" in out and "schema up to date" in out and "postgres@" in out
    assert PASSWORD not in out
    ports = [free_port(), free_port()]
    origins = [f"http://127.0.0.1:{port}" for port in ports]
    procs = [await start_serve(tmp_path / f"data-{i}", port, "--upstream", upstream.url,
                               TIDEGATE_CONFIG=str(config), TIDEGATE_DATABASE_URL=database_url)
             for i, port in enumerate(ports)]
    try:
        _, out, _ = await run(tidegate + ["migrate"], env)  # while serving: nothing to do
        assert "0 migration(s) applied" in out and "applied migration" not in out
        # The local blobs stay on each host here (shared blobs are the S3 store's part), so every
        # upload and install of a file goes through one instance; the index is what is shared.
        dist = tmp_path / "dist"
        wheel = build_wheel(dist, "acme-core", "1.0")
        await run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                   "--repository-url", f"{origins[0]}/legacy/", "-u", "rm", "-p", "pw", str(wheel)], env)
        # Published through the first instance: on the second's very next page.
        assert [f["filename"] for f in (await page(origins[1], "acme-core"))["files"]] == [wheel.name]
        pip = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target"]
        await run(pip + [str(tmp_path / "pip-1"), "--index-url", f"{origins[0]}/simple/", "acme-core==1.0"], env)

        # A PEP 694 session through the second instance: staged, then published.
        newer = build_wheel(dist, "acme-core", "2.0")
        uploader = {**env, "TIDEGATE_USERNAME": "rm", "TIDEGATE_PASSWORD": "pw"}
        _, out, _ = await run(tidegate + ["upload", "--stage", "--repository", origins[1], str(newer)], uploader)
        session = re.search(r"(http://\S+/upload/session/\S+)", out).group(1)
        assert [f["filename"] for f in (await page(origins[0], "acme-core"))["files"]] == [wheel.name]  # staged only
        await run(tidegate + ["session", "publish", session], uploader)
        assert {f["filename"] for f in (await page(origins[0], "acme-core"))["files"]} == {wheel.name, newer.name}
        await run(pip + [str(tmp_path / "pip-2"), "--index-url", f"{origins[1]}/simple/", "acme-core"], env)
        assert (tmp_path / "pip-2" / "acme_core-2.0.dist-info").is_dir()

        # `tidegate yank` on the database (no server asked): both instances show it at once.
        _, out, _ = await run(tidegate + ["yank", newer.name, "--reason", "broken", "--data-dir",
                                          str(tmp_path / "data-1")], env)
        assert "yanked" in out
        for origin in origins:
            files = {f["filename"]: f for f in (await page(origin, "acme-core"))["files"]}
            assert files[newer.name]["yanked"] == "broken" and files[wheel.name].get("yanked", False) is False
        _, out, _ = await run(tidegate + ["audit", "--json"], env)
        actions = [json.loads(line)["action"] for line in out.splitlines()]
        assert "yank" in actions and "publish" in actions, actions

        # PostgreSQL stopped: /ready says why; requests that need it are 503 with the reason.
        postgres.stop()
        try:
            for origin in origins:
                assert (await ready_becomes(origin, 503)).startswith("not ready: PostgreSQL is unavailable: ")
            async with aiohttp.ClientSession() as client:
                async with client.get(f"{origins[0]}/simple/acme-core/", headers={"Accept": JSON}) as r:
                    # A worker that rendered the page may still serve it from memory; else a 503.
                    assert r.status in (200, 503)
                    if r.status == 503:
                        assert "PostgreSQL is unavailable" in await r.text() and r.headers["Retry-After"]
                # Opening a publishing session needs the database: 503 with the reason, never a 500.
                body = json.dumps({"meta": META, "name": "acme-core", "version": "4.0"}).encode()
                async with client.post(f"{origins[0]}/upload/", data=body,
                                       headers={**basic("rm", "pw"), "Content-Type": UPLOAD}) as r:
                    assert r.status == 503 and "PostgreSQL is unavailable" in await r.text()
        finally:
            postgres.start()
        for origin in origins:
            assert await ready_becomes(origin, 200) == "ready\n"
        assert {f["filename"] for f in (await page(origins[1], "acme-core"))["files"]} == {wheel.name, newer.name}
        # The backup copies the data dir's files and says the database is pg_dump's to back up.
        code, out, err = await run(tidegate + ["backup", str(tmp_path / "backup"), "--data-dir",
                                               str(tmp_path / "data-0")], env)
        assert code == 0 and "pg_dump" in err and PASSWORD not in out + err
        assert (tmp_path / "backup" / "local" / "files").is_dir()
        third = build_wheel(dist, "acme-core", "3.0")
        await run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                   "--repository-url", f"{origins[1]}/legacy/", "-u", "rm", "-p", "pw", str(third)], env)
        assert third.name in {f["filename"] for f in (await page(origins[0], "acme-core"))["files"]}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            assert "Traceback" not in out.decode() and PASSWORD not in out.decode(), out.decode()


async def test_started_while_postgresql_is_down_it_answers_503_and_serves_once_it_is_back(
        postgres, database_url, fake_index, dists, tmp_path):
    """`tidegate serve` started with its (fresh, unmigrated) database unreachable: it does not
    exit; /health is 200, /ready and a page are 503 with the reason; once PostgreSQL is started,
    the same workers migrate the database and serve the page, with no restart."""
    upstream = await fake_index("json")
    wheel = dists.wheel("late-lib", "1.0")
    upstream.index.add(wheel)
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    postgres.stop()
    proc = None
    try:
        proc = await start_serve(tmp_path / "data", port, "--upstream", upstream.url, workers=2,
                                 TIDEGATE_DATABASE_URL=database_url)  # waits for /health: 200
        status, text = await ready(origin)
        assert status == 503 and text.startswith("not ready: PostgreSQL is unavailable: "), text
        async with aiohttp.ClientSession() as client:
            for _ in range(4):  # both workers
                async with client.get(f"{origin}/simple/late-lib/", headers={"Accept": JSON}) as r:
                    assert r.status == 503 and r.headers["Retry-After"]
                    assert "PostgreSQL is unavailable" in await r.text()
        assert upstream.index.requests["/simple/late-lib/"] == 0
    finally:
        postgres.start()
    try:
        assert await ready_becomes(origin, 200) == "ready\n"
        # Each worker tries its database again at most once a second: within a few, both serve.
        served, deadline = 0, time.monotonic() + 10
        async with aiohttp.ClientSession() as client:
            while served < 6:
                assert time.monotonic() < deadline, "still 503 ten seconds after PostgreSQL came back"
                async with client.get(f"{origin}/simple/late-lib/", headers={"Accept": JSON}) as r:
                    if r.status == 503:
                        served = 0
                        await asyncio.sleep(0.1)
                        continue
                    assert r.status == 200, await r.text()
                    assert [f["filename"] for f in json.loads(await r.read())["files"]] == [wheel.name]
                    served += 1
    finally:
        proc.terminate()
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    out = out.decode()
    assert "Traceback" not in out, out
    assert "start-up repairs of the shared state skipped: PostgreSQL is unavailable" in out, out
