"""The local index and its upload sessions, in SQLite: every state change is one transaction.

Published files, publishing sessions (PEP 694) and their file upload sessions live here; file
bytes live in a content-addressed BlobStore beside it, committed before any row points at them.
A crash therefore leaves either the old state or the new one, and a publish makes all of a
session's files visible in one commit.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import states

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (      -- registered names; a name with no published file is reserved
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (         -- published files
    filename TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    hashes TEXT NOT NULL,                  -- JSON object
    size INTEGER NOT NULL,
    upload_time TEXT NOT NULL,
    requires_python TEXT,
    metadata_sha256 TEXT,
    yanked TEXT,                           -- NULL: not yanked; otherwise the reason ('' for none)
    attestations TEXT,                     -- JSON (PEP 740) or NULL
    session TEXT                           -- the session that published it; NULL for legacy uploads
);
CREATE INDEX IF NOT EXISTS files_project ON files (project);
CREATE TABLE IF NOT EXISTS sessions (      -- publishing sessions
    token TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    ended_at REAL,
    notices TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS sessions_release ON sessions (project, version);
CREATE TABLE IF NOT EXISTS uploads (       -- file upload sessions
    id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    filename TEXT NOT NULL,
    status TEXT NOT NULL,
    size INTEGER NOT NULL,
    hashes TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    sha256 TEXT,                           -- set once the bytes arrived and matched size and hashes
    requires_python TEXT,
    metadata_sha256 TEXT,
    attestations TEXT,
    notices TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS uploads_session ON uploads (token);
CREATE TABLE IF NOT EXISTS metadata (      -- PEP 658 metadata files, by their own sha256
    sha256 TEXT PRIMARY KEY,
    body BLOB NOT NULL
);
"""


STAMP_LIMIT = 1 << 20


class Conflict(Exception):
    """A request that contradicts the current state (HTTP 409 unless `status` says otherwise)."""

    def __init__(self, message: str, *, status: int = 409, location: str | None = None, files: list[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.location = location
        self.files = list(files)


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    project: str
    version: str
    status: str
    created_at: float
    expires_at: float
    ended_at: float | None
    notices: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    token: str
    filename: str
    status: str
    size: int
    hashes: dict[str, str]
    mechanism: str
    created_at: float
    expires_at: float
    sha256: str | None
    requires_python: str | None
    metadata_sha256: str | None
    attestations: str | None
    notices: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PublishedFile:
    filename: str
    project: str
    version: str
    sha256: str
    hashes: dict[str, str]
    size: int
    upload_time: str
    requires_python: str | None
    metadata_sha256: str | None
    yanked: str | None
    attestations: str | None


def _session(row: sqlite3.Row) -> Session:
    return Session(row["token"], row["project"], row["version"], row["status"], row["created_at"],
                   row["expires_at"], row["ended_at"], tuple(json.loads(row["notices"])))


def _upload(row: sqlite3.Row) -> Upload:
    return Upload(row["id"], row["token"], row["filename"], row["status"], row["size"], json.loads(row["hashes"]),
                  row["mechanism"], row["created_at"], row["expires_at"], row["sha256"], row["requires_python"],
                  row["metadata_sha256"], row["attestations"], tuple(json.loads(row["notices"])))


def _file(row: sqlite3.Row) -> PublishedFile:
    return PublishedFile(row["filename"], row["project"], row["version"], row["sha256"], json.loads(row["hashes"]),
                         row["size"], row["upload_time"], row["requires_python"], row["metadata_sha256"],
                         row["yanked"], row["attestations"])


def already_exists(filename: str) -> str:
    """The refusal twine's --skip-existing recognises (it looks for "File already exists")."""
    return (f"File already exists: {filename} was published with other contents; published files never "
            "change, so upload it under a new version.")


def upload_time(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a published release survives power loss
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()  # one connection, used from the loop and from threads
        # Every commit appends a byte to this file, so its size counts commits. Workers compare
        # its stat (one syscall, no lock) on each request to learn that any process changed the
        # local index; file times alone are too coarse (a few ms) to tell two commits apart.
        self._stamp = path.with_name(path.name + ".changed")
        self._stamp.touch()
        # Held open: fstat on a descriptor is far cheaper than stat on a path, and the file is
        # only ever appended to or truncated, never replaced.
        self._stamp_fd = os.open(self._stamp, os.O_RDONLY)

    def close(self) -> None:
        # Under the lock: a thread may still be inside a transaction (the expiry sweep runs in
        # one, and cancelling the task awaiting it does not stop it); closing under it crashes.
        with self._lock:
            self._db.close()
            os.close(self._stamp_fd)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front, so checks and
        writes inside it cannot interleave with another process's."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            with open(self._stamp, "ab") as stamp:
                stamp.write(b".")
                if stamp.tell() > STAMP_LIMIT:
                    stamp.truncate(0)  # keeps it small; the mtime still differs from any seen

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def stamp(self) -> tuple[int, int]:
        """Differs after any process committed a change."""
        st = os.fstat(self._stamp_fd)
        return st.st_size, st.st_mtime_ns

    # --- the local index ---

    def local_projects(self) -> set[str]:
        """Projects with at least one published file: those the local index shows."""
        return {row[0] for row in self._read("SELECT DISTINCT project FROM files")}

    def is_registered(self, project: str) -> bool:
        return bool(self._read("SELECT 1 FROM projects WHERE name = ?", (project,)))

    def files_of(self, project: str) -> list[PublishedFile]:
        return [_file(r) for r in self._read("SELECT * FROM files WHERE project = ? ORDER BY filename", (project,))]

    def published(self, filename: str) -> PublishedFile | None:
        rows = self._read("SELECT * FROM files WHERE filename = ?", (filename,))
        return _file(rows[0]) if rows else None

    def metadata(self, sha256: str) -> bytes | None:
        rows = self._read("SELECT body FROM metadata WHERE sha256 = ?", (sha256,))
        return bytes(rows[0][0]) if rows else None

    def put_metadata(self, sha256: str, body: bytes) -> None:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO metadata (sha256, body) VALUES (?, ?)", (sha256, body))

    def add_legacy_file(self, file: PublishedFile, now: float) -> str:
        """Publish one file uploaded through the legacy API: "added", or "identical" for a
        re-upload of the same bytes. A different file under a published name is a Conflict(400)."""
        with self._write() as db:
            existing = db.execute("SELECT sha256 FROM files WHERE filename = ?", (file.filename,)).fetchone()
            if existing is not None:
                if existing[0] == file.sha256:
                    return "identical"
                raise Conflict(already_exists(file.filename), status=400)
            if _is_sdist(file.filename) and (other := _published_sdists(db, file.project, file.version)):
                raise Conflict(f"A release has one source distribution, and {file.version} has {other[0]}.",
                               status=400)
            db.execute("INSERT OR IGNORE INTO projects (name, created_at) VALUES (?, ?)", (file.project, now))
            _insert_file(db, file, session=None)
            return "added"

    def set_yanked(self, filename: str, reason: str | None) -> bool:
        """Yank a published file (reason "" for none) or, with None, un-yank it (PEP 592)."""
        with self._write() as db:
            return db.execute("UPDATE files SET yanked = ? WHERE filename = ?", (reason, filename)).rowcount == 1

    # --- publishing sessions ---

    def session(self, token: str) -> Session | None:
        rows = self._read("SELECT * FROM sessions WHERE token = ?", (token,))
        return _session(rows[0]) if rows else None

    def uploads(self, token: str) -> list[Upload]:
        return [_upload(r) for r in self._read("SELECT * FROM uploads WHERE token = ? ORDER BY created_at", (token,))]

    def upload(self, upload_id: str) -> Upload | None:
        rows = self._read("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        return _upload(rows[0]) if rows else None

    def create_session(self, token: str, project: str, version: str, now: float, lifetime: float) -> Session:
        """A new open session, or Conflict with the live session's token as `location`. A project
        with no release yet is registered now, which reserves its name (invisible until published)."""
        with self._write() as db:
            live = db.execute(
                "SELECT token FROM sessions WHERE project = ? AND version = ? AND status IN (?, ?, ?)",
                (project, version, states.OPEN, states.PROCESSING, states.ERROR),
            ).fetchone()
            if live is not None:
                raise Conflict(f"A publishing session for {project} {version} is already in progress; use it.",
                               location=live[0])
            db.execute("INSERT OR IGNORE INTO projects (name, created_at) VALUES (?, ?)", (project, now))
            db.execute(
                "INSERT INTO sessions (token, project, version, status, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                (token, project, version, states.OPEN, now, now + lifetime),
            )
        return self.session(token)  # type: ignore[return-value]

    def extend_session(self, token: str, until: float) -> None:
        with self._write() as db:
            db.execute("UPDATE sessions SET expires_at = MAX(expires_at, ?) WHERE token = ?", (until, token))
            db.execute("UPDATE uploads SET expires_at = MAX(expires_at, ?) WHERE token = ? AND status != ?",
                       (until, token, states.CANCELED))

    def cancel_session(self, token: str, now: float, notice: str | None = None) -> list[str]:
        """Cancel a session and its files; returns the sha256 of blobs nothing else refers to."""
        with self._write() as db:
            row = db.execute("SELECT status, project FROM sessions WHERE token = ?", (token,)).fetchone()
            new_status = states.session_transition(row["status"], states.SessionEvent.CANCEL)
            notices = [notice] if notice else []
            db.execute("UPDATE sessions SET status = ?, ended_at = ?, notices = ? WHERE token = ?",
                       (new_status, now, json.dumps(notices), token))
            db.execute("UPDATE uploads SET status = ? WHERE token = ?", (states.CANCELED, token))
            _release_unused_name(db, row["project"])
            return _orphans(db, token)

    def publish(self, token: str, now: float) -> list[str]:
        """Publish every completed file of an editable session in one transaction: the atomic
        reservation and check of the release's filenames that PEP 694 requires."""
        with self._write() as db:
            session = _session(db.execute("SELECT * FROM sessions WHERE token = ?", (token,)).fetchone())
            # The table decides whether this state may publish (Refused, 409, if not).
            new_status = states.session_transition(session.status, states.SessionEvent.PUBLISH_IMMEDIATE)
            if session.expires_at < now:
                raise Conflict("The session has expired.", status=404)
            uploads = [_upload(r) for r in db.execute(
                "SELECT * FROM uploads WHERE token = ? AND status != ?", (token, states.CANCELED))]
            unfinished = [u for u in uploads if u.status != states.COMPLETED]
            if unfinished:
                raise Conflict("Every file must be completed before publishing: "
                               + ", ".join(f"{u.filename} is {u.status}" for u in unfinished) + ".",
                               files=[u.filename for u in unfinished])
            if not uploads:
                raise Conflict("The session has no files to publish; upload at least one.", status=400)
            taken = [u.filename for u in uploads
                     if db.execute("SELECT 1 FROM files WHERE filename = ?", (u.filename,)).fetchone()]
            if taken:
                raise Conflict("Already published, and published files never change: " + ", ".join(taken) + ".",
                               files=taken)
            sdists = [u.filename for u in uploads if _is_sdist(u.filename)] + _published_sdists(db, session.project, session.version)
            if len(sdists) > 1:
                raise Conflict("A release has one source distribution; these compete: " + ", ".join(sdists) + ".",
                               files=sdists)
            stamp = upload_time(now)
            for u in uploads:
                # The sha256 we computed is always advertised, whatever the client declared.
                hashes = {**u.hashes, "sha256": u.sha256 or ""}
                _insert_file(db, PublishedFile(
                    u.filename, session.project, session.version, u.sha256 or "", hashes, u.size, stamp,
                    u.requires_python, u.metadata_sha256, None, u.attestations), session=token)
            db.execute("UPDATE sessions SET status = ?, ended_at = ? WHERE token = ?", (new_status, now, token))
            return [u.filename for u in uploads]

    # --- file upload sessions ---

    def create_upload(self, upload_id: str, token: str, filename: str, size: int, hashes: dict[str, str],
                      mechanism: str, now: float, lifetime: float) -> Upload:
        with self._write() as db:
            session = db.execute("SELECT * FROM sessions WHERE token = ?", (token,)).fetchone()
            _touch_session(db, token)  # a file is added: refused (409) unless the session is editable
            if session["expires_at"] < now:
                raise Conflict("The session has expired.", status=404)
            if db.execute("SELECT 1 FROM files WHERE filename = ?", (filename,)).fetchone():
                raise Conflict(f"{filename} is already published, and published files never change.")
            other = db.execute("SELECT status FROM uploads WHERE token = ? AND filename = ? AND status != ?",
                               (token, filename, states.CANCELED)).fetchone()
            if other is not None:
                raise Conflict(f"{filename} is already in this session ({other[0]}); delete that upload first "
                               "to replace it.")
            db.execute(
                "INSERT INTO uploads (id, token, filename, status, size, hashes, mechanism, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (upload_id, token, filename, states.PENDING, size, json.dumps(hashes), mechanism, now,
                 min(now + lifetime, session["expires_at"])),
            )
        return self.upload(upload_id)  # type: ignore[return-value]

    def set_upload_bytes(self, upload_id: str, sha256: str) -> None:
        with self._write() as db:
            row = db.execute("SELECT status FROM uploads WHERE id = ?", (upload_id,)).fetchone()
            if not states.accepts_bytes(row[0]):
                raise Conflict(f"This file upload is {row[0]}; bytes are only accepted while it is pending.")
            db.execute("UPDATE uploads SET sha256 = ? WHERE id = ?", (sha256, upload_id))

    def set_attestations(self, upload_id: str, attestations: str) -> None:
        with self._write() as db:
            row = db.execute("SELECT status FROM uploads WHERE id = ?", (upload_id,)).fetchone()
            if not states.accepts_bytes(row[0]):
                raise Conflict("Attestations must be uploaded before the file upload is completed.")
            db.execute("UPDATE uploads SET attestations = ? WHERE id = ?", (attestations, upload_id))

    def finish_upload(self, upload_id: str, event: states.FileEvent, *, requires_python: str | None = None,
                      metadata_sha256: str | None = None, notice: str | None = None) -> Upload:
        """Apply a completion outcome (or the start of deferred processing) to a file upload."""
        with self._write() as db:
            row = _upload(db.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone())
            status = states.file_transition(row.status, event)
            notices = list(row.notices) + ([notice] if notice else [])
            db.execute(
                "UPDATE uploads SET status = ?, requires_python = COALESCE(?, requires_python),"
                " metadata_sha256 = COALESCE(?, metadata_sha256), notices = ? WHERE id = ?",
                (status, requires_python, metadata_sha256, json.dumps(notices), upload_id),
            )
            _touch_session(db, row.token)
        return self.upload(upload_id)  # type: ignore[return-value]

    def delete_upload(self, upload_id: str) -> list[str]:
        with self._write() as db:
            row = _upload(db.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone())
            _touch_session(db, row.token)  # a file is deleted: refused (409) unless the session is editable
            status = states.file_transition(row.status, states.FileEvent.DELETE)
            db.execute("UPDATE uploads SET status = ? WHERE id = ?", (status, upload_id))
            return _orphans(db, row.token, only=upload_id)

    # --- lifetimes ---

    def expire(self, now: float, retention: float) -> list[str]:
        """Cancel sessions past their expiry (purging their files) and forget terminal sessions
        older than the retention period. Returns blobs nothing refers to any more."""
        orphans: list[str] = []
        with self._write() as db:
            expired = db.execute("SELECT token, project FROM sessions WHERE status IN (?, ?) AND expires_at < ?",
                                 (states.OPEN, states.ERROR, now)).fetchall()
            for token, project in expired:
                db.execute("UPDATE sessions SET status = ?, ended_at = ?, notices = ? WHERE token = ?",
                           (states.CANCELED, now, json.dumps(["The session expired."]), token))
                db.execute("UPDATE uploads SET status = ? WHERE token = ?", (states.CANCELED, token))
                _release_unused_name(db, project)
                orphans += _orphans(db, token)
            # Pending uploads past their own expiry are canceled too (their session lives on).
            for upload_id, token in db.execute("SELECT id, token FROM uploads WHERE status = ? AND expires_at < ?",
                                               (states.PENDING, now)).fetchall():
                db.execute("UPDATE uploads SET status = ? WHERE id = ?", (states.CANCELED, upload_id))
                orphans += _orphans(db, token, only=upload_id)
            old = [r[0] for r in db.execute("SELECT token FROM sessions WHERE ended_at IS NOT NULL AND ended_at < ?",
                                            (now - retention,))]
            for token in old:
                db.execute("DELETE FROM uploads WHERE token = ?", (token,))
                db.execute("DELETE FROM sessions WHERE token = ?", (token,))
        return orphans

    def recover(self, now: float) -> None:
        """After a restart, no deferred completion is running any more: fail it, so the client
        can delete and re-upload the file instead of waiting forever."""
        with self._write() as db:
            for row in db.execute("SELECT id, notices FROM uploads WHERE status = ?", (states.PROCESSING,)).fetchall():
                notices = json.loads(row["notices"]) + ["tidegate restarted while validating this file; upload it again."]
                db.execute("UPDATE uploads SET status = ?, notices = ? WHERE id = ?",
                           (states.ERROR, json.dumps(notices), row["id"]))

    def referenced(self, sha256: str) -> bool:
        return bool(self._read(
            "SELECT 1 FROM files WHERE sha256 = ? UNION ALL SELECT 1 FROM uploads WHERE sha256 = ? AND status != ?",
            (sha256, sha256, states.CANCELED)))


def _insert_file(db: sqlite3.Connection, f: PublishedFile, *, session: str | None) -> None:
    db.execute(
        "INSERT INTO files (filename, project, version, sha256, hashes, size, upload_time, requires_python,"
        " metadata_sha256, yanked, attestations, session) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (f.filename, f.project, f.version, f.sha256, json.dumps(f.hashes), f.size, f.upload_time, f.requires_python,
         f.metadata_sha256, f.yanked, f.attestations, session),
    )


def _is_sdist(filename: str) -> bool:
    return filename.endswith((".tar.gz", ".zip"))


def _published_sdists(db: sqlite3.Connection, project: str, version: str) -> list[str]:
    return [name for (name,) in db.execute("SELECT filename FROM files WHERE project = ? AND version = ?",
                                           (project, version)) if _is_sdist(name)]


def _touch_session(db: sqlite3.Connection, token: str) -> None:
    """A file changed: the session's state machine sees FILE_CHANGED (open stays open, error stays error)."""
    status = db.execute("SELECT status FROM sessions WHERE token = ?", (token,)).fetchone()[0]
    db.execute("UPDATE sessions SET status = ? WHERE token = ?",
               (states.session_transition(status, states.SessionEvent.FILE_CHANGED), token))


def _release_unused_name(db: sqlite3.Connection, project: str) -> None:
    """Forget a reserved name when nothing was ever published under it and no session still
    wants it: a canceled first release leaves no trace."""
    if db.execute("SELECT 1 FROM files WHERE project = ?", (project,)).fetchone():
        return
    if db.execute("SELECT 1 FROM sessions WHERE project = ? AND status IN (?, ?, ?)",
                  (project, states.OPEN, states.PROCESSING, states.ERROR)).fetchone():
        return
    db.execute("DELETE FROM projects WHERE name = ?", (project,))


def _orphans(db: sqlite3.Connection, token: str, only: str | None = None) -> list[str]:
    """Blobs of a session's canceled uploads that no published file or live upload uses."""
    sql = "SELECT DISTINCT sha256 FROM uploads WHERE token = ? AND status = ? AND sha256 IS NOT NULL"
    args: tuple = (token, states.CANCELED)
    if only is not None:
        sql += " AND id = ?"
        args += (only,)
    orphans = []
    for (sha256,) in db.execute(sql, args).fetchall():
        used = db.execute(
            "SELECT 1 FROM files WHERE sha256 = ? UNION ALL SELECT 1 FROM uploads WHERE sha256 = ? AND status != ?",
            (sha256, sha256, states.CANCELED)).fetchone()
        if not used:
            orphans.append(sha256)
    return orphans
