"""A data directory written by tidegate 0.1: what it cached either loads or is a miss, and what
was uploaded is all there."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import sqlite3


from tidegate.storage.index import MIGRATIONS

JSON = "application/vnd.pypi.simple.v1+json"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"


async def test_a_data_dir_of_tidegate_0_1(fake_index, dists, tidegate, tmp_path):
    upstream = await fake_index("negotiate")
    wheel = dists.wheel("demo-pkg", "1.0")
    upstream.index.add(wheel)
    data = tmp_path / "old-data"
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    # 0.1's page cache: a diskcache of pickles (never to be unpickled by this version).
    (data / "pages").mkdir(parents=True)
    (data / "pages" / "cache.db").write_bytes(pickle.dumps({"pickled": "PageRecord"}))
    # 0.1's blob store (the same layout as today's) holding the wheel, without its index row.
    blob = data / "blobs" / "files" / sha256[:2] / sha256
    blob.parent.mkdir(parents=True)
    shutil.copy(wheel, blob)
    # 0.1's local index: the same tables, no schema version, one published file.
    local_sha = "e" * 64
    (data / "local").mkdir()
    db = sqlite3.connect(data / "local" / "index.db")
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO files (filename, project, version, sha256, hashes, size, upload_time) VALUES"
               " ('acme_core-1.0-py3-none-any.whl', 'acme-core', '1.0', ?, ?, 3, '2024-01-01T00:00:00.000000Z')",
               (local_sha, json.dumps({"sha256": local_sha})))
    db.commit()
    db.close()

    tg = await tidegate(upstreams=[upstream.url], data_dir=str(data))
    assert not (data / "pages").exists()  # the unreadable cache is gone, not read
    async with tg.get("/simple/demo-pkg/", headers={"Accept": JSON}) as r:
        assert r.status == 200 and r.headers["X-Tidegate-Cache"] == "miss"
    async with tg.get(f"/files/demo-pkg/{WHEEL}") as r:  # the cached file is still cached
        assert r.status == 200 and r.headers["X-Tidegate-Cache"] == "hit"
        assert await r.read() == wheel.read_bytes()
    assert upstream.index.requests[f"/files/{WHEEL}"] == 0
    async with tg.get("/simple/acme-core/", headers={"Accept": JSON}) as r:
        assert r.status == 200 and r.headers["X-Tidegate-Cache"] == "local"
        assert [f["filename"] for f in json.loads(await r.read())["files"]] == ["acme_core-1.0-py3-none-any.whl"]
