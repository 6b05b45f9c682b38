"""The publishing service without HTTP: its rules, lifetimes and atomicity, on real storage.

A settable clock stands in for time, so expiry is exact and nothing waits; storage parts are
wrapped (through the seam, never by patching) where a test needs a failure at one point.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from support.dists import build_sdist, build_wheel
from tidegate.config import User, build
from tidegate.publish.errors import Conflict, Denied, Invalid, NotFound, Unavailable
from tidegate.publish.service import Publisher, no_upstream
from tidegate.publish.states import FileState, SessionState
from tidegate.storage import open_storage

ALICE = User("alice", "secret", ("demo-*", "first-*"))
MALLORY = User("mallory", "secret", ("other-*",))
LIFETIME = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Any]:
    settings = build({"data_dir": str(tmp_path / "data"), "upstreams": [], "session_lifetime": LIFETIME,
                      "session_retention": LIFETIME, "deferred_validation": "1GB"})
    opened = await open_storage(settings)
    opened.settings = settings
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_publisher(storage: Any, clock: Clock, *, index: Any = None, serves: Any = None) -> Publisher:
    async def nobody(name: str) -> None:
        return None

    return Publisher(storage.settings, index or storage.index, storage.local_blobs, serves or nobody, clock)


@pytest.fixture
def publisher(storage: Any, clock: Clock) -> Publisher:
    return make_publisher(storage, clock)


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    path = tmp_path / "dist"
    path.mkdir()
    return path


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 1000):
        yield data[i:i + 1000]


async def add(publisher: Publisher, token: str, path: Path, *, complete: bool = True) -> str:
    data = path.read_bytes()
    upload = await publisher.add_file(ALICE, token, {"filename": path.name, "size": len(data), "mechanism":
                                                     "http-post-bytes", "hashes": {"sha256": hashlib.sha256(data).hexdigest()}})
    await publisher.receive_file(ALICE, token, upload.id, chunks(data), len(data))
    if complete:
        await publisher.complete(ALICE, token, upload.id)
    return upload.id


async def published(storage: Any, project: str = "demo-pkg") -> list[str]:
    return [f.filename for f in await storage.index.read(lambda rows: rows.files_of(project))]


async def local_blobs(storage: Any) -> list[str]:
    return sorted(await storage.local_blobs.keys())


async def test_stage_then_publish_makes_every_file_visible_at_once(publisher, storage, dist):
    session = (await publisher.create_session(ALICE, "Demo.Pkg", "1.0")).session
    assert session.project == "demo-pkg" and session.status == SessionState.OPEN
    await add(publisher, session.token, build_wheel(dist, "demo-pkg", "1.0"))
    await add(publisher, session.token, build_sdist(dist, "demo-pkg", "1.0"))
    assert await published(storage) == []
    view = await publisher.publish(ALICE, session.token)
    assert view.session.status == SessionState.PUBLISHED
    assert sorted(await published(storage)) == ["demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"]


async def test_rights_are_checked_on_every_call(publisher, dist):
    with pytest.raises(Denied):
        await publisher.create_session(MALLORY, "demo-pkg", "1.0")
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    for call in (publisher.session(MALLORY, session.token), publisher.cancel(MALLORY, session.token),
                 publisher.publish(MALLORY, session.token)):
        with pytest.raises(Denied):
            await call


async def test_one_live_session_per_release_points_at_it(publisher):
    first = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    with pytest.raises(Conflict) as info:
        await publisher.create_session(ALICE, "demo_pkg", "1.0")
    assert info.value.location == first.token
    await publisher.create_session(ALICE, "demo-pkg", "2.0")  # another release is fine


async def test_a_publish_that_fails_midway_publishes_nothing(storage, clock, dist):
    """An error between inserting the release's files (a power cut, say) leaves none published
    and the session open: publishing is one transaction."""
    failing = FailOnSecondInsert(storage.index)
    publisher = make_publisher(storage, clock, index=failing)
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    await add(publisher, session.token, build_wheel(dist, "demo-pkg", "1.0"))
    await add(publisher, session.token, build_sdist(dist, "demo-pkg", "1.0"))
    failing.armed = True
    with pytest.raises(OSError, match="power cut"):
        await publisher.publish(ALICE, session.token)
    assert await published(storage) == []
    assert (await publisher.session(ALICE, session.token)).session.status == SessionState.OPEN
    failing.armed = False
    await publisher.publish(ALICE, session.token)
    assert len(await published(storage)) == 2


class FailOnSecondInsert:
    """An index store whose rows fail on the second published file of one transaction."""

    def __init__(self, inner: Any) -> None:
        self._inner, self.armed = inner, False

    async def write(self, fn: Any) -> Any:
        armed = self.armed

        def run(rows: Any) -> Any:
            inserted = []
            real = rows.insert_file

            def insert_file(f: Any, **kw: Any) -> None:
                inserted.append(f.filename)
                if armed and len(inserted) == 2:
                    raise OSError("power cut")
                real(f, **kw)

            rows.insert_file = insert_file
            return fn(rows)

        return await self._inner.write(run)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_session_past_expires_at_is_expired_at_once(publisher, clock, storage, dist):
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    await add(publisher, session.token, build_wheel(dist, "demo-pkg", "1.0"))
    assert await local_blobs(storage)
    clock.now += LIFETIME + 1  # no sweep has run: the next request expires it
    with pytest.raises(NotFound, match="canceled"):
        await publisher.publish(ALICE, session.token)
    view = await publisher.session(ALICE, session.token, allow_ended=True)
    assert view.session.status == SessionState.CANCELED and view.session.notices == ("The session expired.",)
    assert {u.status for u in view.uploads} == {FileState.CANCELED}
    assert await local_blobs(storage) == []  # its bytes went with it
    assert await published(storage) == []
    log = await storage.index.read(lambda rows: rows.audit_since(0))
    assert [(e.actor, e.action, e.subject) for e in log][-1] == ("tidegate", "expire", "demo-pkg 1.0")


async def test_an_expired_pending_upload_is_canceled_and_its_bytes_removed(publisher, clock, storage, dist):
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    await publisher.extend(ALICE, session.token, 10 * LIFETIME)  # the session outlives the upload
    upload_id = await add(publisher, session.token, build_wheel(dist, "demo-pkg", "1.0"), complete=False)
    assert await local_blobs(storage)
    clock.now += LIFETIME + 1
    await publisher.expire_now()
    assert (await publisher.upload(ALICE, session.token, upload_id)).status == FileState.CANCELED
    assert (await publisher.session(ALICE, session.token)).session.status == SessionState.OPEN
    assert await local_blobs(storage) == []


async def test_ended_sessions_are_forgotten_after_the_retention_period(publisher, clock):
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    await publisher.cancel(ALICE, session.token)
    clock.now += LIFETIME - 1
    await publisher.expire_now()
    assert (await publisher.session(ALICE, session.token, allow_ended=True)).session.status == SessionState.CANCELED
    clock.now += 2
    await publisher.expire_now()
    with pytest.raises(NotFound):
        await publisher.session(ALICE, session.token, allow_ended=True)


async def test_extension_is_capped_at_the_maximum_lifetime(publisher, storage):
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    view = await publisher.extend(ALICE, session.token, 10**9)
    assert view.session.expires_at == session.created_at + storage.settings.session_max_lifetime


async def test_canceling_a_first_release_frees_its_name(publisher, storage):
    session = (await publisher.create_session(ALICE, "first-thing", "1.0")).session
    assert await storage.index.read(lambda rows: rows.is_registered("first-thing"))
    await publisher.cancel(ALICE, session.token)
    assert not await storage.index.read(lambda rows: rows.is_registered("first-thing"))


async def test_a_delete_that_wins_the_race_with_a_deferred_completion(storage, clock, dist):
    """A DELETE committed between completion's checks and its state change: the completion is
    refused with 409, nothing is left processing."""
    storage.settings = dataclasses.replace(storage.settings, deferred_validation=1)
    racing = RunFirst(storage.index)
    publisher = make_publisher(storage, clock, index=racing)
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    upload_id = await add(publisher, session.token, build_wheel(dist, "demo-pkg", "1.0"), complete=False)
    racing.before_next_write = publisher.delete_file(ALICE, session.token, upload_id)
    with pytest.raises(Conflict):
        await publisher.complete(ALICE, session.token, upload_id)
    assert (await publisher.upload(ALICE, session.token, upload_id)).status == FileState.CANCELED


class RunFirst:
    """An index store that runs a given coroutine just before its next write."""

    def __init__(self, inner: Any) -> None:
        self._inner, self.before_next_write = inner, None

    async def write(self, fn: Any) -> Any:
        pending, self.before_next_write = self.before_next_write, None
        if pending is not None:
            await pending
        return await self._inner.write(fn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_bytes_arriving_for_a_canceled_upload_leave_no_blob(publisher, storage, dist):
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    wheel = build_wheel(dist, "demo-pkg", "1.0")
    data = wheel.read_bytes()
    upload = await publisher.add_file(ALICE, session.token, {"filename": wheel.name, "size": len(data), "mechanism":
                                                             "http-post-bytes", "hashes": {"sha256": hashlib.sha256(data).hexdigest()}})

    async def canceled_midway() -> AsyncIterator[bytes]:
        yield data[:1000]
        await publisher.delete_file(ALICE, session.token, upload.id)
        yield data[1000:]

    with pytest.raises(Conflict):
        await publisher.receive_file(ALICE, session.token, upload.id, canceled_midway(), len(data))
    assert await local_blobs(storage) == []


async def test_wrong_bytes_are_refused_and_not_kept(publisher, storage, dist):
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    wheel = build_wheel(dist, "demo-pkg", "1.0")
    data = wheel.read_bytes()
    upload = await publisher.add_file(ALICE, session.token, {"filename": wheel.name, "size": len(data), "mechanism":
                                                             "http-post-bytes", "hashes": {"sha256": "0" * 64}})
    with pytest.raises(Invalid, match="sha256"):
        await publisher.receive_file(ALICE, session.token, upload.id, chunks(data), len(data))
    assert await local_blobs(storage) == []
    assert not list((storage.settings.data_dir / "local" / "tmp").iterdir())


async def test_restart_during_validation_fails_the_file(publisher, storage, dist):
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    upload_id = await add(publisher, session.token, build_wheel(dist, "demo-pkg", "1.0"), complete=False)
    await storage.index.write(lambda rows: rows.update_upload(upload_id, status=FileState.PROCESSING))
    await publisher.recover()
    upload = await publisher.upload(ALICE, session.token, upload_id)
    assert upload.status == FileState.ERROR and "restarted" in upload.notices[-1]


async def test_restart_leaves_a_validation_another_instance_runs(storage, clock, dist):
    """On a shared index another instance may be validating a file when this one starts: the
    lock its validation holds keeps recover() from failing it."""
    from tidegate.publish.service import VALIDATING

    publisher = Publisher(storage.settings, storage.index, storage.local_blobs, no_upstream, clock,
                          locks=storage.locks)
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    upload_id = await add(publisher, session.token, build_wheel(dist, "demo-pkg", "1.0"), complete=False)
    await storage.index.write(lambda rows: rows.update_upload(upload_id, status=FileState.PROCESSING))
    running = await storage.locks.try_acquire(VALIDATING + upload_id)  # as the other instance would hold it
    await publisher.recover()
    assert (await publisher.upload(ALICE, session.token, upload_id)).status == FileState.PROCESSING
    await running.release()  # that instance died, say
    await publisher.recover()
    upload = await publisher.upload(ALICE, session.token, upload_id)
    assert upload.status == FileState.ERROR and "restarted" in upload.notices[-1]


async def test_a_name_an_upstream_serves_is_not_registered(storage, clock):
    async def pypi_has_it(name: str) -> str:
        return "pypi.org/simple"

    async def pypi_is_down(name: str) -> None:
        raise Unavailable("Cannot check whether it exists upstream; try again later.", source="name")

    with pytest.raises(Denied, match="shadow"):
        await make_publisher(storage, clock, serves=pypi_has_it).create_session(ALICE, "demo-pkg", "1.0")
    with pytest.raises(Unavailable):
        await make_publisher(storage, clock, serves=pypi_is_down).create_session(ALICE, "demo-pkg", "1.0")
    assert not await storage.index.read(lambda rows: rows.is_registered("demo-pkg"))


async def test_legacy_reupload_of_the_same_file_changes_nothing(publisher, storage, dist):
    wheel = build_wheel(dist, "demo-pkg", "1.0")
    fields = {"name": "demo-pkg", "version": "1.0"}
    for expected in (True, False):
        received = await publisher.receive(chunks(wheel.read_bytes()), algorithms={"md5", "blake2_256"}, limit=1 << 30)
        try:
            assert await publisher.legacy_upload(ALICE, fields, received, wheel.name) is expected
        finally:
            publisher.discard(received)
    assert await published(storage) == [wheel.name]


async def test_yank_and_unyank(publisher, storage, dist):
    wheel = build_wheel(dist, "demo-pkg", "1.0")
    received = await publisher.receive(chunks(wheel.read_bytes()), algorithms=set(), limit=1 << 30)
    await publisher.legacy_upload(ALICE, {"name": "demo-pkg", "version": "1.0"}, received, wheel.name)
    assert (await publisher.yank(ALICE, wheel.name, "broken")).yanked == "broken"
    assert (await storage.index.read(lambda rows: rows.published(wheel.name))).yanked == "broken"
    assert (await publisher.yank(ALICE, wheel.name, None)).yanked is None
    assert (await storage.index.read(lambda rows: rows.published(wheel.name))).yanked is None
    with pytest.raises(NotFound):
        await publisher.yank(ALICE, "nope-1.0.tar.gz", "x")
    with pytest.raises(Denied):
        await publisher.yank(User("bob", "pw", ("other-*",)), wheel.name, "x")
    log = await storage.index.read(lambda rows: rows.audit_since(0))
    assert [(e.actor, e.action, e.subject) for e in log] == [
        ("alice", "upload", wheel.name), ("alice", "yank", wheel.name), ("alice", "unyank", wheel.name)]
    assert log[1].detail == {"reason": "broken"}


async def test_concurrent_session_creation_makes_one(publisher):
    results = await asyncio.gather(*(publisher.create_session(ALICE, "demo-pkg", "1.0") for _ in range(5)),
                                   return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception))


async def test_delete_and_yank_a_release_and_a_deleted_name_keeps_its_bytes(publisher, storage, dist):
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    wheel, sdist = build_wheel(dist, "demo-pkg", "1.0"), build_sdist(dist, "demo-pkg", "1.0")
    await add(publisher, session.token, wheel)
    await add(publisher, session.token, sdist)
    await publisher.publish(ALICE, session.token)
    yanked = await publisher.yank_release(ALICE, "Demo_Pkg", "1.0", "bad")
    assert sorted(f.filename for f in yanked) == sorted([wheel.name, sdist.name]) and {f.yanked for f in yanked} == {"bad"}
    with pytest.raises(Denied):
        await publisher.delete_release(MALLORY, "demo-pkg", "1.0")
    with pytest.raises(NotFound):
        await publisher.delete_release(ALICE, "demo-pkg", "9.9")
    deleted = await publisher.delete_release(ALICE, "demo-pkg", "1.0")
    assert len(deleted) == 2 and await published(storage) == [] and await local_blobs(storage) == []

    # Other bytes under the deleted wheel's name: refused when the file is declared with its
    # sha256, and at publish when it was declared without one.
    other = build_wheel(dist / "other", "demo-pkg", "1.0", module_code="x = 2\n")
    data = other.read_bytes()
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    request = {"filename": other.name, "size": len(data), "mechanism": "http-post-bytes"}
    with pytest.raises(Conflict, match="was deleted from this index"):
        await publisher.add_file(ALICE, session.token, {**request, "hashes": {"sha256": hashlib.sha256(data).hexdigest()}})
    upload = await publisher.add_file(ALICE, session.token, {**request, "hashes": {"sha512": hashlib.sha512(data).hexdigest()}})
    await publisher.receive_file(ALICE, session.token, upload.id, chunks(data), len(data))
    await publisher.complete(ALICE, session.token, upload.id)
    with pytest.raises(Conflict, match="was deleted from this index"):
        await publisher.publish(ALICE, session.token)
    await publisher.cancel(ALICE, session.token)
    # The very same bytes may come back.
    session = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    await add(publisher, session.token, wheel)
    await publisher.publish(ALICE, session.token)
    assert await published(storage) == [wheel.name]


async def test_open_sessions_are_those_the_caller_may_upload(publisher, clock):
    mine = (await publisher.create_session(ALICE, "demo-pkg", "1.0")).session
    ended = (await publisher.create_session(ALICE, "demo-pkg", "2.0")).session
    await publisher.cancel(ALICE, ended.token)
    assert [v.session.token for v in await publisher.open_sessions(ALICE)] == [mine.token]
    assert await publisher.open_sessions(MALLORY) == []
    clock.now += LIFETIME + 1
    assert await publisher.open_sessions(ALICE) == []  # expired, even before the sweep
