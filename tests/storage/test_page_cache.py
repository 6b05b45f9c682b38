"""The page cache contract, run against every implementation (see conftest.py), and what the
disk implementation does with records it cannot read."""

from __future__ import annotations

import asyncio
import pickle

from support.waiting import changes
from tidegate.simple.model import File, Project
from tidegate.storage.records import PageRecord, Part, Validators, encode_page

WHEEL = File("demo_pkg-1.0-py3-none-any.whl", "https://files.example/demo_pkg-1.0-py3-none-any.whl",
             {"sha256": "a" * 64}, requires_python=">=3.8", core_metadata={"sha256": "b" * 64}, size=1234,
             upload_time="2024-01-02T03:04:05.000000Z", yanked="broken")
SDIST = File("demo_pkg-1.0.tar.gz", "https://mirror.example/demo_pkg-1.0.tar.gz", {"sha256": "c" * 64})


def record(name: str = "demo-pkg", *, found: bool = True, merged: bool = False) -> PageRecord:
    first = Project(name, (WHEEL,), versions=("1.0",), status="active", tracks=("https://pypi.example/simple/demo/",))
    second = Project(name, (SDIST,))
    parts = (Part("pypi", first, Validators('"etag"', "Tue, 02 Jan 2024 03:04:05 GMT")),) if found else ()
    served = first if found else None
    if merged:
        parts += (Part("mirror", second, Validators()),)
        served = Project(name, (WHEEL, SDIST), versions=("1.0",))
    return PageRecord(name, parts, served, fetched_at=1700000000.5, changed_at=1690000000.25)


async def test_a_missing_page_is_none(new_page_cache):
    cache = await new_page_cache()
    assert await cache.load("demo-pkg") is None
    assert await cache.names() == []
    assert await cache.load_metadata("a" * 64) is None


async def test_records_come_back_equal(new_page_cache):
    cache = await new_page_cache()
    for original in (record(), record("merged", merged=True), record("unknown", found=False)):
        await cache.store(original)
        assert await cache.load(original.name) == original


async def test_names_list_the_projects_found(new_page_cache):
    cache = await new_page_cache()
    await cache.store(record("b-project"))
    await cache.store(record("a-project"))
    await cache.store(record("unknown", found=False))
    assert await cache.names() == ["a-project", "b-project"]
    await cache.store(record("a-project", found=False))  # the project went away upstream
    assert await cache.names() == ["b-project"]


async def test_another_instance_sees_stored_pages(new_page_cache):
    writer, reader = await new_page_cache(), await new_page_cache()
    await writer.store(record())
    assert await reader.load("demo-pkg") == record()
    assert await reader.names() == ["demo-pkg"]


async def test_metadata_files(new_page_cache):
    cache = await new_page_cache()
    await cache.store_metadata("a" * 64, b"Metadata-Version: 2.1\nName: demo\n")
    assert await cache.load_metadata("a" * 64) == b"Metadata-Version: 2.1\nName: demo\n"
    await cache.remove_metadata("a" * 64)
    await cache.remove_metadata("b" * 64)  # none there: nothing to do
    assert await cache.load_metadata("a" * 64) is None


async def test_records_it_cannot_read_are_misses_not_crashes(tmp_path):
    """Another format version, another project's record, garbage, a pickle: all a cache miss,
    and nothing is ever unpickled."""
    from tidegate.storage.pagecache import FilePageCache

    cache = FilePageCache(tmp_path / "pages")
    stored = encode_page(record())
    bodies = {
        "future": stored.replace(b'"format":1', b'"format":2').replace(b'"demo-pkg"', b'"future"'),
        "other": stored,  # demo-pkg's record under another name
        "garbage": b"\x00\xffnot json",
        "pickled": pickle.dumps({"name": "pickled"}),
    }
    for name, body in bodies.items():
        path = tmp_path / "pages" / "pages" / name[:2] / f"{name}.page"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        assert await cache.load(name) is None


async def test_a_crash_leaves_no_temp_file_after_recovery(tmp_path):
    from tidegate.storage.pagecache import FilePageCache

    cache = FilePageCache(tmp_path / "pages")
    await cache.store(record())
    for temp in (tmp_path / "pages" / "pages" / "de" / "demo-pkg.page.tmp-1-1",
                 tmp_path / "pages" / "metadata" / "aa" / "aaaa.tmp-1-2"):
        temp.parent.mkdir(parents=True, exist_ok=True)
        temp.write_bytes(b"half")
    await cache.recover()
    assert sorted(p.name for p in (tmp_path / "pages").rglob("*") if p.is_file()) == ["demo-pkg.page"]
    assert await cache.load("demo-pkg") == record()


async def test_prune_keeps_the_most_recently_stored_within_the_limit(new_page_cache):
    size = len(encode_page(record("a-project")))
    cache = await new_page_cache(max_size=2 * size + 10)
    for name in ("a-project", "b-project", "c-project"):
        await cache.store(record(name))
        await asyncio.sleep(0.01)  # distinct modification times
    assert await cache.prune() == 1
    assert await cache.names() == ["b-project", "c-project"]
    assert await cache.prune() == 0


async def test_store_all_stores_every_record_and_moves_the_change_stamp_for_every_instance(new_page_cache):
    writer, reader = await new_page_cache(), await new_page_cache()
    seen = reader.changed()
    await writer.store(record("plain"))
    assert reader.changed() == seen  # single pages change without the stamp
    await writer.store_all([record("a-project"), record("b-project"), record("plain", found=False)])
    assert await changes(reader, seen)
    assert await reader.names() == ["a-project", "b-project"]
    assert await reader.load("a-project") == record("a-project")
    seen = reader.changed()
    await writer.mark_changed()
    assert await changes(reader, seen)


async def test_usage_counts_pages_and_metadata_files(new_page_cache):
    cache = await new_page_cache()
    assert await cache.usage() == (0, 0)
    fresh = await new_page_cache()  # another worker: its count is its own walk
    await cache.store(record("a-project"))
    await cache.store_metadata("k" * 64, b"Metadata-Version: 2.1\n")
    assert await fresh.usage() == (2, len(encode_page(record("a-project"))) + len(b"Metadata-Version: 2.1\n"))
