"""One process's way to a PostgreSQL server: a connection pool, the change listener, and the
translation of a lost server into EngineUnavailable.

psycopg's sync API is used from threads (the index store's functions are synchronous). The pool
checks a connection before handing it out, so after a server restart the first request gets a
fresh connection instead of a broken one, and reconnects by itself: tidegate is not restarted.
Changes are announced with NOTIFY inside the changing transaction (delivered on commit only) and
counted here per kind ("index", "pages") by one listener thread; while the listener is cut off,
every kind counts as changed (memory caches are dropped) and the generation rows are polled.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
import uuid
from typing import Any, Callable, Iterator, TypeVar

import psycopg
import psycopg_pool
from psycopg import conninfo

from ..errors import EngineUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
ENGINE = "PostgreSQL"
CHANNEL = "tidegate_changes"
KINDS = ("index", "pages")
POOL_SIZE = 8  # connections per process: index readers and writer, page cache calls, probes
CONNECT_TIMEOUT = 5  # seconds to reach the server before it counts as down
POOL_WAIT = 3  # seconds a call waits for a pooled connection (all busy, or reconnecting)
FAIL_FAST = 0.5  # seconds after a lost server during which calls fail at once, not after POOL_WAIT
POLL_INTERVAL = 1.0  # seconds between tries to listen again (and polls of the generations)
NOTICE_WAIT = 0.25  # the listener looks up from waiting this often (to stop when closed)


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for a name (collisions: one chance in 2^64)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()[:8], "big", signed=True)


def safe_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    host, port, db = params.get("host", ""), params.get("port"), params.get("dbname", "")
    user = f"{params['user']}@" if params.get("user") else ""
    return f"postgresql://{user}{host}{':' + str(port) if port else ''}/{db}"


def unavailable(exc: BaseException) -> EngineUnavailable:
    text = str(exc).strip().splitlines()
    return EngineUnavailable(ENGINE, text[0] if text else type(exc).__name__)


LOST = (psycopg.OperationalError, psycopg_pool.PoolTimeout, psycopg.InterfaceError)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """A lost or unreachable server becomes EngineUnavailable; other errors pass as they are."""
    try:
        yield
    except LOST as exc:
        raise unavailable(exc) from exc


def connect(url: str, **kwargs: Any) -> psycopg.Connection:
    """A connection of its own (not from the pool), in autocommit mode."""
    with translated():
        return psycopg.Connection.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **kwargs)


class Engine:
    """Shared by the index store, the page cache and the probes of one process; closed when
    the last of them closes.

    open() prepares the database (`prepare`: the migrations) and opens the pool. A serving
    process whose server is down at start-up does not exit: open_later() leaves it closed, and
    every call then tries to open it again (at most once per POLL_INTERVAL, one thread at a
    time; the others fail at once with the last reason), so the first request after the server
    is back is served, with no restart."""

    def __init__(self, url: str, prepare: Callable[[str], object] = lambda url: None) -> None:
        self.url = url
        self.instance = uuid.uuid4().hex  # whose NOTIFY it is: our own changes are counted at once
        self._prepare = prepare
        self._users = 0
        self.pool = self._new_pool()
        self._opened = False
        self._opening = threading.Lock()
        self._retry_at = 0.0
        self._closed = False
        self._counts = dict.fromkeys(KINDS, 0)
        self._down: tuple[float, EngineUnavailable] | None = None  # (until, why) after a lost server
        self._generations: dict[str, int] = {}
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._listener: threading.Thread | None = None

    def _new_pool(self) -> psycopg_pool.ConnectionPool:
        return psycopg_pool.ConnectionPool(
            self.url, min_size=1, max_size=POOL_SIZE, open=False, timeout=POOL_WAIT, name="tidegate",
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            check=psycopg_pool.ConnectionPool.check_connection, reconnect_timeout=0)

    def open(self) -> None:
        self._prepare(self.url)
        try:
            with translated():
                self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except BaseException:
            self.pool.close()  # else its threads keep trying; a closed pool is not reopened
            self.pool = self._new_pool()
            raise
        self._opened = True
        self._listener = threading.Thread(target=self._listen, name="tidegate-pg-listen", daemon=True)
        self._listener.start()
        self._listening.wait(CONNECT_TIMEOUT)

    def open_later(self, why: EngineUnavailable) -> None:
        """Leave the engine closed, failing with `why` until a call opens it."""
        self._down = (time.monotonic() + POLL_INTERVAL, why)
        self._retry_at = time.monotonic() + POLL_INTERVAL

    def _open_now(self) -> None:
        """Open the engine if a try is due and no other thread is at it, else fail at once."""
        if not self._opening.acquire(blocking=False):
            raise self._down[1] if self._down else EngineUnavailable(ENGINE, "connecting")
        try:
            if self._opened:
                return
            if self._closed or time.monotonic() < self._retry_at:
                raise self._down[1] if self._down else EngineUnavailable(ENGINE, "connecting")
            try:
                self.open()
            except EngineUnavailable as exc:
                self._retry_at = time.monotonic() + POLL_INTERVAL
                self._down = (self._retry_at, exc)
                raise
            self._down = None
            log.info("PostgreSQL is reachable again: serving")
        finally:
            self._opening.release()

    def use(self) -> Engine:
        self._users += 1
        return self

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self.close()

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        with self._opening:  # not while a late open() is under way
            if self._listener is not None:
                self._listener.join(POLL_INTERVAL * 3)
            self.pool.close()

    # --- running statements ---

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection. While the server is down every call would wait POOL_WAIT for
        one: for FAIL_FAST after a failure, calls fail at once with the same reason instead."""
        if not self._opened:
            self._open_now()
        down = self._down
        if down is not None and time.monotonic() < down[0]:
            raise EngineUnavailable(ENGINE, down[1].reason)
        try:
            with translated(), self.pool.connection() as conn:
                yield conn
        except EngineUnavailable as exc:
            self._down = (time.monotonic() + FAIL_FAST, exc)
            raise

    def run(self, fn: Callable[[psycopg.Connection], T]) -> T:
        with self.connection() as conn:
            return fn(conn)

    def probe(self) -> str | None:
        """Why the server cannot serve now, or None."""
        try:
            self.run(lambda conn: conn.execute("SELECT 1").fetchone())
        except EngineUnavailable as exc:
            return str(exc)
        return None

    # --- changes ---

    def changed(self, kind: str) -> int:
        return self._counts[kind]

    def announce(self, conn: psycopg.Connection, kind: str) -> None:
        """Inside a writing transaction: its commit tells every instance (and the generation
        row, for those not listening) that `kind` changed."""
        conn.execute("UPDATE generations SET value = value + 1 WHERE name = %s", (kind,))
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{kind} {self.instance}"))

    def bump(self, kind: str) -> None:
        self._counts[kind] += 1  # two bumps racing (listener, a commit of ours) still move it

    def _bump_all(self) -> None:
        for kind in KINDS:
            self.bump(kind)

    def _listen(self) -> None:
        lost = False
        while not self._stop.is_set():
            try:
                with psycopg.Connection.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._bump_all()  # anything may have changed while nobody listened
                    lost = False
                    self._listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=NOTICE_WAIT):
                            kind, _, who = note.payload.partition(" ")
                            if kind in self._counts and who != self.instance:
                                self.bump(kind)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                if not lost:
                    log.warning("PostgreSQL change listener lost (%s); polling the generations meanwhile",
                                unavailable(exc).reason)
                    self._bump_all()
                    lost = True
                self._listening.set()
                self._stop.wait(POLL_INTERVAL)
                self._poll()

    def _poll(self) -> None:
        """The fallback while not listening: a generation row that moved means a change."""
        try:
            rows = self.run(lambda conn: conn.execute("SELECT name, value FROM generations").fetchall())
        except EngineUnavailable:
            return
        for name, value in rows:
            if name in self._counts and self._generations.get(name) != value:
                self._generations[name] = value
                self.bump(name)

