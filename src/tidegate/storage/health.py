"""Is the data directory usable? Checked once at start-up (can it be created and written at
all) and probed for readiness while serving (can a byte be written now: a full disk, a file
system remounted read-only or a permission change all show)."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class DataDirError(Exception):
    """The data directory cannot serve as one; the message is one line for the operator."""


def prepare_data_dir(root: Path) -> None:
    """Create the data directory if needed and make sure this user may write in it. Writes
    nothing: a full disk is not a reason to refuse to start (what is stored can still be served)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataDirError(f"data dir {root} is not a directory") from None
    except OSError as exc:
        raise DataDirError(f"cannot create data dir {root}: {_reason(exc)}") from None
    if not root.is_dir():
        raise DataDirError(f"data dir {root} is not a directory")
    if not os.access(root, os.W_OK | os.X_OK):
        if _read_only_fs(root):
            raise DataDirError(f"data dir {root} is on a read-only file system")
        raise DataDirError(f"data dir {root} is not writable by this user (uid {os.getuid()})")


def probe_writable(directories: tuple[Path, ...]) -> str | None:
    """Write and remove a small file in each directory; None if all worked, else why not.
    Blocking (run it in a thread). The write is not fsynced: ENOSPC, EROFS and EACCES all
    come back from open() or write() already, and an fsync could stall the probe for seconds."""
    name = f".ready-probe.{os.getpid()}"
    for directory in directories:
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                if os.write(fd, b"tidegate readiness probe\n" * 160) == 0:  # 4 KB: a whole block
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            finally:
                os.close(fd)
                os.unlink(path)
        except OSError as exc:
            return f"{directory}: {_reason(exc)}"
    return None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
