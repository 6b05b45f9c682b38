"""An online backup of a data directory, taken while tidegate serves.

Databases are copied with SQLite's backup API (a consistent snapshot; copying a live WAL
database file by file is not one). Committed blobs are immutable and appear only by rename,
so a plain copy of each is whole; a blob already in the destination is not copied again, which
makes a second backup into the same place incremental. The page cache, locks and temp files
and the running server's metrics files are left out: pages are fetched again on demand;
except on a mirror (offline, or holding imported bundles), whose pages cannot be fetched again:
then the page cache is copied too.

The blobs are copied before and after the databases: a blob the snapshot names was committed
before it, so one of the two passes finds it (unless it was deleted since, which the closing
check reports). The destination is itself a data directory: restoring is pointing tidegate at
it (or copying it into place) while tidegate is stopped.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from .blobs import fsync_path
from .layout import Layout, layout
from .pagecache import TEMP
from .sqlite import connect

DATABASE_SUFFIX = ".db"


class BackupError(Exception):
    """The backup cannot be taken; the message is one line for the operator."""


@dataclass
class BackupReport:
    databases: list[str] = field(default_factory=list)  # relative paths
    files: int = 0  # blobs now in the backup
    copied: int = 0  # of which copied this time
    copied_bytes: int = 0
    missing: list[str] = field(default_factory=list)  # published files whose blob is not in the backup
    seconds: float = 0.0


def backup(source: Path, dest: Path, *, cached_files: bool = True, pages: bool = False,
           shared_index: bool = False) -> BackupReport:
    """Back up the data dir `source` into `dest` (blocking: run it off any event loop).
    `shared_index`: the index and page cache are in a database of their own (PostgreSQL, which
    pg_dump backs up): only this data dir's files are copied, and none is checked against it."""
    started = time.monotonic()
    source, dest = source.resolve(), dest.resolve()
    if not (layout(source).index.is_file() or shared_index and layout(source).local_blobs.is_dir()):
        raise BackupError(f"{source} holds no tidegate data (no local index)")
    if dest == source or dest.is_relative_to(source):
        raise BackupError(f"the backup {dest} must be outside the data dir {source}")
    if source.is_relative_to(dest):
        raise BackupError(f"the backup {dest} must not contain the data dir {source}")
    src, out = layout(source), layout(dest)
    stores = [(src.local_blobs, out.local_blobs)]
    if cached_files:
        stores.append((src.cache_blobs, out.cache_blobs))
    report = BackupReport()
    try:
        dest.mkdir(mode=0o750, parents=True, exist_ok=True)  # private uploads and token hashes: not for everyone
        for store, target in stores:
            _copy_blobs(store, target, report)
        for database in _databases(src, source):
            relative = database.relative_to(source)
            _backup_database(database, dest / relative)
            report.databases.append(str(relative))
        for store, target in stores:
            _copy_blobs(store, target, report)
        if not shared_index and (pages or _has_imports(out.index)):
            _copy_pages(src.pages, out.pages)
        report.files = sum(_count(target) for _, target in stores)
        report.missing = [] if shared_index else _missing_blobs(out)
    except OSError as exc:
        raise BackupError(f"backup into {dest} failed: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    report.seconds = time.monotonic() - started
    return report


def _databases(src: Layout, root: Path) -> list[Path]:
    """Every SQLite database of the data dir outside what the backup leaves out, so a database
    a later tidegate adds is backed up without this list changing."""
    # metrics: a running server's prometheus-client files (memory-mapped counters, not SQLite).
    skipped = (src.pages, src.legacy_pages, src.locks, src.roots / "pages", src.cache_blobs / "tmp",
               src.local_blobs / "tmp", src.metrics)
    return sorted(p for p in root.rglob(f"*{DATABASE_SUFFIX}")
                  if p.is_file() and not any(p.is_relative_to(s) for s in skipped))


def _backup_database(path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    source = connect(path)
    try:
        copy = sqlite3.connect(partial, isolation_level=None)
        try:
            source.backup(copy)  # one step: a single snapshot, while writers go on (WAL)
            copy.execute("PRAGMA journal_mode=DELETE")  # the backup is one self-contained file
        finally:
            copy.close()
    finally:
        source.close()
    fsync_path(partial)
    os.replace(partial, target)
    for leftover in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
        leftover.unlink(missing_ok=True)  # from an older backup in WAL mode: not ours any more


def _copy_blobs(store: Path, target: Path, report: BackupReport) -> None:
    files = store / "files"
    if not files.is_dir():
        return
    for shard in sorted(files.iterdir()):
        if not shard.is_dir():
            continue
        for blob in sorted(shard.iterdir()):
            there = target / "files" / shard.name / blob.name
            try:
                size = blob.stat().st_size
                if there.is_file() and there.stat().st_size == size:
                    continue  # immutable and content-addressed: the same name is the same bytes
                there.parent.mkdir(parents=True, exist_ok=True)
                partial = there.with_name(there.name + ".partial")
                shutil.copyfile(blob, partial)
            except FileNotFoundError:
                continue  # evicted or deleted while we walked; the closing check tells if it mattered
            fsync_path(partial)
            os.replace(partial, there)
            report.copied += 1
            report.copied_bytes += size


def _count(target: Path) -> int:
    files = target / "files"
    return sum(1 for p in files.glob("*/*") if not p.name.endswith(".partial")) if files.is_dir() else 0


def _missing_blobs(out: Layout) -> list[str]:
    """Published files of the backed-up index whose bytes are not in the backup."""
    db = sqlite3.connect(f"file:{out.index}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT filename, sha256 FROM files").fetchall()
    finally:
        db.close()
    return sorted(name for name, sha256 in rows if not (out.local_blobs / "files" / sha256[:2] / sha256).is_file())


def _has_imports(index: Path) -> bool:
    """Whether the backed-up index records imported bundles (a mirror's pages came in them)."""
    db = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
    try:
        return db.execute("SELECT 1 FROM bundles LIMIT 1").fetchone() is not None
    except sqlite3.OperationalError:  # an index from before bundles
        return False
    finally:
        db.close()


def _copy_pages(pages: Path, target: Path) -> None:
    """The page cache's files (records, metadata, the change stamp), temp files left out. A page
    rewritten during the copy may be copied cut short: it then reads as a miss, as after a crash."""
    if not pages.is_dir():
        return
    shutil.copytree(pages, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(f"*{TEMP}*"))
