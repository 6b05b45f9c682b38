"""How tidegate opens an SQLite database: WAL, so that readers never wait for the writer."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from .full import FULL_MESSAGE, has_room

BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another process's transaction
ROOM_TO_OPEN = 1 << 20  # less free space than this when opening fails: the disk is full


def connect(path: Path, *, durable: bool = False, readonly: bool = False,
            busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), rows by column name.

    `durable`: every commit reaches the disk before it returns (synchronous=FULL), for state a
    client was told is saved; otherwise a power loss may drop the last commits, never corrupt.
    `readonly`: the connection refuses writes, so a reader can never take the write lock.
    """
    try:
        return _connect(path, durable, readonly, busy_timeout_ms)
    except sqlite3.OperationalError as exc:
        # Opening writes (a new file, WAL's -shm): on a full disk SQLite reports an I/O error.
        if not readonly and not has_room(path.parent, ROOM_TO_OPEN):
            raise OSError(errno.ENOSPC, f"{FULL_MESSAGE}: opening {path.name}: {exc}") from exc
        raise


def _connect(path: Path, durable: bool, readonly: bool, busy_timeout_ms: int) -> sqlite3.Connection:
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False,
                             timeout=busy_timeout_ms / 1000)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
        db.execute("PRAGMA journal_mode=WAL")
    db.row_factory = sqlite3.Row
    db.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    return db
