#!/usr/bin/env python3
"""Cost of observability on the hot path: warm page throughput of tidegate with metrics and
the request log on (the defaults) vs both off, side by side in one run, as a ratio.

nginx serves a small static index on 127.0.0.1 as the upstream of both tidegates (2 workers
each, their logs written to a file as a service's would be). Each page is fetched once to warm
the caches, then wrk runs against the two servers in alternation, several rounds, so that load
from elsewhere on the machine hits both alike; the medians are compared.

    python bench/observe.py                 # 5 rounds of 5 s per server and format
    python bench/observe.py --rounds 3 --seconds 3

Target: throughput with observability >= 90% of without. Exit status: 0 done, 1 a server
failed, 2 missing tool.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import measure as M  # noqa: E402

PROJECT = "demo-pkg"
FORMATS = {"json": "application/vnd.pypi.simple.v1+json", "html": "text/html"}
TARGET = 0.90


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def static_root(root: Path) -> None:
    """A PEP 503 page of 40 files, about the size of a typical project's."""
    page = root / "simple" / PROJECT
    page.mkdir(parents=True)
    links = "".join(f'<a href="../../files/demo_pkg-1.{i}-py3-none-any.whl#sha256={i:064x}">'
                    f"demo_pkg-1.{i}-py3-none-any.whl</a><br>\n" for i in range(40))
    (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    (root / "simple" / "index.html").write_text(f'<a href="{PROJECT}/">{PROJECT}</a>\n')


def cpu_seconds(root: int) -> float:
    """User + system CPU time used so far by a server's processes (master and workers)."""
    total = 0
    for pid in M._tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def recording_cost(n: int = 50000) -> dict:
    """The observing middleware's own time per request, in-process: a warm page's handler
    called n times bare and n times through the middleware with metrics and request log on
    (the log written to a file), both from the same loop. A steadier figure than throughput
    on a machine others load, and the upper bound of what observing adds to a request."""
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from tidegate.observe.metrics import Metrics
    from tidegate.observe.requestlog import RequestLog
    from tidegate.web.observe import middleware

    async def run() -> dict:
        body = web.Response(body=b"x" * 9562, headers={"X-Tidegate-Cache": "hit"})

        async def handler(request):
            return body

        app = web.Application()
        app.router.add_get("/simple/{project}/", handler)
        request = make_mocked_request("GET", f"/simple/{PROJECT}/", app=app)
        request._match_info = await app.router.resolve(request)
        request_log = RequestLog("text")
        observe = middleware(Metrics(), request_log)
        best = {"bare": float("inf"), "observed": float("inf")}
        for _ in range(5):  # the best of five: the least disturbed by other load
            start = time.perf_counter()
            for _ in range(n):
                await handler(request)
            best["bare"] = min(best["bare"], (time.perf_counter() - start) / n * 1e6)
            start = time.perf_counter()
            for _ in range(n):
                await observe(request, handler)
            request_log.flush()  # the batched part is part of the cost
            best["observed"] = min(best["observed"], (time.perf_counter() - start) / n * 1e6)
        return {"us_per_request": round(best["observed"] - best["bare"], 2)}

    saved = sys.stderr
    with tempfile.TemporaryFile("w") as sink:
        sys.stderr = sink
        try:
            return asyncio.run(run())
        finally:
            sys.stderr = saved


def start_tidegate(procs: harness.Procs, tmp: Path, label: str, upstream: str, observe: set[str]) -> tuple[str, int]:
    port, data = harness.free_port(), tmp / f"data-{label}"
    env = {**os.environ, "TIDEGATE_METRICS": str("metrics" in observe).lower(),
           "TIDEGATE_REQUEST_LOG": str("request_log" in observe).lower()}
    p = procs.start(label, [sys.executable, "-m", "tidegate", "serve", "--host", "127.0.0.1", "--port", str(port),
                            "--data-dir", str(data), "--upstream", f"{upstream}/simple/", "--workers", "2"], env=env)
    base = f"http://127.0.0.1:{port}"
    harness.wait_http(base + "/simple/", p, what=label)
    for accept in FORMATS.values():
        status, _, _ = M.get(f"{base}/simple/{PROJECT}/", accept)
        if status != 200:
            raise RuntimeError(f"{label}: warming {PROJECT} answered {status}")
    return base, p.pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument("--on", default="metrics,request_log",
                        help="what the observed server has on (default both: metrics,request_log)")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="tidegate-bench-observe-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)  # nginx workers run as nobody
        (tmp / "logs").mkdir()
        procs = harness.Procs(tmp / "logs")
        try:
            static_root(tmp / "root")
            upstream = harness.start_nginx(procs, tmp, tmp / "root", harness.free_port())
            servers = {"on": start_tidegate(procs, tmp, "observed", upstream, set(args.on.split(","))),
                       "off": start_tidegate(procs, tmp, "plain", upstream, set())}
            rps: dict[tuple[str, str], list[float]] = {(s, f): [] for s in servers for f in FORMATS}
            # CPU time per request is the steadier figure on a machine others load too.
            cpu: dict[tuple[str, str], list[float]] = {(s, f): [] for s in servers for f in FORMATS}
            for round_ in range(args.rounds):
                for fmt, accept in FORMATS.items():
                    order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
                    for which in order:
                        base, pid = servers[which]
                        before = cpu_seconds(pid)
                        result = M.wrk(f"{base}/simple/{PROJECT}/", accept, args.seconds, args.connections)
                        used = cpu_seconds(pid) - before
                        if result["non2xx"] or result["socket_errors"]:
                            raise RuntimeError(f"{which}: {result}")
                        rps[which, fmt].append(result["rps"])
                        cpu[which, fmt].append(used / (result["rps"] * args.seconds) * 1e6)
                    log(f"round {round_ + 1} {fmt}: on {rps['on', fmt][-1]:.0f} req/s "
                        f"({cpu['on', fmt][-1]:.1f} us CPU each), off {rps['off', fmt][-1]:.0f} req/s "
                        f"({cpu['off', fmt][-1]:.1f} us)")
            lines = sum(1 for _ in open(tmp / "logs" / "observed.log", "rb"))
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            for label in ("observed", "plain", "nginx"):
                print(procs.log_tail(label), file=sys.stderr)
            return 1
        finally:
            procs.stop_all()
    results = {"on": args.on, "rounds": args.rounds, "seconds": args.seconds, "connections": args.connections,
               "request_log_lines": lines, "recording": recording_cost()}
    print(f"\nwarm page throughput, {args.on.replace(',', ' + ')} on vs off (median of {args.rounds} x {args.seconds} s, "
          f"{args.connections} connections, 2 workers each):")
    for fmt in FORMATS:
        on, off = M.median(rps["on", fmt]), M.median(rps["off", fmt])
        ratio = on / off
        cpu_on, cpu_off = M.median(cpu["on", fmt]), M.median(cpu["off", fmt])
        results[fmt] = {"on_rps": on, "off_rps": off, "ratio": round(ratio, 3), "on_cpu_us": round(cpu_on, 1),
                        "off_cpu_us": round(cpu_off, 1), "cpu_ratio": round(cpu_on / cpu_off, 3)}
        verdict = "ok" if ratio >= TARGET else "ABOVE TARGET"
        print(f"  {fmt:4}  on {on:8.0f} req/s   off {off:8.0f} req/s   ratio {ratio:.3f} "
              f"(cost {100 * (1 - ratio):.1f}%, target < {100 * (1 - TARGET):.0f}%: {verdict}); "
              f"CPU per request on {cpu_on:.1f} us, off {cpu_off:.1f} us, ratio {cpu_on / cpu_off:.3f}")
    print(f"  request log lines written by the observed server: {lines}")
    print(f"  the observing middleware's own time, in-process: {results['recording']['us_per_request']} us "
          f"per request (metrics + request log)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
