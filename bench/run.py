#!/usr/bin/env python3
"""tidegate benchmark: tidegate vs proxpi vs plain nginx, side by side.

nginx serves a static PEP 503 copy of /opt/pypi (+ /opt/pypi-more) on 127.0.0.1
and is the upstream for both proxies. Nothing here contacts a public index.

    python bench/run.py                      # everything (needs `tidegate serve`)
    python bench/run.py --only nginx,proxpi  # harness without tidegate

See docs/benchmarks.md. Exit status: 0 done, 1 a server failed, 2 missing tool/data.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin, urldefrag

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import measure as M  # noqa: E402

BENCH = Path(__file__).resolve().parent
PROXPI_VENV = BENCH / ".venv-proxpi"
WARM_PROJECT = "requests"
TARGETS = {
    "install_warm_vs_direct": 1.2,  # tidegate warm install time / direct nginx
    "page_vs_proxpi": 10.0,         # warm page req/s, tidegate / proxpi
    "page_vs_nginx": 0.30,          # warm page req/s, tidegate / nginx
    "file_gbps": 1.0,               # warm cached 200 MB file through tidegate
    "peak_rss_mb": 150.0,           # tidegate master + workers
}


def die(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- servers


class Bench:
    def __init__(self, args, tmp: Path):
        self.args, self.tmp = args, tmp
        self.procs = harness.Procs(tmp / "logs")
        self.upstream = ""  # nginx base URL
        self.uv_work = Path(args.uv_dir) / f"{tmp.name}-uv"

    # Each start_* returns (base URL, root pid, page path template, index path, formats).
    def start_nginx(self):
        port = harness.free_port()
        self.upstream = harness.start_nginx(self.procs, self.tmp, self.tmp / "root", port)
        return self.upstream, self.procs.procs["nginx"].pid

    def start_tidegate(self, label: str):
        port, data = harness.free_port(), self.tmp / f"data-{label}"
        data.mkdir()
        p = self.procs.start(label, [
            self.args.tidegate_python, "-m", "tidegate", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data), "--upstream", f"{self.upstream}/simple/", "--workers", "2"])
        base = f"http://127.0.0.1:{port}"
        harness.wait_http(base + "/simple/", p)
        return base, p.pid

    def proxpi_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROXPI_")}
        # The only index proxpi may contact is our nginx (its default is pypi.org).
        env.update(PROXPI_INDEX_URL=f"{self.upstream}/simple/", PROXPI_EXTRA_INDEX_URLS="",
                   PROXPI_CACHE_DIR=str(self.tmp / "proxpi-cache"), PROXPI_LOGGING_LEVEL="WARNING")
        return env

    def start_proxpi(self, label: str):
        env = self.proxpi_env()
        (self.tmp / "proxpi-cache").mkdir(exist_ok=True)
        port = harness.free_port()
        # gthread with 2x16 threads: one thread per wrk connection, so proxpi keeps
        # its connections alive. Faster than the default sync worker here (which
        # closes every connection) - we give the competitor its best setup.
        p = self.procs.start(label, [
            str(PROXPI_VENV / "bin/gunicorn"), "--preload", "--workers", "2", "--threads", "16",
            "--no-control-socket", "--bind", f"127.0.0.1:{port}", "proxpi.server:app"],
            env=env, cwd=self.tmp)
        base = f"http://127.0.0.1:{port}"
        harness.wait_http(base + "/health", p)
        return base, p.pid


SERVERS = {  # page path template, uv index path, formats the server can serve
    "nginx": ("/simple/{}/", "/simple/", ("html",)),
    "proxpi": ("/index/{}/", "/index/", ("json", "html")),
    "tidegate": ("/simple/{}/", "/simple/", ("json", "html")),
}
ACCEPT = {"json": M.JSON, "html": M.HTML}


def ensure_proxpi():
    """proxpi in its own venv (its pins must not touch the harness's env)."""
    py = PROXPI_VENV / "bin/python"
    check = [str(py), "-c", "import importlib.metadata as m; print(m.version('proxpi'))"]
    if py.exists() and subprocess.run(check, capture_output=True, text=True).stdout.strip() == "1.3.1":
        return
    log(f"creating {PROXPI_VENV} (proxpi 1.3.1 + gunicorn)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PROXPI_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(BENCH / "proxpi-requirements.txt")], check=True)


def check_proxpi_config(env: dict, upstream: str):
    """Read proxpi's own settings as it will see them: only our nginx, no extras."""
    code = ("from proxpi import _cache as c; import json; "
            "print(json.dumps([c.INDEX_URL, c.EXTRA_INDEX_URLS]))")
    out = subprocess.run([str(PROXPI_VENV / "bin/python"), "-c", code], env=env,
                         capture_output=True, text=True, check=True).stdout
    index, extras = json.loads(out)
    if index != f"{upstream}/simple/" or extras:
        die(f"proxpi would contact {index} {extras}; refusing to run", 1)


# --------------------------------------------------------------------------- phases


def find_file_url(base: str, page_tmpl: str, formats, project: str) -> str:
    url = base + page_tmpl.format(project)
    if "json" in formats:
        status, body, _ = M.get(url, M.JSON)
        href = json.loads(body)["files"][0]["url"]
    else:
        status, body, _ = M.get(url, M.HTML)
        href = re.search(rb'href="([^"]+)"', body).group(1).decode()
    return urldefrag(urljoin(url, href))[0]


def check_pages(base: str, page_tmpl: str, formats, expected_files: int) -> list[str]:
    """Sanity-check one page per format; returns problems found."""
    problems = []
    for fmt in formats:
        status, body, _ = M.get(base + page_tmpl.format(WARM_PROJECT), ACCEPT[fmt])
        if status != 200:
            problems.append(f"{fmt} page status {status}")
            continue
        if fmt == "json":
            try:
                n = len(json.loads(body)["files"])
            except (ValueError, KeyError) as e:
                problems.append(f"json page unparsable: {e!r}")
                continue
        else:
            n = body.count(b"<a ")
        if n != expected_files:
            problems.append(f"{fmt} page lists {n} files, upstream has {expected_files}")
    return problems


def run_install(b: Bench, name: str, res: dict, packages: Path, uv: str, py: str):
    _, index_path, _ = SERVERS[name]
    a = b.args
    if name == "nginx":  # direct from the static index: no proxy, so cold == warm
        runs = [M.uv_install(uv, py, b.upstream + index_path, packages, b.uv_work) for _ in range(a.install_repeats)]
        res["install"] = {"cold": runs, "warm": runs}
    else:
        label = f"{name}-install"
        base, _ = getattr(b, f"start_{name}")(label)
        try:
            cold = [M.uv_install(uv, py, base + index_path, packages, b.uv_work)]
            warm = [M.uv_install(uv, py, base + index_path, packages, b.uv_work) for _ in range(a.install_repeats)]
        finally:
            b.procs.stop(label)
        res["install"] = {"cold": cold, "warm": warm}
    for k in ("cold", "warm"):
        runs = res["install"][k]
        res["install"][f"{k}_s"] = M.median([r["seconds"] for r in runs if r["ok"]])
        if not all(r["ok"] for r in runs):
            res.setdefault("problems", []).append(f"uv install ({k}) failed: {[r.get('error') for r in runs]}")
    log(f"  install cold {res['install']['cold_s']} s, warm {res['install']['warm_s']} s")


def run_serving(b: Bench, name: str, res: dict, info: dict, phases: set):
    """Fresh instance: cold pass over distinct projects, warm wrk, big file; memory sampled throughout."""
    page_tmpl, _, formats = SERVERS[name]
    a = b.args
    if name == "nginx":
        base, pid = b.upstream, b.procs.procs["nginx"].pid
    else:
        base, pid = getattr(b, f"start_{name}")(name)
    sampler = M.MemSampler(pid)
    sampler.start()
    res["mem_idle"] = M.tree_memory(pid)
    try:
        if "pages" in phases:
            status, _, dt = M.get(base + page_tmpl.format(WARM_PROJECT), ACCEPT[formats[0]])
            res["cold_first_request"] = {"format": formats[0], "status": status, "ms": round(dt * 1e3, 2)}
            upstream_n = len(re.findall(r"<a ", (b.tmp / "root/simple" / WARM_PROJECT / "index.html").read_text()))
            res.setdefault("problems", []).extend(check_pages(base, page_tmpl, formats, upstream_n))
            names = [n for n in info["real"] + info["extras"] if n != WARM_PROJECT][: a.pages]
            halves = {"json": names[: len(names) // 2], "html": names[len(names) // 2:]}
            res["cold"] = {}
            for fmt in formats:
                r = M.cold_pass(base, [(page_tmpl.format(n), ACCEPT[fmt]) for n in halves[fmt]], a.connections)
                res["cold"][fmt] = r
                log(f"  cold {fmt}: {r['ok']}/{r['n']} ok, {r['rps']} req/s, p99 {r['p99_ms']} ms")
                if r["errors"]:
                    res.setdefault("problems", []).append(f"cold {fmt}: {r['errors']} errors, e.g. {r['error_sample']}")
            res["mem_after_pages"] = M.tree_memory(pid)
            res["warm"] = {}
            for fmt in formats:
                url = base + page_tmpl.format(WARM_PROJECT)
                for _ in range(4):  # prime every worker's cache
                    M.get(url, ACCEPT[fmt])
                r = M.wrk(url, ACCEPT[fmt], a.duration, a.connections)
                res["warm"][fmt] = r
                log(f"  warm {fmt}: {r['rps']:.0f} req/s, p99 {r['p99_ms']} ms")
                if r["non2xx"] or r["socket_errors"]:
                    res.setdefault("problems", []).append(f"warm {fmt}: non2xx={r['non2xx']} socket={r['socket_errors']}")
        if "file" in phases:
            url = find_file_url(base, page_tmpl, formats, harness.BIG_PROJECT)
            if not url.startswith(base):
                res.setdefault("problems", []).append(f"file link does not point at the proxy: {url}")
            cold = M.download(url, info["big_sha256"])
            warm = [M.download(url) for _ in range(a.file_repeats)]
            served = [w for w in warm if w["status"] == 200 and w["bytes"] >= info["big_size"]]
            res["file"] = {"url": url, "cold": cold, "warm": warm, "warm_gbps": M.median([w["gbps"] for w in served]),
                           "cold_s": cold["seconds"] if cold["status"] == 200 else None}
            if cold["status"] != 200 or cold.get("sha256_ok") is False or len(served) < len(warm):
                res.setdefault("problems", []).append(
                    f"file: cold status {cold['status']} sha_ok={cold.get('sha256_ok')} location={cold['location']}; "
                    f"{len(warm) - len(served)}/{len(warm)} warm downloads not served in full "
                    f"(statuses {[w['status'] for w in warm]})")
            log(f"  file cold {cold['status']} {cold['seconds']} s, warm {res['file']['warm_gbps']} GB/s")
    finally:
        res["mem_peak"] = sampler.stop()
        if name != "nginx":
            b.procs.stop(name)
    log(f"  peak RSS {res['mem_peak']['rss_mb']} MB (PSS {res['mem_peak']['pss_mb']} MB, {res['mem_peak']['procs']} procs)")


def scan_log(b: Bench, name: str) -> list[str]:
    """Error lines from a server's logs, grouped once numbers (pids, times) are masked."""
    counts: dict[str, int] = {}
    for f in sorted((b.tmp / "logs").glob(f"{name}*.log")):
        for line in f.read_text(errors="replace").splitlines():
            if re.search(r"Traceback|\bERROR\b|CRITICAL|Exception|Error:", line):
                key = f"{f.name}: " + re.sub(r"\d+", "N", line.strip())[:200]
                counts[key] = counts.get(key, 0) + 1
    return [f"{k} (x{n})" for k, n in counts.items()]


# --------------------------------------------------------------------------- report


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict) or d.get(p) is None:
            return None
        d = d[p]
    return d


def build_rows(R: dict, file_mb: int, pages: int) -> list[dict]:
    """One row per figure: value per server, tidegate ratios, target."""
    def row(label, path, unit, fallback_nginx=None, target=None, ok=None):
        vals = {s: _get(R.get(s, {}), *path) for s in SERVERS}
        if vals["nginx"] is None and fallback_nginx:
            vals["nginx"] = _get(R.get("nginx", {}), *fallback_nginx)
        t = vals["tidegate"]
        ratios = {f"tidegate/{s}": round(t / vals[s], 2) if t and vals[s] else None for s in ("proxpi", "nginx")}
        return {"metric": label, "unit": unit, **vals, **ratios, "target": target,
                "pass": ok(vals, ratios) if ok and t is not None else None}

    T = TARGETS
    page_ok = lambda v, r: (r["tidegate/proxpi"] or 0) >= T["page_vs_proxpi"] and (r["tidegate/nginx"] or 0) >= T["page_vs_nginx"]  # noqa: E731
    return [
        row("warm page JSON (nginx: HTML)", ("warm", "json", "rps"), "req/s", ("warm", "html", "rps"),
            f">= {T['page_vs_proxpi']:g}x proxpi, >= {T['page_vs_nginx']:.0%} nginx", page_ok),
        row("warm page HTML", ("warm", "html", "rps"), "req/s", None,
            f">= {T['page_vs_proxpi']:g}x proxpi, >= {T['page_vs_nginx']:.0%} nginx", page_ok),
        row("warm page JSON p99 (nginx: HTML)", ("warm", "json", "p99_ms"), "ms", ("warm", "html", "p99_ms")),
        row("cold pages JSON (nginx: HTML)", ("cold", "json", "rps"), "req/s", ("cold", "html", "rps")),
        row("cold pages HTML", ("cold", "html", "rps"), "req/s"),
        row("cold first request", ("cold_first_request", "ms"), "ms"),
        row("uv install, cold (nginx: direct)", ("install", "cold_s"), "s"),
        row("uv install, warm (nginx: direct)", ("install", "warm_s"), "s", None,
            f"<= {T['install_warm_vs_direct']}x direct", lambda v, r: (r["tidegate/nginx"] or 99) <= T["install_warm_vs_direct"]),
        row(f"{file_mb} MB file, cold fetch", ("file", "cold_s"), "s"),
        row(f"{file_mb} MB file, warm", ("file", "warm_gbps"), "GB/s", None,
            f">= {T['file_gbps']} GB/s", lambda v, r: v["tidegate"] >= T["file_gbps"]),
        row(f"RSS after {pages} cold pages", ("mem_after_pages", "rss_mb"), "MB"),
        row("peak RSS (sum of procs)", ("mem_peak", "rss_mb"), "MB", None,
            f"< {T['peak_rss_mb']:g} MB", lambda v, r: v["tidegate"] < T["peak_rss_mb"]),
        row("peak PSS (sum of procs)", ("mem_peak", "pss_mb"), "MB"),
    ]


def fmt_num(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and x >= 100:
        return f"{x:,.0f}"
    return f"{x:g}" if isinstance(x, float) else str(x)


def render_table(rows: list[dict]) -> str:
    cols = ["metric", "unit", "nginx", "proxpi", "tidegate", "tidegate/proxpi", "tidegate/nginx", "target", "pass"]
    cells = [[r["metric"], r["unit"]] + [fmt_num(r[c]) for c in cols[2:7]]
             + [r["target"] or "", {True: "PASS", False: "FAIL", None: ""}[r["pass"]]] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    line = lambda xs: "| " + " | ".join(x.ljust(w) for x, w in zip(xs, widths)) + " |"  # noqa: E731
    return "\n".join([line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(c) for c in cells])


# --------------------------------------------------------------------------- main


def tool_versions(uv: str, py: str) -> dict:
    def out(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return None
    return {"nginx": out(["nginx", "-v"]), "wrk": out(["wrk", "-v"]), "uv": out([uv, "--version"]),
            "venv_python": out([py, "--version"]), "harness_python": platform.python_version(),
            "cpus": os.cpu_count(), "kernel": platform.release()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="nginx,proxpi,tidegate", help="servers to measure (nginx always runs as upstream)")
    ap.add_argument("--phases", default="install,pages,file", help="subset of install,pages,file")
    ap.add_argument("--tidegate-python", default=sys.executable)
    ap.add_argument("--venv-python", default=shutil.which("python3.11"), help="python for uv's venvs")
    ap.add_argument("--duration", type=int, default=10, help="wrk seconds per warm run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--pages", type=int, default=1000, help="distinct projects in the cold pass")
    ap.add_argument("--install-repeats", type=int, default=3)
    ap.add_argument("--uv-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
                    help="where uv's venvs and caches go; tmpfs keeps disk writes from swamping the index's share")
    ap.add_argument("--file-mb", type=int, default=200)
    ap.add_argument("--file-repeats", type=int, default=5)
    ap.add_argument("--results", default=str(BENCH / "results.json"))
    ap.add_argument("--keep-tmp", action="store_true")
    a = ap.parse_args()
    only = [s for s in SERVERS if s in a.only.split(",")]
    phases = set(a.phases.split(","))

    harness.check_sources()
    missing = [t for t in ("nginx", "wrk") if not shutil.which(t)]
    if missing:
        die(f"missing {' '.join(missing)}; install with: apt-get update && apt-get install -y nginx wrk")
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if "install" in phases and not Path(uv).exists():
        die("uv not found; pip install -r bench/requirements.txt")
    if importlib.util.find_spec("aiohttp") is None:
        die("aiohttp missing; pip install -r bench/requirements.txt")
    if not a.venv_python:
        die("python3.11 not found; pass --venv-python")
    py = subprocess.run([a.venv_python, "-c", "import sys; print(sys.executable)"],
                        capture_output=True, text=True, check=True).stdout.strip()  # past pyenv shims
    if "tidegate" in only:
        p = subprocess.run([a.tidegate_python, "-m", "tidegate", "serve", "--help"], capture_output=True, text=True)
        if p.returncode != 0:
            die(f"`{a.tidegate_python} -m tidegate serve` is not available yet:\n{p.stderr.strip()[-500:]}\n"
                "use --tidegate-python or --only nginx,proxpi")
    if "proxpi" in only:
        ensure_proxpi()

    tmp = Path(tempfile.mkdtemp(prefix="tidegate-bench-"))
    tmp.chmod(0o755)  # nginx workers run as nobody
    (tmp / "logs").mkdir()
    b = Bench(a, tmp)
    # Ctrl-C raises KeyboardInterrupt (even if we were started with SIGINT ignored, as
    # background jobs are); SIGTERM/SIGHUP unwind the same way, so `finally` cleans up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    R: dict = {"meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "args": vars(a),
                        "versions": tool_versions(uv, py), "targets": TARGETS}}
    # Other work on this small box skews every figure. (Checked only before we start:
    # later the load average mostly measures our own previous phase.)
    R["meta"]["loadavg_before"] = os.getloadavg()[0]
    if R["meta"]["loadavg_before"] > 0.5:
        log(f"warning: load average {R['meta']['loadavg_before']:.2f} before starting; other work will skew the figures")
    rc = 0
    try:
        log(f"building static index in {tmp}/root ({a.file_mb} MB wheel, >= {a.pages} projects)")
        info = harness.build_static_root(tmp / "root", a.pages + 1, a.file_mb)
        R["meta"]["index"] = {"real_projects": len(info["real"]), "generated_projects": len(info["extras"]),
                              "big_file_bytes": info["big_size"]}
        b.start_nginx()
        log(f"nginx upstream at {b.upstream}")
        if "proxpi" in only:
            check_proxpi_config(b.proxpi_env(), b.upstream)
        packages = BENCH / "packages.txt"
        for name in only:
            res = R.setdefault(name, {})
            log(f"== {name}")
            try:
                if "install" in phases:
                    run_install(b, name, res, packages, uv, py)
                if phases & {"pages", "file"}:
                    run_serving(b, name, res, info, phases)
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError, KeyError, AttributeError) as e:
                rc = 1
                res.setdefault("problems", []).append(f"aborted: {type(e).__name__}: {e}")
                log(f"  {name} failed: {e}\n{b.procs.log_tail(name) or b.procs.log_tail(name + '-install')}")
                for label in (name, f"{name}-install"):
                    if name != "nginx":
                        b.procs.stop(label)
            if name != "nginx":
                res["log_problems"] = scan_log(b, name)[:20]
    finally:
        b.procs.stop_all()
        out = BENCH / ".out" / "run-logs"
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(tmp / "logs", out)
        shutil.rmtree(b.uv_work, ignore_errors=True)
        if not a.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    R["rows"] = build_rows(R, a.file_mb, a.pages)
    Path(a.results).write_text(json.dumps(R, indent=2) + "\n")
    print()
    print(render_table(R["rows"]))
    for name in only:
        for p in R.get(name, {}).get("problems", []) + R.get(name, {}).get("log_problems", []):
            print(f"  ! {name}: {p}")
    print(f"\nresults: {a.results}; server logs: {BENCH / '.out/run-logs'}")
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
