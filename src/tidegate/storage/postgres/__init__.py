"""The shared state of several instances in PostgreSQL (database_url): the local index, the page
cache and the locks. Imported only when database_url is set (psycopg is an optional extra)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable

from .engine import Engine, connect, safe_url, translated
from .index import PgIndex
from .locks import PgLocks
from .pages import PgPageCache
from .schema import migrate


@dataclass
class SharedState:
    index: PgIndex
    pages: PgPageCache
    locks: PgLocks
    probes: tuple[Callable[[], Awaitable[str | None]], ...]


def migrate_database(url: str) -> list[str]:
    """Bring the database's schema up to date (blocking); the migrations applied."""
    with connect(url) as conn, translated():
        return migrate(conn)


async def open_postgres(url: str, pages_max_size: int | None) -> SharedState:
    """Migrate (once across instances starting together), then open the parts on one engine."""
    await asyncio.to_thread(migrate_database, url)
    engine = Engine(url)
    await asyncio.to_thread(engine.open)

    async def ready() -> str | None:
        return await asyncio.to_thread(engine.probe)

    return SharedState(index=PgIndex(engine), pages=PgPageCache(engine, pages_max_size), locks=PgLocks(url),
                       probes=(ready,))


__all__ = ["PgIndex", "PgLocks", "PgPageCache", "SharedState", "migrate_database", "open_postgres", "safe_url"]
