"""Command line: `tidegate serve` and `tidegate hash-password`."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import socket
import sys
import time
import traceback
from typing import Any, Sequence

from . import __version__
from .client import args as client_args
from .config import DEFAULT_PORT, ConfigError, Settings, load

log = logging.getLogger("tidegate")

SERVE_HELP = """\
Start the proxy. Every setting can also come from a TOML file (--config) or a TIDEGATE_<KEY>
environment variable (TIDEGATE_UPSTREAM takes a space- or comma-separated list); flags win over
the environment, which wins over the file. config/tidegate.toml documents every setting.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidegate", description="Caching proxy, mirror and staging index for Python packages.")
    parser.add_argument("--version", action="version", version=f"tidegate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the index server", description=SERVE_HELP)
    serve.add_argument("--config", metavar="FILE", default=os.environ.get("TIDEGATE_CONFIG"),
                       help="TOML settings file (default: $TIDEGATE_CONFIG, else none)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help=f"port to listen on (default {DEFAULT_PORT})")
    serve.add_argument("--data-dir", dest="data_dir", metavar="DIR",
                       help="where caches and uploads are stored (default ~/.local/share/tidegate)")
    serve.add_argument("--upstream", dest="upstreams", action="append", metavar="URL",
                       help="upstream simple index; repeat for several, first has priority "
                            "(default https://pypi.org/simple/)")
    serve.add_argument("--offline", action="store_const", const=True, default=None,
                       help="never contact upstreams: serve what is cached, 404 otherwise")
    serve.add_argument("--workers", type=int, help="worker processes (default: one per CPU core)")
    serve.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])

    yank = commands.add_parser("yank", help="yank (or un-yank) a file of the local index (PEP 592)",
                               description="Mark a published local file as yanked: installers skip it unless "
                                           "a requirement pins its exact version. Runs on the server's data "
                                           "directory; running workers see the change at once.")
    yank.add_argument("filename", help="the published file, e.g. acme_core-2.0-py3-none-any.whl")
    yank.add_argument("--reason", default="", help="why it was yanked (shown by pip and uv)")
    yank.add_argument("--undo", action="store_true", help="un-yank the file")
    yank.add_argument("--config", metavar="FILE", default=os.environ.get("TIDEGATE_CONFIG"))
    yank.add_argument("--data-dir", dest="data_dir", metavar="DIR")

    hashpw = commands.add_parser("hash-password", help="print a hashed password for a [[users]] entry")
    hashpw.add_argument("--password", help="the password (default: prompt)")
    client_args.add_parsers(commands)
    return parser


def settings_from_args(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    flags: dict[str, Any] = {
        key: getattr(args, key, None)
        for key in ("host", "port", "data_dir", "upstreams", "offline", "workers", "log_level")
    }
    return load(args.config, environ, flags)


def yank(settings: Settings, filename: str, reason: str | None) -> int:
    import asyncio

    from .publish.service import Publisher, no_upstream
    from .storage import open_storage

    async def run() -> bool:
        storage = await open_storage(settings)
        try:
            return await Publisher(settings, storage.index, storage.local_blobs, no_upstream).yank(filename, reason)
        finally:
            await storage.close()

    if not asyncio.run(run()):
        print(f"tidegate: {filename} is not a published file of the local index", file=sys.stderr)
        return 1
    print(f"{filename}: {'un-yanked' if reason is None else 'yanked'}")
    return 0



def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("upload", "session"):
        from .client import cli as client_cli  # imported only when used: it loads aiohttp

        return client_cli.run(args)
    if args.command == "hash-password":
        from .passwords import hash_password

        password = args.password if args.password is not None else getpass.getpass("Password: ")
        print(hash_password(password))
        return 0
    try:
        settings = settings_from_args(args, dict(os.environ))
    except ConfigError as exc:
        print(f"tidegate: bad setting {exc}", file=sys.stderr)
        return 2
    if args.command == "yank":
        return yank(settings, args.filename, None if args.undo else args.reason)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    try:
        return serve(settings)
    except OSError as exc:
        print(f"tidegate: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return 1


def serve(settings: Settings) -> int:
    import asyncio

    from .recovery import recover

    asyncio.run(recover(settings))
    sock = _listen(settings.host, settings.port)
    workers = settings.effective_workers()
    host, port = sock.getsockname()[:2]
    log.info("tidegate serving http://%s:%s/simple/ with %d worker(s), data in %s, upstreams: %s", host, port,
             workers, settings.data_dir, ", ".join(u.display_url for u in settings.upstreams) or "none")
    if settings.offline:
        log.info("offline: upstreams are never contacted")
    if workers == 1:
        _run_worker(settings, sock)
        return 0
    return _supervise(settings, sock, workers)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _run_worker(settings: Settings, sock: socket.socket) -> None:
    from aiohttp import web

    from .app import make_app

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(settings), sock=sock, print=None, access_log=None, handle_signals=True)


def _supervise(settings: Settings, sock: socket.socket, workers: int) -> int:
    """Fork workers that share the listening socket (the kernel spreads connections across
    them) and the on-disk caches; restart any that dies; stop them all on SIGTERM/SIGINT."""
    children: set[int] = set()
    stopping = False
    stopping_code = [0]

    started: dict[int, float] = {}
    quick_deaths = 0

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 0
            try:
                _run_worker(settings, sock)
            except (SystemExit, KeyboardInterrupt):
                pass  # a signal during shutdown (aiohttp's GracefulExit is a SystemExit)
            except BaseException:
                traceback.print_exc()  # a worker's death must leave its reason in the log
                code = 1
            finally:
                os._exit(code)
        children.add(pid)
        started[pid] = time.monotonic()

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        spawn()
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        children.discard(pid)
        if stopping:
            continue
        lived = time.monotonic() - started.pop(pid, 0.0)
        quick_deaths = quick_deaths + 1 if lived < 5 else 0
        if quick_deaths >= 5:  # crashing at start-up: restarting will not help
            log.error("workers keep dying at start-up (last status %d); stopping", status)
            stop(signal.SIGTERM, None)
            stopping_code[0] = 1
            continue
        log.error("worker %d exited (status %d); starting another", pid, status)
        time.sleep(0.5)
        spawn()
    return stopping_code[0]


if __name__ == "__main__":
    raise SystemExit(main())
