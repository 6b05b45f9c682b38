"""Helpers for the air-gap tests: a mirror filled through tidegate, and the commands run as a
user runs them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from tidegate.storage.records import PublishedFile


async def tidegate_cmd(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> tuple[int, str]:
    """`tidegate ARGS...` in a subprocess (its own event loop), stdout and stderr together."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tidegate", *args,
                                                env=env or dict(os.environ), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode()


async def publish_locally(storage: Any, project: str, version: str, data: bytes) -> str:
    filename = f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
    sha256 = hashlib.sha256(data).hexdigest()
    temp = storage.local_blobs.temp_path(sha256)
    temp.write_bytes(data)
    await storage.local_blobs.commit(temp, sha256)

    def add(rows):
        rows.register(project, 0.0)
        rows.insert_file(PublishedFile(filename=filename, project=project, version=version, sha256=sha256,
                                       hashes={"sha256": sha256}, size=len(data),
                                       upload_time="2024-01-01T00:00:00.000000Z"), session=None)

    await storage.index.write(add)
    return filename


def data_files(data_dir: Path) -> dict[str, object]:
    """What a data dir holds: its files (databases aside) and the local index's rows, to show
    that a refused import changed nothing."""
    out: dict[str, object] = {}
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and ".db" not in path.name and "locks" not in path.parts:
            out[str(path.relative_to(data_dir))] = path.read_bytes()
    index = data_dir / "local" / "index.db"
    if index.exists():
        db = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
        for table in ("files", "projects", "metadata", "bundles"):
            try:
                out[table] = sorted(db.execute(f"SELECT * FROM {table}").fetchall())
            except sqlite3.OperationalError:
                out[table] = None
        db.close()
    return out
