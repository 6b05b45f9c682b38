"""Named locks across every instance: PostgreSQL session advisory locks.

One connection per process holds them (a name's key is a 64-bit hash, engine.lock_key); the
server drops them all when that connection ends, so a process that dies (its socket closes)
releases its locks and another instance takes over. pg_try_advisory_lock never waits.

If the lock connection itself breaks while locks are held (the server restarted, a network
cut), the server has released them: another instance may take one while this process still
works under it (two downloads or page refreshes of the same thing, each complete and verified
on its own: work done twice, nothing corrupted). This process forgets every lease it held, so
their release() does nothing, and connects anew on the next try_acquire.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from ..errors import EngineUnavailable
from .engine import connect, lock_key, translated

log = logging.getLogger(__name__)


class PgLease:
    def __init__(self, locks: PgLocks, name: str, epoch: int) -> None:
        self._locks, self._name, self._epoch = locks, name, epoch

    async def release(self) -> None:
        if self._name is not None:
            name, self._name = self._name, None
            await self._locks.unlock(name, self._epoch)


class PgLocks:
    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection | None = None
        self._epoch = 0  # moves when the lock connection is replaced: older leases hold nothing
        self._held: set[str] = set()  # a session may take its own advisory lock again: we may not
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tidegate-pg-locks")  # one connection, in order

    async def try_acquire(self, name: str) -> PgLease | None:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._try, name)

    def _try(self, name: str) -> PgLease | None:
        if name in self._held:
            return None
        got = self._call("SELECT pg_try_advisory_lock(%s)", name)
        if not got:
            return None
        self._held.add(name)
        return PgLease(self, name, self._epoch)

    async def unlock(self, name: str, epoch: int) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._unlock, name, epoch)

    def _unlock(self, name: str, epoch: int) -> None:
        if epoch != self._epoch:
            return  # its connection is gone, and the lock with it
        self._held.discard(name)
        try:
            self._call("SELECT pg_advisory_unlock(%s)", name)
        except EngineUnavailable as exc:
            log.warning("releasing lock %r: %s (the server released it with the connection)", name, exc)

    def _call(self, sql: str, name: str) -> bool:
        # A connection kept from before a server restart fails on its first use: that costs a
        # reconnect and one more try, not the request (a lock taken on a connection that then
        # broke was released by the server with it, so trying again is safe).
        fresh = self._conn is None
        if fresh:
            self._conn = connect(self._url)
        try:
            with translated():
                row = self._conn.execute(sql, (lock_key(name),)).fetchone()
        except EngineUnavailable:
            self._lost()
            if fresh:
                raise
            return self._call(sql, name)
        return bool(row and row[0])

    def _lost(self) -> None:
        if self._held:
            log.warning("the PostgreSQL lock connection broke while holding %d lock(s); the server released them",
                        len(self._held))
        self._held.clear()
        self._epoch += 1
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()  # drops every lock still held
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown(wait=True)


class RoutedLocks:
    """Locks by what they guard: names for host-local state (`local_prefixes`, such as the
    downloads into a blob store on this host's disk, or its root-list files) on this host's
    locks, every other name on the shared ones. A follower on another host would otherwise wait
    for a download into a disk it cannot read, then find no blob."""

    def __init__(self, shared: Any, local: Any, local_prefixes: tuple[str, ...]) -> None:
        self._shared, self._local, self._prefixes = shared, local, local_prefixes

    async def try_acquire(self, name: str) -> Any:
        return await (self._local if name.startswith(self._prefixes) else self._shared).try_acquire(name)

    async def close(self) -> None:
        await self._shared.close()
        await self._local.close()
