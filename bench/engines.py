"""The per-call cost of the state engines, side by side: the local index (a read, a write), the
page cache (load and store of a 4,000-file page record) and a lock (try_acquire + release), on
SQLite/files under a data dir and on a PostgreSQL server this script starts (initdb, as the
tests do). Each figure is the median of several rounds, with its spread; the ratio is
PostgreSQL's cost over the local engine's.

    python bench/engines.py [--rounds 5] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.postgres import PostgresServer, find_bin  # noqa: E402
from tidegate.config import build  # noqa: E402
from tidegate.simple.model import File, Project  # noqa: E402
from tidegate.storage import open_storage  # noqa: E402
from tidegate.storage.records import PageRecord, Part, PublishedFile, Session, Validators  # noqa: E402


def big_record(name: str) -> PageRecord:
    files = tuple(File(f"{name}-{i}.0-py3-none-any.whl", f"https://files.example/{name}-{i}.whl", {"sha256": f"{i:064x}"},
                       size=1000 + i, upload_time="2024-01-02T03:04:05.000000Z") for i in range(4000))
    project = Project(name, files)
    return PageRecord(name, (Part("pypi", project, Validators('"e"')),), project, time.time(), time.time())


async def measure(storage, calls: int) -> dict[str, float]:
    """Microseconds per call of each operation."""
    published = PublishedFile(filename="demo-1.0.tar.gz", project="demo", version="1.0", sha256="a" * 64,
                              hashes={"sha256": "a" * 64}, size=1, upload_time="2024-01-02T03:04:05.000000Z")
    await storage.index.write(lambda rows: rows.published(published.filename) or rows.insert_file(published, session=None))
    record = big_record("bench")
    await storage.pages.store(record)
    counter = iter(range(10**9))
    ops = {
        "index read": lambda: storage.index.read(lambda rows: rows.files_of("demo")),
        "index write": lambda: storage.index.write(lambda rows: rows.insert_session(Session(
            token=f"t{next(counter)}-{time.time_ns()}", project="demo", version="1.0", status="open",
            created_at=1.0, expires_at=2.0))),
        "page load (4,000 files)": lambda: storage.pages.load("bench"),
        "page store (4,000 files)": lambda: storage.pages.store(record),
        "lock acquire+release": lambda: lock_cycle(storage),
    }
    out = {}
    for name, op in ops.items():
        n = calls if "page" not in name else max(calls // 10, 10)
        started = time.perf_counter()
        for _ in range(n):
            await op()
        out[name] = (time.perf_counter() - started) / n * 1e6
    return out


async def lock_cycle(storage) -> None:
    lease = await storage.locks.try_acquire("page:bench")
    await lease.release()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    bindir = find_bin()
    if bindir is None:
        sys.exit("PostgreSQL is not installed (initdb not found)")
    server = PostgresServer(bindir)
    server.start()  # fsync off, as in the tests: this measures tidegate's path, not the disk
    try:
        url = server.new_database()
        with tempfile.TemporaryDirectory() as tmp:
            engines = {"local": build({"data_dir": f"{tmp}/local"}),
                       "postgres": build({"data_dir": f"{tmp}/pg", "database_url": url})}
            results: dict[str, dict[str, list[float]]] = {e: {} for e in engines}
            opened = {e: await open_storage(s) for e, s in engines.items()}
            try:
                for _ in range(args.rounds):
                    for engine, storage in opened.items():  # interleaved: both see the same noise
                        for op, us in (await measure(storage, args.calls)).items():
                            results[engine].setdefault(op, []).append(us)
            finally:
                for storage in opened.values():
                    await storage.close()
    finally:
        server.stop()
        server.remove()
    print(f"{'operation':<26} {'local µs':>16} {'PostgreSQL µs':>18} {'ratio':>7}")
    for op in results["local"]:
        local, pg = results["local"][op], results["postgres"][op]
        spread = lambda xs: f"{statistics.median(xs):8.0f} ±{(max(xs) - min(xs)) / 2:5.0f}"
        print(f"{op:<26} {spread(local):>16} {spread(pg):>18} {statistics.median(pg) / statistics.median(local):6.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
