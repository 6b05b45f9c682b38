"""Recognizing a full disk, whichever engine noticed it: the file system (ENOSPC, or a quota)
or SQLite ("database or disk is full"). The read and write paths map it to 507 once each."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
FULL_MESSAGE = "tidegate's storage is full"


def disk_full(exc: BaseException | None) -> bool:
    """Whether an exception, or one it was raised from, says the storage is out of space."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                                               or "database or disk is full" in str(exc)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def has_room(directory: Path, size: int) -> bool:
    """Whether `size` bytes fit on the file system holding `directory` (for unprivileged users)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return True  # cannot tell: let the write itself find out
    return st.f_bavail * st.f_frsize >= size
