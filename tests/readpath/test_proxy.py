"""The read path without HTTP: which source answers for a name, for pages and files alike."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from tidegate.config import build
from tidegate.publish.states import FileState
from tidegate.readpath.answers import BlobAnswer, CacheResult, FileQuery, PageQuery, Part, StreamAnswer
from tidegate.readpath.errors import NotCached, NotFound
from tidegate.readpath.local import LocalSource, StageSource
from tidegate.readpath.proxy import Proxy
from tidegate.readpath.upstream import UpstreamSource
from tidegate.simple.negotiate import Representation
from tidegate.storage import open_storage
from tidegate.storage.records import PublishedFile, Session, Upload
from tidegate.upstream.client import UpstreamClient

UPSTREAM_WHEEL = "demo_pkg-1.0-py3-none-any.whl"
LOCAL_WHEEL = "demo_pkg-9.0-py3-none-any.whl"


@pytest.fixture
async def upstream(fake_index, dists):
    idx = await fake_index("negotiate")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    idx.index.add(dists.wheel("other-pkg", "1.0"))
    return idx


@pytest.fixture
async def parts(tmp_path: Path, upstream) -> AsyncIterator[Any]:
    """(settings, storage, local source, upstream source, proxy) over real storage."""
    settings = build({"data_dir": str(tmp_path / "data"), "upstreams": [upstream.url]})
    storage = await open_storage(settings)
    session = aiohttp.ClientSession()
    local = LocalSource(storage.index, storage.local_blobs)
    remote = UpstreamSource(settings, storage, [UpstreamClient(u, session, settings.max_page_size)
                                                for u in settings.upstreams])
    yield settings, storage, local, remote, Proxy([local, remote])
    await remote.close()
    await session.close()
    await storage.close()


async def publish_locally(storage: Any, filename: str = LOCAL_WHEEL, data: bytes = b"local bytes") -> None:
    sha256 = hashlib.sha256(data).hexdigest()
    temp = storage.local_blobs.temp_path(sha256)
    temp.write_bytes(data)
    await storage.local_blobs.commit(temp, sha256)
    await storage.index.write(lambda rows: rows.insert_file(PublishedFile(
        filename=filename, project="demo-pkg", version="9.0", sha256=sha256, hashes={"sha256": sha256},
        size=len(data), upload_time="2024-01-01T00:00:00.000000Z"), session=None))


def filenames(answer: Any) -> list[str]:
    return [f.filename for f in answer.page.record.served.files]


async def test_an_upstream_project_is_answered_by_the_upstream(parts, upstream):
    *_, proxy = parts
    answer = await proxy.answer(PageQuery("demo-pkg"))
    assert answer.how is CacheResult.MISS and filenames(answer) == [UPSTREAM_WHEEL]
    assert (await proxy.answer(PageQuery("demo-pkg"))).how is CacheResult.HIT
    file = await proxy.answer(FileQuery("demo-pkg", UPSTREAM_WHEEL))
    assert isinstance(file, (StreamAnswer, BlobAnswer))


async def test_a_local_project_shadows_the_upstream_for_pages_and_files(parts, upstream):
    _, storage, *_, proxy = parts
    await publish_locally(storage)
    answer = await proxy.answer(PageQuery("demo-pkg"))
    assert answer.how is CacheResult.LOCAL and filenames(answer) == [LOCAL_WHEEL]
    with pytest.raises(NotFound):  # the public file of the same project is never served
        await proxy.answer(FileQuery("demo-pkg", UPSTREAM_WHEEL))
    local_file = await proxy.answer(FileQuery("demo-pkg", LOCAL_WHEEL))
    with local_file.file:
        assert local_file.file.read() == b"local bytes"
    assert upstream.index.requests["/simple/demo-pkg/"] == 0  # the upstream was never asked
    assert filenames(await proxy.answer(PageQuery("other-pkg"))) == ["other_pkg-1.0-py3-none-any.whl"]


async def test_a_local_page_follows_changes_made_by_any_worker(parts):
    _, storage, local, *_ = parts
    assert await local.page("demo-pkg") is None
    await publish_locally(storage)
    assert filenames(await local.page("demo-pkg")) == [LOCAL_WHEEL]
    await publish_locally(storage, "demo_pkg-9.0.tar.gz", b"sdist")
    assert filenames(await local.page("demo-pkg")) == [LOCAL_WHEEL, "demo_pkg-9.0.tar.gz"]


async def test_an_unknown_project_is_not_found(parts):
    *_, proxy = parts
    with pytest.raises(NotFound, match="not found locally or on any upstream"):
        await proxy.answer(PageQuery("no-such-project"))


async def test_a_stage_overlays_its_session_on_one_project(parts, upstream):
    _, storage, local, _, proxy = parts
    await publish_locally(storage)
    data = b"staged bytes"
    sha256 = hashlib.sha256(data).hexdigest()
    temp = storage.local_blobs.temp_path(sha256)
    temp.write_bytes(data)
    await storage.local_blobs.commit(temp, sha256)
    session = Session(token="tok", project="demo-pkg", version="10.0", status="open", created_at=0.0, expires_at=1e12)
    common = {"token": "tok", "mechanism": "http-post-bytes", "created_at": 0.0, "expires_at": 1e12}
    staged = Upload(id="up", filename="demo_pkg-10.0-py3-none-any.whl", status=FileState.COMPLETED, size=len(data),
                    hashes={"sha256": sha256}, sha256=sha256, **common)
    pending = Upload(id="up2", filename="demo_pkg-10.0.tar.gz", status=FileState.PENDING, size=1,
                     hashes={"sha256": "0" * 64}, sha256=None, **common)
    stage = proxy.overlaid(StageSource(local, session, [staged, pending]))
    answer = await stage.answer(PageQuery("demo-pkg"))
    assert answer.how is CacheResult.STAGE
    assert filenames(answer) == ["demo_pkg-10.0-py3-none-any.whl", LOCAL_WHEEL]  # completed files only
    staged_file = await stage.answer(FileQuery("demo-pkg", "demo_pkg-10.0-py3-none-any.whl"))
    with staged_file.file:
        assert staged_file.file.read() == data
    assert isinstance(await stage.answer(FileQuery("demo-pkg", LOCAL_WHEEL)), BlobAnswer)
    assert filenames(await stage.answer(PageQuery("other-pkg"))) == ["other_pkg-1.0-py3-none-any.whl"]
    # The regular index does not see the stage.
    assert filenames(await proxy.answer(PageQuery("demo-pkg"))) == [LOCAL_WHEEL]
    assert b"demo-pkg" in (await (await stage.root()).page.rendered(Representation.JSON)).body


async def test_the_root_lists_every_source_and_follows_local_changes(parts):
    _, storage, _, _, proxy = parts
    await proxy.answer(PageQuery("other-pkg"))  # cached from the upstream
    assert b'"other-pkg"' in (await (await proxy.root()).page.rendered(Representation.JSON)).body
    await publish_locally(storage)
    body = (await (await proxy.root()).page.rendered(Representation.JSON)).body
    assert b'"demo-pkg"' in body and b'"other-pkg"' in body


async def test_offline_answers_only_from_the_cache(tmp_path, parts, upstream):
    settings, storage, local, remote, proxy = parts
    await proxy.answer(PageQuery("demo-pkg"))
    await remote.flush()
    offline = build({"data_dir": str(settings.data_dir), "upstreams": [upstream.url], "offline": True})
    offline_source = UpstreamSource(offline, storage, remote.clients)
    offline_proxy = Proxy([local, offline_source])
    assert (await offline_proxy.answer(PageQuery("demo-pkg"))).how is CacheResult.OFFLINE
    with pytest.raises(NotCached, match="not in this mirror"):
        await offline_proxy.answer(PageQuery("other-pkg"))
    with pytest.raises(NotCached):
        await offline_proxy.answer(FileQuery("demo-pkg", UPSTREAM_WHEEL))
    with pytest.raises(NotFound):
        await offline_proxy.answer(FileQuery("demo-pkg", UPSTREAM_WHEEL, Part.PROVENANCE))
