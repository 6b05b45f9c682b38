"""Load generators and probes for bench/run.py. All targets are 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

JSON = "application/vnd.pypi.simple.v1+json"
HTML = "text/html"

# --------------------------------------------------------------------------- wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, accept: str, seconds: int, connections: int, threads: int = 2) -> dict:
    """Fixed-duration wrk run; timeout guards against a hung server."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s",
         "-H", f"Accept: {accept}", url],
        capture_output=True, text=True, timeout=seconds + 30).stdout
    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = round(_ms(m.group(1)), 3) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    res["socket_errors"] = m.group(1).strip() if m else ""
    return res


# --------------------------------------------------------------------------- cold pass


async def _cold_pass(base: str, reqs: list[tuple[str, str]], concurrency: int, timeout: float) -> dict:
    import aiohttp

    errors: list[str] = []
    lat: list[float] = []
    queue = list(reversed(reqs))
    ctimeout = aiohttp.ClientTimeout(total=timeout)

    async def worker(session):
        while queue:
            path, accept = queue.pop()
            t = time.perf_counter()
            try:
                async with session.get(base + path, headers={"Accept": accept}) as r:
                    await r.read()
                    if r.status != 200:
                        errors.append(f"{r.status} {path}")
                        continue
            except Exception as e:  # noqa: BLE001 - any failure counts as an error
                errors.append(f"{type(e).__name__} {path}")
                continue
            lat.append(time.perf_counter() - t)

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=ctimeout) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    lat.sort()
    return {"n": len(reqs), "ok": len(lat), "errors": len(errors), "error_sample": errors[:5],
            "seconds": round(elapsed, 3), "rps": round(len(lat) / elapsed, 1),
            "p50_ms": round(lat[len(lat) // 2] * 1e3, 2) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 2) if lat else None}


def cold_pass(base: str, reqs: list[tuple[str, str]], concurrency: int = 32, timeout: float = 30.0) -> dict:
    """One request per (path, accept), `concurrency` in flight: a first pass over
    distinct, never-requested projects. Bounded by len(reqs) and timeout each."""
    return asyncio.run(_cold_pass(base, reqs, concurrency, timeout))


def get(url: str, accept: str, timeout: float = 30.0) -> tuple[int, bytes, float]:
    import urllib.request

    req = urllib.request.Request(url, headers={"Accept": accept})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    return status, body, time.perf_counter() - t


# --------------------------------------------------------------------------- big file


def download(url: str, expect_sha256: str | None = None, timeout: float = 120.0) -> dict:
    """HTTP/1.1 GET over a raw socket into a reused 1 MiB buffer: about the
    cheapest client possible, so the server (not the client) is what we time.
    Hashes the body only when asked (that costs CPU)."""
    u = urlsplit(url)
    s = socket.create_connection((u.hostname, u.port), timeout=timeout)
    path = u.path + (f"?{u.query}" if u.query else "")
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    h = hashlib.sha256() if expect_sha256 else None
    t0 = time.perf_counter()
    deadline = t0 + timeout
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        n = s.recv_into(mv)
        if not n:
            break
        head += bytes(mv[:n])
    head, _, first = head.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    body = len(first)
    if h:
        h.update(first)
    while time.perf_counter() < deadline:
        n = s.recv_into(mv)
        if not n:
            break
        body += n
        if h:
            h.update(mv[:n])
    elapsed = time.perf_counter() - t0
    s.close()
    res = {"status": status, "bytes": body, "seconds": round(elapsed, 4),
           "gbps": round(body / elapsed / 1e9, 3), "location": headers.get("location"),
           "chunked": "chunked" in headers.get("transfer-encoding", "")}
    if h and status == 200 and not res["chunked"]:
        res["sha256_ok"] = h.hexdigest() == expect_sha256
    return res


# --------------------------------------------------------------------------- memory


def _tree(root: int) -> list[int]:
    """root and all its descendants, from /proc (no psutil needed)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _kb(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory(root: int) -> dict:
    """RSS summed over a process tree (counts shared pages once per process, as
    the target is stated) and PSS (shared pages split: the honest total)."""
    pids = _tree(root)
    rss = sum(_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
    pss = sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
    return {"procs": len(pids), "rss_mb": round(rss / 1024, 1), "pss_mb": round(pss / 1024, 1)}


class MemSampler(threading.Thread):
    """Samples a process tree every `interval` s and keeps the peak."""

    def __init__(self, root: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak = {"procs": 0, "rss_mb": 0.0, "pss_mb": 0.0}
        self._stop_evt = threading.Event()

    def run(self):
        while not self._stop_evt.is_set():
            m = tree_memory(self.root)
            if m["rss_mb"] > self.peak["rss_mb"]:
                self.peak = m
            self._stop_evt.wait(self.interval)

    def stop(self) -> dict:
        self._stop_evt.set()
        self.join(5)
        return self.peak


# --------------------------------------------------------------------------- uv install


def uv_install(uv: str, python: str, index_url: str, packages: Path, workdir: Path, timeout: float = 600) -> dict:
    """`uv pip install` into a fresh venv with a fresh, empty uv cache, so every
    byte comes from the index under test. Only the install itself is timed."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "VIRTUAL_ENV"))}
    env.update(UV_CACHE_DIR=str(workdir / "cache"), UV_PYTHON_DOWNLOADS="never", NO_COLOR="1")
    venv = workdir / "venv"
    subprocess.run([uv, "--no-config", "venv", "-q", "--python", python, str(venv)],
                   env=env, check=True, capture_output=True, timeout=120)
    t = time.perf_counter()
    p = subprocess.run([uv, "--no-config", "--no-progress", "pip", "install", "--python", str(venv / "bin/python"),
                        "--index-url", index_url, "-r", str(packages)],
                       env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t
    res = {"seconds": round(elapsed, 3), "ok": p.returncode == 0}
    m = re.search(r"Installed (\d+) packages?", p.stderr)
    res["installed"] = int(m.group(1)) if m else 0
    if p.returncode != 0:
        res["error"] = p.stderr.strip().splitlines()[-5:]
    notes = [ln.strip() for ln in p.stderr.splitlines() if re.search(r"warn|retr|error", ln, re.I)]
    if notes:
        res["uv_warnings"] = notes[:10]
    shutil.rmtree(workdir, ignore_errors=True)
    return res


def median(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None
