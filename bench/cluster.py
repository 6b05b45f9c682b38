#!/usr/bin/env python3
"""Warm page and cold file throughput of (a) one instance on local disk, (b) one instance on
S3 (SeaweedFS) + PostgreSQL, (n) the same behind nginx, (c) two instances on S3 + PostgreSQL behind nginx, in one run,
as ratios (issue 11's targets: b/a >= 0.9 warm pages, b/a >= 0.7 cold files, c/b >= 1.6).

    python bench/cluster.py [--rounds 3] [--seconds 5] [--files 12] [--file-mb 4] [--delay-ms 20]

The upstream is a static index (nginx) behind bench/delayproxy.py (--delay-ms before every
answer). Each instance is `tidegate serve --workers 1` pinned to one core with taskset (a: core
0; b: core 0; c: cores 0 and 1); the engines are started by the helpers the tests use
(tests/support/postgres.py, seaweedfs.py) and the balancer is tests/support/cluster.py's
(deploy/cluster/nginx.conf). Warm pages: wrk on one project page (JSON), after one request
warmed it. Cold files: --files wheels of --file-mb each, never fetched before by that setup,
8 at a time through tidegate, every body hashed; MB/s over the whole batch. Also printed: the
PostgreSQL transactions per request of each phase (pg_stat_database), the per-request cost
that grows with instances. This machine has 2 cores: the load generator, nginx and the engines
share them with tidegate, which the notes of the report quantify.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))
import harness  # noqa: E402
import measure  # noqa: E402
from support.cluster import Balancer, config_text  # noqa: E402
from support.postgres import PostgresServer, find_bin  # noqa: E402
from support.seaweedfs import SeaweedFS  # noqa: E402

JSON = "application/vnd.pypi.simple.v1+json"
WARM_PROJECT = "warm-page"


def build_upstream(root: Path, setups: list[str], rounds: int, files: int, file_mb: int) -> dict[str, list]:
    """A static index: one project for warm pages (40 files), and per setup and round `files`
    projects of one big wheel each. Returns {setup: [[(project, filename, sha256), ...] per round]}."""
    simple, store = root / "simple", root / "files"
    simple.mkdir(parents=True)
    store.mkdir()

    def project(name: str, wheels: list[tuple[str, str]]) -> None:
        (simple / name).mkdir()
        (simple / name / "index.html").write_text(harness._page([(f"../../files/{fn}#sha256={sha}", fn) for fn, sha in wheels]))

    warm = []
    for i in range(40):
        fn = harness.wheel_filename(WARM_PROJECT, f"1.{i}")
        warm.append((fn, harness.make_wheel(store / fn, WARM_PROJECT, f"1.{i}")))
    project(WARM_PROJECT, warm)
    cold: dict[str, list] = {}
    for setup in setups:
        cold[setup] = []
        for r in range(rounds):
            batch = []
            for i in range(files):
                name = f"cold-{setup}-{r}-{i}"
                fn = harness.wheel_filename(name, "1.0")
                sha = harness.make_wheel(store / fn, name, "1.0", payload_bytes=file_mb << 20)
                project(name, [(fn, sha)])
                batch.append((name, fn, sha))
            cold[setup].append(batch)
    return cold


def pg_transactions(pg: PostgresServer, database: str) -> int:
    import psycopg

    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                            (database,)).fetchone()[0]


async def cold_batch(origin: str, batch: list, concurrency: int = 8) -> tuple[float, int]:
    """Pages first (not timed), then every file at `concurrency` at a time: (MB/s, requests)."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        for name, _, _ in batch:
            async with session.get(f"{origin}/simple/{name}/", headers={"Accept": JSON}) as r:
                assert r.status == 200, await r.text()
        queue, total = list(batch), 0
        gate = asyncio.Semaphore(concurrency)

        async def one(name: str, fn: str, sha: str) -> int:
            async with gate, session.get(f"{origin}/files/{name}/{fn}") as r:
                digest, size = hashlib.sha256(), 0
                async for chunk in r.content.iter_chunked(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                assert r.status == 200 and digest.hexdigest() == sha, (fn, r.status)
                return size

        start = time.perf_counter()
        sizes = await asyncio.gather(*(one(*item) for item in queue))
        elapsed = time.perf_counter() - start
        total = sum(sizes)
    return total / elapsed / 1e6, len(batch)


class Setup:
    def __init__(self, name: str, procs: harness.Procs, tmp: Path, upstream: str, shared: dict | None,
                 cores: list[str]) -> None:
        self.name, self.procs, self.shared = name, procs, shared
        config = tmp / f"{name}.toml"
        settings = {"log_level": "warning", "request_log": False, "metrics": False}
        if shared:
            settings |= shared
        config.write_text(config_text(settings, [{"url": upstream, "retries": 0}]))
        self.ports = []
        for i, core in enumerate(cores):
            port = harness.free_port()
            argv = ["taskset", "-c", core, sys.executable, "-m", "tidegate", "serve", "--config", str(config),
                    "--workers", "1", "--port", str(port), "--data-dir", str(tmp / f"{name}-data-{i}")]
            env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
            proc = procs.start(f"{name}-{i}", argv, env=env)
            harness.wait_http(f"http://127.0.0.1:{port}/health", proc, 60, what=f"tidegate {name}-{i}")
            self.ports.append(port)
        self.balancer = None
        if len(cores) > 1 or name == "n":
            self.balancer = Balancer(tmp / f"{name}-nginx", self.ports)
            asyncio.run(self.balancer.start())
        self.origin = self.balancer.origin if self.balancer else f"http://127.0.0.1:{self.ports[0]}"

    def stop(self) -> None:
        if self.balancer:
            self.balancer.stop()
        for i in range(len(self.ports)):
            self.procs.stop(f"{self.name}-{i}")


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5, help="wrk duration per warm-page round")
    ap.add_argument("--files", type=int, default=12, help="cold files per round")
    ap.add_argument("--file-mb", type=int, default=4)
    ap.add_argument("--delay-ms", type=float, default=20.0, help="upstream latency (bench/delayproxy.py)")
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed (apt-get install -y {tool})", file=sys.stderr)
            return 2
    if (bindir := find_bin()) is None:
        print("error: PostgreSQL is not installed (initdb not found)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="tidegate-bench-cluster-"))
    tmp.chmod(0o755)  # nginx workers (nobody) read the static root inside
    procs = harness.Procs(tmp)
    pg = seaweed = None
    # n: b behind the same nginx, so that c/n shows what a second instance adds apart from the
    # balancer's own cost (on this machine nginx takes CPU from the instances it balances).
    setups = {"a": ("one instance, local disk", ["0"], False), "b": ("one instance, S3 + PostgreSQL", ["0"], True),
              "n": ("one instance, S3 + PostgreSQL, nginx", ["0"], True),
              "c": ("two instances, S3 + PostgreSQL, nginx", ["0", "1"], True)}
    results: dict[str, dict] = {}
    try:
        cold = build_upstream(tmp / "root", list(setups), args.rounds, args.files, args.file_mb)
        static = harness.start_nginx(procs, tmp, tmp / "root", harness.free_port())
        upstream = harness.start_delayproxy(procs, static, args.delay_ms, tmp / "upstream.jsonl")
        pg = PostgresServer(bindir)
        pg.start()
        seaweed = SeaweedFS(tmp / "seaweedfs")
        seaweed.start()
        os.environ.update(seaweed.env)
        for key, (label, cores, shared) in setups.items():
            engines = None
            if shared:
                database = f"bench_{key}"
                import psycopg
                with psycopg.connect(pg.url(), autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{database}"')
                engines = {"database_url": pg.url(database), "blob_store": f"s3://{seaweed.bucket('bench-' + key)}/tg",
                           "s3_endpoint_url": seaweed.endpoint}
            setup = Setup(key, procs, tmp, upstream, engines, cores)
            row: dict = {"label": label, "rps": [], "mbps": [], "pg_per_page": [], "pg_per_file": []}
            try:
                measure.get(f"{setup.origin}/simple/{WARM_PROJECT}/", JSON)  # warm: fetched and in memory
                for r in range(args.rounds):
                    before = pg_transactions(pg, database) if shared else 0
                    # wrk is not pinned: in a and b it mostly runs on core 1, in c it competes with tidegate.
                    wrk = measure.wrk(f"{setup.origin}/simple/{WARM_PROJECT}/", JSON, args.seconds, 32, threads=1)
                    if shared:
                        row["pg_per_page"].append((pg_transactions(pg, database) - before) / max(1, wrk["rps"] * args.seconds))
                    if wrk["non2xx"] or wrk["socket_errors"]:
                        status, body, _ = measure.get(f"{setup.origin}/simple/{WARM_PROJECT}/", JSON)
                        raise SystemExit(f"{key}: wrk got errors {wrk}; a request now: {status} {body[:300]!r}")
                    row["rps"].append(wrk["rps"])
                    before = pg_transactions(pg, database) if shared else 0
                    mbps, count = asyncio.run(cold_batch(setup.origin, cold[key][r]))
                    if shared:
                        row["pg_per_file"].append((pg_transactions(pg, database) - before) / (2 * count))
                    row["mbps"].append(mbps)
                    print(f"{key} round {r + 1}: {wrk['rps']:.0f} warm pages/s, {mbps:.1f} MB/s cold files", flush=True)
            finally:
                setup.stop()
            results[key] = row
    finally:
        procs.stop_all()
        if pg is not None:
            pg.stop("immediate")
            pg.remove()
        if seaweed is not None:
            seaweed.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nupstream latency {args.delay_ms:.0f} ms; {args.rounds} rounds; median [min-max]\n")
    print(f"{'setup':42} {'warm pages/s':>22} {'cold files MB/s':>20} {'PG xacts/page':>14} {'PG xacts/req (cold)':>20}")
    for key, row in results.items():
        pg_page = f"{statistics.median(row['pg_per_page']):.3f}" if row["pg_per_page"] else "-"
        pg_file = f"{statistics.median(row['pg_per_file']):.2f}" if row["pg_per_file"] else "-"
        print(f"{key}) {row['label']:39} {spread(row['rps']):>22} {spread(row['mbps']):>20} {pg_page:>14} {pg_file:>20}")

    def ratio(top: str, bottom: str, what: str) -> str:
        pairs = [t / b for t, b in zip(results[top][what], results[bottom][what])]
        return f"{statistics.median(pairs):.2f} [{min(pairs):.2f}-{max(pairs):.2f}]"

    print(f"\nb/a warm pages {ratio('b', 'a', 'rps')}   (target >= 0.9)")
    print(f"b/a cold files {ratio('b', 'a', 'mbps')}   (target >= 0.7)")
    print(f"c/b warm pages {ratio('c', 'b', 'rps')}   (target >= 1.6 with a core per instance: here wrk, nginx and"
          " the engines share the same 2 cores)")
    print(f"c/b cold files {ratio('c', 'b', 'mbps')}")
    print(f"c/n warm pages {ratio('c', 'n', 'rps')}   (both behind nginx: what the second instance adds)")
    print(f"c/n cold files {ratio('c', 'n', 'mbps')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
