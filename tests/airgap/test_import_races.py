"""An import and a concurrent local upload or publish of the same project lose neither: the
import holds the projects' and blobs' locks from its last checks until its rows are in.

The import is held (through the storage seam) between committing its blobs and storing its
pages, the window in which its local files' bytes are committed but no row refers to them yet;
the upload runs meanwhile, as a server's worker would run it."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from tidegate.airgap.imports import import_bundle
from tidegate.config import User, build
from tidegate.publish.errors import Invalid
from tidegate.publish.protocol import MECHANISM
from tidegate.publish.service import Publisher, Received, no_upstream
from tidegate.storage import open_storage

from .mirror import publish_locally, tidegate_cmd

TOOL = "acme_tool-1.0-py3-none-any.whl"
USER = User("ci", "secret", ("*",))


class HeldPages:
    """A page cache whose store_all() waits for `go` (after saying so on `entered`)."""

    def __init__(self, inner) -> None:
        self._inner, self.entered, self.go = inner, asyncio.Event(), asyncio.Event()

    async def store_all(self, records) -> None:
        self.entered.set()
        await self.go.wait()
        await self._inner.store_all(records)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@pytest.fixture
async def bundle(fake_index, dists, tidegate, tmp_path):
    """A bundle with a cached page (demo-lib) and a local project (acme-tool 1.0, a real wheel)."""
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-lib", "1.0"))
    tg = await tidegate(upstreams=[idx.url], data_dir=str(tmp_path / "source"))
    async with tg.get("/simple/demo-lib/") as r:
        assert r.status == 200
    from tidegate.web.keys import STORAGE

    data = dists.wheel("acme-tool", "1.0").read_bytes()
    assert await publish_locally(tg.app[STORAGE], "acme-tool", "1.0", data) == TOOL
    await tg.close()
    path = tmp_path / "b.tgb"
    code, out = await tidegate_cmd("export", "--data-dir", str(tmp_path / "source"), "--output", str(path))
    assert code == 0, out
    return path, data


@pytest.fixture
async def target(tmp_path):
    settings = build({"data_dir": str(tmp_path / "target"), "offline": True})
    storage = await open_storage(settings)
    storage.pages = HeldPages(storage.pages)
    publisher = Publisher(settings, storage.index, storage.local_blobs, no_upstream, locks=storage.locks)
    yield storage, publisher
    await publisher.close()
    await storage.close()


async def _chunks(data: bytes):
    yield data


async def _settled(*tasks: asyncio.Task) -> None:
    """Let the tasks run as far as they can (a task waiting for a lock polls, never ends)."""
    for _ in range(50):
        if all(t.done() for t in tasks):
            return
        await asyncio.sleep(0.02)


async def test_a_staged_copy_deleted_during_an_import_keeps_the_imported_bytes(bundle, target):
    path, data = bundle
    storage, publisher = target
    sha256 = hashlib.sha256(data).hexdigest()
    importing = asyncio.create_task(import_bundle(storage, publisher, path))
    await asyncio.wait_for(storage.pages.entered.wait(), 30)  # blobs committed, rows not yet in
    assert await storage.local_blobs.exists(sha256)

    async def stage_and_drop() -> None:
        # The same wheel staged for a release here, then dropped from the stage: its bytes are
        # removed unless something refers to them.
        view = await publisher.create_session(USER, "acme-tool", "1.0")
        token = view.session.token
        upload = await publisher.add_file(USER, token, {"filename": TOOL, "size": len(data),
                                                        "hashes": {"sha256": sha256}, "mechanism": MECHANISM})
        await publisher.receive_file(USER, token, upload.id, _chunks(data), len(data))
        await publisher.delete_file(USER, token, upload.id)

    staging = asyncio.create_task(stage_and_drop())
    await _settled(staging)
    storage.pages.go.set()
    done = await asyncio.wait_for(importing, 30)
    await asyncio.wait_for(staging, 30)
    assert done.files and not done.already
    published = await storage.index.read(lambda rows: rows.published(TOOL))
    assert published is not None and published.sha256 == sha256
    fh = await storage.local_blobs.open(sha256)
    assert fh is not None, "the imported file's bytes were removed"
    with fh:
        assert fh.read() == data


async def test_a_conflicting_upload_during_an_import_waits_and_is_refused_after_it(bundle, target, dists):
    path, data = bundle
    storage, publisher = target
    other = dists.wheel("acme-tool", "1.0", requires_dist=["demo-lib"]).read_bytes()  # same name, other bytes
    assert other != data
    importing = asyncio.create_task(import_bundle(storage, publisher, path))
    await asyncio.wait_for(storage.pages.entered.wait(), 30)

    async def legacy_upload() -> bool:
        sha256 = hashlib.sha256(other).hexdigest()
        temp = storage.local_blobs.temp_path("upload")
        temp.write_bytes(other)
        received = Received(temp, len(other), sha256, {"sha256": sha256})
        try:
            return await publisher.legacy_upload(USER, {"name": "acme-tool", "version": "1.0"}, received, TOOL)
        finally:
            temp.unlink(missing_ok=True)

    uploading = asyncio.create_task(legacy_upload())
    await _settled(uploading)
    storage.pages.go.set()
    done = await asyncio.wait_for(importing, 30)  # not refused half-way: it came first
    assert done.files and not done.already
    with pytest.raises(Invalid, match="already"):
        await asyncio.wait_for(uploading, 30)
    published = await storage.index.read(lambda rows: rows.published(TOOL))
    assert published is not None and published.sha256 == hashlib.sha256(data).hexdigest()
    assert await publisher.bundle_imported(done.bundle)
