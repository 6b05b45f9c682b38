"""The PostgreSQL schema and its migrations: a versioned table, applied under an advisory lock
so that instances starting together migrate once, one after the other."""

from __future__ import annotations

import psycopg

from ..errors import EngineUnavailable
from .engine import ENGINE, lock_key

MIGRATE_LOCK = lock_key("tidegate:migrate")

# Each entry brings the schema from its index to the next version. The tables mirror the SQLite
# index (storage/index.py) column for column, so that IndexRows' SQL runs on both; `rowid` stands
# for SQLite's implicit one (insertion order of uploads).
MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("the local index, sessions, uploads, tokens, the append-only audit log", """
    CREATE TABLE projects (
        name text PRIMARY KEY,
        created_at double precision NOT NULL
    );
    CREATE TABLE files (
        filename text PRIMARY KEY,
        project text NOT NULL,
        version text NOT NULL,
        sha256 text NOT NULL,
        hashes text NOT NULL,
        size bigint NOT NULL,
        upload_time text NOT NULL,
        requires_python text,
        metadata_sha256 text,
        yanked text,
        attestations text,
        session text
    );
    CREATE INDEX files_project ON files (project);
    CREATE INDEX files_sha256 ON files (sha256);
    CREATE TABLE sessions (
        token text PRIMARY KEY,
        project text NOT NULL,
        version text NOT NULL,
        status text NOT NULL,
        created_at double precision NOT NULL,
        expires_at double precision NOT NULL,
        ended_at double precision,
        notices text NOT NULL DEFAULT '[]'
    );
    CREATE INDEX sessions_release ON sessions (project, version);
    CREATE TABLE uploads (
        id text PRIMARY KEY,
        token text NOT NULL,
        filename text NOT NULL,
        status text NOT NULL,
        size bigint NOT NULL,
        hashes text NOT NULL,
        mechanism text NOT NULL,
        created_at double precision NOT NULL,
        expires_at double precision NOT NULL,
        sha256 text,
        requires_python text,
        metadata_sha256 text,
        attestations text,
        notices text NOT NULL DEFAULT '[]',
        rowid bigint GENERATED ALWAYS AS IDENTITY
    );
    CREATE INDEX uploads_session ON uploads (token);
    CREATE TABLE metadata (
        sha256 text PRIMARY KEY,
        body bytea NOT NULL
    );
    CREATE TABLE tokens (
        id text PRIMARY KEY,
        "user" text NOT NULL,
        sha256 text NOT NULL UNIQUE,
        scopes text NOT NULL,
        created_at double precision NOT NULL,
        expires_at double precision,
        revoked_at double precision
    );
    CREATE TABLE audit (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at double precision NOT NULL,
        actor text NOT NULL,
        address text NOT NULL,
        action text NOT NULL,
        subject text NOT NULL,
        detail text NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE FUNCTION tidegate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
    CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION tidegate_audit_append_only();
    CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION tidegate_audit_append_only();
    CREATE TABLE deleted_files (
        filename text PRIMARY KEY,
        sha256 text NOT NULL
    );
    CREATE TABLE bundles (
        id text PRIMARY KEY,
        base text,
        imported_at double precision NOT NULL
    );
    """),
    ("the shared page cache and the change generations", """
    CREATE TABLE pages (                       -- page records (records.py's format), one per project
        name text PRIMARY KEY,
        found boolean NOT NULL,
        body bytea NOT NULL,
        size bigint NOT NULL,
        stored_at double precision NOT NULL
    );
    CREATE INDEX pages_stored_at ON pages (stored_at);
    CREATE TABLE page_metadata (               -- PEP 658 metadata (and provenance) files by key
        key text PRIMARY KEY,
        body bytea NOT NULL,
        size bigint NOT NULL,
        stored_at double precision NOT NULL
    );
    CREATE INDEX page_metadata_stored_at ON page_metadata (stored_at);
    CREATE TABLE generations (                 -- moved by every change announced, for pollers
        name text PRIMARY KEY,
        value bigint NOT NULL
    );
    INSERT INTO generations (name, value) VALUES ('index', 0), ('pages', 0);
    """),
    ("air-gap: the exporting side's time of each local project imported", """
    CREATE TABLE imported_projects (
        name text PRIMARY KEY,
        as_of double precision NOT NULL
    );
    """),
)


class NewerSchema(EngineUnavailable):
    """A newer tidegate migrated this database: this one would misread it (one line at start)."""

    def __init__(self, reason: str) -> None:
        super().__init__(ENGINE, reason)


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply the migrations this database lacks (conn in autocommit mode); what was applied."""
    applied: list[str] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL, applied_at timestamptz"
                     " NOT NULL DEFAULT now(), what text NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        current = row[0] or 0
        if current > len(MIGRATIONS):
            raise NewerSchema(f"the database's schema is version {current}, newer than this tidegate knows "
                              f"({len(MIGRATIONS)}): run the newer tidegate, or restore a backup")
        for number, (what, script) in enumerate(MIGRATIONS[current:], start=current + 1):
            with conn.transaction():
                conn.execute(script)
                conn.execute("INSERT INTO schema_version (version, what) VALUES (%s, %s)", (number, what))
            applied.append(f"{number}: {what}")
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
    return applied
