"""Page records and PEP 658 metadata files in PostgreSQL, shared by every instance.

A record is one row, replaced by one statement (an upsert): a reader sees the old record or the
new one, never a mix. Records are in records.py's versioned format, as on disk. changed() moves
after store_all() or mark_changed() by any instance (a generation announced by NOTIFY, see
engine.py); single pages do not move it, as on disk.
"""

from __future__ import annotations

import asyncio
import time

from ..records import PageRecord, decode_page, encode_page
from .engine import Engine

USAGE_MAX_AGE = 10.0  # seconds a count of rows and bytes is reused (a scrape every few seconds)

_STORE_PAGE = ("INSERT INTO pages (name, found, body, size, stored_at) VALUES (%s, %s, %s, %s, %s)"
               " ON CONFLICT (name) DO UPDATE SET found = excluded.found, body = excluded.body,"
               " size = excluded.size, stored_at = excluded.stored_at")
_STORE_METADATA = ("INSERT INTO page_metadata (key, body, size, stored_at) VALUES (%s, %s, %s, %s)"
                   " ON CONFLICT (key) DO UPDATE SET body = excluded.body, size = excluded.size,"
                   " stored_at = excluded.stored_at")
# Newest first, a running total of sizes: whatever is beyond the limit goes (oldest first).
_BEYOND = """
    WITH entries AS (
        SELECT 'p' AS kind, name AS key, size, stored_at FROM pages
        UNION ALL SELECT 'm', key, size, stored_at FROM page_metadata),
    ranked AS (
        SELECT kind, key, sum(size) OVER (ORDER BY stored_at DESC, kind, key) AS running FROM entries)
    SELECT kind, key FROM ranked WHERE running > %s
"""


class PgPageCache:
    def __init__(self, engine: Engine, max_size: int | None = None) -> None:
        self._engine = engine.use()
        self._max_size = max_size
        self._usage: tuple[float, int, int] | None = None

    async def close(self) -> None:
        self._engine.release()

    def changed(self) -> int:
        return self._engine.changed("pages")

    async def mark_changed(self) -> None:
        await asyncio.to_thread(self._engine.run, self._announce)
        self._engine.bump("pages")

    def _announce(self, conn) -> None:
        with conn.transaction():
            self._engine.announce(conn, "pages")

    async def load(self, name: str) -> PageRecord | None:
        row = await asyncio.to_thread(self._engine.run, lambda conn: conn.execute(
            "SELECT body FROM pages WHERE name = %s", (name,)).fetchone())
        return decode_page(row[0], name) if row is not None else None

    async def store(self, record: PageRecord) -> None:
        body = encode_page(record)
        await asyncio.to_thread(self._engine.run, lambda conn: conn.execute(
            _STORE_PAGE, (record.name, record.found, body, len(body), time.time())))

    async def store_all(self, records: list[PageRecord]) -> None:
        """Every record in one transaction, announced on commit."""
        bodies = [(r.name, r.found, body, len(body), time.time()) for r in records for body in (encode_page(r),)]

        def store(conn) -> None:
            with conn.transaction():
                with conn.cursor() as cursor:
                    cursor.executemany(_STORE_PAGE, bodies)
                self._engine.announce(conn, "pages")

        await asyncio.to_thread(self._engine.run, store)
        self._engine.bump("pages")

    async def names(self) -> list[str]:
        rows = await asyncio.to_thread(self._engine.run, lambda conn: conn.execute(
            "SELECT name FROM pages WHERE found").fetchall())
        return sorted(row[0] for row in rows)

    async def load_metadata(self, key: str) -> bytes | None:
        row = await asyncio.to_thread(self._engine.run, lambda conn: conn.execute(
            "SELECT body FROM page_metadata WHERE key = %s", (key,)).fetchone())
        return bytes(row[0]) if row is not None else None

    async def store_metadata(self, key: str, body: bytes) -> None:
        await asyncio.to_thread(self._engine.run, lambda conn: conn.execute(
            _STORE_METADATA, (key, body, len(body), time.time())))

    async def remove_metadata(self, key: str) -> None:
        await asyncio.to_thread(self._engine.run, lambda conn: conn.execute(
            "DELETE FROM page_metadata WHERE key = %s", (key,)))

    async def recover(self) -> None:
        """Nothing to repair: a statement cut by a crash left nothing behind."""

    async def prune(self) -> int:
        """Delete the least recently stored rows beyond max_size; how many went."""
        if self._max_size is None:
            return 0

        def prune(conn) -> int:
            with conn.transaction():
                beyond = conn.execute(_BEYOND, (self._max_size,)).fetchall()
                pages = [key for kind, key in beyond if kind == "p"]
                metadata = [key for kind, key in beyond if kind == "m"]
                if pages:
                    conn.execute("DELETE FROM pages WHERE name = ANY(%s)", (pages,))
                if metadata:
                    conn.execute("DELETE FROM page_metadata WHERE key = ANY(%s)", (metadata,))
            return len(beyond)

        removed = await asyncio.to_thread(self._engine.run, prune)
        self._usage = None
        return removed

    async def usage(self) -> tuple[int, int]:
        """Rows and bytes, counted at most USAGE_MAX_AGE ago."""
        known = self._usage
        if known is None or time.monotonic() - known[0] > USAGE_MAX_AGE:
            count, size = await asyncio.to_thread(self._engine.run, lambda conn: conn.execute(
                "SELECT (SELECT count(*) FROM pages) + (SELECT count(*) FROM page_metadata),"
                " (SELECT coalesce(sum(size), 0) FROM pages) + (SELECT coalesce(sum(size), 0) FROM page_metadata)"
            ).fetchone())
            known = self._usage = (time.monotonic(), int(count), int(size))
        return known[1], known[2]
