"""Recognizing exhausted resources, whichever engine noticed: a full disk (ENOSPC, a quota, or
SQLite's "database or disk is full"), mapped to 507 once per path, and no file descriptor left
(EMFILE, or SQLite's "unable to open database file" when no descriptor is), mapped to 503."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
FILES_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
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


def out_of_files(exc: BaseException | None) -> bool:
    """Whether an exception, or one it was raised from, says no file descriptor is left."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in FILES_ERRNOS:
            return True
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
            return _no_descriptor_left()  # SQLite does not say why: ask the kernel
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _no_descriptor_left() -> bool:
    try:
        os.close(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        return exc.errno in FILES_ERRNOS
    return False
