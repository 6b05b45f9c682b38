"""Cold-file throughput through tidegate: files on local disk against files in S3.

    python bench/s3cold.py --endpoint http://127.0.0.1:PORT [--bucket B] [--size-mb 100] [--repeat 3]

Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Starts a static upstream
(http.server over a generated simple index) and two `tidegate serve --workers 1` on 127.0.0.1,
one with the default blob store, one with --blob-store s3://...; each run fetches a file
neither has seen, in turn (interleaved, so machine noise hits both), and prints MB/s per run
and the S3/disk ratio of the medians. With S3, the last byte waits for the upload to S3.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen) -> None:
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"{url}: the server exited")
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def make_upstream(root: Path, count: int, size: int) -> None:
    (root / "files").mkdir(parents=True)
    links = []
    for i in range(count):
        name = f"coldpkg-{i}.0-py3-none-any.whl"
        h = hashlib.sha256()
        with open(root / "files" / name, "wb") as fh:
            for _ in range(0, size, 1 << 20):
                chunk = os.urandom(min(1 << 20, size - fh.tell()))
                h.update(chunk)
                fh.write(chunk)
        links.append(f'<a href="../../files/{name}#sha256={h.hexdigest()}">{name}</a>')
    (root / "simple" / "coldpkg").mkdir(parents=True)
    (root / "simple" / "coldpkg" / "index.html").write_text("<html><body>" + "\n".join(links) + "</body></html>")


def fetch(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    n = 0
    with urllib.request.urlopen(url, timeout=600) as r:
        while chunk := r.read(1 << 20):
            n += len(chunk)
    return n, time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--bucket", default="bench")
    p.add_argument("--size-mb", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    size = args.size_mb * 1_000_000
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_upstream(root / "upstream", args.repeat, size)
        up_port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "http.server", str(up_port), "--bind", "127.0.0.1",
                                       "--directory", str(root / "upstream")], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_for(f"http://127.0.0.1:{up_port}/simple/coldpkg/", procs[-1])
        modes = {"disk": [], "s3": ["--blob-store", f"s3://{args.bucket}/cold-{uuid.uuid4().hex[:8]}",
                                    "--s3-endpoint-url", args.endpoint]}
        origins = {}
        for mode, extra in modes.items():
            port = free_port()
            env = {**os.environ, "TIDEGATE_CONFIG": "", "TIDEGATE_LOG_LEVEL": "warning"}
            procs.append(subprocess.Popen([sys.executable, "-m", "tidegate", "serve", "--port", str(port), "--workers",
                                           "1", "--data-dir", str(root / mode), "--upstream",
                                           f"http://127.0.0.1:{up_port}/simple/", *extra], env=env))
            origins[mode] = f"http://127.0.0.1:{port}"
            wait_for(origins[mode] + "/health", procs[-1])
        try:
            rates: dict[str, list[float]] = {mode: [] for mode in modes}
            for i in range(args.repeat):
                for mode in (modes if i % 2 == 0 else reversed(list(modes))):
                    origin = origins[mode]
                    urllib.request.urlopen(f"{origin}/simple/coldpkg/").read()
                    n, seconds = fetch(f"{origin}/files/coldpkg/coldpkg-{i}.0-py3-none-any.whl")
                    assert n == size, (mode, n)
                    rates[mode].append(n / seconds / 1e6)
            for mode, runs in rates.items():
                print(f"cold {args.size_mb} MB file, {mode:4}: median {statistics.median(runs):7.1f} MB/s "
                      f"(runs: {', '.join(f'{r:.1f}' for r in runs)})")
            print(f"ratio s3/disk: {statistics.median(rates['s3']) / statistics.median(rates['disk']):.2f}")
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
