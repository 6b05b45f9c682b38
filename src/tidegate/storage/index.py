"""The local index (published files, publishing sessions, file uploads) in SQLite.

`IndexRows` is every row operation the publish service needs, as plain SQL over one connection.
`SqliteIndex` runs a function over those rows in one transaction: writes on one thread with its
own connection (BEGIN IMMEDIATE: checks and changes inside cannot interleave with another
process's), reads on other threads with read-only connections, which in WAL mode never wait
for the writer. Nothing here decides what a status means: publish/ does, through the PEP 694
tables, and hands the rows their new values.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from .records import ApiToken, AuditEntry, PublishedFile, Session, Upload
from .sqlite import connect

T = TypeVar("T")

# Each entry brings the schema from its index to the next version (PRAGMA user_version); its
# statements are separated by semicolons (a trigger's inner ones are kept: see _statements).
MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS projects (      -- registered names: a name with no published file is reserved
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
        yanked TEXT,                           -- NULL: not yanked, else the reason ('' for none)
        attestations TEXT,                     -- JSON (PEP 740) or NULL
        session TEXT                           -- the session that published it, NULL for a legacy upload
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
        sha256 TEXT,
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
    """,
    """
    CREATE TABLE IF NOT EXISTS tokens (        -- API tokens: only the sha256 of each secret is kept
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        sha256 TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,                  -- JSON list of project-name glob patterns
        created_at REAL NOT NULL,
        expires_at REAL,                       -- NULL: never
        revoked_at REAL
    );
    CREATE TABLE IF NOT EXISTS audit (         -- append-only: the triggers refuse any change
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        address TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}'      -- JSON object
    );
    CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
    CREATE TABLE IF NOT EXISTS deleted_files ( -- a deleted filename never comes back with other bytes
        filename TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL
    );
    CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
    """,
    """
    CREATE TABLE IF NOT EXISTS bundles (       -- air-gap bundles imported (tidegate import)
        id TEXT PRIMARY KEY,
        base TEXT,                             -- the bundle it extends, NULL for a full one
        imported_at REAL NOT NULL
    );
    """,
    """
    CREATE TABLE IF NOT EXISTS imported_projects ( -- local projects whose files came in bundles
        name TEXT PRIMARY KEY,
        as_of REAL NOT NULL                    -- when the exporting side read them (its clock)
    );
    """,
)

_SESSION_FIELDS = frozenset({"status", "expires_at", "ended_at", "notices"})
_UPLOAD_FIELDS = frozenset({"status", "expires_at", "sha256", "requires_python", "metadata_sha256", "attestations",
                            "notices"})
_JSON_FIELDS = frozenset({"notices", "hashes"})


def _statements(script: str) -> Iterable[str]:
    """The statements of a script, split at the semicolons that end one (not those inside a
    trigger body): sqlite3.complete_statement tells them apart."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending


def _session(row: sqlite3.Row) -> Session:
    return Session(**{**dict(row), "notices": tuple(json.loads(row["notices"]))})


def _upload(row: sqlite3.Row) -> Upload:
    fields = dict(row)
    fields.pop("rowid", None)  # PostgreSQL's column for SQLite's implicit rowid (insertion order)
    return Upload(**{**fields, "hashes": json.loads(row["hashes"]), "notices": tuple(json.loads(row["notices"]))})


def _file(row: sqlite3.Row) -> PublishedFile:
    fields = {**dict(row), "hashes": json.loads(row["hashes"])}
    del fields["session"]
    return PublishedFile(**fields)


def _token(row: sqlite3.Row) -> ApiToken:
    return ApiToken(**{**dict(row), "scopes": tuple(json.loads(row["scopes"]))})


def _entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(**{**dict(row), "detail": json.loads(row["detail"])})


def _value(key: str, value: Any) -> Any:
    return json.dumps(list(value) if key == "notices" else value) if key in _JSON_FIELDS else value


def _assignments(changes: dict[str, Any], allowed: frozenset[str]) -> tuple[str, list[Any]]:
    unknown = set(changes) - allowed
    if unknown or not changes:
        raise ValueError(f"cannot update {sorted(unknown) or 'nothing'}")
    return ", ".join(f"{key} = ?" for key in changes), [_value(k, v) for k, v in changes.items()]


class IndexRows:
    """The row operations of the local index, over one connection inside one transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self._db.execute(sql, tuple(args)).fetchall()

    # --- projects ---

    def local_projects(self) -> set[str]:
        """Projects with at least one published file: those the local index shows."""
        return {row[0] for row in self._all("SELECT DISTINCT project FROM files")}

    def is_registered(self, project: str) -> bool:
        return bool(self._all("SELECT 1 FROM projects WHERE name = ?", (project,)))

    def register(self, project: str, now: float) -> None:
        self._db.execute("INSERT INTO projects (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING", (project, now))

    def unregister(self, project: str) -> None:
        self._db.execute("DELETE FROM projects WHERE name = ?", (project,))

    # --- published files ---

    def files_of(self, project: str) -> list[PublishedFile]:
        return [_file(r) for r in self._all("SELECT * FROM files WHERE project = ? ORDER BY filename", (project,))]

    def published(self, filename: str) -> PublishedFile | None:
        rows = self._all("SELECT * FROM files WHERE filename = ?", (filename,))
        return _file(rows[0]) if rows else None

    def insert_file(self, f: PublishedFile, *, session: str | None) -> None:
        self._db.execute(
            "INSERT INTO files (filename, project, version, sha256, hashes, size, upload_time, requires_python,"
            " metadata_sha256, yanked, attestations, session) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f.filename, f.project, f.version, f.sha256, json.dumps(f.hashes), f.size, f.upload_time,
             f.requires_python, f.metadata_sha256, f.yanked, f.attestations, session),
        )

    def set_yanked(self, filename: str, reason: str | None) -> bool:
        return self._db.execute("UPDATE files SET yanked = ? WHERE filename = ?", (reason, filename)).rowcount == 1

    def delete_file(self, filename: str, sha256: str) -> None:
        self._db.execute("DELETE FROM files WHERE filename = ?", (filename,))
        self._db.execute("INSERT INTO deleted_files (filename, sha256) VALUES (?, ?)"
                         " ON CONFLICT (filename) DO UPDATE SET sha256 = excluded.sha256", (filename, sha256))

    def deleted(self, filename: str) -> str | None:
        """The sha256 a deleted file of this name had, or None if none was deleted."""
        rows = self._all("SELECT sha256 FROM deleted_files WHERE filename = ?", (filename,))
        return rows[0][0] if rows else None

    def files_with_blob(self, sha256: str) -> int:
        return self._all("SELECT COUNT(*) FROM files WHERE sha256 = ?", (sha256,))[0][0]

    def metadata(self, sha256: str) -> bytes | None:
        rows = self._all("SELECT body FROM metadata WHERE sha256 = ?", (sha256,))
        return bytes(rows[0][0]) if rows else None

    def put_metadata(self, sha256: str, body: bytes) -> None:
        self._db.execute("INSERT INTO metadata (sha256, body) VALUES (?, ?) ON CONFLICT DO NOTHING", (sha256, body))

    def set_yanked_state(self, filename: str, yanked: str | None) -> bool:
        """A published file's yank state as a bundle carries it (no-op when already so)."""
        current = self.published(filename)  # compared here: `IS NOT ?` is SQLite's spelling only
        return current is not None and current.yanked != yanked and self.set_yanked(filename, yanked)

    # --- imported bundles ---

    def bundle_imported(self, bundle: str) -> bool:
        return bool(self._all("SELECT 1 FROM bundles WHERE id = ?", (bundle,)))

    def record_bundle(self, bundle: str, base: str | None, now: float) -> None:
        self._db.execute("INSERT INTO bundles (id, base, imported_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                         (bundle, base, now))

    def imported_as_of(self, project: str) -> float | None:
        """When the exporting side read the copy of a local project imported last, if any was."""
        rows = self._all("SELECT as_of FROM imported_projects WHERE name = ?", (project,))
        return rows[0][0] if rows else None

    def set_imported_as_of(self, project: str, as_of: float) -> None:
        self._db.execute("INSERT INTO imported_projects (name, as_of) VALUES (?, ?)"
                         " ON CONFLICT (name) DO UPDATE SET as_of = excluded.as_of", (project, as_of))

    # --- publishing sessions ---

    def session(self, token: str) -> Session | None:
        rows = self._all("SELECT * FROM sessions WHERE token = ?", (token,))
        return _session(rows[0]) if rows else None

    def sessions_of(self, project: str, version: str | None = None) -> list[Session]:
        if version is None:
            return [_session(r) for r in self._all("SELECT * FROM sessions WHERE project = ?", (project,))]
        return [_session(r) for r in self._all("SELECT * FROM sessions WHERE project = ? AND version = ?",
                                               (project, version))]

    def sessions_live(self) -> list[Session]:
        """Sessions that have not ended, oldest first."""
        return [_session(r) for r in self._all("SELECT * FROM sessions WHERE ended_at IS NULL ORDER BY created_at")]

    def session_counts(self) -> dict[str, int]:
        """How many publishing sessions there are in each state."""
        return {status: count for status, count in self._db.execute(
            "SELECT status, COUNT(*) FROM sessions GROUP BY status")}

    def sessions_expired(self, now: float) -> list[Session]:
        """Sessions that have not ended and whose expires-at has passed."""
        return [_session(r) for r in self._all("SELECT * FROM sessions WHERE ended_at IS NULL AND expires_at < ?",
                                               (now,))]

    def sessions_ended_before(self, cutoff: float) -> list[str]:
        return [r[0] for r in self._all("SELECT token FROM sessions WHERE ended_at IS NOT NULL AND ended_at < ?",
                                        (cutoff,))]

    def insert_session(self, s: Session) -> None:
        self._db.execute(
            "INSERT INTO sessions (token, project, version, status, created_at, expires_at, ended_at, notices)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (s.token, s.project, s.version, str(s.status), s.created_at, s.expires_at, s.ended_at,
             json.dumps(list(s.notices))),
        )

    def update_session(self, token: str, **changes: Any) -> None:
        sql, args = _assignments(changes, _SESSION_FIELDS)
        self._db.execute(f"UPDATE sessions SET {sql} WHERE token = ?", (*args, token))

    def delete_session(self, token: str) -> None:
        """Forget a session and its file uploads."""
        self._db.execute("DELETE FROM uploads WHERE token = ?", (token,))
        self._db.execute("DELETE FROM sessions WHERE token = ?", (token,))

    # --- file upload sessions ---

    def upload(self, upload_id: str) -> Upload | None:
        rows = self._all("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        return _upload(rows[0]) if rows else None

    def uploads(self, token: str) -> list[Upload]:
        return [_upload(r) for r in self._all("SELECT * FROM uploads WHERE token = ? ORDER BY created_at, rowid",
                                              (token,))]

    def uploads_expired(self, now: float) -> list[Upload]:
        return [_upload(r) for r in self._all("SELECT * FROM uploads WHERE expires_at < ?", (now,))]

    def uploads_in(self, status: str) -> list[Upload]:
        return [_upload(r) for r in self._all("SELECT * FROM uploads WHERE status = ?", (str(status),))]

    def uploads_with_blob(self, sha256: str) -> list[Upload]:
        return [_upload(r) for r in self._all("SELECT * FROM uploads WHERE sha256 = ?", (sha256,))]

    def insert_upload(self, u: Upload) -> None:
        self._db.execute(
            "INSERT INTO uploads (id, token, filename, status, size, hashes, mechanism, created_at, expires_at,"
            " sha256, requires_python, metadata_sha256, attestations, notices)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (u.id, u.token, u.filename, str(u.status), u.size, json.dumps(u.hashes), u.mechanism, u.created_at,
             u.expires_at, u.sha256, u.requires_python, u.metadata_sha256, u.attestations, json.dumps(list(u.notices))),
        )

    def update_upload(self, upload_id: str, **changes: Any) -> None:
        sql, args = _assignments(changes, _UPLOAD_FIELDS)
        self._db.execute(f"UPDATE uploads SET {sql} WHERE id = ?", (*args, upload_id))

    # --- API tokens ---

    def insert_token(self, t: ApiToken) -> None:
        self._db.execute(
            'INSERT INTO tokens (id, "user", sha256, scopes, created_at, expires_at, revoked_at)'
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (t.id, t.user, t.sha256, json.dumps(list(t.scopes)), t.created_at, t.expires_at, t.revoked_at),
        )

    def token_by_hash(self, sha256: str) -> ApiToken | None:
        rows = self._all("SELECT * FROM tokens WHERE sha256 = ?", (sha256,))
        return _token(rows[0]) if rows else None

    def token(self, token_id: str) -> ApiToken | None:
        rows = self._all("SELECT * FROM tokens WHERE id = ?", (token_id,))
        return _token(rows[0]) if rows else None

    def tokens(self) -> list[ApiToken]:
        return [_token(r) for r in self._all("SELECT * FROM tokens ORDER BY created_at, id")]

    def revoke_token(self, token_id: str, now: float) -> None:
        self._db.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, token_id))

    # --- the audit log ---

    def append_audit(self, e: AuditEntry) -> None:
        self._db.execute(
            "INSERT INTO audit (at, actor, address, action, subject, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (e.at, e.actor, e.address, e.action, e.subject, json.dumps(e.detail, sort_keys=True)),
        )

    def audit_since(self, since: float) -> list[AuditEntry]:
        return [_entry(r) for r in self._all("SELECT * FROM audit WHERE at >= ? ORDER BY seq", (since,))]


class SqliteIndex:
    """The index store on SQLite: `read(fn)` and `write(fn)` run fn(IndexRows) in one transaction."""

    READERS = 4

    def __init__(self, path: Path) -> None:
        self._path = path
        self._writer = connect(path, durable=True)  # a published release survives power loss
        self._migrate(self._writer)
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="tidegate-index-write")
        self._read_threads = ThreadPoolExecutor(self.READERS, thread_name_prefix="tidegate-index-read")
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        # Every commit appends a byte to this file, so its size counts commits. Workers compare
        # its stat (one syscall, no lock) on each request to learn that any process changed the
        # local index; file times alone are too coarse to tell two commits apart.
        self._stamp = path.with_name(path.name + ".changed")
        self._stamp.touch()
        # Held open: fstat on a descriptor is far cheaper than stat on a path, and the file is
        # only ever appended to or truncated, never replaced.
        self._stamp_fd = os.open(self._stamp, os.O_RDONLY)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def close(self) -> None:
        # Threads first: one may still be inside a transaction (cancelling the task awaiting it
        # does not stop it), and closing a connection under it would crash the process.
        self._write_thread.shutdown(wait=True)
        self._read_threads.shutdown(wait=True)
        self._writer.close()
        for db in self._readers:
            db.close()
        os.close(self._stamp_fd)

    def changed(self) -> tuple[int, int]:
        """Differs after any process committed a change. Cheap enough for every request."""
        st = os.fstat(self._stamp_fd)
        return st.st_size, st.st_mtime_ns

    async def read(self, fn: Callable[[IndexRows], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._read_threads, self._read, fn)

    def _read(self, fn: Callable[[IndexRows], T]) -> T:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect(self._path, readonly=True)
            with self._readers_lock:
                self._readers.append(db)
        db.execute("BEGIN")  # one snapshot for everything fn reads
        try:
            return fn(IndexRows(db))
        finally:
            db.execute("ROLLBACK")

    async def write(self, fn: Callable[[IndexRows], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._write_thread, self._write, fn)

    def _write(self, fn: Callable[[IndexRows], T]) -> T:
        db = self._writer
        before = db.total_changes
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(IndexRows(db))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if db.total_changes == before:
            return result  # nothing changed: the other workers' rendered pages stay good
        with open(self._stamp, "ab") as stamp:
            stamp.write(b".")
            if stamp.tell() > STAMP_LIMIT:
                stamp.truncate(0)  # keeps it small; the mtime still differs from any seen
        return result


STAMP_LIMIT = 1 << 20
