"""Several real `tidegate serve` instances on shared engines behind one nginx, for tests/cluster/
and bench/cluster.py.

Each instance is its own process group (supervisor and workers), with its own port and data dir
(its local tiers: the blob tier in front of S3, root lists, host locks); what they share comes
from one configuration file (database_url, blob_store, upstreams, users). The load balancer is
deploy/cluster/nginx.conf itself, its server lines pointed at the instances, run with
`nginx -p DIR -c DIR/nginx.conf` in the foreground. Instances can be killed and started again
by index (nginx sends new requests to the others meanwhile).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import aiohttp

from .serveproc import Serve, free_port, until_serving

ROOT = Path(__file__).resolve().parents[2]
LB_CONF = ROOT / "deploy" / "cluster" / "nginx.conf"


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(settings: dict[str, object], upstreams: list[dict[str, object]],
                users: list[dict[str, object]] = ()) -> str:
    """A tidegate.toml: top-level settings, then [[upstreams]] and [[users]] tables."""
    lines = [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    for table, rows in (("upstreams", upstreams), ("users", users)):
        for row in rows:
            lines.append(f"[[{table}]]")
            lines += [f"{key} = {toml_value(value)}" for key, value in row.items()]
    return "\n".join(lines) + "\n"


def balancer_conf(root: Path, port: int, backends: list[int]) -> str:
    """deploy/cluster/nginx.conf inside a minimal main config, listening on 127.0.0.1:port and
    balancing over the given local ports; nginx keeps every file of its own under root."""
    site = LB_CONF.read_text()
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n" for p in backends)
    site, count = re.subn(r"    server tidegate:\d+[^;]*;\n", servers, site)
    assert count == 1, "deploy/cluster/nginx.conf has no `server tidegate:PORT` line to rewrite"
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (root / "site.conf").write_text(site)
    temps = "".join(f"  {kind}_temp_path {root}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"worker_processes 1;\npid {root}/nginx.pid;\nerror_log {root}/error.log;\n"
            "events { worker_connections 4096; }\n"
            f"http {{\n  access_log off;\n{temps}  include {root}/site.conf;\n}}\n")


class Balancer:
    def __init__(self, root: Path, backends: list[int]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.backends = backends
        self.proc: subprocess.Popen | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = self.root / "nginx.conf"
        conf.write_text(balancer_conf(self.root, self.port, self.backends))
        cmd = [nginx, "-p", str(self.root), "-c", str(conf), "-e", str(self.root / "error.log")]
        tested = subprocess.run([*cmd, "-t"], capture_output=True, text=True)
        assert tested.returncode == 0, tested.stderr
        self.proc = subprocess.Popen([*cmd, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await until_serving(self.origin + "/health", self.proc,
                            lambda: f"nginx: {(self.root / 'error.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class Cluster:
    """`count` instances of one configuration, and nginx in front of them."""

    def __init__(self, root: Path, config: str, count: int = 3, workers: int = 1) -> None:
        self.root = root
        self.config = root / "tidegate.toml"
        root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(config)
        self.instances = [Serve(self.config, root / f"data-{i}", workers=workers, log=root / f"serve-{i}.log")
                          for i in range(count)]
        for instance in self.instances:
            instance.data_dir.mkdir(exist_ok=True)
        self.balancer = Balancer(root / "nginx", [i.port for i in self.instances])

    @property
    def origin(self) -> str:
        """The load balancer's origin: what clients are given."""
        return self.balancer.origin

    def origins(self) -> list[str]:
        """Each instance's own origin, to ask one directly."""
        return [i.origin for i in self.instances]

    async def start(self) -> None:
        # One after the other: the first migrates the database, the others find it done (a
        # concurrent start-up is the pg helper's own test).
        for instance in self.instances:
            await instance.start()
        await self.balancer.start()

    def kill(self, index: int) -> None:
        """SIGKILL instance `index` (supervisor and workers at once)."""
        self.instances[index].kill()

    async def restart(self, index: int) -> None:
        self.instances[index].kill()
        await self.instances[index].start()

    def log(self, index: int) -> str:
        return self.instances[index].log.read_text(errors="replace")

    def tracebacks(self) -> int:
        return sum(i.tracebacks() for i in self.instances)

    async def metrics(self, index: int) -> str:
        async with aiohttp.ClientSession() as session:
            async with session.get(self.instances[index].origin + "/metrics") as r:
                return await r.text()

    def stop(self) -> None:
        self.balancer.stop()
        for instance in self.instances:
            instance.stop()
