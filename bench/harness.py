"""Process management, wheels, the static upstream index and nginx for bench/run.py
(bench/upload.py uses the process management and the wheels too).

Everything listens on 127.0.0.1 only; nothing here talks to a public index.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

SOURCES = [Path("/opt/pypi"), Path("/opt/pypi-more")]
BIG_PROJECT = "tgbench-big"
EXTRA_PREFIX = "tgbench-extra-"
_LINK_RE = re.compile(r'<a\s+href="([^"]+)"[^>]*>([^<]*)</a>')


# --------------------------------------------------------------------------- processes


class Procs:
    """Starts servers in their own session so a whole server (master + workers)
    can be stopped via its process group, and remembers them for cleanup."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env=None, cwd=None) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, cwd=cwd, start_new_session=True)
        log.close()
        self.procs[name] = p
        return p

    def stop(self, name: str, timeout: float = 10.0) -> None:
        p = self.procs.pop(name, None)
        if p is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if p.poll() is not None:
                break
            try:
                os.killpg(p.pid, sig)  # pgid == pid thanks to start_new_session
            except ProcessLookupError:
                break
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        # Reap stray workers of the group if the leader exited first.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def log_tail(self, name: str, n: int = 12) -> str:
        path = self.logdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0, *,
              what: str = "process", ready_below: int = 600) -> None:
    """Wait until url answers with an HTTP status below ready_below (by default any
    status: the server is accepting). `what` names the server if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before {url} came up")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError as exc:
            if exc.code < ready_below:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f}s")


# --------------------------------------------------------------------------- wheels


def _b64hash(h) -> str:
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def wheel_filename(dist: str, version: str) -> str:
    return f"{dist.replace('-', '_')}-{version}-py3-none-any.whl"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def make_wheel(path: Path, dist: str, version: str, payload_bytes: int = 0) -> str:
    """Write a valid, installable pure-python wheel; returns its sha256 hex.

    A large payload goes in as one stored (uncompressed) random member so the
    file size is what we ask for and nothing can compress it in transit."""
    mod = dist.replace("-", "_")
    di = f"{mod}-{version}.dist-info"
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        def add(name: str, data: bytes):
            zf.writestr(name, data)
            record.append(f"{name},sha256={_b64hash(hashlib.sha256(data))},{len(data)}")

        add(f"{mod}/__init__.py", b"")
        if payload_bytes:
            h, left = hashlib.sha256(), payload_bytes
            with zf.open(f"{mod}/blob.bin", "w", force_zip64=True) as out:
                while left:
                    chunk = os.urandom(min(left, 4 << 20))
                    h.update(chunk)
                    out.write(chunk)
                    left -= len(chunk)
            record.append(f"{mod}/blob.bin,sha256={_b64hash(h)},{payload_bytes}")
        add(f"{di}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode())
        add(f"{di}/WHEEL", b"Wheel-Version: 1.0\nGenerator: tidegate-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{di}/RECORD", "\n".join(record + [f"{di}/RECORD,,"]) + "\n")
    return sha256_file(path)


# --------------------------------------------------------------------------- static index


def check_sources() -> None:
    if not (SOURCES[0] / "simple").is_dir():
        print(f"benchmark data missing: {SOURCES[0]}/simple/<project>/index.html is required", file=sys.stderr)
        sys.exit(2)


def _page(links: list[tuple[str, str]]) -> str:
    body = "\n".join(f'<a href="{href}">{text}</a>' for href, text in links)
    return f"<!DOCTYPE html><html><body>\n{body}\n</body></html>\n"


def build_static_root(root: Path, min_projects: int, big_mb: int) -> dict:
    """Merge /opt/pypi and /opt/pypi-more into one PEP 503 tree (symlinks, so it
    is cheap), pad it with tiny generated projects up to min_projects, and add
    one project holding a big_mb wheel. Returns names and the big file's facts."""
    simple, files = root / "simple", root / "files"
    simple.mkdir(parents=True)
    files.mkdir()
    pages: dict[str, list[Path]] = {}
    for src in SOURCES:
        if not (src / "simple").is_dir():
            continue
        for d in sorted((src / "simple").iterdir()):
            if d.is_dir():
                pages.setdefault(d.name, []).append(d / "index.html")
        for f in (src / "files").iterdir():
            if not (files / f.name).exists():
                (files / f.name).symlink_to(f)
    for name, srcs in pages.items():
        if len(srcs) == 1:
            (simple / name).symlink_to(srcs[0].parent)
            continue
        seen, links = set(), []  # project present in both sources: merge its links
        for page in srcs:
            for href, text in _LINK_RE.findall(page.read_text()):
                if text not in seen:
                    seen.add(text)
                    links.append((href, text))
        (simple / name).mkdir()
        (simple / name / "index.html").write_text(_page(links))
    real = sorted(pages)

    extras = []
    for i in range(max(0, min_projects - len(real))):
        name = f"{EXTRA_PREFIX}{i:04d}"
        fn = wheel_filename(name, "1.0")
        sha = make_wheel(files / fn, name, "1.0")
        (simple / name).mkdir()
        (simple / name / "index.html").write_text(_page([(f"../../files/{fn}#sha256={sha}", fn)]))
        extras.append(name)

    big_fn = wheel_filename(BIG_PROJECT, "1.0")
    big_sha = make_wheel(files / big_fn, BIG_PROJECT, "1.0", payload_bytes=big_mb << 20)
    (simple / BIG_PROJECT).mkdir()
    (simple / BIG_PROJECT / "index.html").write_text(_page([(f"../../files/{big_fn}#sha256={big_sha}", big_fn)]))

    allnames = sorted(real + extras + [BIG_PROJECT])
    (simple / "index.html").write_text(_page([(f"{n}/", n) for n in allnames]))
    return {"real": real, "extras": extras, "big_file": big_fn, "big_sha256": big_sha,
            "big_size": (files / big_fn).stat().st_size}


# --------------------------------------------------------------------------- nginx

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes auto;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ text/html html; }}
    default_type application/octet-stream;
    client_body_temp_path {tmp}/nginx-tmp/body;
    proxy_temp_path {tmp}/nginx-tmp/proxy;
    fastcgi_temp_path {tmp}/nginx-tmp/fastcgi;
    uwsgi_temp_path {tmp}/nginx-tmp/uwsgi;
    scgi_temp_path {tmp}/nginx-tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
    }}
}}
"""


def start_nginx(procs: Procs, tmp: Path, root: Path, port: int) -> str:
    (tmp / "nginx-tmp").mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, root=root, port=port))
    # -e: keep nginx off /var/log even before it has read the config.
    p = procs.start("nginx", ["nginx", "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "nginx-error.log")])
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/simple/", p)
    return base


def start_delayproxy(procs: Procs, upstream: str, delay_ms: float, log: Path) -> str:
    """bench/delayproxy.py in front of `upstream` (an origin), --delay-ms before every answer,
    each request a JSON line in `log`: its index URL (.../simple/)."""
    port = free_port()
    p = procs.start("delayproxy", [sys.executable, str(Path(__file__).resolve().parent / "delayproxy.py"),
                                   "--port", str(port), "--upstream", upstream, "--delay-ms", str(delay_ms),
                                   "--log", str(log)])
    index = f"http://127.0.0.1:{port}/simple/"
    wait_http(index, p, 30, what="delayproxy")
    return index
