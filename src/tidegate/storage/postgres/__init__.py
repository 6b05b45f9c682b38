"""The shared state of several instances in PostgreSQL (database_url): the local index, the page
cache and the locks. Imported only when database_url is set (psycopg is an optional extra)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ..errors import EngineUnavailable
from .engine import Engine, connect, safe_url, translated
from .index import PgIndex
from .locks import PgLocks, RoutedLocks
from .pages import PgPageCache
from .schema import NewerSchema, migrate

log = logging.getLogger(__name__)

# Locks that guard state on this host's disk: the file cache's downloads and the root-list files.
HOST_LOCKS = ("download:", "root:", "root-page:")


@dataclass
class SharedState:
    index: PgIndex
    pages: PgPageCache
    locks: RoutedLocks
    probes: tuple[Callable[[], Awaitable[str | None]], ...]


def migrate_database(url: str) -> list[str]:
    """Bring the database's schema up to date (blocking); the migrations applied."""
    with connect(url) as conn, translated():
        return migrate(conn)


async def open_postgres(url: str, pages_max_size: int | None, host_locks: Any, *,
                        shared_blobs: bool = False, later: bool = False) -> SharedState:
    """Migrate (once across instances starting together), then open the parts on one engine.
    `host_locks`: this host's Locks, for the names of HOST_LOCKS; with `shared_blobs` (a blob
    store every instance reads) downloads are single-flight across instances instead. `later`:
    a server that cannot be reached now is not an error here; every call fails with the reason
    (a 503) until one finds it back (Engine.open_later)."""
    engine = Engine(url, prepare=migrate_database)
    try:
        await asyncio.to_thread(engine.open)
    except EngineUnavailable as exc:
        if not later or isinstance(exc, NewerSchema):  # that one does not pass: said once, at start-up
            raise
        log.warning("%s at start-up; answering 503 until it is back (%s)", exc, safe_url(url))
        engine.open_later(exc)

    async def ready() -> str | None:
        return await asyncio.to_thread(engine.probe)

    local = tuple(p for p in HOST_LOCKS if not (shared_blobs and p == "download:"))
    return SharedState(index=PgIndex(engine), pages=PgPageCache(engine, pages_max_size),
                       locks=RoutedLocks(PgLocks(url), host_locks, local), probes=(ready,))


__all__ = ["HOST_LOCKS", "PgIndex", "PgLocks", "RoutedLocks", "PgPageCache", "SharedState", "migrate_database", "open_postgres", "safe_url"]
