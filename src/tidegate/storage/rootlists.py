"""The upstreams' root lists (every project an upstream has), in SQLite.

A list the size of PyPI's (600,000 names) never has to be in memory: a new list is written
from a file of names, and the merged, sorted list is read back in batches along an index.
Every call runs in a thread; readers (WAL) never wait for a list being replaced.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .full import disk_full
from .records import Validators
from .sqlite import connect

log = logging.getLogger(__name__)

BATCH = 5000

SCHEMA = """
CREATE TABLE IF NOT EXISTS lists (upstream TEXT PRIMARY KEY, fetched_at REAL NOT NULL, changed_at REAL NOT NULL,
                                  etag TEXT, last_modified TEXT, digest TEXT NOT NULL, names INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS names (name TEXT NOT NULL, upstream TEXT NOT NULL, PRIMARY KEY (name, upstream))
    WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class RootList:
    """What is known of one upstream's list."""

    upstream: str
    fetched_at: float  # last confirmed by the upstream
    changed_at: float  # last time its names changed
    validators: Validators
    digest: str  # of its names, to tell a changed list from the same one sent again
    names: int


class SqliteRootLists:
    def __init__(self, directory: Path) -> None:
        self._path = directory / "lists.db"
        self.pages_dir = directory / "pages"  # the root pages written from the lists
        self.pages_dir.mkdir(parents=True, exist_ok=True)
        self._ready = False
        try:
            self._connect().close()
        except OSError as exc:  # a full disk: serve without root lists until there is room
            if not disk_full(exc):
                raise
            log.warning("the root lists are unavailable: %s", exc)

    def _connect(self) -> sqlite3.Connection:
        db = connect(self._path)
        if not self._ready:
            db.executescript(SCHEMA)
            self._ready = True
        return db

    async def close(self) -> None:
        pass

    async def lists(self) -> dict[str, RootList]:
        return await asyncio.to_thread(self._lists)

    def _lists(self) -> dict[str, RootList]:
        db = self._connect()  # not read-only: a WAL database needs its -shm, which a reader may create
        try:
            return {r["upstream"]: RootList(r["upstream"], r["fetched_at"], r["changed_at"],
                                            Validators(r["etag"], r["last_modified"]), r["digest"], r["names"])
                    for r in db.execute("SELECT * FROM lists")}
        finally:
            db.close()

    async def replace(self, root: RootList, names_file: Path | None) -> None:
        """Record an upstream's list: its names, one a line in `names_file` (None: the names are
        unchanged, only the confirmation is new)."""
        await asyncio.to_thread(self._replace, root, names_file)

    def _replace(self, root: RootList, names_file: Path | None) -> None:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            if names_file is not None:
                db.execute("DELETE FROM names WHERE upstream = ?", (root.upstream,))
                with open(names_file, encoding="utf-8") as lines:
                    db.executemany("INSERT OR IGNORE INTO names (name, upstream) VALUES (?, ?)",
                                   ((line.rstrip("\n"), root.upstream) for line in lines))
            db.execute("INSERT OR REPLACE INTO lists VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (root.upstream, root.fetched_at, root.changed_at, root.validators.etag,
                        root.validators.last_modified, root.digest, root.names))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def names(self, upstreams: list[str]) -> Iterator[list[str]]:
        """The names of these upstreams' lists, sorted, each once, in batches (call in a thread)."""
        if not upstreams:
            return
        db = self._connect()  # not read-only: a WAL database needs its -shm, which a reader may create
        try:
            marks = ", ".join("?" for _ in upstreams)
            rows = db.execute(f"SELECT DISTINCT name FROM names WHERE upstream IN ({marks}) ORDER BY name", upstreams)
            while batch := rows.fetchmany(BATCH):
                yield [name for (name,) in batch]
        finally:
            db.close()
