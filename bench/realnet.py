#!/usr/bin/env python3
"""tidegate against an upstream that behaves like a real index, not like loopback.

The upstream is nginx serving a static copy of /opt/pypi (+ /opt/pypi-more) shaped like PyPI
(JSON and HTML by Accept, gzip, PEP 658 metadata, a few pages padded to ~2 MB / 4,000+ files,
a ~1 GB file), behind bench/delayproxy.py, which adds ~40 ms before every response. Three
columns, in one run:

    tidegate  client -> tidegate -> delay proxy -> nginx
    direct    client -> delay proxy -> nginx            (what the client would see without tidegate)
    floor     client -> nginx                           (no network at all)

    # benchmark a fixed commit, never a working tree that others are editing:
    git worktree add /work/bench-snap <COMMIT>
    python3.11 -m venv /work/bench-snap-venv && /work/bench-snap-venv/bin/pip install /work/bench-snap
    python bench/realnet.py --tidegate-python /work/bench-snap-venv/bin/python        # ~4 minutes
    python bench/realnet.py --tidegate-python ... --only compile,pages                # a subset of the phases

An editable tidegate, or one imported from this checkout's src/, is refused (--allow-live-tree
overrides); the module path, version and source commit of the tidegate under test are recorded.

Phases: compile (uv pip compile), install (uv pip install into a throw-away venv), pip (pip 23.2
download), pages (cold and warm big pages, bytes on the wire), head (HEAD of an uncached 1 GB
file). Nothing here contacts a public index: uv runs with --no-config, pip with
PIP_CONFIG_FILE=/dev/null and --isolated, and every index URL is one of the servers started here.
See docs/benchmarks.md. Exit status: 0 done, 1 a server or client failed, 2 missing tool/data.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import importlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import measure as M
import realindex

BENCH = Path(__file__).resolve().parent
PIP_VENV = BENCH / ".venv-pip23"
PHASES = ("compile", "install", "pip", "pages", "head")
# Projects of the resolution whose pages are padded (their page is fetched by every client),
# and projects outside it, padded too, that only the big-page phase asks for.
PADDED_RESOLVED = ["numpy", "pydantic-core", "sqlalchemy", "aiohttp"]
PADDED_EXTRA = ["boto3", "botocore", "grpcio", "protobuf"]
ACCEPT_JSON = "application/vnd.pypi.simple.v1+json"
BIG_PAGE_HEADERS = {"Accept": ACCEPT_JSON, "Accept-Encoding": "gzip, zstd"}
TARGETS = {
    "compile_cold_vs_direct": 1.15,  # cold uv pip compile through tidegate / straight to the delayed upstream
    "warm_vs_floor": 1.15,           # warm uv compile, uv install, pip: tidegate / uv or pip straight to nginx
    "page_cold_vs_direct": 1.10,     # cold big JSON page, time to last byte
    "page_bytes_vs_direct": 1.00,    # compressed bytes of a big page, tidegate / upstream
    "head_extra_ms": 100.0,          # HEAD of an uncached 1 GB file: at most this over the upstream round trip
}
CLIENT_TIMEOUT = 180.0  # seconds for one client run (--client-timeout); a hung server fails the run
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def die(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 4) if xs else None


def clean_env() -> dict:
    """The environment of every client and server: no proxies, no uv/pip/tidegate settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in PROXY_VARS and not k.startswith(("UV_", "PIP_", "TIDEGATE_", "VIRTUAL_ENV"))}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", NO_COLOR="1")
    return env


# --------------------------------------------------------------------------- upstream traffic


def classify(r: dict) -> str:
    if r["path"].startswith("/simple/"):
        return "page"
    if r["method"] == "HEAD":
        return "head"
    if r["path"].endswith(".metadata"):
        return "metadata"
    return "range" if r["range"] else "file"


class Traffic:
    """What reached the upstream: the delay proxy's JSON-lines log, one line per finished
    request, attributed to a client run by the request's start time. A request that a run
    started but that ends after it (tidegate finishing a fetch its client gave up on) still
    counts for that run, if it ends within `settle` seconds."""

    SETTLE = 0.3

    def __init__(self, path: Path):
        self.path = path

    def window(self, t0: float, t1: float, settle: float = SETTLE) -> dict:
        time.sleep(settle)
        with open(self.path, "rb") as f:
            rows = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
        rows = [r for r in rows if t0 <= r["t"] <= t1]
        s = {"requests": len(rows), "bytes": sum(r["bytes"] for r in rows), "page": 0, "page_200": 0, "page_304": 0,
             "page_conditional": 0, "page_max_age_0": 0, "metadata": 0, "file": 0, "range": 0, "head": 0,
             "errors": 0, "error_sample": [], "user_agents": sorted({r["ua"].split(" ")[0] for r in rows})}
        for r in rows:
            kind = classify(r)
            s[kind] += 1
            if kind == "page":
                s["page_200"] += r["status"] == 200
                s["page_304"] += r["status"] == 304
                s["page_conditional"] += bool(r["inm"] or r["ims"])
                cc = {d.strip().lower() for d in r["cc"].split(",")}
                s["page_max_age_0"] += "max-age=0" in cc
            if r["status"] >= 400:
                s["errors"] += 1
                if len(s["error_sample"]) < 5:
                    s["error_sample"].append(f"{r['status']} {r['method']} {r['path']}")
        # which requests (all of them when few, else the first 12), to say what was asked
        s["list"] = [f"{r['method']} {r['path']}{' [' + r['cc'] + ']' if r['cc'] else ''}"
                     f"{' (conditional)' if r['inm'] or r['ims'] else ''} -> {r['status']}" for r in rows[:12]]
        return s

    def during(self, fn, *args, settle: float = SETTLE):
        """fn(*args) (a dict), with what reached the upstream meanwhile under "upstream"."""
        t0 = time.time()
        res = fn(*args)
        res["upstream"] = self.window(t0, time.time(), settle)
        return res


# --------------------------------------------------------------------------- clients


def timed_out(t: float, e: subprocess.TimeoutExpired) -> dict:
    return {"seconds": round(time.perf_counter() - t, 3), "ok": False,
            "error": [f"timed out after {e.timeout:g} s (--client-timeout)"]}


def uv_compile(uv: str, py: str, index_url: str, reqs: Path, workdir: Path, timeout: float | None = None) -> dict:
    """`uv pip compile` with a fresh, empty uv cache: every page and metadata file comes from the index."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = clean_env()
    env.update(UV_CACHE_DIR=str(workdir / "cache"), UV_PYTHON_DOWNLOADS="never")
    out = workdir / "pins.txt"
    t = time.perf_counter()
    try:
        p = subprocess.run([uv, "--no-config", "--no-progress", "pip", "compile", "--python", py,
                            "--index-url", index_url, "--no-header", "--no-annotate", "-q", "-o", str(out), str(reqs)],
                           env=env, capture_output=True, text=True, timeout=timeout or CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        shutil.rmtree(workdir, ignore_errors=True)
        return timed_out(t, e)
    res = {"seconds": round(time.perf_counter() - t, 3), "ok": p.returncode == 0}
    if p.returncode == 0:
        res["pins"] = sorted(ln.strip() for ln in out.read_text().splitlines() if "==" in ln)
    else:
        res["error"] = p.stderr.strip().splitlines()[-5:]
    shutil.rmtree(workdir, ignore_errors=True)
    return res


def uv_install(uv: str, py: str, index_url: str, reqs: Path, workdir: Path) -> dict:
    """A real `uv pip install` into a fresh venv with a fresh uv cache (bench/measure.py; our own
    environment has been scrubbed of proxies, and measure drops UV_* and PIP_*)."""
    t = time.perf_counter()
    try:
        return M.uv_install(uv, py, index_url, reqs, workdir, timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        shutil.rmtree(workdir, ignore_errors=True)
        return timed_out(t, e)


def pip_download(index_url: str, reqs: Path, workdir: Path, timeout: float | None = None) -> dict:
    """pip 23.2 `pip download` of the requirements (resolution, metadata, every wheel), no cache,
    no configuration files, only index_url."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = clean_env()
    env.update(PIP_CONFIG_FILE=os.devnull)
    t = time.perf_counter()
    try:
        p = subprocess.run([str(PIP_VENV / "bin/python"), "-m", "pip", "download", "--isolated", "--no-cache-dir",
                            "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
                            "-d", str(workdir / "dl"), "--index-url", index_url, "-r", str(reqs)],
                           env=env, capture_output=True, text=True, timeout=timeout or CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        shutil.rmtree(workdir, ignore_errors=True)
        return timed_out(t, e)
    res = {"seconds": round(time.perf_counter() - t, 3), "ok": p.returncode == 0}
    m = re.search(r"^Successfully downloaded (.*)$", p.stdout, re.MULTILINE)
    res["downloaded"] = len(m.group(1).split()) if m else 0
    indexes = re.findall(r"^Looking in (?:indexes|links): (.*)$", p.stdout, re.MULTILINE)
    res["looking_in"] = indexes
    if indexes != [index_url]:
        res["ok"] = False
        res["error"] = [f"pip looked in {indexes}, expected only {index_url}"]
    if p.returncode != 0:
        res["error"] = (p.stderr or p.stdout).strip().splitlines()[-5:]
    shutil.rmtree(workdir, ignore_errors=True)
    return res


def decode(body: bytes, encoding: str) -> bytes | None:
    """The entity body, decompressed; None when the encoding cannot be decoded here."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    modules = {"zstd": ("compression.zstd", "backports.zstd", "zstandard"), "br": ("brotli", "brotlicffi")}
    for mod in modules.get(encoding, ()):
        try:
            return importlib.import_module(mod).decompress(body)
        except ImportError:
            continue
    return None


def request(url: str, method: str = "GET", headers: dict | None = None, timeout: float = 600) -> dict:
    """One request on a new connection, timed from connect to the body's last byte. The body is
    kept as it came (http.client does not decompress): its length is the bytes on the wire."""
    u = urlsplit(url)
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        dt = time.perf_counter() - t0
        return {"status": r.status, "ms": round(dt * 1e3, 2), "bytes": len(body),
                "headers": {k.lower(): v for k, v in r.getheaders()}, "body": body}
    finally:
        conn.close()


def page_sample(url: str) -> dict:
    r = request(url, headers=BIG_PAGE_HEADERS)
    out = {k: r[k] for k in ("status", "ms", "bytes")}
    h = r["headers"]
    out.update(encoding=h.get("content-encoding", ""), cache=h.get("x-tidegate-cache"), files=None)
    if r["status"] == 200:
        body = decode(r["body"], out["encoding"])
        if body is not None:
            out["decoded_bytes"] = len(body)
            out["files"] = len(json.loads(body)["files"])
    return out


# --------------------------------------------------------------------------- the run


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def group_gone(pgid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Run:
    def __init__(self, a, tmp: Path, uv: str, py: str):
        self.a, self.tmp, self.uv, self.py = a, tmp, uv, py
        self.procs = harness.Procs(tmp / "logs")
        self.reqs = Path(a.requirements)
        self.uv_work = Path(a.uv_dir) / f"{tmp.name}-uv"
        self.traffic = Traffic(tmp / "logs" / "delayproxy.jsonl")
        self.nginx = self.upstream = ""
        self.n_tidegate = 0
        self.groups: dict[str, int] = {}  # every server started: label -> process group id
        self.problems: list[str] = []

    def start_upstream(self):
        self.nginx = realindex.start_nginx(self.procs, self.tmp, self.tmp / "root", harness.free_port())
        port = harness.free_port()
        p = self.procs.start("delayproxy", [
            sys.executable, str(BENCH / "delayproxy.py"), "--port", str(port), "--upstream", self.nginx,
            "--delay-ms", str(self.a.delay_ms), "--log", str(self.traffic.path)], env=clean_env())
        self.groups.update(nginx=self.procs.procs["nginx"].pid, delayproxy=p.pid)
        self.upstream = f"http://127.0.0.1:{port}"
        harness.wait_http(self.upstream + "/files/", p, what="delayproxy")

    def start_tidegate(self) -> tuple[str, str]:
        """A fresh tidegate (fresh data dir); returns (label, base URL)."""
        self.n_tidegate += 1
        label = f"tidegate-{self.n_tidegate:02d}"
        data = self.tmp / f"data-{label}"
        data.mkdir()
        port = harness.free_port()
        p = self.procs.start(label, [
            self.a.tidegate_python, "-m", "tidegate", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data), "--upstream", f"{self.upstream}/simple/", "--workers", "2"], env=clean_env())
        self.groups[label] = p.pid  # its own session: master and forked workers share this group
        base = f"http://127.0.0.1:{port}"
        harness.wait_http(base + "/simple/", p, what=label)
        return label, base

    def stop_tidegate(self, label: str):
        """Stop the whole process group (master and workers) and check that nothing of it is left."""
        self.procs.stop(label)
        pgid = self.groups.get(label)
        if pgid and not group_gone(pgid):
            self.problems.append(f"{label}: process group {pgid} still alive after stop; killed")
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.tmp / f"data-{label}", ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Process groups started here that still have a live process."""
        return [f"{label} (pgid {pgid})" for label, pgid in self.groups.items() if not group_gone(pgid, 1.0)]

    # --- phases

    def phase_uv(self, kind: str) -> dict:
        """compile or install. Per repeat: a fresh tidegate, asked cold, then warm twice (the first
        warm run right after the cold one, then again), then direct and floor."""
        run = {"compile": lambda url: uv_compile(self.uv, self.py, url, self.reqs, self.uv_work),
               "install": lambda url: uv_install(self.uv, self.py, url, self.reqs, self.uv_work)}[kind]
        res = {"cold": [], "warm": [], "warm_again": [], "direct": [], "floor": []}
        for i in range(self.a.repeats):
            label, base = self.start_tidegate()
            try:
                for col in ("cold", "warm", "warm_again"):
                    res[col].append(self.traffic.during(run, base + "/simple/"))
            finally:
                self.stop_tidegate(label)
            res["direct"].append(self.traffic.during(run, self.upstream + "/simple/"))
            res["floor"].append(run(self.nginx + "/simple/"))
            log(f"  {kind} #{i + 1}: " + ", ".join(f"{k} {res[k][-1]['seconds']} s" for k in res))
        self.check_runs(kind, res)
        return res

    def phase_pip(self) -> dict:
        """pip 23.2: one tidegate, primed by a first (cold) run; then per repeat warm, direct, floor.
        The first warm run is the one right after the cold one; the others are "warm_again"."""
        res = {"cold": [], "warm": [], "warm_again": [], "direct": [], "floor": []}
        work = self.uv_work / "pip"
        label, base = self.start_tidegate()
        try:
            res["cold"].append(self.traffic.during(pip_download, base + "/simple/", self.reqs, work))
            log(f"  pip cold {res['cold'][-1]['seconds']} s")
            for i in range(self.a.repeats):
                col = "warm" if i == 0 else "warm_again"
                res[col].append(self.traffic.during(pip_download, base + "/simple/", self.reqs, work))
                res["direct"].append(self.traffic.during(pip_download, self.upstream + "/simple/", self.reqs, work))
                res["floor"].append(pip_download(self.nginx + "/simple/", self.reqs, work))
                log(f"  pip #{i + 1}: " + ", ".join(f"{k} {res[k][-1]['seconds']} s" for k in (col, "direct", "floor")))
        finally:
            self.stop_tidegate(label)
        self.check_runs("pip", res)
        return res

    def check_runs(self, kind: str, res: dict):
        """Every run must succeed, and all columns must arrive at the same result."""
        key = {"compile": "pins", "install": "installed", "pip": "downloaded"}[kind]
        seen = {}
        for col, runs in res.items():
            for r in runs:
                if not r["ok"]:
                    self.problems.append(f"{kind} {col} failed: {r.get('error')}")
                else:
                    seen.setdefault(json.dumps(r.get(key)), []).append(col)
                up = r.get("upstream")
                if up and up["errors"]:
                    self.problems.append(f"{kind} {col}: {up['errors']} upstream errors, e.g. {up['error_sample']}")
        if len(seen) > 1:
            self.problems.append(f"{kind}: columns disagree on {key}: " + "; ".join(
                f"{sorted(set(cols))}: {v[:300]}" for v, cols in seen.items()))
        if kind == "compile":
            for pins in map(json.loads, seen):
                for pin in pins or []:
                    name, _, version = pin.partition("==")
                    if name in PADDED_RESOLVED and version.startswith("0."):
                        self.problems.append(f"compile chose a padding entry: {pin}")

    def phase_pages(self, padded: dict) -> dict:
        """Each padded page, per repeat on a fresh tidegate: direct and tidegate cold (alternating
        which goes first), then 4 warm requests to tidegate (new connections, so either worker may
        answer), and the floor (nginx)."""
        names = sorted(padded)
        res = {"cold": [], "warm": [], "warm_first": [], "direct": [], "floor": [], "upstream_per_cold_page": [],
               "upstream_warm": []}
        for i in range(self.a.repeats):
            label, base = self.start_tidegate()
            try:
                for j, name in enumerate(names):
                    path = f"/simple/{name}/"
                    for col in (["direct", "cold"] if (i + j) % 2 == 0 else ["cold", "direct"]):
                        if col == "direct":
                            res["direct"].append({"project": name, **page_sample(self.upstream + path)})
                        else:
                            t0 = time.time()
                            res["cold"].append({"project": name, **page_sample(base + path)})
                            res["upstream_per_cold_page"].append(self.traffic.window(t0, time.time(), 0.05))
                    t0 = time.time()
                    warm = [{"project": name, **page_sample(base + path)} for _ in range(4)]
                    res["upstream_warm"].append(self.traffic.window(t0, time.time(), 0.05))
                    res["warm"].extend(warm)
                    res["warm_first"].append(max(warm, key=lambda s: s["ms"]))
                    res["floor"].append({"project": name, **page_sample(self.nginx + path)})
            finally:
                self.stop_tidegate(label)
            log(f"  pages #{i + 1}: median cold {median([s['ms'] for s in res['cold'][-len(names):]])} ms, "
                f"direct {median([s['ms'] for s in res['direct'][-len(names):]])} ms")
        res["upstream_warm_total"] = sum(u["requests"] for u in res["upstream_warm"])
        res["encodings"] = {col: sorted({s["encoding"] or "identity" for s in res[col]})
                            for col in ("cold", "warm", "direct", "floor")}
        for col in ("cold", "warm", "direct", "floor"):
            for s in res[col]:
                want = padded[s["project"]]["files"]
                if s["status"] != 200:
                    self.problems.append(f"big page {col} {s['project']}: status {s['status']}")
                elif s["files"] is None:
                    self.problems.append(f"big page {col} {s['project']}: cannot decode {s['encoding']!r} here")
                elif s["files"] != want:
                    self.problems.append(f"big page {col} {s['project']}: {s['files']} files, upstream lists {want}")
        return res

    def phase_head(self, info: dict) -> dict:
        """HEAD of the big file, uncached: a fresh tidegate per repeat (its page fetched first, not
        timed), against the same HEAD straight to the delayed upstream and to nginx."""
        fn = info["big_file"]
        res = {"upstream": [], "floor": [], "tidegate": []}
        for i in range(self.a.head_repeats):
            res["upstream"].append(self.head(f"{self.upstream}/files/{fn}"))
            res["floor"].append(self.head(f"{self.nginx}/files/{fn}"))
            label, base = self.start_tidegate()
            try:
                page_url = f"{base}/simple/{harness.BIG_PROJECT}/"
                page = request(page_url, headers={"Accept": ACCEPT_JSON})
                if page["status"] != 200:
                    raise RuntimeError(f"{page_url}: status {page['status']}")
                body = decode(page["body"], page["headers"].get("content-encoding", ""))
                href = json.loads(body)["files"][0]["url"]
                url = urldefrag(urljoin(page_url, href))[0]
                t0 = time.time()
                r = self.head(url)
            finally:
                self.stop_tidegate(label)  # also ends any download the HEAD started
            r["upstream"] = self.traffic.window(t0, time.time(), 0.5)
            res["tidegate"].append(r)
            log(f"  HEAD #{i + 1}: upstream {res['upstream'][-1]['ms']} ms, tidegate {r['ms']} ms "
                f"({r['upstream']['requests']} upstream requests, {r['upstream']['bytes'] / 1e6:.0f} MB)")
        for col, rs in res.items():
            for r in rs:
                if r["status"] != 200 or r["content_length"] != info["big_size"]:
                    self.problems.append(f"HEAD {col}: status {r['status']}, Content-Length {r['content_length']} "
                                         f"(file has {info['big_size']})")
        return res

    @staticmethod
    def head(url: str) -> dict:
        r = request(url, "HEAD", timeout=900)
        cl = r["headers"].get("content-length")
        return {"status": r["status"], "ms": r["ms"], "content_length": int(cl) if cl else None,
                "cache": r["headers"].get("x-tidegate-cache")}


# --------------------------------------------------------------------------- report


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def build_rows(R: dict) -> list[dict]:
    T = TARGETS
    rows = []

    def add(metric, unit, t, d, f, target=None, ok=None):
        r = {"metric": metric, "unit": unit, "tidegate": t, "direct": d, "floor": f,
             "tidegate/direct": ratio(t, d), "tidegate/floor": ratio(t, f), "target": target}
        r["pass"] = (ok(r) if t is not None else False) if ok else None  # no figure: FAIL
        rows.append(r)

    def secs(phase, col):
        return median([x["seconds"] for x in R.get(phase, {}).get(col, []) if x["ok"]])

    warm_ok = lambda r: r["tidegate/floor"] is not None and r["tidegate/floor"] <= T["warm_vs_floor"]
    warm_t = f"<= {T['warm_vs_floor']}x floor"
    cold_ok = lambda r: r["tidegate/direct"] is not None and r["tidegate/direct"] <= T["compile_cold_vs_direct"]
    for phase, what in (("compile", "uv pip compile"), ("install", "uv pip install"), ("pip", "pip 23.2 download")):
        if phase not in R:
            continue
        d, f = secs(phase, "direct"), secs(phase, "floor")
        if phase == "compile":
            add(f"{what}, cold", "s", secs(phase, "cold"), d, f, f"<= {T['compile_cold_vs_direct']}x direct", cold_ok)
        else:
            add(f"{what}, cold", "s", secs(phase, "cold"), d, f)
        add(f"{what}, warm (1st run after cold)", "s", secs(phase, "warm"), d, f, warm_t, warm_ok)
        add(f"{what}, warm again", "s", secs(phase, "warm_again"), d, f, warm_t, warm_ok)
    if "pages" in R:
        P = R["pages"]
        ms = lambda col: median([s["ms"] for s in P[col] if s["status"] == 200])
        kb = lambda col: median([s["bytes"] / 1e3 for s in P[col] if s["status"] == 200])
        add("big JSON page, cold (to last byte)", "ms", ms("cold"), ms("direct"), ms("floor"),
            f"<= {T['page_cold_vs_direct']}x direct",
            lambda r: r["tidegate/direct"] is not None and r["tidegate/direct"] <= T["page_cold_vs_direct"])
        add("big JSON page, warm (median of 4)", "ms", ms("warm"), ms("direct"), ms("floor"))
        add("big JSON page, warm (slowest of 4)", "ms", ms("warm_first"), ms("direct"), ms("floor"))
        bytes_ok = lambda r: r["tidegate/direct"] is not None and r["tidegate/direct"] <= T["page_bytes_vs_direct"]
        add("big JSON page on the wire, cold (gzip, zstd)", "kB", kb("cold"), kb("direct"), kb("floor"),
            "<= upstream's bytes", bytes_ok)
        add("big JSON page on the wire, warm (gzip, zstd)", "kB", kb("warm"), kb("direct"), kb("floor"),
            "<= upstream's bytes", bytes_ok)
    if "head" in R:
        H = R["head"]
        up = median([r["ms"] for r in H["upstream"]])
        add("HEAD uncached 1 GB file (direct: upstream RTT)", "ms", median([r["ms"] for r in H["tidegate"]]), up,
            median([r["ms"] for r in H["floor"]]), f"<= upstream + {T['head_extra_ms']:g} ms",
            lambda r: r["direct"] is not None and r["tidegate"] <= r["direct"] + T["head_extra_ms"])
    return rows


def traffic_rows(R: dict) -> list[dict]:
    """Median upstream requests per client run, by kind: what tidegate asked the upstream for
    (tidegate columns) next to what the client asks for by itself (direct)."""
    keys = ("requests", "page_200", "page_304", "page_conditional", "page_max_age_0", "metadata", "file", "range",
            "head", "errors")
    out = []

    def add(label, ups):
        ups = [u for u in ups if u]
        if not ups:
            return
        row = {"run": label, **{k: median([u[k] for u in ups]) for k in keys},
               "MB": round(median([u["bytes"] for u in ups]) / 1e6, 2)}
        out.append(row)

    for phase in ("compile", "install", "pip"):
        for col in ("cold", "warm", "warm_again", "direct"):
            add(f"{phase} {'tidegate ' + col.replace('_', ' ') if col != 'direct' else 'direct'}",
                [r.get("upstream") for r in R.get(phase, {}).get(col, [])])
    if "pages" in R:
        add("big page, tidegate cold (per page)", R["pages"]["upstream_per_cold_page"])
    if "head" in R:
        add("HEAD 1 GB, tidegate", [r.get("upstream") for r in R["head"]["tidegate"]])
    return out


def notes(R: dict) -> list[str]:
    """Upstream requests that a warm run should not have needed (the page TTL is 10 minutes). For
    pip, which sends Cache-Control: max-age=0 with every page request, tidegate revalidates by
    design (README): conditional page requests answered 304 are expected there, anything else is not."""
    out = []
    for phase in ("compile", "install", "pip"):
        for col in ("warm", "warm_again"):
            for i, r in enumerate(R.get(phase, {}).get(col, [])):
                up = r.get("upstream") or {}
                if up.get("requests"):
                    kinds = ", ".join(f"{k} {up[k]}" for k in ("page_200", "page_304", "page_conditional",
                                                              "page_max_age_0", "metadata", "file", "range",
                                                              "head", "errors") if up.get(k))
                    out.append(f"{phase} {col} #{i + 1}: {up['requests']} upstream requests ({kinds}): "
                               f"{'; '.join(up.get('list', [])[:4]) or '(many)'}")
    return out


def per_run(R: dict) -> list[str]:
    """How many requests tidegate sent upstream, run by run (a warm run should send ~none)."""
    out = []
    for phase in ("compile", "install", "pip"):
        if phase not in R:
            continue
        parts = []
        for col in ("cold", "warm", "warm_again"):
            ups = [r.get("upstream") or {} for r in R[phase].get(col, [])]
            if ups:
                parts.append(f"{col.replace('_', ' ')}: " + ", ".join(str(u.get("requests", "?")) for u in ups))
        d = [r.get("upstream") or {} for r in R[phase].get("direct", [])]
        out.append(f"{phase:8} tidegate {' | '.join(parts)}   (the client itself, direct: "
                   f"{', '.join(str(u.get('requests', '?')) for u in d)})")
    if "pages" in R:
        ups = R["pages"]["upstream_per_cold_page"]
        out.append(f"{'pages':8} tidegate cold, per page: {', '.join(str(u['requests']) for u in ups)}; "
                   f"warm: {R['pages'].get('upstream_warm_total', '?')} in all")
    if "head" in R:
        out.append(f"{'head':8} tidegate: " + ", ".join(
            f"{r['upstream']['requests']} ({r['upstream']['bytes'] / 1e6:.0f} MB: {'; '.join(r['upstream']['list'][:3])})"
            for r in R["head"]["tidegate"]))
    return out


def fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e6:
            return f"{x:,.0f}"  # counts (medians of an even number of runs come back as floats)
        if x >= 100:
            return f"{x:,.0f}"
        return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 10 else f"{x:.1f}"
    return str(x)


def table(rows: list[dict], cols: list[str]) -> str:
    cells = [[fmt(r[c]) if c != "pass" else {True: "PASS", False: "FAIL", None: ""}[r[c]] for c in cols] for r in rows]
    cells = [[c if c != "n/a" or cols[i] != "target" else "" for i, c in enumerate(row)] for row in cells]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    line = lambda xs: "| " + " | ".join(x.ljust(w) for x, w in zip(xs, widths)) + " |"
    return "\n".join([line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(c) for c in cells])


# --------------------------------------------------------------------------- main


def ensure_pip23(venv_python: str, version: str):
    """pip <version> in its own venv (from the package registry, through pip's ordinary configuration)."""
    py = PIP_VENV / "bin/python"
    check = [str(py), "-c", "import pip; print(pip.__version__)"]
    if py.exists() and subprocess.run(check, capture_output=True, text=True).stdout.strip() == version:
        return
    log(f"creating {PIP_VENV} (pip {version})")
    try:
        subprocess.run([venv_python, "-m", "venv", "--clear", str(PIP_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"pip=={version}"], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        die(f"could not create {PIP_VENV} with pip {version}: {e}; or run with --only compile,install,pages,head")


def tool_versions(uv: str, py: str) -> dict:
    def out(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return None
    return {"nginx": out(["nginx", "-v"]), "uv": out([uv, "--version"]), "venv_python": out([py, "--version"]),
            "pip": out([str(PIP_VENV / "bin/python"), "-m", "pip", "--version"]),
            "harness_python": platform.python_version(), "cpus": os.cpu_count(), "kernel": platform.release()}


IDENTITY = r"""
import json, importlib.metadata as md, tidegate
d = md.distribution("tidegate")
try:
    direct = json.loads(d.read_text("direct_url.json") or "null")
except (OSError, ValueError):
    direct = None
print(json.dumps({"file": tidegate.__file__, "version": d.version, "direct_url": direct}))
"""


def tidegate_identity(py: str) -> dict:
    """Where the tidegate under test comes from: its module path, version, the source it was
    installed from (pip's direct_url.json) and, when that source is a git checkout, its commit."""
    p = subprocess.run([py, "-c", IDENTITY], capture_output=True, text=True, env=clean_env(), cwd="/")
    if p.returncode != 0:
        die(f"cannot import tidegate with {py}:\n{p.stderr.strip()[-500:]}")
    ident = json.loads(p.stdout)
    direct = ident.get("direct_url") or {}
    ident["editable"] = bool((direct.get("dir_info") or {}).get("editable"))
    src = direct.get("url", "")
    if src.startswith("file://"):
        src_dir = urlsplit(src).path
        ident["source_dir"] = src_dir
        g = subprocess.run(["git", "-C", src_dir, "rev-parse", "HEAD"], capture_output=True, text=True)
        if g.returncode == 0:
            ident["commit"] = g.stdout.strip()
            st = subprocess.run(["git", "-C", src_dir, "status", "--porcelain", "--", "src", "pyproject.toml"],
                                capture_output=True, text=True)
            ident["source_dirty"] = bool(st.stdout.strip())
    return ident


def scan_logs(logdir: Path) -> list[str]:
    """Error lines in tidegate's logs, grouped once numbers are masked."""
    counts: dict[str, int] = {}
    for f in sorted(logdir.glob("tidegate-*.log")):
        for line in f.read_text(errors="replace").splitlines():
            if re.search(r"Traceback|\bERROR\b|CRITICAL|Exception|Error:|WARNING", line):
                key = re.sub(r"\d+", "N", line.strip())[:200]
                counts[key] = counts.get(key, 0) + 1
    return [f"{k} (x{n})" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(PHASES), help=f"phases to run, a subset of {','.join(PHASES)}")
    ap.add_argument("--repeats", type=int, default=3, help="repetitions per phase (medians are reported)")
    ap.add_argument("--head-repeats", type=int, default=2, help="uncached HEADs of the 1 GB file (each a fresh tidegate)")
    ap.add_argument("--delay-ms", type=float, default=40.0, help="added before every upstream response")
    ap.add_argument("--tidegate-python", default=sys.executable,
                    help="interpreter with a (non-editable) tidegate installed, e.g. a venv made from a git "
                         "worktree at a fixed commit")
    ap.add_argument("--allow-live-tree", action="store_true",
                    help="allow an editable tidegate or one imported from this checkout's src/ "
                         "(refused by default: other people edit that tree while the benchmark runs)")
    ap.add_argument("--client-timeout", type=float, default=CLIENT_TIMEOUT,
                    help="seconds one uv/pip run may take before it counts as failed")
    ap.add_argument("--venv-python", default=shutil.which("python3.11"), help="python for uv's and pip's venvs")
    ap.add_argument("--pip-version", default="23.2")
    ap.add_argument("--requirements", default=str(BENCH / "packages.txt"))
    ap.add_argument("--file-mb", type=int, default=1024, help="size of the big file for the HEAD phase")
    ap.add_argument("--pad-files", type=int, default=4000, help="at least this many files on each padded page")
    ap.add_argument("--pad-mb", type=float, default=2.0, help="at least this much JSON on each padded page")
    ap.add_argument("--uv-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
                    help="where uv's venvs and caches and pip's downloads go")
    ap.add_argument("--results", default=str(BENCH / ".out" / "realnet-results.json"))
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (index, nginx config, logs)")
    a = ap.parse_args()
    phases = [p for p in PHASES if p in a.only.split(",")]
    unknown = set(a.only.split(",")) - set(PHASES)
    if unknown or not phases:
        die(f"unknown phases {sorted(unknown)}; choose from {','.join(PHASES)}")
    if a.repeats < 1 or a.head_repeats < 1:
        die("--repeats and --head-repeats must be at least 1")

    harness.check_sources()
    missing_projects = [p for p in PADDED_RESOLVED + PADDED_EXTRA
                        if not any((s / "simple" / p).is_dir() for s in harness.SOURCES)]
    if missing_projects:
        die(f"benchmark data incomplete: {missing_projects} missing from {harness.SOURCES[0]}/simple/")
    if not Path(a.requirements).is_file():
        die(f"requirements list {a.requirements} missing")
    if not shutil.which("nginx"):
        die("nginx missing; install with: apt-get update && apt-get install -y nginx")
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if {"compile", "install"} & set(phases) and not Path(uv).exists():
        die("uv not found; pip install -r bench/requirements.txt")
    if importlib.util.find_spec("aiohttp") is None:
        die("aiohttp missing (the delay proxy needs it); pip install -r bench/requirements.txt")
    if not a.venv_python:
        die("python3.11 not found; pass --venv-python")
    py = subprocess.run([a.venv_python, "-c", "import sys; print(sys.executable)"],
                        capture_output=True, text=True, check=True).stdout.strip()  # past pyenv shims
    p = subprocess.run([a.tidegate_python, "-m", "tidegate", "serve", "--help"], capture_output=True, text=True)
    if p.returncode != 0:
        die(f"`{a.tidegate_python} -m tidegate serve` is not available:\n{p.stderr.strip()[-500:]}\n"
            "use --tidegate-python")
    ident = tidegate_identity(a.tidegate_python)
    live = ident["editable"] or Path(ident["file"]).resolve().is_relative_to(BENCH.parent.resolve() / "src")
    if live and not a.allow_live_tree:
        die(f"{a.tidegate_python} imports tidegate from {ident['file']}"
            f"{' (an editable install)' if ident['editable'] else ''}: that is a working tree others edit. "
            "Benchmark a snapshot: git worktree add DIR COMMIT; python -m venv V; V/bin/pip install DIR; "
            "then --tidegate-python V/bin/python (or pass --allow-live-tree)")
    if ident.get("source_dirty"):
        log(f"warning: {ident['source_dir']} has uncommitted changes in src/ or pyproject.toml")
    globals()["CLIENT_TIMEOUT"] = a.client_timeout
    if "pip" in phases:
        ensure_pip23(a.venv_python, a.pip_version)

    for k in [k for k in os.environ if k in PROXY_VARS or k.startswith("TIDEGATE_")]:
        del os.environ[k]  # only the servers started here are ever contacted
    os.environ.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")

    tmp = Path(tempfile.mkdtemp(prefix="tidegate-realnet-"))
    tmp.chmod(0o755)  # nginx workers run as nobody
    (tmp / "logs").mkdir()
    need = (2 * (a.file_mb << 20) if "head" in phases else 0) + (2 << 30)
    if realindex.free_bytes(tmp) < need:
        shutil.rmtree(tmp)
        die(f"{tmp} has less than {need >> 30} GiB free (the big file, and tidegate's copy of it)")
    run = Run(a, tmp, uv, py)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    R: dict = {"meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "args": vars(a), "phases": phases,
                        "versions": tool_versions(uv, py), "tidegate": ident, "targets": TARGETS, "loadavg_before": os.getloadavg()[0]}}
    if R["meta"]["loadavg_before"] > 0.5:
        log(f"warning: load average {R['meta']['loadavg_before']:.2f} before starting; other work will skew the figures")
    log(f"tidegate {ident['version']} from {ident['file']}"
        + (f" (installed from {ident.get('source_dir')} at {ident['commit'][:12]})" if ident.get("commit") else ""))
    t_start = time.monotonic()
    rc = 0
    try:
        log(f"building the index in {tmp}/root ({a.file_mb} MB file; padding {', '.join(PADDED_RESOLVED + PADDED_EXTRA)})")
        info = realindex.build(tmp / "root", a.file_mb if "head" in phases else 1, PADDED_RESOLVED + PADDED_EXTRA, a.pad_files, a.pad_mb)
        R["meta"]["index"] = {"projects": len(info["real"]) + 1, "big_file_bytes": info["big_size"],
                              "padded": info["padded"]}
        for name, pi in info["padded"].items():
            log(f"  {name}: {pi['files']} files, JSON {pi['json_bytes'] / 1e6:.2f} MB "
                f"(gzip {pi['json_gz_bytes'] / 1e3:.0f} kB), HTML {pi['html_bytes'] / 1e6:.2f} MB")
        run.start_upstream()
        log(f"nginx at {run.nginx}; delay proxy (+{a.delay_ms:g} ms) at {run.upstream}")
        for phase in phases:
            log(f"== {phase}")
            t0 = time.monotonic()
            try:
                if phase in ("compile", "install"):
                    R[phase] = run.phase_uv(phase)
                elif phase == "pip":
                    R[phase] = run.phase_pip()
                elif phase == "pages":
                    R[phase] = run.phase_pages({k: info["padded"][k] for k in PADDED_RESOLVED + PADDED_EXTRA})
                elif phase == "head":
                    R[phase] = run.phase_head(info)
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError, KeyError, http.client.HTTPException) as e:
                rc = 1
                run.problems.append(f"{phase} aborted: {type(e).__name__}: {e}")
                log(f"  {phase} failed: {e}")
                for label in [n for n in run.procs.procs if n.startswith("tidegate-")]:
                    log(run.procs.log_tail(label))
                    run.stop_tidegate(label)
            R.setdefault("meta", {}).setdefault("phase_seconds", {})[phase] = round(time.monotonic() - t0, 1)
            left = [n for n in run.procs.procs if n.startswith("tidegate-")]
            alive = [f"{n} (pgid {g})" for n, g in run.groups.items() if n.startswith("tidegate-") and group_alive(g)]
            if left or alive:
                run.problems.append(f"after {phase}: tidegate still running: {left or alive}; stopped")
                for label in left:
                    run.stop_tidegate(label)
    finally:
        run.procs.stop_all()
        R["meta"]["servers_started"] = dict(run.groups)
        R["meta"]["leftover_groups"] = run.leftovers()
        if R["meta"]["leftover_groups"]:
            run.problems.append(f"process groups still alive at exit: {R['meta']['leftover_groups']}")
        R["meta"]["total_seconds"] = round(time.monotonic() - t_start, 1)
        R["meta"]["loadavg_after"] = os.getloadavg()[0]
        out = BENCH / ".out"
        out.mkdir(exist_ok=True)
        if not (out / ".gitignore").exists():
            (out / ".gitignore").write_text("*\n")
        shutil.rmtree(out / "realnet-logs", ignore_errors=True)
        shutil.copytree(tmp / "logs", out / "realnet-logs")
        shutil.rmtree(run.uv_work, ignore_errors=True)
        if not a.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    R["rows"] = build_rows(R)
    R["traffic"] = traffic_rows(R)
    R["notes"] = notes(R)
    R["per_run"] = per_run(R)
    R["problems"] = run.problems
    R["log_problems"] = scan_logs(BENCH / ".out" / "realnet-logs")[:20]
    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
    Path(a.results).write_text(json.dumps(R, indent=2, default=str) + "\n")
    print()
    print(table(R["rows"], ["metric", "unit", "tidegate", "direct", "floor", "tidegate/direct", "tidegate/floor",
                            "target", "pass"]))
    print("\nupstream requests per run (median; through the delay proxy):")
    print(table(R["traffic"], ["run", "requests", "page_200", "page_304", "page_conditional", "page_max_age_0",
                               "metadata", "file", "range", "head", "errors", "MB"]))
    if "pip" in R:
        d = [r["upstream"] for r in R["pip"]["direct"]]
        print(f"\npip {a.pip_version} page requests with Cache-Control: max-age=0 (direct runs): "
              f"{sum(u['page_max_age_0'] for u in d)} of {sum(u['page'] for u in d)}")
    if "pages" in R:
        print(f"\nbig page Content-Encoding by column: {R['pages']['encodings']}")
    print("\nupstream requests tidegate sent, run by run:")
    for line in R["per_run"]:
        print(f"  {line}")
    for note in R["notes"]:
        print(f"  * {note}")
    for p in run.problems:
        print(f"  ! {p}")
    for p in R["log_problems"]:
        print(f"  ! tidegate log: {p}")
    print(f"\nall {len(run.groups)} server process groups stopped" if not R["meta"]["leftover_groups"] else "")
    print(f"{R['meta']['total_seconds']:.0f} s; results: {a.results}; logs: {BENCH / '.out/realnet-logs'}")
    return rc or (1 if run.problems else 0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
