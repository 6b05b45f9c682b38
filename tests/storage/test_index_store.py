"""The index store contract, run against every implementation (see conftest.py): one
transaction per call, readers that never wait for a writer, and a cheap change signal."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from support.waiting import changes
from tidegate.storage.records import PublishedFile, Session, Upload


def session(token: str = "tok", status: str = "open") -> Session:
    return Session(token=token, project="demo-pkg", version="1.0", status=status, created_at=100.0, expires_at=200.0,
                   notices=("hello",))


def upload(upload_id: str = "up", token: str = "tok") -> Upload:
    return Upload(id=upload_id, token=token, filename="demo_pkg-1.0-py3-none-any.whl", status="pending", size=10,
                  hashes={"sha256": "a" * 64}, mechanism="http-post-bytes", created_at=100.0, expires_at=150.0,
                  sha256=None)


def published(filename: str = "demo_pkg-1.0-py3-none-any.whl", sha256: str = "a" * 64) -> PublishedFile:
    return PublishedFile(filename=filename, project="demo-pkg", version="1.0", sha256=sha256, hashes={"sha256": sha256},
                         size=10, upload_time="2024-01-02T03:04:05.000000Z", requires_python=">=3.8",
                         metadata_sha256="b" * 64)


async def test_rows_round_trip(new_index_store):
    index = await new_index_store()

    def fill(rows):
        rows.register("demo-pkg", 1.0)
        rows.insert_session(session())
        rows.insert_upload(upload())
        rows.insert_file(published(), session="tok")
        rows.put_metadata("b" * 64, b"Metadata-Version: 2.1\n")

    await index.write(fill)

    def check(rows):
        assert rows.is_registered("demo-pkg") and rows.local_projects() == {"demo-pkg"}
        assert rows.session("tok") == session()
        assert rows.uploads("tok") == [upload()] and rows.upload("up") == upload()
        assert rows.published(published().filename) == published()
        assert rows.files_of("demo-pkg") == [published()]
        assert rows.files_with_blob("a" * 64) == 1 and rows.uploads_with_blob("a" * 64) == []
        assert rows.metadata("b" * 64) == b"Metadata-Version: 2.1\n"
        assert rows.sessions_of("demo-pkg", "1.0") == [session()] and rows.sessions_of("demo-pkg", "2.0") == []
        assert rows.sessions_expired(201.0) == [session()] and rows.sessions_expired(199.0) == []
        assert rows.uploads_expired(151.0) == [upload()] and rows.uploads_in("pending") == [upload()]

    await index.read(check)


async def test_updates_and_deletes(new_index_store):
    index = await new_index_store()
    await index.write(lambda rows: (rows.insert_session(session()), rows.insert_upload(upload()),
                                    rows.insert_file(published(), session=None)))

    def change(rows):
        rows.update_session("tok", status="canceled", ended_at=300.0, notices=("bye",))
        rows.update_upload("up", status="canceled", sha256="c" * 64)
        assert rows.set_yanked(published().filename, "broken") and not rows.set_yanked("nope.whl", "x")

    await index.write(change)
    got = await index.read(lambda rows: (rows.session("tok"), rows.upload("up"), rows.published(published().filename)))
    assert (got[0].status, got[0].ended_at, got[0].notices) == ("canceled", 300.0, ("bye",))
    assert (got[1].status, got[1].sha256) == ("canceled", "c" * 64)
    assert got[2].yanked == "broken"
    assert await index.read(lambda rows: rows.sessions_ended_before(301.0)) == ["tok"]
    await index.write(lambda rows: rows.delete_session("tok"))
    assert await index.read(lambda rows: (rows.session("tok"), rows.uploads("tok"))) == (None, [])
    with pytest.raises(ValueError):
        await index.write(lambda rows: rows.update_session("tok", project="other"))  # not a changeable field


async def test_a_write_that_raises_changes_nothing(new_index_store):
    index = await new_index_store()

    def half(rows):
        rows.insert_session(session())
        raise RuntimeError("midway")

    with pytest.raises(RuntimeError):
        await index.write(half)
    assert await index.read(lambda rows: rows.session("tok")) is None


async def test_the_change_signal(new_index_store):
    index, other = await new_index_store(), await new_index_store()
    before = index.changed()
    await index.read(lambda rows: rows.session("tok"))
    await index.write(lambda rows: rows.session("tok"))  # a write that changes nothing
    assert index.changed() == before
    await other.write(lambda rows: rows.insert_session(session()))  # another worker (or host) commits
    assert await changes(index, before)
    assert await index.read(lambda rows: rows.session("tok")) == session()


async def test_readers_never_wait_for_a_writer(new_index_store):
    index = await new_index_store()
    await index.write(lambda rows: rows.insert_session(session()))
    inside, release = threading.Event(), threading.Event()

    def slow_write(rows):
        rows.update_session("tok", status="canceled")
        inside.set()
        release.wait(10)

    writing = asyncio.ensure_future(index.write(slow_write))
    await asyncio.to_thread(inside.wait, 10)
    try:
        # The writer holds its transaction: a reader sees the last committed state at once.
        seen = await asyncio.wait_for(index.read(lambda rows: rows.session("tok")), 2)
        assert seen.status == "open"
    finally:
        release.set()
        await writing
    assert (await index.read(lambda rows: rows.session("tok"))).status == "canceled"


async def test_reads_cannot_write(new_index_store):
    index = await new_index_store()
    with pytest.raises(Exception):
        await index.read(lambda rows: rows.insert_session(session()))
    assert await index.read(lambda rows: rows.session("tok")) is None


async def test_an_index_written_by_tidegate_0_1_opens_with_its_rows(tmp_path):
    """A data dir of the previous version: the same tables, no schema version yet."""
    from tidegate.storage.index import MIGRATIONS, SqliteIndex

    db = sqlite3.connect(tmp_path / "index.db")
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO sessions (token, project, version, status, created_at, expires_at) VALUES"
               " ('old', 'demo-pkg', '1.0', 'open', 1, 2)")
    db.commit()
    db.close()
    index = SqliteIndex(tmp_path / "index.db")
    try:
        old = await index.read(lambda rows: rows.session("old"))
        assert (old.token, old.status, old.notices) == ("old", "open", ())
    finally:
        await index.close()


async def test_imported_bundles_are_recorded(new_index_store):
    index = await new_index_store()
    assert not await index.read(lambda rows: rows.bundle_imported("b1"))
    await index.write(lambda rows: rows.record_bundle("b1", None, 1.0))
    await index.write(lambda rows: rows.record_bundle("b1", None, 2.0))  # again: no change, no error
    assert await index.read(lambda rows: rows.bundle_imported("b1"))


async def test_when_each_imported_local_project_was_read(new_index_store):
    index = await new_index_store()
    assert await index.read(lambda rows: rows.imported_as_of("acme-tool")) is None
    await index.write(lambda rows: rows.set_imported_as_of("acme-tool", 100.5))
    await index.write(lambda rows: rows.set_imported_as_of("acme-tool", 200.25))  # replaced, not added
    as_of = await index.read(lambda rows: (rows.imported_as_of("acme-tool"), rows.imported_as_of("other")))
    assert as_of == (200.25, None)
