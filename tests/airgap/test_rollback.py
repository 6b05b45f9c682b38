"""Importing an older bundle (or a delta of an older chain) after a newer one never rolls a page,
a yank state or a file list back: the copy read later wins, whatever the order of import."""

from __future__ import annotations

import json

import pytest

from .mirror import publish_locally, tidegate_cmd

JSON = "application/vnd.pypi.simple.v1+json"
LIB_1, LIB_2 = "demo_lib-1.0-py3-none-any.whl", "demo_lib-2.0-py3-none-any.whl"
TOOL = "acme_tool-1.0-py3-none-any.whl"


@pytest.fixture
async def bundles(fake_index, dists, tidegate, tmp_path):
    """Three bundles of one source, in the order they were cut: `old` (demo-lib 1.0, acme-tool
    not yanked), `delta` (since `old`: demo-lib 2.0 added), `new` (full: 1.0 yanked upstream,
    acme-tool yanked locally)."""
    idx = await fake_index("json")
    idx.index.add(dists.wheel("demo-lib", "1.0"))
    source = tmp_path / "source"
    tg = await tidegate(upstreams=[idx.url], data_dir=str(source), min_refresh=0)

    async def fetch(*paths):
        for path in paths:
            async with tg.get(path, headers={"Cache-Control": "max-age=0"}) as r:
                assert r.status == 200, path
                await r.read()

    async def export(name, *extra):
        code, out = await tidegate_cmd("export", "--data-dir", str(source), "--output", str(tmp_path / name), *extra)
        assert code == 0, out
        return tmp_path / name

    await fetch("/simple/demo-lib/", f"/files/demo-lib/{LIB_1}")
    from tidegate.web.keys import STORAGE

    await publish_locally(tg.app[STORAGE], "acme-tool", "1.0", b"PK local wheel " * 64)
    old = await export("old.tgb")
    idx.index.add(dists.wheel("demo-lib", "2.0"))
    await fetch("/simple/demo-lib/", f"/files/demo-lib/{LIB_2}")
    delta = await export("delta.tgb", "--since", str(old))
    idx.index.file(LIB_1).yanked = "broken"
    await fetch("/simple/demo-lib/")
    code, out = await tidegate_cmd("yank", "--data-dir", str(source), TOOL, "--reason", "superseded")
    assert code == 0, out
    new = await export("new.tgb")
    await tg.close()
    return old, delta, new


async def _state(tidegate, data_dir):
    server = await tidegate(upstreams=["http://upstream.invalid/simple/"], offline=True, data_dir=str(data_dir))
    out = {}
    for name in ("demo-lib", "acme-tool"):
        async with server.get(f"/simple/{name}/", headers={"Accept": JSON}) as r:
            assert r.status == 200, name
            out[name] = {f["filename"]: f.get("yanked", False) for f in json.loads(await r.read())["files"]}
    await server.close()
    return out


NEWEST = {"demo-lib": {LIB_1: "broken", LIB_2: False}, "acme-tool": {TOOL: "superseded"}}


@pytest.mark.parametrize("order", [("new", "old"), ("old", "new", "delta"), ("new", "delta")])
async def test_an_older_bundle_never_rolls_the_mirror_back(bundles, tidegate, tmp_path, order):
    old, delta, new = bundles
    by_name = {"old": old, "delta": delta, "new": new}
    target = tmp_path / "target"
    outputs = []
    for name in order:
        if name == "delta" and "old" not in order:
            code, out = await tidegate_cmd("import", str(old), "--data-dir", str(target))  # the delta's base
            assert code == 0, out
        code, out = await tidegate_cmd("import", str(by_name[name]), "--data-dir", str(target))
        assert code == 0, out
        outputs.append(out)
    assert await _state(tidegate, target) == NEWEST
    # The last import was of an older copy, and says what it kept.
    assert "kept the newer copies here of 1 pages" in outputs[-1], outputs[-1]
    if order[-1] == "old":
        assert "and of the local projects acme-tool" in outputs[-1]


async def test_bundles_in_the_order_they_were_cut_move_the_mirror_forward(bundles, tidegate, tmp_path):
    old, delta, new = bundles
    target = tmp_path / "target"
    code, out = await tidegate_cmd("import", str(old), "--data-dir", str(target))
    assert code == 0, out
    assert await _state(tidegate, target) == {"demo-lib": {LIB_1: False}, "acme-tool": {TOOL: False}}
    code, out = await tidegate_cmd("import", str(delta), "--data-dir", str(target))
    assert code == 0 and "kept" not in out, out
    assert (await _state(tidegate, target))["demo-lib"] == {LIB_1: False, LIB_2: False}
    code, out = await tidegate_cmd("import", str(new), "--data-dir", str(target))
    assert code == 0 and "kept" not in out, out
    assert await _state(tidegate, target) == NEWEST


def test_a_newer_page_from_another_clock_still_moves_last_modified_forward():
    from tidegate.airgap.merge import newer_page
    from tidegate.simple.model import Project
    from tidegate.storage.records import PageRecord

    one, two = Project(name="demo-lib", files=()), Project(name="demo-lib", files=(), status="archived")
    here = PageRecord("demo-lib", (), one, fetched_at=200.0, changed_at=150.0)
    assert newer_page(here, PageRecord("demo-lib", (), two, fetched_at=200.0, changed_at=190.0)) is None
    assert newer_page(here, PageRecord("demo-lib", (), two, fetched_at=300.0, changed_at=100.0)).changed_at == 151.0
    assert newer_page(here, PageRecord("demo-lib", (), two, fetched_at=300.0, changed_at=250.0)).changed_at == 250.0
    assert newer_page(here, PageRecord("demo-lib", (), one, fetched_at=300.0, changed_at=250.0)).changed_at == 150.0
    assert newer_page(None, here) is here
