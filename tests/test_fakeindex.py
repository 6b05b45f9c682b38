"""The test support itself: built dists are real, and the fake index behaves as documented."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from support.dists import DistCache, build_sdist, build_wheel, sha256_of
from support.fakeindex import (
    HTML_TYPE, HTML_V1_TYPE, JSON_TYPE, Fault, MakeFakeIndex, Mode, RunningFakeIndex,
)

PIP_ACCEPT = f"{JSON_TYPE}, {HTML_V1_TYPE}; q=0.1, {HTML_TYPE}; q=0.01"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"


# -- dists ----------------------------------------------------------------------------------


def test_wheel_is_consistent(dist_dir: Path) -> None:
    def build(dest: Path) -> Path:
        return build_wheel(
            dest, "Demo.Pkg", "1.0", requires_python=">=3.8", requires_dist=["attrs>=1"], padding=5000
        )

    path = build(dist_dir)
    assert path.name == WHEEL
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        meta = zf.read("demo_pkg-1.0.dist-info/METADATA").decode()
        assert "Name: Demo.Pkg\n" in meta and "Version: 1.0\n" in meta
        assert "Requires-Python: >=3.8\n" in meta and "Requires-Dist: attrs>=1\n" in meta
        assert "Root-Is-Purelib: true" in zf.read("demo_pkg-1.0.dist-info/WHEEL").decode()
        assert zf.read("demo_pkg/__init__.py") == b'__version__ = "1.0"\n'
        pad = zf.getinfo("demo_pkg/_padding.bin")
        assert pad.compress_type == zipfile.ZIP_STORED and pad.file_size == 5000
        record = zf.read("demo_pkg-1.0.dist-info/RECORD").decode().splitlines()
        rows = dict((r.split(",")[0], r.split(",", 1)[1]) for r in record)
        assert set(rows) == set(names)
        for arc, row in rows.items():
            if arc.endswith("RECORD"):
                assert row == ","
                continue
            data = zf.read(arc)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert row == f"sha256={digest},{len(data)}"
    # Deterministic: same inputs, same bytes.
    assert sha256_of(build(dist_dir / "again")) == sha256_of(path)


def test_sdist_structure(dist_dir: Path) -> None:
    path = build_sdist(dist_dir, "Demo-Pkg", "2.0", requires_python=">=3.9")
    assert path.name == "demo_pkg-2.0.tar.gz"
    with tarfile.open(path) as tf:
        root = "demo_pkg-2.0/"
        assert sorted(tf.getnames()) == [
            root + "PKG-INFO", root + "demo_pkg/__init__.py", root + "pyproject.toml"
        ]
        member = tf.extractfile(root + "PKG-INFO")
        assert member is not None
        pkg_info = member.read().decode()
    assert "Version: 2.0" in pkg_info and "Requires-Python: >=3.9" in pkg_info


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_wheel_installs(
    dist_dir: Path, tmp_path: Path, installer: str, installer_env: dict[str, str]
) -> None:
    build_wheel(dist_dir, "Demo.Pkg", "1.0", module_code="ANSWER = 42\n")
    target = tmp_path / "target"
    common = ["--no-index", "--find-links", str(dist_dir), "--target", str(target), "demo-pkg"]
    if installer == "pip":
        cmd = [sys.executable, "-m", "pip", "install", *common]
    else:
        uv = str(Path(sys.executable).with_name("uv"))
        cmd = [uv, "pip", "install", "--python", sys.executable, *common]
    subprocess.run(cmd, env=installer_env, check=True, capture_output=True)
    assert (target / "demo_pkg" / "__init__.py").read_text() == "ANSWER = 42\n"
    assert (target / "demo_pkg-1.0.dist-info" / "METADATA").is_file()


async def run(cmd: list[str], env: dict[str, str]) -> None:
    """Run an installer without blocking the event loop that serves the fake index."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()


@pytest.mark.parametrize("mode", ["html", "json"])
@pytest.mark.parametrize("installer", ["pip", "uv"])
async def test_installers_accept_fake_index(
    fake_index: MakeFakeIndex,
    dists: DistCache,
    tmp_path: Path,
    installer_env: dict[str, str],
    installer: str,
    mode: Mode,
) -> None:
    idx = await fake_index(mode)
    idx.index.add(dists.wheel("demo-pkg", "1.0", requires_dist=["demo-dep>=2"]))
    idx.index.add(dists.wheel("demo-pkg", "2.0", requires_python=">=4"))  # must be skipped
    idx.index.add(dists.wheel("demo-dep", "2.0"))
    idx.index.add(dists.wheel("demo-dep", "3.0"), yanked=True)  # must be skipped
    target = tmp_path / "target"
    if installer == "pip":
        cmd = [sys.executable, "-m", "pip", "install", "--index-url", idx.url]
    else:
        uv = str(Path(sys.executable).with_name("uv"))
        cmd = [uv, "pip", "install", "--python", sys.executable, "--index-url", idx.url]
    await run([*cmd, "--target", str(target), "demo-pkg"], installer_env)
    assert (target / "demo_pkg" / "__init__.py").read_text() == '__version__ = "1.0"\n'
    assert (target / "demo_dep" / "__init__.py").read_text() == '__version__ = "2.0"\n'
    assert idx.index.requests["/simple/demo-pkg/"] >= 1


# -- pages ----------------------------------------------------------------------------------


@pytest.fixture
async def running(fake_index: MakeFakeIndex, dists: DistCache) -> RunningFakeIndex:
    """A negotiating index with one project: a yanked wheel and an sdist."""
    idx = await fake_index()
    idx.index.add(
        dists.wheel("demo-pkg", "1.0", padding=3000),
        requires_python=">=3.8",
        yanked="bad <build>",
        upload_time="2024-01-02T03:04:05.000000Z",
    )
    idx.index.add(dists.sdist("demo-pkg", "1.0"), serve_metadata=False)
    return idx


async def get(url: str, **headers: str) -> tuple[aiohttp.ClientResponse, bytes]:
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers=headers, allow_redirects=False) as r:
            return r, await r.read()


@pytest.mark.parametrize(
    ("mode", "accept", "expected"),
    [
        ("html", JSON_TYPE, HTML_TYPE),
        ("json", HTML_TYPE, JSON_TYPE),
        ("negotiate", PIP_ACCEPT, JSON_TYPE),
        ("negotiate", HTML_TYPE, HTML_TYPE),
        ("negotiate", HTML_V1_TYPE, HTML_V1_TYPE),
        ("negotiate", f"{HTML_TYPE}, {JSON_TYPE}", JSON_TYPE),
        ("negotiate", "*/*", JSON_TYPE),
        ("negotiate", "application/vnd.pypi.simple.latest+json", JSON_TYPE),
    ],
)
async def test_content_type(
    running: RunningFakeIndex, mode: Mode, accept: str, expected: str
) -> None:
    running.index.mode = mode
    r, _ = await get(running.project_url("demo-pkg"), Accept=accept)
    assert r.status == 200 and r.headers["Content-Type"].split(";")[0] == expected


async def test_not_acceptable_unknown_and_redirect(running: RunningFakeIndex) -> None:
    r, _ = await get(running.project_url("demo-pkg"), Accept="application/xml")
    assert r.status == 406
    r, _ = await get(running.url + "nope/")
    assert r.status == 404
    r, _ = await get(running.url + "Demo.Pkg/")
    assert r.status == 301 and r.headers["Location"] == "/simple/demo-pkg/"


async def test_json_page(running: RunningFakeIndex, dists: DistCache) -> None:
    r, body = await get(running.project_url("demo-pkg"), Accept=JSON_TYPE)
    doc = json.loads(body)
    assert doc["name"] == "demo-pkg" and doc["versions"] == ["1.0"]
    assert doc["meta"]["api-version"] == "1.1"
    whl, sdist = doc["files"]
    path = dists.wheel("demo-pkg", "1.0", padding=3000)
    assert whl["filename"] == WHEEL and whl["url"] == f"../../files/{WHEEL}"
    assert whl["hashes"] == {"sha256": sha256_of(path)} and whl["size"] == path.stat().st_size
    assert whl["requires-python"] == ">=3.8" and whl["yanked"] == "bad <build>"
    assert whl["upload-time"] == "2024-01-02T03:04:05.000000Z"
    assert set(whl["core-metadata"]) == {"sha256"} and sdist["core-metadata"] is False
    # Relative URLs resolve to the file; the advertised metadata hash is right.
    r, data = await get(str(URL(running.project_url("demo-pkg")).join(URL(whl["url"]))))
    assert r.status == 200 and data == path.read_bytes()
    r, meta = await get(running.file_url(WHEEL + ".metadata"))
    assert hashlib.sha256(meta).hexdigest() == whl["core-metadata"]["sha256"]
    assert b"Name: demo-pkg" in meta
    r, _ = await get(running.file_url("demo_pkg-1.0.tar.gz.metadata"))
    assert r.status == 404


async def test_html_page_and_absolute_urls(running: RunningFakeIndex, dists: DistCache) -> None:
    running.index.mode, running.index.relative_urls = "html", False
    _, body = await get(running.project_url("demo-pkg"))
    page = body.decode()
    sha = sha256_of(dists.wheel("demo-pkg", "1.0", padding=3000))
    assert f'href="{running.origin}/files/{WHEEL}#sha256={sha}"' in page
    assert 'data-requires-python="&gt;=3.8"' in page and 'data-yanked="bad &lt;build&gt;"' in page
    assert page.count("data-core-metadata=") == 1


async def test_raw_page_override(running: RunningFakeIndex) -> None:
    running.index.raw_pages["demo-pkg"] = ("text/html", b"<a href='javascript:x'>evil</a>")
    r, body = await get(running.project_url("demo-pkg"), Accept=JSON_TYPE)
    assert r.headers["Content-Type"] == "text/html" and body == b"<a href='javascript:x'>evil</a>"


async def test_conditional_requests(running: RunningFakeIndex, dists: DistCache) -> None:
    url = running.project_url("demo-pkg")
    r, _ = await get(url, Accept=JSON_TYPE)
    etag, last_modified = r.headers["ETag"], r.headers["Last-Modified"]
    r, body = await get(url, Accept=JSON_TYPE, **{"If-None-Match": etag})
    assert r.status == 304 and body == b""
    r, _ = await get(url, Accept=JSON_TYPE, **{"If-Modified-Since": last_modified})
    assert r.status == 304
    running.index.add(dists.wheel("demo-pkg", "1.1"))
    r, _ = await get(url, Accept=JSON_TYPE, **{"If-None-Match": etag})
    assert r.status == 200 and r.headers["ETag"] != etag
    r, _ = await get(url, Accept=JSON_TYPE, **{"If-Modified-Since": last_modified})
    assert r.status == 200 and r.headers["Last-Modified"] != last_modified


# -- files ----------------------------------------------------------------------------------


async def test_ranges_and_head(running: RunningFakeIndex, dists: DistCache) -> None:
    data = dists.wheel("demo-pkg", "1.0", padding=3000).read_bytes()
    size, url = len(data), running.file_url(WHEEL)
    cases = {"0-9": (0, 9), "100-": (100, size - 1), "-5": (size - 5, size - 1)}
    for spec, (first, last) in cases.items():
        r, body = await get(url, Range=f"bytes={spec}")
        assert r.status == 206 and body == data[first : last + 1]
        assert r.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
    r, _ = await get(url, Range=f"bytes={size}-")
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{size}"
    async with aiohttp.ClientSession() as s, s.head(url) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == size
        assert r.headers["Accept-Ranges"] == "bytes" and await r.read() == b""
    assert running.index.method_requests[("HEAD", f"/files/{WHEEL}")] == 1
    assert running.index.requests[f"/files/{WHEEL}"] == 5
    assert running.index.log[0].headers["Range"] == "bytes=0-9"

    running.index.ranges = False
    r, body = await get(url, Range="bytes=0-9")
    assert r.status == 200 and body == data and "Accept-Ranges" not in r.headers


# -- faults ---------------------------------------------------------------------------------


async def test_fault_status_times(running: RunningFakeIndex) -> None:
    path = "/simple/demo-pkg/"
    running.index.faults[path] = Fault(status=503, times=2, headers={"Retry-After": "1"})
    statuses = [(await get(running.project_url("demo-pkg")))[0].status for _ in range(3)]
    assert statuses == [503, 503, 200] and path not in running.index.faults
    assert running.index.requests[path] == 3


async def test_fault_delay_and_slow(running: RunningFakeIndex, dists: DistCache) -> None:
    running.index.faults["/simple/demo-pkg/"] = Fault(delay=0.3, times=1)
    t0 = time.monotonic()
    r, _ = await get(running.project_url("demo-pkg"))
    assert r.status == 200 and time.monotonic() - t0 >= 0.3

    data = dists.wheel("demo-pkg", "1.0", padding=3000).read_bytes()
    running.index.faults[f"/files/{WHEEL}"] = Fault(slow=0.05, chunk_size=1024)
    t0 = time.monotonic()
    r, body = await get(running.file_url(WHEEL))
    chunks = -(-len(data) // 1024)
    assert body == data and time.monotonic() - t0 >= 0.05 * chunks * 0.9


async def test_fault_reset_after(running: RunningFakeIndex, dists: DistCache) -> None:
    size = dists.wheel("demo-pkg", "1.0", padding=3000).stat().st_size
    running.index.faults[f"/files/{WHEEL}"] = Fault(reset_after=1000, times=1)
    received = 0
    async with aiohttp.ClientSession() as s, s.get(running.file_url(WHEEL)) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == size
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in r.content.iter_any():
                received += len(chunk)
    assert received == 1000
    r, body = await get(running.file_url(WHEEL))  # next request is fine again
    assert len(body) == size


async def test_fault_corrupt(running: RunningFakeIndex, dists: DistCache) -> None:
    data = dists.wheel("demo-pkg", "1.0", padding=3000).read_bytes()
    running.index.faults[f"/files/{WHEEL}"] = Fault(corrupt=True)
    r, body = await get(running.file_url(WHEEL))
    assert r.status == 200 and len(body) == len(data) and body != data


# -- outage ---------------------------------------------------------------------------------


async def test_down_and_up(running: RunningFakeIndex) -> None:
    url, port = running.project_url("demo-pkg"), running.port
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:  # leaves a pooled keep-alive connection behind
            assert r.status == 200
        await running.down()
        with pytest.raises(aiohttp.ClientError):
            async with s.get(url) as r:
                await r.read()
        await running.up()
        assert running.port == port
        async with s.get(url) as r:
            assert r.status == 200
