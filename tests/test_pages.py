"""Index pages through tidegate: negotiation, Vary, caching headers, redirects, fidelity."""

from __future__ import annotations

import asyncio
import json
from typing import Any
import time

import pytest

from support.fakeindex import Fault

JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"
VARY = "Accept, Accept-Encoding"
PIP_ACCEPT = f"{JSON}, {HTML}; q=0.1, text/html; q=0.01"


@pytest.fixture
async def upstream(fake_index, dists):
    idx = await fake_index("negotiate")
    idx.index.add(dists.wheel("demo-pkg", "1.0"), requires_python=">=3.8", upload_time="2024-01-02T03:04:05.000000Z")
    idx.index.add(dists.wheel("demo-pkg", "1.1"), yanked="broken <build>", upload_time="2024-02-02T03:04:05Z")
    idx.index.add(dists.sdist("demo-pkg", "1.0"), serve_metadata=False)
    return idx


@pytest.mark.parametrize(
    "accept, content_type",
    [
        (None, "text/html"),
        ("*/*", "text/html"),
        (PIP_ACCEPT, JSON),
        ("application/vnd.pypi.simple.latest+json", JSON),
        ("application/vnd.pypi.simple.latest+html", HTML),
        (HTML, HTML),
        ("text/html", "text/html"),
        ("text/html, application/vnd.pypi.simple.v1+json", JSON),
    ],
)
async def test_negotiation(upstream, tidegate, accept, content_type):
    tg = await tidegate(upstreams=[upstream.url])
    headers = {"Accept": accept} if accept is not None else {}
    async with tg.get("/simple/demo-pkg/", headers=headers, skip_auto_headers=["Accept"]) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].split(";")[0] == content_type
        assert r.headers["Vary"] == VARY
        body = await r.read()
    if content_type == JSON:
        assert json.loads(body)["name"] == "demo-pkg"
    else:
        assert b"<a " in body and b"demo_pkg-1.0-py3-none-any.whl" in body


async def test_406_lists_what_we_serve_and_varies(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    async with tg.get("/simple/demo-pkg/", headers={"Accept": "application/xml"}) as r:
        assert r.status == 406
        assert r.headers["Vary"] == VARY
        text = await r.text()
        assert JSON in text and "text/html" in text


async def test_q0_excludes_v1_json_even_when_reached_through_latest(upstream, tidegate):
    """`latest+json`, reached through application/*, is not answered with the v1 JSON type the
    client excluded with q=0."""
    tg = await tidegate(upstreams=[upstream.url])
    accept = f"application/*, {JSON};q=0"
    async with tg.get("/simple/demo-pkg/", headers={"Accept": accept}) as r:
        assert r.status in (200, 406)
        assert not r.headers.get("Content-Type", "").startswith(JSON), r.headers["Content-Type"]


async def test_format_parameter_overrides_accept(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    async with tg.get(f"/simple/demo-pkg/?format={JSON}", headers={"Accept": "text/html"}) as r:
        assert r.status == 200 and r.headers["Content-Type"] == JSON
    async with tg.get("/simple/demo-pkg/?format=application/json") as r:
        assert r.status == 406


async def test_etags_differ_per_representation_and_304_keeps_vary(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    tags = {}
    for accept in (JSON, HTML, "text/html"):
        async with tg.get("/simple/demo-pkg/", headers={"Accept": accept}) as r:
            tags[accept] = r.headers["ETag"]
            assert r.headers["Cache-Control"] == "public, max-age=600"
            assert r.headers["Last-Modified"] and r.headers["Date"]
            assert not r.headers["ETag"].startswith("W/")
    assert len(set(tags.values())) == 3
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON, "If-None-Match": tags[JSON]}) as r:
        assert r.status == 304 and r.headers["Vary"] == VARY and r.headers["ETag"] == tags[JSON]
    # The HTML ETag does not validate the JSON representation.
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON, "If-None-Match": tags["text/html"]}) as r:
        assert r.status == 200
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        last_modified = r.headers["Last-Modified"]
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON, "If-Modified-Since": last_modified}) as r:
        assert r.status == 304


async def test_a_change_within_the_same_second_is_not_answered_304(fake_index, dists, tidegate):
    """Last-Modified has 1 s resolution: a page that changed within the second it was fetched
    is sent again to a revalidating client (no-cache + If-Modified-Since), not answered 304."""
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-pkg", "1.0"))
    tg = await tidegate(upstreams=[idx.url], min_refresh=0)
    while time.time() % 1 > 0.3:  # start early in a second so everything below shares it
        await asyncio.sleep(0.05)
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        last_modified = r.headers["Last-Modified"]
        await r.read()
    idx.index.add(dists.wheel("demo-pkg", "2.0"))
    headers = {"Accept": JSON, "Cache-Control": "no-cache", "If-Modified-Since": last_modified}
    async with tg.get("/simple/demo-pkg/", headers=headers) as r:
        assert r.status == 200, (r.status, r.headers.get("X-Tidegate-Cache"))
        assert len(json.loads(await r.read())["files"]) == 2


async def test_redirects_and_404(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    for path in ("/simple/Demo_Pkg/", "/simple/demo.pkg/", "/simple/demo-pkg", "/simple/DEMO-PKG"):
        async with tg.get(path) as r:
            assert r.status == 301, path
            assert r.headers["Location"] == "/simple/demo-pkg/"
    async with tg.get(f"/simple/Demo_Pkg/?format={JSON}") as r:
        assert r.headers["Location"] == f"/simple/demo-pkg/?format={JSON}"
    async with tg.get("/simple/no-such-project/") as r:
        assert r.status == 404 and r.headers["Vary"] == VARY
    async with tg.get("/simple") as r:
        assert r.status == 301 and r.headers["Location"] == "/simple/"


@pytest.mark.parametrize("mode", ["html", "json", "negotiate"])
async def test_conversion_fidelity_from_any_upstream_format(fake_index, dists, tidegate, mode):
    idx = await fake_index(mode)
    idx.index.add(dists.wheel("demo-pkg", "1.0"), requires_python='>=3.8,<4; "x"', upload_time="2024-01-02T03:04:05.000000Z")
    idx.index.add(dists.wheel("demo-pkg", "1.1"), yanked="broken <build>")
    idx.index.add(dists.sdist("demo-pkg", "1.0"), serve_metadata=False)
    idx.index.status["demo-pkg"], idx.index.status_reason["demo-pkg"] = "deprecated", "use other-pkg"
    idx.index.tracks["demo-pkg"] = ["https://pypi.org/simple/demo-pkg/"]
    idx.index.alternate_locations["demo-pkg"] = ["https://mirror.example/simple/demo-pkg/"]
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        page = json.loads(await r.read())
    async with tg.get("/simple/demo-pkg/", headers={"Accept": "text/html"}) as r:
        html = await r.text()
    files = {f["filename"]: f for f in page["files"]}
    wheel, yanked = files["demo_pkg-1.0-py3-none-any.whl"], files["demo_pkg-1.1-py3-none-any.whl"]
    sdist = files["demo_pkg-1.0.tar.gz"]
    for f in page["files"]:
        assert {"filename", "url", "hashes"} <= f.keys()
        assert f["hashes"]["sha256"] == idx.index.file(f["filename"]).real_sha256()
        assert f["url"] == f"../../files/demo-pkg/{f['filename']}"  # always through tidegate
    assert wheel["requires-python"] == '>=3.8,<4; "x"'
    assert yanked["yanked"] == "broken <build>"
    assert "yanked" not in wheel
    assert wheel["core-metadata"] and wheel["dist-info-metadata"]  # every wheel gets metadata
    assert not sdist.get("core-metadata")  # an sdist gets one only if the upstream has it
    assert sorted(page["versions"]) == ["1.0", "1.1"]
    assert page["project-status"] == {"status": "deprecated", "reason": "use other-pkg"}
    assert page["meta"]["tracks"] == ["https://pypi.org/simple/demo-pkg/"]
    assert page["alternate-locations"] == ["https://mirror.example/simple/demo-pkg/"]
    if mode != "html":  # only JSON carries sizes and upload times
        assert wheel["size"] == idx.index.file(wheel["filename"]).path.stat().st_size
        assert wheel["upload-time"] == "2024-01-02T03:04:05.000000Z"
        assert page["meta"]["api-version"] == "1.4"
    else:
        assert page["meta"]["api-version"] == "1.0"  # honest: HTML gave no sizes
    # HTML out: escaped attributes, sha256 fragment, both metadata attributes.
    assert 'data-requires-python="&gt;=3.8,&lt;4; &quot;x&quot;"' in html
    assert 'data-yanked="broken &lt;build&gt;"' in html
    assert f"#sha256={wheel['hashes']['sha256']}" in html
    assert 'data-core-metadata="' in html and 'data-dist-info-metadata="' in html
    assert 'name="pypi:project-status" content="deprecated"' in html
    assert '<meta name="pypi:tracks" content="https://pypi.org/simple/demo-pkg/">' in html
    assert 'name="pypi:alternate-locations" content="https://mirror.example/simple/demo-pkg/"' in html


async def test_hostile_upstream_page_is_escaped(fake_index, tidegate):
    idx = await fake_index("html")
    idx.index.raw_pages["evil"] = (
        "text/html",
        b'<html><body><script>alert(1)</script>'
        b'<a href="javascript:alert(1)">evil-1.0.tar.gz</a>'
        b'<a href="/files/evil-1.0-py3-none-any.whl" data-requires-python="&quot;&gt;&lt;script&gt;x">w</a>'
        b'<a href="/files/../../etc/passwd">passwd</a>'
        b'<a href="/files/evil-1.0-py3-none-any.whl">dup</a>'
        b"\xff\xfe invalid utf-8</body></html>",
    )
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get("/simple/evil/", headers={"Accept": "text/html"}) as r:
        assert r.status == 200
        html = await r.text()
    assert "<script>" not in html and "javascript:" not in html and "etc/passwd" not in html
    assert html.count("evil-1.0-py3-none-any.whl</a>") == 1
    assert 'data-requires-python="&quot;&gt;&lt;script&gt;x"' in html
    async with tg.get("/simple/evil/", headers={"Accept": JSON}) as r:
        page = json.loads(await r.read())
    names = [f["filename"] for f in page["files"]]
    assert names.count("evil-1.0-py3-none-any.whl") == 1 and not any("/" in n or n.startswith(".") for n in names)


async def test_invalid_upstream_json_is_a_clear_502_not_a_500(fake_index, tidegate):
    idx = await fake_index("json")
    idx.index.raw_pages["broken"] = (JSON, b'{"files": "nope"')
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get("/simple/broken/") as r:
        assert r.status == 502
        assert "broken" in await r.text()


async def test_single_flight_for_pages(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    upstream.index.faults["/simple/demo-pkg/"] = Fault(delay=0.3, times=1)

    async def fetch():
        async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
            assert r.status == 200
            return await r.read()

    bodies = await asyncio.gather(*(fetch() for _ in range(20)))
    assert len(set(bodies)) == 1
    assert upstream.index.requests["/simple/demo-pkg/"] == 1


async def test_fresh_page_is_not_refetched_and_no_cache_revalidates_conditionally(upstream, tidegate, dists):
    tg = await tidegate(upstreams=[upstream.url], min_refresh=0)
    for _ in range(3):
        async with tg.get("/simple/demo-pkg/") as r:
            assert r.status == 200
    assert upstream.index.requests["/simple/demo-pkg/"] == 1
    async with tg.get("/simple/demo-pkg/", headers={"Cache-Control": "no-cache"}) as r:
        assert r.headers["X-Tidegate-Cache"] == "revalidated"
    assert upstream.index.requests["/simple/demo-pkg/"] == 2
    assert upstream.index.log[-1].headers.get("If-None-Match")  # a conditional request, answered 304
    # A new upload is visible at once to a client that asks for revalidation.
    upstream.index.add(dists.wheel("demo-pkg", "2.0"))
    async with tg.get("/simple/demo-pkg/", headers={"Cache-Control": "max-age=0", "Accept": JSON}) as r:
        page = json.loads(await r.read())
        assert r.headers["X-Tidegate-Cache"] == "miss"
    assert "2.0" in page["versions"]


async def test_max_age_0_asks_the_upstream_only_past_min_refresh(upstream, tidegate):
    """pip sends max-age=0 with every page request: a page confirmed within min_refresh is
    answered from the cache; after that, the upstream is asked."""
    tg = await tidegate(upstreams=[upstream.url], min_refresh="1s")
    pip_headers = {"Cache-Control": "max-age=0", "Accept": JSON}
    async with tg.get("/simple/demo-pkg/", headers=pip_headers) as r:
        assert r.headers["X-Tidegate-Cache"] == "miss"
    for _ in range(5):
        async with tg.get("/simple/demo-pkg/", headers=pip_headers) as r:
            assert r.status == 200 and r.headers["X-Tidegate-Cache"] == "hit"
    assert upstream.index.requests["/simple/demo-pkg/"] == 1
    await asyncio.sleep(1.1)
    async with tg.get("/simple/demo-pkg/", headers=pip_headers) as r:
        assert r.headers["X-Tidegate-Cache"] == "revalidated"
    assert upstream.index.requests["/simple/demo-pkg/"] == 2


async def test_ttl_expiry_revalidates(upstream, tidegate):
    tg = await tidegate(upstreams=[{"url": upstream.url, "ttl": 0}])
    for _ in range(2):
        async with tg.get("/simple/demo-pkg/") as r:
            assert r.status == 200
    assert upstream.index.requests["/simple/demo-pkg/"] == 2


async def test_stale_if_error_and_offline(upstream, tidegate):
    tg = await tidegate(upstreams=[{"url": upstream.url, "ttl": 0, "retries": 0}])
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        good = await r.read()
    await upstream.down()
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        assert r.status == 200 and r.headers["X-Tidegate-Cache"] == "stale"
        assert await r.read() == good
    async with tg.get("/simple/other/") as r:
        assert r.status == 502  # nothing cached: a clear gateway error
    await upstream.up()
    upstream.index.faults["/simple/demo-pkg/"] = Fault(status=500)
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        assert r.status == 200 and r.headers["X-Tidegate-Cache"] == "stale"
    upstream.index.faults["/simple/demo-pkg/"] = Fault(delay=5)
    tg2 = await tidegate(upstreams=[{"url": upstream.url, "ttl": 0, "timeout": 0.3, "retries": 0}],
                         data_dir=str(tg.settings.data_dir))
    async with tg2.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        assert r.status == 200 and r.headers["X-Tidegate-Cache"] == "stale"
    del upstream.index.faults["/simple/demo-pkg/"]

    listed = json.loads(good)["files"]
    async with tg.get("/files/demo-pkg/" + listed[0]["filename"]) as r:
        assert r.status == 200 and await r.read()  # one file of the page cached
    offline = await tidegate(upstreams=[upstream.url], offline=True, data_dir=str(tg.settings.data_dir))
    before = upstream.index.requests.total()
    async with offline.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        # Offline, a page lists only the files this mirror has, each as the upstream gave it.
        assert r.status == 200 and json.loads(await r.read())["files"] == listed[:1]
    async with offline.get("/simple/never-seen/") as r:
        assert r.status == 404 and "not in this mirror" in await r.text()
    assert upstream.index.requests.total() == before


async def test_pages_persist_across_restart(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        before = await r.read()
    await tg.restart()
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        assert await r.read() == before
        assert r.headers["X-Tidegate-Cache"] == "hit"
    assert upstream.index.requests["/simple/demo-pkg/"] == 1


async def test_root_lists_cached_projects_in_both_formats(upstream, tidegate):
    tg = await tidegate(upstreams=[{"url": upstream.url, "list_projects": False}])
    async with tg.get("/simple/demo-pkg/") as r:
        assert r.status == 200
    async with tg.get("/simple/", headers={"Accept": JSON}) as r:
        assert r.headers["Vary"] == VARY
        assert {"name": "demo-pkg"} in json.loads(await r.read())["projects"]
    async with tg.get("/simple/") as r:
        assert 'href="demo-pkg/"' in await r.text()
    assert "/simple/" not in upstream.index.requests  # list_projects off: its root list is never asked for


async def root_names(tg: Any, **headers: str) -> list[str]:
    async with tg.get("/simple/", headers={"Accept": JSON, **headers}) as r:
        assert r.status == 200 and r.headers["Vary"] == VARY, r.status
        return [p["name"] for p in json.loads(await r.read())["projects"]]


async def test_the_root_lists_every_project_of_the_upstreams(fake_index, dists, tidegate):
    first, second = await fake_index("html"), await fake_index("json")
    first.index.add(dists.wheel("alpha", "1.0"))
    first.index.add(dists.wheel("shared", "1.0"))
    second.index.add(dists.wheel("beta", "1.0"))
    second.index.add(dists.wheel("shared", "1.0"))
    second.index.add(dists.wheel("unlisted", "1.0"))
    tg = await tidegate(upstreams=[{"url": first.url, "ttl": 0}, {"url": second.url, "list_projects": False}])
    assert await root_names(tg) == ["alpha", "shared"]  # the second upstream's list is not wanted
    async with tg.get("/simple/beta/") as r:  # ...but its cached projects are listed
        assert r.status == 200
    assert await root_names(tg) == ["alpha", "beta", "shared"]
    async with tg.get("/simple/") as r:
        html = await r.text()
        assert 'href="alpha/"' in html and 'href="beta/"' in html
    first.index.add(dists.wheel("gamma", "1.0"))
    assert await root_names(tg) == ["alpha", "beta", "gamma", "shared"]  # ttl 0: revalidated each time
    conditional = [e for e in first.index.log if e.path == "/simple/" and e.headers.get("If-None-Match")]
    assert conditional, "the root list is revalidated with a conditional request"


async def test_a_failing_upstream_root_list_is_served_as_it_was(fake_index, dists, tidegate):
    idx = await fake_index("html")
    idx.index.add(dists.wheel("alpha", "1.0"))
    tg = await tidegate(upstreams=[{"url": idx.url, "ttl": 0, "retries": 0}])
    assert await root_names(tg) == ["alpha"]
    idx.index.faults["/simple/"] = Fault(status=503)
    assert await root_names(tg) == ["alpha"]


async def test_root_pages_are_compressed_and_have_etags(fake_index, dists, tidegate):
    import gzip

    idx = await fake_index("html")
    wheel = dists.wheel("alpha", "1.0")
    for i in range(300):
        idx.index.add(wheel, project=f"project-{i:03d}")
    tg = await tidegate(upstreams=[idx.url])
    async with tg.get("/simple/", headers={"Accept-Encoding": "gzip"}) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        body, etag = gzip.decompress(await r.read()), r.headers["ETag"]
    assert body.count(b"<a href=") == 300
    async with tg.get("/simple/", headers={"Accept-Encoding": "gzip", "If-None-Match": etag}) as r:
        assert r.status == 304 and r.headers["Vary"] == VARY


async def test_root_index_has_validators_and_configured_max_age(upstream, tidegate):
    """/simple/ has an ETag and Last-Modified, the configured max-age, and answers 304."""
    tg = await tidegate(upstreams=[upstream.url], max_age=123)
    async with tg.get("/simple/demo-pkg/") as r:
        await r.read()
    async with tg.get("/simple/", headers={"Accept": JSON}) as r:
        assert r.status == 200
        assert "ETag" in r.headers and "Last-Modified" in r.headers
        assert r.headers["Cache-Control"].endswith("max-age=123")
        etag = r.headers["ETag"]
    async with tg.get("/simple/", headers={"Accept": JSON, "If-None-Match": etag}) as r:
        assert r.status == 304 and r.headers["Vary"] == VARY


@pytest.mark.parametrize(
    "path",
    [
        "/simple/..%2F..%2Fetc%2Fpasswd/",
        "/simple/%00/",
        "/files/demo-pkg/..%2F..%2Fetc%2Fpasswd",
        "/files/demo-pkg/%2e%2e",
        "/files/../../etc/passwd",
        "/simple/" + "a" * 5000 + "/",
    ],
)
async def test_malformed_paths_get_4xx(upstream, tidegate, path):
    tg = await tidegate(upstreams=[upstream.url])
    async with tg.session.get(tg.origin + path, allow_redirects=False) as r:
        assert 300 <= r.status < 500, (path, r.status)


async def test_oversized_headers_get_4xx(upstream, tidegate):
    tg = await tidegate(upstreams=[upstream.url])
    async with tg.get("/simple/demo-pkg/", headers={"X-Big": "a" * 20000}) as r:
        assert 400 <= r.status < 500


async def test_workers_sharing_a_data_dir_fetch_a_page_once(upstream, tidegate):
    first = await tidegate(upstreams=[upstream.url])
    second = await tidegate(upstreams=[upstream.url], data_dir=str(first.settings.data_dir))
    upstream.index.faults["/simple/demo-pkg/"] = Fault(delay=0.3, times=1)

    async def fetch(tg):
        async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
            assert r.status == 200
            return await r.read()

    bodies = await asyncio.gather(*(fetch(tg) for tg in (first, second) for _ in range(5)))
    assert len(set(bodies)) == 1
    assert upstream.index.requests["/simple/demo-pkg/"] == 1


@pytest.fixture
async def big_upstream(fake_index, dists):
    """A page of 60 files: big enough to be worth compressing."""
    idx = await fake_index("negotiate")
    wheel = dists.wheel("demo-pkg", "1.0")
    for i in range(60):
        idx.index.add(wheel, filename=f"demo_pkg-1.{i}-py3-none-any.whl", upload_time="2024-01-02T03:04:05Z")
    return idx


@pytest.mark.parametrize(("accept_encoding", "coding"), [
    ("gzip, deflate", "gzip"), ("gzip, deflate, br, zstd", "zstd"), (None, None), ("br", None)])
@pytest.mark.parametrize("accept", [JSON, HTML])
async def test_pages_are_compressed_as_the_client_accepts(big_upstream, tidegate, accept, accept_encoding, coding):
    import gzip

    import zstandard

    tg = await tidegate(upstreams=[big_upstream.url])
    async with tg.get("/simple/demo-pkg/", headers={"Accept": accept}) as r:
        plain, plain_tag = await r.read(), r.headers["ETag"]
    headers = {"Accept": accept, **({"Accept-Encoding": accept_encoding} if accept_encoding else {})}
    async with tg.get("/simple/demo-pkg/", headers=headers) as r:
        assert r.status == 200 and r.headers["Vary"] == VARY
        assert r.headers.get("Content-Encoding") == coding
        body = await r.read()
        tag = r.headers["ETag"]
    decode = {"gzip": gzip.decompress, "zstd": zstandard.ZstdDecompressor().decompress, None: lambda b: b}[coding]
    assert decode(body) == plain
    assert (tag != plain_tag) == (coding is not None)  # each coding is a representation of its own
    assert coding is None or len(body) < len(plain) / 3
    async with tg.get("/simple/demo-pkg/", headers={**headers, "If-None-Match": tag}) as r:
        assert r.status == 304 and r.headers["ETag"] == tag and r.headers["Vary"] == VARY


async def test_files_and_metadata_are_never_compressed(big_upstream, tidegate):
    tg = await tidegate(upstreams=[big_upstream.url])
    for path in ("/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl", "/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl",
                 "/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl.metadata"):
        async with tg.get(path, headers={"Accept-Encoding": "gzip, zstd"}) as r:
            assert r.status == 200 and "Content-Encoding" not in r.headers
            await r.read()
