"""Files and metadata through tidegate: download once, stream, verify, commit, serve from disk."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json

import aiohttp
import pytest
from aiohttp import web

from support.dists import provenance, sha256_of, wheel_metadata
from support.fakeindex import Fault
from tidegate.upstream.client import FAILURES_BEFORE_BACKOFF
from support.servers import serve

JSON = "application/vnd.pypi.simple.v1+json"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"
FILE_PATH = f"/files/demo-pkg/{WHEEL}"
UPSTREAM_FILE = f"/files/{WHEEL}"


@pytest.fixture
async def upstream(fake_index, dists):
    idx = await fake_index("negotiate")
    idx.index.add(dists.wheel("demo-pkg", "1.0", padding=600_000), serve_metadata=False)
    idx.index.add(dists.sdist("demo-pkg", "1.0"), serve_metadata=False)
    return idx


def blob_files(tg):
    return [p for p in (tg.settings.data_dir / "blobs" / "files").glob("*/*")]


def temp_files(tg):
    return list((tg.settings.data_dir / "blobs" / "tmp").iterdir())


async def raw_request(port: int, request: bytes) -> bytes:
    """Send `request` as is (aiohttp would refuse to write some headers) and return the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return data


async def test_download_once_then_serve_from_disk(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    expected = upstream.index.file(WHEEL).path.read_bytes()
    for cache in ("miss", "hit", "hit"):
        async with tg.get(FILE_PATH) as r:
            assert r.status == 200
            assert r.headers["X-Tidegate-Cache"] == cache
            assert "Content-Encoding" not in r.headers
            assert r.headers["ETag"] == f'"{hashlib.sha256(expected).hexdigest()}"'
            assert "immutable" in r.headers["Cache-Control"]
            assert await r.read() == expected
    assert upstream.index.requests[UPSTREAM_FILE] == 1
    async with tg.get(FILE_PATH, headers={"If-None-Match": f'"{hashlib.sha256(expected).hexdigest()}"'}) as r:
        assert r.status == 304


async def test_concurrent_downloads_make_one_upstream_request_and_stream(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    expected = upstream.index.file(WHEEL).path.read_bytes()
    upstream.index.faults[UPSTREAM_FILE] = Fault(slow=0.002, chunk_size=16384)
    first_byte = asyncio.get_running_loop().create_future()

    async def fetch():
        async with tg.get(FILE_PATH) as r:
            assert r.status == 200
            assert r.content_length == len(expected)
            chunk = await r.content.read(1)
            if not first_byte.done():
                first_byte.set_result(upstream.index.requests[UPSTREAM_FILE])
            return chunk + await r.read()

    results = await asyncio.gather(*(fetch() for _ in range(10)))
    assert all(body == expected for body in results)
    assert upstream.index.requests[UPSTREAM_FILE] == 1
    # The first byte arrived while the upstream was still sending (no wait for the whole file).
    assert first_byte.result() == 1
    assert len(blob_files(tg)) == 1 and not temp_files(tg)


@pytest.mark.parametrize("fault", [Fault(corrupt=True), Fault(reset_after=100_000), Fault(status=500)])
async def test_bad_download_is_never_committed_and_client_sees_failure(upstream, tidegate, fault):
    tg = await tidegate(upstreams=[{"url": upstream.url, "retries": 0}])
    upstream.index.faults[UPSTREAM_FILE] = fault
    expected = upstream.index.file(WHEEL).path.read_bytes()
    try:
        async with tg.get(FILE_PATH) as r:
            body = await r.read()
            # Either an error status, or a transfer that fails; never a wrong body that looks complete.
            assert r.status != 200 or body == expected
            failed = r.status != 200
    except aiohttp.ClientPayloadError:
        failed = True
    assert failed
    assert not blob_files(tg) and not temp_files(tg)
    # Once the upstream behaves, the file is downloaded and served correctly.
    del upstream.index.faults[UPSTREAM_FILE]
    async with tg.get(FILE_PATH) as r:
        assert r.status == 200 and await r.read() == expected
    assert len(blob_files(tg)) == 1


async def test_advertised_hash_mismatch_is_refused(upstream, tidegate):
    upstream.index.file(WHEEL).sha256 = "0" * 64
    tg = await tidegate(upstreams=[upstream.url])
    with pytest.raises(aiohttp.ClientPayloadError):
        async with tg.get(FILE_PATH) as r:
            await r.read()
    assert not blob_files(tg)


async def test_head_and_ranges(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    expected = upstream.index.file(WHEEL).path.read_bytes()
    size = len(expected)
    async with tg.head(FILE_PATH) as r:  # HEAD on an uncached file: no redirect, exact length
        assert r.status == 200
        assert int(r.headers["Content-Length"]) == size
        assert r.headers["Accept-Ranges"] == "bytes"
    for header, first, last in [("bytes=0-9", 0, 9), ("bytes=100-", 100, size - 1), ("bytes=-50", size - 50, size - 1)]:
        async with tg.get(FILE_PATH, headers={"Range": header}) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
            assert await r.read() == expected[first : last + 1]
    async with tg.get(FILE_PATH, headers={"Range": f"bytes={size}-"}) as r:
        assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{size}"
    etag = f'"{hashlib.sha256(expected).hexdigest()}"'
    async with tg.get(FILE_PATH, headers={"Range": "bytes=0-9", "If-Range": etag}) as r:
        assert r.status == 206
    async with tg.get(FILE_PATH, headers={"Range": "bytes=0-9", "If-Range": '"stale"'}) as r:
        assert r.status == 200 and await r.read() == expected


async def test_range_with_unicode_digits_is_never_a_500(upstream, tidegate):
    """A Range header with non-ASCII digits (that str.isdigit() accepts) is a client error."""
    tg = await tidegate(upstreams=[upstream.url])
    async with tg.get(FILE_PATH) as r:
        await r.read()
    for digit in ("\u00b2", "\u0663"):  # superscript two; Arabic-Indic three (int() takes that one)
        for encoding in ("utf-8", "latin-1"):
            try:
                raw = digit.encode(encoding)
            except UnicodeEncodeError:
                continue
            request = (
                f"GET {FILE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nRange: bytes=".encode()
                + raw + b"-\r\n\r\n"
            )
            answer = await raw_request(tg.port, request)
            status_line = answer.split(b"\r\n", 1)[0]
            assert b" 500 " not in status_line, (digit, encoding, status_line)


async def test_head_and_range_on_a_file_larger_than_the_cache_are_answered(upstream, tidegate):
    """A file bigger than files_max_size, evicted by the commit that stores it, still gets
    HEAD and Range answers."""
    tg = await tidegate(upstreams=[upstream.url], files_max_size=50_000)
    async with tg.head(FILE_PATH) as r:
        assert r.status == 200
    async with tg.get(FILE_PATH, headers={"Range": "bytes=0-9"}) as r:
        assert r.status == 206


async def test_unknown_file_is_404(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    async with tg.get("/files/demo-pkg/demo_pkg-9.9-py3-none-any.whl") as r:
        assert r.status == 404
    async with tg.get("/files/no-such-project/x-1.0.tar.gz") as r:
        assert r.status == 404


async def test_eviction_keeps_the_cache_under_its_limit(fake_index, dists, tidegate):
    idx = await fake_index("json")
    names = [f"pkg{i}" for i in range(4)]
    for name in names:
        idx.index.add(dists.wheel(name, "1.0", padding=300_000))
    tg = await tidegate(upstreams=[idx.url], files_max_size=700_000)
    for name in names:
        async with tg.get(f"/files/{name}/{name}-1.0-py3-none-any.whl") as r:
            assert r.status == 200
            await r.read()
        await asyncio.sleep(0.05)
    blobs = blob_files(tg)
    assert 1 <= len(blobs) <= 2
    assert sum(p.stat().st_size for p in blobs) <= 700_000
    # The most recently fetched file stayed.
    async with tg.get("/files/pkg3/pkg3-1.0-py3-none-any.whl") as r:
        assert r.headers["X-Tidegate-Cache"] == "hit"


async def test_files_survive_restart_and_offline_serves_them(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    async with tg.get(FILE_PATH) as r:
        body = await r.read()
    async with tg.get(FILE_PATH + ".metadata") as r:
        assert r.status == 200
    await tg.stop()
    offline = await tidegate(upstreams=[upstream.url], offline=True, data_dir=str(tg.settings.data_dir))
    await upstream.down()
    async with offline.get(FILE_PATH) as r:
        assert r.status == 200 and r.headers["X-Tidegate-Cache"] == "hit" and await r.read() == body
    async with offline.get(FILE_PATH + ".metadata") as r:
        assert r.status == 200
    async with offline.get("/files/demo-pkg/demo_pkg-1.0.tar.gz") as r:
        assert r.status == 404  # on the cached page, but never downloaded


async def test_partial_downloads_left_by_a_crash_are_removed(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    await tg.stop()
    tmp = tg.settings.data_dir / "blobs" / "tmp"
    (tmp / "deadbeef.123.part").write_bytes(b"half a file")
    await tg.start()
    assert not temp_files(tg)


async def test_metadata_by_range_requests(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        page = json.loads(await r.read())
    wheel = next(f for f in page["files"] if f["filename"] == WHEEL)
    assert wheel["core-metadata"] is True  # advertised though the upstream has none
    async with tg.get(FILE_PATH + ".metadata") as r:
        assert r.status == 200
        body = await r.read()
    assert body == wheel_metadata(upstream.index.file(WHEEL).path)
    ranged = [e for e in upstream.index.log if e.path == UPSTREAM_FILE]
    assert ranged and all("Range" in e.headers for e in ranged) and len(ranged) <= 3
    assert upstream.index.requests[UPSTREAM_FILE + ".metadata"] == 0
    async with tg.get(FILE_PATH + ".metadata") as r:  # cached now
        assert await r.read() == body
    assert len([e for e in upstream.index.log if e.path == UPSTREAM_FILE]) == len(ranged)


async def test_metadata_without_range_support_downloads_the_wheel_once(fake_index, dists, tidegate):
    idx = await fake_index("html", ranges=False)
    idx.index.add(dists.wheel("demo-pkg", "1.0", padding=100_000), serve_metadata=False)
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get(FILE_PATH + ".metadata") as r:
        assert r.status == 200
        assert await r.read() == wheel_metadata(idx.index.file(WHEEL).path)
    async with tg.get(FILE_PATH) as r:
        assert r.headers["X-Tidegate-Cache"] == "hit"  # the whole download was kept
    assert idx.index.requests[UPSTREAM_FILE] == 1  # the range request's answer was that download


async def test_head_on_an_uncached_file_answers_without_downloading_it(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    size = upstream.index.file(WHEEL).path.stat().st_size
    async with tg.head(FILE_PATH) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == size
        assert r.headers["X-Tidegate-Cache"] == "miss"
    assert upstream.index.requests[UPSTREAM_FILE] == 0  # the size came from the page
    assert not blob_files(tg)


async def test_head_asks_the_upstream_for_a_size_its_page_does_not_give(fake_index, dists, tidegate):
    idx = await fake_index("json", include_size=False)
    idx.index.add(dists.wheel("demo-pkg", "1.0", padding=600_000))
    tg = await tidegate(upstreams=[idx.url])
    async with tg.head(FILE_PATH) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == idx.index.file(WHEEL).path.stat().st_size
    assert idx.index.method_requests[("HEAD", UPSTREAM_FILE)] == 1
    assert idx.index.method_requests[("GET", UPSTREAM_FILE)] == 0


@pytest.mark.parametrize("ranges", [True, False], ids=["upstream-ranges", "no-upstream-ranges"])
async def test_a_range_of_an_uncached_file_comes_before_the_whole_file(fake_index, dists, tidegate, ranges):
    """The range is answered from the upstream's own range (or, where the upstream ignores
    ranges, from the download as far as it got) while the whole file keeps downloading."""
    idx = await fake_index("negotiate", ranges=ranges)
    idx.index.add(dists.wheel("demo-pkg", "1.0", padding=600_000), serve_metadata=False)
    expected = idx.index.file(WHEEL).path.read_bytes()
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get("/simple/demo-pkg/") as r:
        assert r.status == 200
    idx.index.faults[UPSTREAM_FILE] = Fault(slow=0.02, chunk_size=16384)  # ~0.8 s for the whole file
    async with tg.get(FILE_PATH, headers={"Range": "bytes=100-4099"}) as r:
        assert r.status == 206 and r.headers["Content-Range"] == f"bytes 100-4099/{len(expected)}"
        assert r.headers["X-Tidegate-Cache"] == "miss"
        assert await r.read() == expected[100:4100]
    assert not blob_files(tg)  # the whole file was not waited for...
    for _ in range(500):  # ...and arrives in the background
        if blob_files(tg):
            break
        await asyncio.sleep(0.02)
    async with tg.get(FILE_PATH) as r:
        assert r.headers["X-Tidegate-Cache"] == "hit" and await r.read() == expected


async def test_upstream_metadata_file_is_used_and_verified(fake_index, dists, tidegate):
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "1.0"), serve_metadata=True)
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get(FILE_PATH + ".metadata") as r:
        assert r.status == 200
        assert await r.read() == wheel_metadata(idx.index.file(WHEEL).path)
    assert idx.index.requests[UPSTREAM_FILE + ".metadata"] == 1
    assert idx.index.requests[UPSTREAM_FILE] == 0


async def test_metadata_by_range_requests_survives_a_tail_sent_in_many_chunks(upstream, tidegate):
    """The first `bytes=-TAIL` read is taken whole when the upstream sends it in many chunks."""
    upstream.index.faults[UPSTREAM_FILE] = Fault(slow=0.001, chunk_size=4096, times=1)
    tg = await tidegate(upstreams=[upstream.url])
    async with tg.get(FILE_PATH + ".metadata") as r:
        text = await r.read()
        assert r.status == 200, text
    assert text == wheel_metadata(upstream.index.file(WHEEL).path)


async def test_metadata_of_a_wheel_larger_than_the_cache_is_never_a_500(fake_index, dists, tidegate):
    """Without Range support the wheel is downloaded for its METADATA; that the download is too
    big to keep (evicted as it is committed) is no server error."""
    idx = await fake_index("html", ranges=False)
    idx.index.add(dists.wheel("demo-pkg", "1.0", padding=200_000), serve_metadata=False)
    tg = await tidegate(upstreams=[idx.url], files_max_size=50_000)
    async with tg.get(FILE_PATH + ".metadata") as r:
        assert r.status != 500, await r.text()


async def test_upstream_metadata_arriving_in_many_reads_is_served_whole(fake_index, dists, tidegate):
    """A long upstream METADATA that arrives in several reads is fetched whole, not cut short."""
    idx = await fake_index("json")
    description = b"".join(b"line %d of a long README\n" % i for i in range(4000))  # ~100 KB
    body = b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n\n" + description
    idx.index.add(dists.wheel("demo-pkg", "1.0"), metadata=body)
    idx.index.faults[UPSTREAM_FILE + ".metadata"] = Fault(slow=0.001, chunk_size=16384)
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get(FILE_PATH + ".metadata") as r:
        text = await r.read()
        assert r.status == 200, text
    assert text == body


async def test_extracted_metadata_matches_the_advertised_hash(fake_index, dists, tidegate):
    """When the upstream's .metadata fails and METADATA is extracted from the wheel instead, what
    is served still matches the core-metadata hash the page advertises (or is not served)."""
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "1.0"), metadata=b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\nSummary: upstream copy\n\n")
    idx.index.faults[UPSTREAM_FILE + ".metadata"] = Fault(status=404)
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        page = json.loads(await r.read())
    advertised = page["files"][0]["core-metadata"]["sha256"]
    async with tg.get(FILE_PATH + ".metadata") as r:
        body = await r.read()
        status = r.status
    assert status != 200 or hashlib.sha256(body).hexdigest() == advertised


async def test_sdist_has_no_metadata_file(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    async with tg.get("/files/demo-pkg/demo_pkg-1.0.tar.gz.metadata") as r:
        assert r.status == 404


async def test_files_sent_with_content_encoding_are_stored_as_sent(tidegate, dists):
    """A .tar.gz served with `Content-Encoding: gzip` (a common S3/nginx misconfiguration) is
    hashed and stored as sent, not decompressed, as pip (decode_content=False) downloads it."""
    sdist = dists.sdist("demo-pkg", "1.0").read_bytes()
    digest = hashlib.sha256(sdist).hexdigest()
    assert gzip.decompress(sdist)  # it really is gzip data

    async def page(request):
        doc = {"meta": {"api-version": "1.1"}, "name": "demo-pkg", "versions": ["1.0"], "files": [
            {"filename": "demo_pkg-1.0.tar.gz", "url": "/f/demo_pkg-1.0.tar.gz",
             "hashes": {"sha256": digest}, "size": len(sdist)}]}
        return web.Response(body=json.dumps(doc).encode(), content_type=JSON)

    async def file(request):
        return web.Response(body=sdist, headers={"Content-Type": "application/x-tar", "Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/simple/demo-pkg/", page)
    app.router.add_get("/f/demo_pkg-1.0.tar.gz", file)
    async with serve(app) as origin:
        tg = await tidegate(upstreams=[{"url": f"{origin}/simple/", "retries": 0}])
        async with tg.get("/files/demo-pkg/demo_pkg-1.0.tar.gz") as r:
            assert r.status == 200
            body = await r.read()
        assert body == sdist


async def test_eviction_never_cuts_a_transfer_short(fake_index, dists, tidegate):
    idx = await fake_index("json")
    idx.index.add(dists.wheel("big", "1.0", padding=3_000_000))
    idx.index.add(dists.wheel("other", "1.0", padding=3_000_000))
    tg = await tidegate(upstreams=[idx.url], files_max_size=4_000_000)
    big = idx.index.file("big-1.0-py3-none-any.whl").path.read_bytes()
    async with tg.get("/files/big/big-1.0-py3-none-any.whl") as r:
        await r.read()
    async with tg.get("/files/big/big-1.0-py3-none-any.whl") as reader:
        assert reader.headers["X-Tidegate-Cache"] == "hit"
        start = await reader.content.read(1000)
        # Caching another file now evicts the one being read...
        async with tg.get("/files/other/other-1.0-py3-none-any.whl") as r:
            await r.read()
        assert not (tg.settings.data_dir / "blobs" / "files" / hashlib.sha256(big).hexdigest()[:2]
                    / hashlib.sha256(big).hexdigest()).exists()
        # ...and the reader still gets every byte.
        assert start + await reader.read() == big


async def test_upstream_outage_serves_stale_without_waiting(upstream, tidegate):
    tg = await tidegate(upstreams=[{"url": upstream.url, "ttl": 0, "retries": 0}])
    async with tg.get("/simple/demo-pkg/") as r:
        assert r.status == 200
    upstream.index.faults["/simple/demo-pkg/"] = Fault(status=503)
    for _ in range(5):
        async with tg.get("/simple/demo-pkg/") as r:
            assert r.status == 200 and r.headers["X-Tidegate-Cache"] == "stale"
    # Backed off after FAILURES_BEFORE_BACKOFF failures in a row (one failure is not an outage).
    assert upstream.index.requests["/simple/demo-pkg/"] == 1 + FAILURES_BEFORE_BACKOFF


async def test_workers_sharing_a_data_dir_download_a_file_once(upstream, tidegate):
    """Two instances on one data directory (what two workers are): concurrent requests through
    both make one upstream download, and every client gets the verified bytes."""
    first = await tidegate(upstreams=[upstream.url])
    second = await tidegate(upstreams=[upstream.url], data_dir=str(first.settings.data_dir))
    expected = upstream.index.file(WHEEL).path.read_bytes()
    for tg in (first, second):  # pages first, so only the file download is concurrent
        async with tg.get("/simple/demo-pkg/") as r:
            assert r.status == 200
    upstream.index.faults[UPSTREAM_FILE] = Fault(slow=0.002, chunk_size=16384)

    async def fetch(tg):
        async with tg.get(FILE_PATH) as r:
            assert r.status == 200
            return await r.read()

    bodies = await asyncio.gather(*(fetch(tg) for tg in (first, second) for _ in range(4)))
    assert all(body == expected for body in bodies)
    assert upstream.index.requests[UPSTREAM_FILE] == 1
    assert len(blob_files(first)) == 1 and not temp_files(first)


async def test_a_failed_download_in_another_worker_fails_its_followers(upstream, tidegate):
    first = await tidegate(upstreams=[{"url": upstream.url, "retries": 0}])
    second = await tidegate(upstreams=[{"url": upstream.url, "retries": 0}], data_dir=str(first.settings.data_dir))
    for tg in (first, second):
        async with tg.get("/simple/demo-pkg/") as r:
            assert r.status == 200
    upstream.index.faults[UPSTREAM_FILE] = Fault(slow=0.002, chunk_size=16384, corrupt=True)
    expected = upstream.index.file(WHEEL).path.read_bytes()

    async def fetch(tg):
        try:
            async with tg.get(FILE_PATH) as r:
                body = await r.read()
                return r.status == 200 and body == expected
        except aiohttp.ClientPayloadError:
            return False

    results = await asyncio.gather(fetch(first), fetch(second))
    assert results == [False, False]
    assert not blob_files(first) and not temp_files(first)  # no blob, no part file, no lock left


@pytest.mark.parametrize("mode", ["json", "html"])
async def test_upstream_provenance_is_served_by_tidegate_and_kept_for_offline(fake_index, dists, tidegate, mode):
    idx = await fake_index(mode)
    wheel = dists.wheel("demo-pkg", "1.0")
    fake = idx.index.add(wheel)
    fake.provenance = provenance(WHEEL, sha256_of(wheel))
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        (entry,) = json.loads(await r.read())["files"]
    assert entry["provenance"] == f"../../files/demo-pkg/{WHEEL}.provenance"  # ours, not the upstream's
    for _ in range(2):
        async with tg.get(FILE_PATH + ".provenance") as r:
            assert r.status == 200 and await r.read() == fake.provenance
    assert idx.index.requests[UPSTREAM_FILE + ".provenance"] == 1
    async with tg.get(FILE_PATH) as r:
        assert r.status == 200 and await r.read()  # offline pages list only the files cached
    offline = await tidegate(upstreams=[idx.url], data_dir=str(tg.settings.data_dir), offline=True)
    await idx.close()
    async with offline.get(FILE_PATH + ".provenance") as r:
        assert r.status == 200 and await r.read() == fake.provenance


@pytest.mark.parametrize("body", [b"not json", b'{"version": 1, "attestation_bundles": []}', "other-file"])
async def test_provenance_that_is_not_about_the_file_is_refused(fake_index, dists, tidegate, body):
    idx = await fake_index("json")
    wheel = dists.wheel("demo-pkg", "1.0")
    fake = idx.index.add(wheel)
    fake.provenance = provenance("other-1.0-py3-none-any.whl", sha256_of(wheel)) if body == "other-file" else body
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get(FILE_PATH + ".provenance") as r:
        assert r.status == 502 and "provenance" in await r.text()
