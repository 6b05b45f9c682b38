"""The local index in PostgreSQL: the same IndexRows (storage/index.py) over a thin dialect
adapter, so every row operation is written once.

`write(fn)` takes one transaction-scoped advisory lock first, which serializes writers across
every instance as SQLite's BEGIN IMMEDIATE does across processes: the checks fn makes and the
changes it makes cannot interleave with another writer's. Writes are rare (uploads, publishes,
yanks), so one lock costs nothing that matters. `read(fn)` runs in one REPEATABLE READ READ ONLY
snapshot and never waits for a writer. A commit announces itself (engine.announce) only when fn
changed a row.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Sequence, TypeVar

import psycopg

from ..index import IndexRows
from .engine import Engine, lock_key

T = TypeVar("T")
WRITE_LOCK = lock_key("tidegate:index-write")
READERS = 4


class Row(tuple):
    """A row by position and by column name, as sqlite3.Row is (IndexRows uses both)."""

    names: Sequence[str] = ()

    def keys(self) -> Sequence[str]:
        return self.names

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names.index(key))
        return tuple.__getitem__(self, key)


_ROW_TYPES: dict[tuple[str, ...], type[Row]] = {}


def _row_factory(cursor: psycopg.Cursor) -> Callable[[Sequence[Any]], Row]:
    names = tuple(c.name for c in cursor.description or ())
    cls = _ROW_TYPES.get(names)
    if cls is None:
        cls = _ROW_TYPES[names] = type("Row", (Row,), {"names": names, "__slots__": ()})
    return cls


class Dialect:
    """What IndexRows calls on a connection (execute, returning a cursor with fetchall,
    rowcount and iteration), over psycopg: `?` placeholders become `%s`, and changed rows are
    counted so that a write that changed nothing announces nothing."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self.changes = 0

    def execute(self, sql: str, args: Iterable[Any] = ()) -> psycopg.Cursor:
        cursor = self._conn.cursor(row_factory=_row_factory)
        cursor.execute(_translate(sql), tuple(args))
        if cursor.rowcount > 0 and not sql.lstrip().upper().startswith("SELECT"):
            self.changes += cursor.rowcount
        return cursor


_TRANSLATED: dict[str, str] = {}


def _translate(sql: str) -> str:
    done = _TRANSLATED.get(sql)
    if done is None:
        if "%" in sql:
            raise ValueError("a literal % in IndexRows' SQL would be read as a placeholder")
        done = _TRANSLATED[sql] = sql.replace("?", "%s")
    return done


class PgIndex:
    """The index store on PostgreSQL: `read(fn)` and `write(fn)` run fn(IndexRows) in one
    transaction, on threads (fn is synchronous)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine.use()
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="tidegate-pg-write")
        self._read_threads = ThreadPoolExecutor(READERS, thread_name_prefix="tidegate-pg-read")

    def changed(self) -> int:
        return self._engine.changed("index")

    async def read(self, fn: Callable[[IndexRows], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._read_threads, self._read, fn)

    async def write(self, fn: Callable[[IndexRows], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._write_thread, self._write, fn)

    def _read(self, fn: Callable[[IndexRows], T]) -> T:
        with self._engine.connection() as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")  # one snapshot, no waiting
            try:
                return fn(IndexRows(Dialect(conn)))  # type: ignore[arg-type]
            finally:
                _rollback(conn)

    def _write(self, fn: Callable[[IndexRows], T]) -> T:
        with self._engine.connection() as conn:
            # READ COMMITTED: each statement sees every commit made before it, so after the
            # lock fn sees what the previous writer committed.
            conn.execute("BEGIN")
            try:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                dialect = Dialect(conn)
                result = fn(IndexRows(dialect))  # type: ignore[arg-type]
                if dialect.changes:
                    self._engine.announce(conn, "index")
            except BaseException:
                _rollback(conn)
                raise
            conn.execute("COMMIT")  # a connection lost before this line: rolled back, EngineUnavailable
        if dialect.changes:
            self._engine.bump("index")  # our own change, at once; the other instances by NOTIFY
        return result

    async def close(self) -> None:
        # Threads first: one may be inside a transaction on a pooled connection.
        self._write_thread.shutdown(wait=True)
        self._read_threads.shutdown(wait=True)
        self._engine.release()


def _rollback(conn: psycopg.Connection) -> None:
    """End the transaction; on a lost connection the server has rolled it back already, and
    the error that lost it is the one to raise."""
    with contextlib.suppress(psycopg.Error):
        conn.execute("ROLLBACK")
