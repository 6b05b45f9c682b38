"""A real PostgreSQL server for the tests: initdb and pg_ctl from Debian's postgresql package,
in a temp dir, on a free port of 127.0.0.1 with trust authentication; a fresh database per test.

initdb refuses to run as root: as root, the server runs as `nobody` (its directory chowned).
`stop()`, `start()` and `restart()` let tests see tidegate through an outage.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import itertools
from pathlib import Path

_NAMES = itertools.count(1)


def find_bin() -> Path | None:
    """The directory of initdb and pg_ctl (the newest installed PostgreSQL), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        # Its own directory in /tmp: pytest's temp dirs are private to root, where `nobody`
        # could not reach its data directory.
        self.bindir, self.root = bindir, Path(tempfile.mkdtemp(prefix="tidegate-pg-"))
        self.data, self.sockets = self.root / "data", self.root / "sockets"
        self.port = _free_port()
        self._as: list[str] = []
        if os.getuid() == 0:  # initdb and postgres refuse root
            nobody = pwd.getpwnam("nobody")
            self._as = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]
        self.sockets.mkdir(parents=True)
        if self._as:
            for path in (self.root, self.sockets):
                os.chown(path, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self.bindir / tool), *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, cwd=self.root, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self) -> None:
        # fsync off: test data need not survive a power cut, and it keeps the 2-core machine fast.
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
                   " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "-t", "60",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects every client and rolls back their transactions; `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(_NAMES)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
