#!/usr/bin/env python3
"""Upload benchmark: tidegate (Upload 2.0 http-post-bytes and legacy/twine) next to devpi-server
(twine), uploading large generated wheels (default ~50 MB and ~200 MB), in one run.

    python bench/upload.py                  # writes bench/upload-results.json

For each upload it records the wall time and the peak RSS of the server (its process plus all
descendants, sampled every 20 ms), so one can see whether a server's memory grows with the size
of the file. Everything listens on 127.0.0.1; no public index is contacted (devpi-server is
initialised without its root/pypi mirror and runs with --offline-mode). The first run creates
bench/.venv-devpi (devpi-server + devpi-client from PyPI, kept apart from the harness).

Exit status 2 means a tool is missing (the message says which).
"""

from __future__ import annotations

import argparse
import base64
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Procs, free_port, make_wheel, sha256_file, wait_http, wheel_filename  # noqa: E402

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "upload-results.json"
DEVPI_VENV = BENCH / ".venv-devpi"
DEVPI_PACKAGES = ["devpi-server", "devpi-client"]
UPLOAD_JSON = "application/vnd.pypi.upload.v2+json"
USER, PASSWORD = "bench", "bench"
MB = 1_000_000
SAMPLE_INTERVAL = 0.020


class Missing(Exception):
    """A tool the benchmark needs is not there (exit status 2)."""


# --------------------------------------------------------------------------- processes


def run(argv: list[str], *, timeout: float = 120, env: dict[str, str] | None = None, what: str = "") -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"{what or argv[0]} failed ({r.returncode}): {' '.join(argv)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


# --------------------------------------------------------------------------- memory


def _descendants(pid: int) -> list[int]:
    """pid and all its descendants, via /proc/<pid>/task/<tid>/children."""
    out, todo = [], [pid]
    while todo and len(out) < 10_000:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                try:
                    with open(f"/proc/{p}/task/{tid}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
                except OSError:
                    pass
        except OSError:
            pass
    return out


def rss_bytes(pid: int) -> int:
    """Sum of VmRSS over pid and its descendants."""
    total = 0
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            pass
    return total


class RssSampler:
    """Samples rss_bytes(pid) every 20 ms in a thread while the `with` block runs."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self.samples += 1
            self._stop.wait(SAMPLE_INTERVAL)

    def __enter__(self) -> "RssSampler":
        self.before = rss_bytes(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.after = rss_bytes(self.pid)
        self.peak = max(self.peak, self.after)


class Prober:
    """While the `with` block runs, GETs a small page of the server back to back (one at a time,
    every 20 ms) and records each latency: how responsive the server stays during an upload."""

    def __init__(self, url: str):
        self.url = url
        self.latencies: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        for _ in range(100_000):  # bounded
            if self._stop.is_set():
                return
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as r:
                    r.read()
                self.latencies.append(time.perf_counter() - t)
            except OSError:
                self.errors += 1
            self._stop.wait(SAMPLE_INTERVAL)

    def __enter__(self) -> "Prober":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(35)

    def stats(self) -> dict:
        lat = sorted(self.latencies) or [float("nan")]
        return {"probes": len(self.latencies), "errors": self.errors,
                "p50_ms": 1000 * statistics.median(lat), "max_ms": 1000 * lat[-1]}


# --------------------------------------------------------------------------- servers


class Tidegate:
    name = "tidegate"

    def __init__(self, procs: Procs, python: str, root: Path):
        self.procs, self.python, self.root = procs, python, root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def check(self) -> None:
        r = subprocess.run([self.python, "-c", "import tidegate, aiohttp"], capture_output=True, text=True)
        if r.returncode != 0:
            raise Missing(f"{self.python} cannot import tidegate: {r.stderr.strip().splitlines()[-1:]}; "
                          "pass --tidegate-python with the interpreter that has it installed")

    def start(self) -> None:
        config = self.root / "tidegate.toml"
        config.write_text(
            'upstreams = []\n'
            'max_upload_size = "1GiB"\n'
            'deferred_validation = "2GiB"\n'
            'log_level = "warning"\n'
            '\n[[users]]\nname = "bench"\npassword = "bench"\nupload = ["*"]\n'
        )
        data = self.root / "tidegate-data"
        data.mkdir()
        self.proc = self.procs.start("tidegate", [
            self.python, "-m", "tidegate", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(self.port), "--data-dir", str(data), "--workers", "1"])
        wait_http(f"{self.base}/simple/", self.proc, 60, what="tidegate", ready_below=500)
        self.legacy_url = f"{self.base}/legacy/"
        self.probe_url = f"{self.base}/simple/"
        self.data = data

    def listed(self, project: str) -> dict[str, str]:
        """filename -> sha256 of the project's published files (Simple API JSON)."""
        req = urllib.request.Request(f"{self.base}/simple/{project}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return {f["filename"]: f["hashes"].get("sha256", "") for f in json.load(r)["files"]}


class Devpi:
    name = "devpi"

    def __init__(self, procs: Procs, venv: Path, root: Path, harness_python: str):
        self.procs, self.venv, self.root, self.harness_python = procs, venv, root, harness_python
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.bin = venv / "bin"

    def ensure_venv(self) -> None:
        if (self.bin / "devpi-server").exists() and (self.bin / "devpi").exists():
            return
        print(f"creating {self.venv} ({', '.join(DEVPI_PACKAGES)} from PyPI) ...", flush=True)
        uv = shutil.which("uv") or str(Path(self.harness_python).parent / "uv")
        try:
            if Path(uv).exists():
                run([uv, "venv", "-q", "-p", sys.executable, str(self.venv)], timeout=300, what="uv venv")
                run([uv, "pip", "install", "-q", "-p", str(self.bin / "python"), *DEVPI_PACKAGES],
                    timeout=600, what="uv pip install")
            else:
                run([sys.executable, "-m", "venv", str(self.venv)], timeout=300, what="venv")
                run([str(self.bin / "python"), "-m", "pip", "install", "-q", *DEVPI_PACKAGES],
                    timeout=600, what="pip install")
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
            raise Missing(f"could not install devpi-server into {self.venv}: {exc}") from None
        if not (self.bin / "devpi-server").exists():
            raise Missing(f"{self.venv} has no devpi-server after installing it")

    def version(self) -> str:
        out = run([str(self.bin / "python"), "-c",
                   "import importlib.metadata as m; print(m.version('devpi-server'))"], what="devpi version")
        return out.strip()

    def start(self) -> None:
        serverdir = self.root / "devpi-server"
        clientdir = self.root / "devpi-client"
        env = {**os.environ, "DEVPI_CLIENTDIR": str(clientdir)}
        # --no-root-pypi: no root/pypi mirror index at all, so nothing can make it reach pypi.org.
        run([str(self.bin / "devpi-init"), "--serverdir", str(serverdir), "--root-passwd", "root",
             "--no-root-pypi"], timeout=120, env=env, what="devpi-init")
        self.proc = self.procs.start("devpi", [
            str(self.bin / "devpi-server"), "--serverdir", str(serverdir), "--host", "127.0.0.1",
            "--port", str(self.port), "--offline-mode"], env=env)
        wait_http(f"{self.base}/+api", self.proc, 120, what="devpi-server", ready_below=500)
        devpi = [str(self.bin / "devpi"), "--clientdir", str(clientdir)]
        run([*devpi, "use", self.base], env=env, what="devpi use")
        run([*devpi, "user", "-c", USER, f"password={PASSWORD}", "email=bench@example.invalid"],
            env=env, what="devpi user -c")
        run([*devpi, "login", USER, "--password", PASSWORD], env=env, what="devpi login")
        run([*devpi, "index", "-c", "dev", "bases="], env=env, what="devpi index -c")  # no bases: no mirror
        self.legacy_url = f"{self.base}/{USER}/dev/"
        self.probe_url = f"{self.base}/+api"
        # Sanity: the index exists and has no bases.
        with urllib.request.urlopen(f"{self.base}/{USER}/dev", timeout=10) as r:
            idx = json.load(r)["result"]
        if idx.get("bases"):
            raise RuntimeError(f"devpi index {USER}/dev unexpectedly has bases {idx['bases']}")

    def listed(self, project: str) -> dict[str, str]:
        """filename -> sha256 of the project's files on the bench index (its simple page)."""
        with urllib.request.urlopen(f"{self.base}/{USER}/dev/+simple/{project}/", timeout=30) as r:
            html = r.read().decode()
        out = {}
        for href in re.findall(r'href="([^"]+)"', html):
            path, _, frag = href.partition("#")
            out[path.rsplit("/", 1)[-1]] = frag.partition("sha256=")[2]
        return out


# --------------------------------------------------------------------------- uploads


def build_wheel(outdir: Path, project: str, version: str, size: int) -> tuple[Path, str]:
    """A valid py3-none-any wheel for project==version with `size` STORED random bytes; (path, sha256)."""
    path = outdir / wheel_filename(project, version)
    return path, make_wheel(path, project, version, payload_bytes=size)


async def upload2(base: str, path: Path, project: str, version: str) -> dict:
    """Upload 2.0 with http-post-bytes, streaming the file from disk. Returns timings."""
    import aiohttp

    t0 = time.perf_counter()
    sha256 = await asyncio.to_thread(sha256_file, path)
    t_hash = time.perf_counter() - t0
    size = path.stat().st_size
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    headers = {"Content-Type": UPLOAD_JSON, "Accept": UPLOAD_JSON}
    meta = {"meta": {"api-version": "2.0"}}
    timeout = aiohttp.ClientTimeout(total=900)

    async def post(session, url, body, expect):
        async with session.post(url, data=json.dumps({**meta, **body}), headers=headers) as r:
            text = await r.text()
            if r.status not in expect:
                raise RuntimeError(f"POST {url} -> {r.status} (expected {expect}): {text[:500]}")
            return r.status, (json.loads(text) if text else {})

    async with aiohttp.ClientSession(headers={"Authorization": basic}, timeout=timeout) as s:
        _, sess = await post(s, f"{base}/upload/", {"name": project, "version": version}, {201})
        _, up = await post(s, sess["links"]["upload"], {
            "filename": path.name, "size": size, "hashes": {"sha256": sha256},
            "mechanism": "http-post-bytes"}, {202})
        t1 = time.perf_counter()
        with open(path, "rb") as f:
            async with s.post(up["mechanism"]["file_url"], data=f,
                              headers={"Content-Type": "application/octet-stream"}) as r:
                text = await r.text()
                if r.status != 204:
                    raise RuntimeError(f"POST file_url -> {r.status}: {text[:500]}")
        t_bytes = time.perf_counter() - t1
        t2 = time.perf_counter()
        status, done = await post(s, up["links"]["complete"], {}, {201, 202})
        if status == 202:
            for _ in range(1200):  # bounded: at most ~10 minutes of polling
                async with s.get(up["links"]["file-upload-session"], headers={"Accept": UPLOAD_JSON}) as r:
                    done = await r.json(content_type=None)
                if done.get("status") in ("completed", "error"):
                    break
                await asyncio.sleep(0.5)
            if done.get("status") != "completed":
                raise RuntimeError(f"file upload did not complete: {done}")
        t_complete = time.perf_counter() - t2
        await post(s, sess["links"]["publish"], {}, {201})
    return {"seconds": time.perf_counter() - t0, "hash_seconds": t_hash, "bytes_seconds": t_bytes,
            "complete_seconds": t_complete}


def twine_upload(twine: list[str], url: str, path: Path) -> dict:
    env = {**os.environ, "TWINE_NON_INTERACTIVE": "1"}
    for k in ("TWINE_USERNAME", "TWINE_PASSWORD", "TWINE_REPOSITORY", "TWINE_REPOSITORY_URL", "TWINE_CERT"):
        env.pop(k, None)
    t0 = time.perf_counter()
    r = subprocess.run([*twine, "upload", "--repository-url", url, "-u", USER, "-p", PASSWORD,
                        "--non-interactive", "--disable-progress-bar", str(path)],
                       capture_output=True, text=True, timeout=900, env=env, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"twine upload to {url} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return {"seconds": seconds}


# --------------------------------------------------------------------------- main


def measure(server, mechanism: str, size_mb: int, path: Path, fn, probe: bool = False) -> dict:
    prober = Prober(server.probe_url) if probe else None
    with RssSampler(server.proc.pid) as rss:
        if prober:
            with prober:
                timing = fn()
        else:
            timing = fn()
    if server.proc.poll() is not None:
        raise RuntimeError(f"{server.name} exited during the upload")
    size = path.stat().st_size
    row = {"server": server.name, "mechanism": mechanism, "size_mb": size_mb, "bytes": size,
           **timing, "mb_per_s": size / MB / timing["seconds"],
           "rss_before_mb": rss.before / MB, "rss_peak_mb": rss.peak / MB, "rss_after_mb": rss.after / MB,
           "rss_samples": rss.samples}
    if prober:
        row["probe"] = prober.stats()
    print(f"  {server.name:8} {mechanism:24} {size / MB:7.1f} MB  {timing['seconds']:6.2f} s  "
          f"{row['mb_per_s']:6.1f} MB/s  RSS {rss.before / MB:6.1f} -> peak {rss.peak / MB:6.1f} MB"
          + (f"  probe p50 {row['probe']['p50_ms']:.0f} ms max {row['probe']['max_ms']:.0f} ms"
             f" ({row['probe']['probes']} probes, {row['probe']['errors']} errors)" if prober else ""), flush=True)
    return row


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["server"], r["mechanism"], r["size_mb"]), []).append(r)
    out = []
    for (server, mechanism, size_mb), rs in groups.items():
        secs = statistics.median(r["seconds"] for r in rs)
        out.append({"server": server, "mechanism": mechanism, "size_mb": size_mb, "bytes": rs[0]["bytes"],
                    "runs": len(rs), "seconds": secs, "mb_per_s": rs[0]["bytes"] / MB / secs,
                    "rss_idle_mb": min(r["rss_before_mb"] for r in rs),
                    "rss_peak_mb": max(r["rss_peak_mb"] for r in rs)})
    return out


def table(summary: list[dict]) -> str:
    lines = ["| server | mechanism | file size | seconds | MB/s | peak RSS MB | RSS before MB |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in summary:
        lines.append(f"| {s['server']} | {s['mechanism']} | {s['bytes'] / MB:.1f} MB | {s['seconds']:.2f} | "
                     f"{s['mb_per_s']:.0f} | {s['rss_peak_mb']:.1f} | {s['rss_idle_mb']:.1f} |")
    return "\n".join(lines)


def ratios(summary: list[dict]) -> list[dict]:
    by = {(s["server"], s["mechanism"], s["size_mb"]): s for s in summary}
    out = []
    for (server, mechanism, size_mb), s in by.items():
        devpi = by.get(("devpi", "legacy (twine)", size_mb))
        if server == "tidegate" and devpi:
            out.append({"tidegate": mechanism, "size_mb": size_mb,
                        "time_ratio": s["seconds"] / devpi["seconds"],
                        "rss_peak_ratio": s["rss_peak_mb"] / devpi["rss_peak_mb"]})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50,200", help="wheel sizes in MB, comma-separated (default 50,200)")
    ap.add_argument("--repeats", type=int, default=5, help="uploads per server, mechanism and size (median time)")
    ap.add_argument("--tidegate-python", default=sys.executable, help="interpreter with tidegate installed")
    ap.add_argument("--devpi-venv", type=Path, default=DEVPI_VENV, help="venv for devpi-server (created if missing)")
    ap.add_argument("--skip-devpi", action="store_true", help="measure tidegate only")
    ap.add_argument("--tmp", type=Path, default=None, help="parent of the temp dir (default: system temp)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep wheels, data dirs and logs")
    ap.add_argument("--no-probe", action="store_true", help="skip the responsiveness pass")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or any(s <= 0 for s in sizes) or not 1 <= args.repeats <= 20:
        ap.error("--sizes must be positive integers and --repeats 1..20")

    # Tools first: exit 2 with a message if something is missing.
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise Missing("aiohttp is not installed for this interpreter (pip install -r bench/requirements.txt)")
    twine = [sys.executable, "-m", "twine"]
    if subprocess.run([*twine, "--version"], capture_output=True).returncode != 0:
        raise Missing(f"twine is not installed for {sys.executable} (pip install twine)")
    if not Path("/proc/self/status").exists():
        raise Missing("/proc is needed to sample RSS")

    root = Path(tempfile.mkdtemp(prefix="tg-upload-bench-", dir=args.tmp))
    logdir = root / "logs"
    logdir.mkdir()
    procs = Procs(logdir)
    ok = False
    try:
        tidegate = Tidegate(procs, args.tidegate_python, root)
        tidegate.check()
        servers = [tidegate]
        devpi = None
        if not args.skip_devpi:
            devpi = Devpi(procs, args.devpi_venv, root, sys.executable)
            devpi.ensure_venv()
            servers.append(devpi)

        t = time.perf_counter()
        t_twine = time.perf_counter()
        subprocess.run([*twine, "--version"], capture_output=True)
        twine_startup = time.perf_counter() - t_twine
        for s in servers:
            print(f"starting {s.name} ...", flush=True)
            s.start()
            print(f"  {s.name} at {s.base} (pid {s.proc.pid}, idle RSS {rss_bytes(s.proc.pid) / MB:.1f} MB)", flush=True)

        run_id = f"{int(time.time()) % 100000:05d}"
        project = f"tgbench-upload-{run_id}"
        rows: list[dict] = []
        probes: list[dict] = []
        expected: dict[str, dict[str, str]] = {"tidegate": {}, "devpi": {}}
        wheels = root / "wheels"
        wheels.mkdir()
        for size_mb in sizes:
            print(f"generating {size_mb} MB random wheels ...", flush=True)
            for rep in range(args.repeats):
                # Upload 2.0 gets its own version; the twine wheel (same bytes) goes to both servers.
                w2, sha2 = build_wheel(wheels, project, f"1.{size_mb}.{rep}", size_mb * MB)
                wl, shal = build_wheel(wheels, project, f"2.{size_mb}.{rep}", size_mb * MB)
                expected["tidegate"][w2.name] = sha2
                expected["tidegate"][wl.name] = expected["devpi"][wl.name] = shal
                rows.append(measure(tidegate, "upload 2.0 (http-post-bytes)", size_mb, w2,
                                    lambda: asyncio.run(upload2(tidegate.base, w2, project, f"1.{size_mb}.{rep}"))))
                rows.append(measure(tidegate, "legacy (twine)", size_mb, wl,
                                    lambda: twine_upload(twine, tidegate.legacy_url, wl)))
                if devpi:
                    rows.append(measure(devpi, "legacy (twine)", size_mb, wl,
                                        lambda: twine_upload(twine, devpi.legacy_url, wl)))
                w2.unlink()
                wl.unlink()
            if size_mb == max(sizes) and not args.no_probe:
                # Responsiveness: one more upload per server and mechanism while another client
                # GETs a small page every 20 ms (kept out of the table's timings and RSS).
                print(f"responsiveness during a {size_mb} MB upload (GET {tidegate.probe_url} etc.):", flush=True)
                w2, sha2 = build_wheel(wheels, project, f"3.{size_mb}.0", size_mb * MB)
                wl, shal = build_wheel(wheels, project, f"4.{size_mb}.0", size_mb * MB)
                expected["tidegate"][w2.name] = sha2
                expected["tidegate"][wl.name] = expected["devpi"][wl.name] = shal
                with Prober(tidegate.probe_url) as idle:
                    time.sleep(1.0)
                probes.append({"server": "tidegate", "mechanism": "idle", **idle.stats()})
                for server, mechanism, path, fn in [
                    (tidegate, "upload 2.0 (http-post-bytes)", w2,
                     lambda: asyncio.run(upload2(tidegate.base, w2, project, f"3.{size_mb}.0"))),
                    (tidegate, "legacy (twine)", wl, lambda: twine_upload(twine, tidegate.legacy_url, wl)),
                    *([(devpi, "legacy (twine)", wl, lambda: twine_upload(twine, devpi.legacy_url, wl))]
                      if devpi else []),
                ]:
                    r = measure(server, mechanism, size_mb, path, fn, probe=True)
                    probes.append({"server": server.name, "mechanism": mechanism, "size_mb": size_mb,
                                   "seconds": r["seconds"], **r["probe"]})
                w2.unlink()
                wl.unlink()

        # Every upload must be listed, with the right sha256.
        for s in servers:
            got = s.listed(project)
            bad = {f: h for f, h in expected[s.name].items() if got.get(f) != h}
            if bad:
                raise RuntimeError(f"{s.name} does not list (or lists a wrong sha256 for) {sorted(bad)}; it lists {got}")
            print(f"verified: {s.name} lists all {len(expected[s.name])} uploaded files with their sha256")
        leftovers = [p for p in tidegate.data.rglob("*") if p.is_file() and p.parent.name == "tmp"]
        if leftovers:
            print(f"WARNING: tidegate left {len(leftovers)} temp files: {leftovers[:5]}")

        summary = summarize(rows)
        rat = ratios(summary)
        print()
        print(table(summary))
        if rat:
            print()
            print("tidegate / devpi (devpi: twine legacy upload of the same file):")
            for r in rat:
                print(f"  {r['tidegate']:30} {r['size_mb']:4d} MB  time x{r['time_ratio']:.2f}  "
                      f"peak RSS x{r['rss_peak_ratio']:.2f}")
        if probes:
            print()
            print("responsiveness (GET of a small page every 20 ms, one at a time, during one upload):")
            for p in probes:
                print(f"  {p['server']:8} {p['mechanism']:30} p50 {p['p50_ms']:7.1f} ms  max {p['max_ms']:7.1f} ms  "
                      f"({p['probes']} probes, {p['errors']} errors)")
        for s in servers:
            per = {x["size_mb"]: x["rss_peak_mb"] for x in summary if x["server"] == s.name}
            if len(per) > 1:
                lo, hi = min(per), max(per)
                print(f"{s.name}: peak RSS {per[lo]:.1f} MB at {lo} MB vs {per[hi]:.1f} MB at {hi} MB "
                      f"({per[hi] - per[lo]:+.1f} MB)")
        result = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "settings": {"sizes_mb": sizes, "repeats": args.repeats, "sample_interval_s": SAMPLE_INTERVAL,
                         "tidegate": "--workers 1, upstreams = [], deferred_validation = 2GiB (inline)",
                         "devpi": (f"devpi-server {devpi.version()} --offline-mode, no root/pypi, "
                                   f"index {USER}/dev without bases") if devpi else None,
                         "twine_startup_s": twine_startup},
            "summary": summary, "ratios": rat, "responsiveness": probes, "runs": rows,
            "tidegate_temp_leftovers": len(leftovers),
            "elapsed_s": time.perf_counter() - t,
        }
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.output}")
        ok = True
        return 0
    except Exception:
        for name in list(procs.procs):
            tail = procs.log_tail(name, 30)
            if tail:
                print(f"--- last lines of the {name} log ---\n{tail}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
        if args.keep_tmp:
            print(f"temp dir kept: {root}", file=sys.stderr)
        elif not ok:  # keep the logs for the post-mortem, drop the bulky files
            for p in root.iterdir():
                if p != logdir:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            print(f"server logs kept in {logdir}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def _sigterm(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        sys.exit(main())
    except Missing as exc:
        print(f"upload.py: missing tool: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
