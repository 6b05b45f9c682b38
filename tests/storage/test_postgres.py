"""What only the PostgreSQL engine promises: instances on several hosts (here: several engines
in one process) see each other's changes, serialize their writes, migrate once together, and
ride out a server that stops and comes back."""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest

from support.waiting import changes
from test_index_store import session
from tidegate.config import build
from tidegate.storage import EngineUnavailable, open_storage
from tidegate.storage.postgres import migrate_database
from tidegate.storage.postgres.schema import MIGRATIONS


async def two_hosts(database_url, tmp_path):
    """Two instances' storage on one database, each with a data dir of its own."""
    return [await open_storage(build({"data_dir": str(tmp_path / f"host-{i}"), "database_url": database_url}))
            for i in range(2)]


async def back(storage) -> None:
    """Wait until the storage's readiness probe passes again (calls fail fast for a moment
    after the server was lost)."""
    for _ in range(100):
        if await storage.problem() is None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(await storage.problem())


async def test_a_write_through_one_instance_is_seen_by_the_other(database_url, tmp_path):
    a, b = await two_hosts(database_url, tmp_path)
    try:
        before = b.index.changed()
        await a.index.write(lambda rows: rows.insert_session(session()))
        assert await changes(b.index, before, within=2.0)  # NOTIFY, delivered on commit
        assert await b.index.read(lambda rows: rows.session("tok")) == session()
        seen = b.pages.changed()
        await a.pages.mark_changed()
        assert await changes(b.pages, seen, within=2.0)
    finally:
        for s in (a, b):
            await s.close()


async def test_checks_and_changes_of_two_instances_cannot_interleave(database_url, tmp_path):
    """Two instances open a session for the same release at once, each checking that none is
    open first (no constraint in the table would stop a second): exactly one wins."""
    a, b = await two_hosts(database_url, tmp_path)
    both_checked = threading.Barrier(2, timeout=1)

    def open_one(token):
        def fn(rows):
            taken = bool(rows.sessions_of("demo-pkg", "1.0"))
            try:
                both_checked.wait()  # without serialized writers both would pass here, having checked
            except threading.BrokenBarrierError:
                pass  # the other waits for our lock: it checks after our commit
            if taken:
                return False
            rows.insert_session(session(token))
            return True
        return fn

    try:
        won = await asyncio.gather(a.index.write(open_one("tok-a")), b.index.write(open_one("tok-b")))
        assert sorted(won) == [False, True]
        assert len(await a.index.read(lambda rows: rows.sessions_of("demo-pkg", "1.0"))) == 1
    finally:
        for s in (a, b):
            await s.close()


def test_migrations_from_empty_are_applied_once_even_by_instances_starting_together(database_url):
    results: list[list[str]] = []

    def migrate():
        results.append(migrate_database(database_url))

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    applied = [line for result in results for line in result]
    assert len(results) == 3 and len(applied) == len(MIGRATIONS)  # each once, by whoever came first
    assert migrate_database(database_url) == []  # idempotent
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == len(MIGRATIONS)


async def test_the_audit_log_is_append_only(database_url, tmp_path):
    from tidegate.storage.records import AuditEntry

    storage = await open_storage(build({"data_dir": str(tmp_path / "d"), "database_url": database_url}))
    try:
        await storage.index.write(lambda rows: rows.append_audit(AuditEntry(at=1.0, actor="a", address="local",
                                                                            action="upload", subject="x")))
    finally:
        await storage.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in ("UPDATE audit SET actor = 'b'", "DELETE FROM audit", "TRUNCATE audit"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT actor FROM audit").fetchall() == [("a",)]


async def test_a_stopped_server_is_unavailable_then_works_again_without_reopening(postgres, database_url, tmp_path):
    storage = await open_storage(build({"data_dir": str(tmp_path / "d"), "database_url": database_url}))
    try:
        await storage.index.write(lambda rows: rows.insert_session(session()))
        lease = await storage.locks.try_acquire("page:demo")
        assert lease is not None and await storage.problem() is None
        postgres.stop()
        try:
            for call in (storage.index.read(lambda rows: rows.session("tok")),
                         storage.index.write(lambda rows: rows.insert_session(session("tok-2"))),
                         storage.pages.load("demo"), storage.locks.try_acquire("page:other")):
                with pytest.raises(EngineUnavailable) as exc:
                    await call
                assert exc.value.engine == "PostgreSQL"
            assert (await storage.problem()).startswith("PostgreSQL is unavailable: ")
            await lease.release()  # its connection is gone, and the lock with it: no error
        finally:
            postgres.start()
        # The same storage, not reopened: the pool and the lock connection reconnect.
        await back(storage)
        assert await storage.index.read(lambda rows: rows.session("tok")) == session()
        assert await storage.index.read(lambda rows: rows.session("tok-2")) is None  # never half done
        await storage.index.write(lambda rows: rows.insert_session(session("tok-3")))
        again = await storage.locks.try_acquire("page:demo")  # released with the old connection
        assert again is not None
        await again.release()
        assert await storage.problem() is None
    finally:
        await storage.close()


async def test_a_write_cut_by_a_restart_changes_nothing(postgres, database_url, tmp_path):
    storage = await open_storage(build({"data_dir": str(tmp_path / "d"), "database_url": database_url}))
    inside = threading.Event()

    def slow(rows):
        rows.insert_session(session("cut"))
        inside.set()
        time.sleep(1.0)  # the server stops meanwhile: the commit below cannot happen
        rows.insert_session(session("cut-2"))

    try:
        writing = asyncio.ensure_future(storage.index.write(slow))
        await asyncio.to_thread(inside.wait, 10)
        await asyncio.to_thread(postgres.stop)
        postgres.start()
        with pytest.raises(EngineUnavailable):
            await writing
        await back(storage)
        assert await storage.index.read(lambda rows: (rows.session("cut"), rows.session("cut-2"))) == (None, None)
    finally:
        await storage.close()


async def test_locks_of_host_local_state_stay_per_host(database_url, tmp_path):
    """Pages are shared, so one instance refreshes a page for all; a download into this host's
    own disk is this host's alone (another host could not read the blob it waits for)."""
    a, b = await two_hosts(database_url, tmp_path)
    try:
        page = await a.locks.try_acquire("page:demo")
        assert page is not None and await b.locks.try_acquire("page:demo") is None
        download = await a.locks.try_acquire("download:" + "a" * 64)
        other_host = await b.locks.try_acquire("download:" + "a" * 64)
        assert download is not None and other_host is not None
        assert await a.locks.try_acquire("download:" + "a" * 64) is None  # still one per host
        for lease in (page, download, other_host):
            await lease.release()
        assert await b.locks.try_acquire("page:demo") is not None
    finally:
        for s in (a, b):
            await s.close()


def test_a_schema_newer_than_this_tidegate_is_refused(database_url):
    from tidegate.storage.postgres.schema import NewerSchema

    migrate_database(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version, what) VALUES (%s, 'from the future')", (len(MIGRATIONS) + 1,))
    with pytest.raises(NewerSchema, match="newer than this tidegate knows"):
        migrate_database(database_url)
