"""tidegate export / import / keygen / verify, run as commands, against mirrors filled through
tidegate from a fake upstream; offline servers show what was imported."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from support.dists import provenance, sha256_of

from .mirror import data_files, publish_locally, tidegate_cmd

JSON = "application/vnd.pypi.simple.v1+json"
WHEEL_1 = "demo_lib-1.0-py3-none-any.whl"
WHEEL_2 = "demo_lib-2.0-py3-none-any.whl"
LOCAL_DATA = b"PK local wheel bytes " * 100


@pytest.fixture
async def source(fake_index, dists, tidegate, tmp_path):
    """A mirror with two of demo-lib's three files (metadata and provenance too) and a local project."""
    idx = await fake_index("json")
    one = dists.wheel("demo-lib", "1.0", requires_python=">=3.8")
    idx.index.add(one, requires_python=">=3.8", upload_time="2024-01-02T03:04:05.000000Z").provenance = provenance(WHEEL_1, sha256_of(one))
    idx.index.add(dists.wheel("demo-lib", "2.0"), yanked="broken <build>")
    idx.index.add(dists.wheel("demo-lib", "3.0"))
    tg = await tidegate(upstreams=[idx.url], data_dir=str(tmp_path / "source"))
    for path in (f"/files/demo-lib/{WHEEL_1}", f"/files/demo-lib/{WHEEL_1}.metadata",
                 f"/files/demo-lib/{WHEEL_1}.provenance", f"/files/demo-lib/{WHEEL_2}"):
        async with tg.get(path) as r:
            assert r.status == 200 and await r.read()
    await publish_locally(tg.app["storage"] if "storage" in tg.app else _storage(tg), "acme-tool", "1.0", LOCAL_DATA)
    await tg.stop()
    return tg, idx


def _storage(tg):
    from tidegate.web.keys import STORAGE

    return tg.app[STORAGE]


async def _pages(tg, *names):
    out = {}
    for name in names:
        async with tg.get(f"/simple/{name}/", headers={"Accept": JSON}) as r:
            out[name] = (r.status, await r.read())
    return out


async def test_a_signed_bundle_round_trips_exactly(source, tidegate, tmp_path):
    tg, idx = source
    key = tmp_path / "key"
    code, out = await tidegate_cmd("keygen", str(key))
    assert code == 0 and (tmp_path / "key.pub").exists(), out
    bundle = tmp_path / "mirror.tgb"
    code, out = await tidegate_cmd("export", "--data-dir", str(tg.settings.data_dir), "--output", str(bundle),
                                   "--sign-key", str(key))
    assert code == 0, out
    target = tmp_path / "target"
    code, out = await tidegate_cmd("import", str(bundle), "--data-dir", str(target), "--verify-key", f"{key}.pub")
    assert code == 0 and "imported" in out, out
    await idx.close()
    before = await tidegate(upstreams=[idx.url], offline=True, data_dir=str(tg.settings.data_dir))
    after = await tidegate(upstreams=["http://other.invalid/simple/"], offline=True, data_dir=str(target))
    assert await _pages(before, "demo-lib", "acme-tool") == await _pages(after, "demo-lib", "acme-tool")
    page = json.loads((await _pages(after, "demo-lib"))["demo-lib"][1])
    assert [f["filename"] for f in page["files"]] == [WHEEL_1, WHEEL_2]  # 3.0 was never fetched
    assert page["files"][1]["yanked"] == "broken <build>" and page["files"][0]["requires-python"] == ">=3.8"
    assert page["files"][0]["upload-time"] == "2024-01-02T03:04:05.000000Z"
    for path in (f"/files/demo-lib/{WHEEL_1}", f"/files/demo-lib/{WHEEL_1}.metadata",
                 f"/files/demo-lib/{WHEEL_1}.provenance", f"/files/demo-lib/{WHEEL_2}",
                 "/files/acme-tool/acme_tool-1.0-py3-none-any.whl"):
        async with before.get(path) as a, after.get(path) as b:
            assert a.status == b.status == 200 and await a.read() == await b.read(), path
    # Importing it again changes nothing.
    files = data_files(target)
    code, out = await tidegate_cmd("import", str(bundle), "--data-dir", str(target), "--verify-key", f"{key}.pub")
    assert code == 0 and "imported already" in out, out
    assert data_files(target) == files


async def _export(tg, bundle: Path, *extra: str) -> None:
    code, out = await tidegate_cmd("export", "--data-dir", str(tg.settings.data_dir), "--output", str(bundle), *extra)
    assert code == 0, out


async def _refused(bundle: Path, target: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    target.mkdir(exist_ok=True)
    await tidegate_cmd("verify", "--data-dir", str(target))  # creates the empty data dir's state
    before = data_files(target)
    code, out = await tidegate_cmd("import", str(bundle), "--data-dir", str(target), *extra, env=env)
    assert code == 1 and "import refused, nothing changed" in out, out
    assert len([line for line in out.splitlines() if line.startswith("tidegate:")]) == 1, out  # one line
    assert data_files(target) == before
    return out


async def test_a_tampered_byte_is_refused(source, tmp_path):
    tg, _ = source
    bundle = tmp_path / "b.tgb"
    await _export(tg, bundle)
    data = bytearray(bundle.read_bytes())
    with tarfile.open(bundle) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith("files/"))
    data[member.offset_data + member.size // 2] ^= 0x01
    bundle.write_bytes(bytes(data))
    assert "does not match its sha256" in await _refused(bundle, tmp_path / "t")


async def test_a_tampered_manifest_fails_the_signature(source, tmp_path):
    tg, _ = source
    key = tmp_path / "key"
    await tidegate_cmd("keygen", str(key))
    bundle = tmp_path / "b.tgb"
    await _export(tg, bundle, "--sign-key", str(key))
    data = bundle.read_bytes()
    bundle.write_bytes(data.replace(b'"broken <build>"', b'"broken <bui1d>"', 1))
    assert "signature does not match" in await _refused(bundle, tmp_path / "t", "--verify-key", f"{key}.pub")


async def _signed_and_unsigned(tg, tmp_path):
    """Key pairs `right` and `wrong` in tmp_path, and two bundles: one signed by `right`, one not."""
    for name in ("right", "wrong"):
        code, _ = await tidegate_cmd("keygen", str(tmp_path / name))
        assert code == 0
    signed, unsigned = tmp_path / "signed.tgb", tmp_path / "unsigned.tgb"
    await _export(tg, signed, "--sign-key", str(tmp_path / "right"))
    await _export(tg, unsigned)
    return signed, unsigned


async def test_a_wrong_key_or_no_signature_is_refused(source, tmp_path):
    tg, _ = source
    signed, unsigned = await _signed_and_unsigned(tg, tmp_path)
    assert "signature does not match" in await _refused(signed, tmp_path / "t", "--verify-key", str(tmp_path / "wrong.pub"))
    assert "not signed" in await _refused(unsigned, tmp_path / "t", "--verify-key", str(tmp_path / "right.pub"))


async def test_the_signature_policy_is_explicit(source, tmp_path):
    """A key configured (flag, environment or file) asks for its signature; with none, a signed
    bundle is refused unless --no-verify-signature says to leave its signer unchecked."""
    tg, _ = source
    signed, unsigned = await _signed_and_unsigned(tg, tmp_path)
    out = await _refused(signed, tmp_path / "t")
    assert "is signed, but no key to check it is configured" in out and "--no-verify-signature" in out
    config = tmp_path / "tidegate.toml"
    config.write_text(f'import_verify_key = "{tmp_path / "right.pub"}"\n')
    assert "is not signed" in await _refused(unsigned, tmp_path / "t", "--config", str(config))
    env = {**os.environ, "TIDEGATE_IMPORT_VERIFY_KEY": str(tmp_path / "wrong.pub")}
    assert "signature does not match" in await _refused(signed, tmp_path / "t", env=env)
    # The flag wins over the environment, which wins over the file.
    code, out = await tidegate_cmd("import", str(signed), "--data-dir", str(tmp_path / "a"), "--config", str(config),
                                   "--verify-key", str(tmp_path / "right.pub"), env=env)
    assert code == 0 and "imported" in out and "not who made it" not in out, out
    code, out = await tidegate_cmd("import", str(signed), "--data-dir", str(tmp_path / "b"), "--config", str(config))
    assert code == 0 and "imported" in out and "not who made it" not in out, out
    code, out = await tidegate_cmd("import", str(signed), "--data-dir", str(tmp_path / "c"), "--no-verify-signature")
    assert code == 0 and "not who made it: --no-verify-signature" in out, out
    code, out = await tidegate_cmd("import", str(unsigned), "--data-dir", str(tmp_path / "d"))
    assert code == 0 and "not who made it: unsigned" in out, out
    code, out = await tidegate_cmd("import", str(signed), "--data-dir", str(tmp_path / "e"), "--no-verify-signature",
                                   "--verify-key", str(tmp_path / "right.pub"))
    assert code == 2 and "not allowed with argument" in out, out


@pytest.mark.parametrize("where", ["half", "last byte"])
async def test_a_truncated_bundle_is_refused(source, tmp_path, where):
    tg, _ = source
    bundle = tmp_path / "b.tgb"
    await _export(tg, bundle)
    data = bundle.read_bytes()
    with tarfile.open(bundle) as tar:
        last = tar.getmembers()[-1]
    cut = len(data) // 2 if where == "half" else last.offset_data + last.size - 1
    bundle.write_bytes(data[:cut])
    assert "truncated" in await _refused(bundle, tmp_path / "t")


async def test_a_delta_needs_its_base_and_holds_only_what_it_lacked(source, tidegate, tmp_path):
    tg, idx = source
    full, delta = tmp_path / "full.tgb", tmp_path / "delta.tgb"
    await _export(tg, full)
    await tg.start()
    async with tg.get("/files/demo-lib/demo_lib-3.0-py3-none-any.whl") as r:
        assert r.status == 200 and await r.read()
    await tg.stop()
    await _export(tg, delta, "--since", str(full))
    with tarfile.open(delta) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert [m["key"] for m in manifest["files"] if m["kind"] == "files"] == [sha256_of_file(tg, "3.0")]
    assert manifest["pages"] == []  # the page did not change
    base = json.loads(tarfile.open(full).extractfile("manifest.json").read())["bundle"]
    assert manifest["base"] == base
    out = await _refused(delta, tmp_path / "t")
    assert f"extends bundle {base}, which was never imported" in out
    # Base first, then the delta, into a server that keeps running: it sees each at once.
    await idx.close()
    target = tmp_path / "t"
    server = await tidegate(upstreams=[idx.url], offline=True, data_dir=str(target))
    async with server.get("/simple/demo-lib/") as r:
        assert r.status == 404
    for bundle in (full, delta):
        code, out = await tidegate_cmd("import", str(bundle), "--data-dir", str(target))
        assert code == 0, out
        page = json.loads((await _pages(server, "demo-lib"))["demo-lib"][1])
        assert len(page["files"]) == (2 if bundle == full else 3)


def sha256_of_file(tg, version: str) -> str:
    record = json.loads(next((tg.settings.data_dir / "pagecache" / "pages").glob("*/demo-lib.page")).read_bytes())
    doc = record["parts"][0]["project"]
    return next(f["hashes"]["sha256"] for f in doc["files"] if f"-{version}-" in f["filename"])


async def test_verify_finds_a_flipped_byte_and_repairs_only_the_cache(source, tidegate, tmp_path):
    tg, idx = source
    data_dir = tg.settings.data_dir
    code, out = await tidegate_cmd("verify", "--data-dir", str(data_dir))
    assert code == 0 and "0 problems" in out, out
    cached = next(p for p in (data_dir / "blobs" / "files").glob("*/*"))
    local = next(p for p in (data_dir / "local" / "files").glob("*/*"))
    for path in (cached, local):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x40
        path.write_bytes(bytes(data))
    code, out = await tidegate_cmd("verify", "--data-dir", str(data_dir))
    assert code == 1 and "2 problems" in out and "corrupt" in out, out
    assert "acme_tool-1.0-py3-none-any.whl: corrupt" in out and "NOT removed" in out
    code, out = await tidegate_cmd("verify", "--repair", "--data-dir", str(data_dir))
    assert code == 1 and "removed from the cache" in out and "NOT removed" in out, out
    assert not cached.exists() and local.exists()  # a local upload is never removed
    code, out = await tidegate_cmd("verify", "--data-dir", str(data_dir))
    assert "1 problems" in out and "local" in out, out


async def test_export_selects_projects_by_pattern(source, tmp_path):
    tg, _ = source
    for pattern, pages, local in (("acme-*", [], ["acme_tool-1.0-py3-none-any.whl"]),
                                  ("Demo_Lib", ["demo-lib"], [])):
        bundle = tmp_path / f"{pages}.tgb"
        await _export(tg, bundle, "--project", pattern)
        with tarfile.open(bundle) as tar:
            manifest = json.loads(tar.extractfile("manifest.json").read())
            names = tar.getnames()
        assert [p["name"] for p in manifest["pages"]] == pages
        assert [r["filename"] for r in manifest["local"]] == local
        assert names[0] == "manifest.json" and len(names) == 1 + len(manifest["files"])


def _rewritten(bundle: Path, out: Path, change) -> Path:
    """The bundle with its manifest changed by `change` (unsigned): what a hostile or broken
    exporter could write."""
    import io

    with tarfile.open(bundle) as tar, tarfile.open(out, "w") as new:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        change(manifest)
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        new.addfile(info, io.BytesIO(data))
        for member in tar.getmembers():
            if member.name not in ("manifest.json", "manifest.sig"):
                new.addfile(member, tar.extractfile(member))
    return out


def _escape_page(m):
    m["pages"][0]["name"] = "../../../../../../../../../tmp/tidegate-pwned"


def _blob_address(m):
    m["local"][0]["sha256"] = "/etc/passwd"


def _key_not_content(m):
    member = next(f for f in m["files"] if f["kind"] == "files")
    member["key"] = "0" * 64


def _twice(m):
    m["local"].append(dict(m["local"][0], sha256="1" * 64))


@pytest.mark.parametrize("change, reason", [
    (_escape_page, "not a normalized project name"),
    (_blob_address, "is malformed"),
    (_key_not_content, "does not fit"),
    (_twice, "twice"),
], ids=["page name escapes the data dir", "local file addressed by a path", "blob key is not its sha256",
        "one local filename twice"])
async def test_a_manifest_that_would_reach_outside_or_lie_about_addresses_is_refused(source, tmp_path, change, reason):
    # Found in review: page names, blob keys and local rows became paths unchecked.
    tg, _ = source
    bundle = tmp_path / "b.tgb"
    await _export(tg, bundle)
    hostile = _rewritten(bundle, tmp_path / "hostile.tgb", change)
    assert reason in await _refused(hostile, tmp_path / "t")
    assert not Path("/tmp/tidegate-pwned.page").exists()


async def test_a_bundle_that_does_not_fit_the_file_cache_is_refused_not_half_imported(source, tmp_path):
    # Found in review: LRU eviction during the import dropped its own files, and the bundle was
    # recorded as imported all the same.
    tg, _ = source
    bundle = tmp_path / "b.tgb"
    await _export(tg, bundle)
    target = tmp_path / "t"
    code, out = await tidegate_cmd("import", str(bundle), "--data-dir", str(target),
                                   env={"TIDEGATE_FILES_MAX_SIZE": "1"})
    assert code == 1 and "does not fit the file cache" in out, out
    code, out = await tidegate_cmd("import", str(bundle), "--data-dir", str(target))
    assert code == 0 and "nothing to do" not in out, out


async def test_a_backup_of_a_mirror_keeps_its_imported_pages(source, tmp_path):
    # Found in review: backups left the page cache out ("fetched again"), which a mirror cannot do.
    tg, _ = source
    bundle, target, copy = tmp_path / "b.tgb", tmp_path / "t", tmp_path / "copy"
    await _export(tg, bundle)
    code, out = await tidegate_cmd("import", str(bundle), "--data-dir", str(target))
    assert code == 0, out
    code, out = await tidegate_cmd("backup", str(copy), "--data-dir", str(target))
    assert code == 0, out
    pages = sorted(p.name for p in (target / "pagecache" / "pages").rglob("*.page"))
    assert pages and sorted(p.name for p in (copy / "pagecache" / "pages").rglob("*.page")) == pages
