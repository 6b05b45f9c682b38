"""Command line: `tidegate serve`, `backup`, `hash-password` and `config`; the client's commands
(upload, session, yank, delete) and the administration commands (token, audit, yank --data-dir)
are registered from client/args.py and admin/args.py."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import shutil
import sys
from typing import Any, Sequence

from . import __version__
from .admin import args as admin_args
from .client import args as client_args
from .config import DEFAULT_PORT, ConfigError, Settings, load

log = logging.getLogger("tidegate")

SERVE_HELP = """\
Start the proxy. Every setting can also come from a TOML file (--config) or a TIDEGATE_<KEY>
environment variable (TIDEGATE_UPSTREAM takes a space- or comma-separated list); flags win over
the environment, which wins over the file. `tidegate config` prints every setting with its
default and what it does.
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
    serve.add_argument("--database-url", dest="database_url", metavar="URL",
                       help="postgresql://... shared by several instances (default: SQLite in the data dir)")
    serve.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--blob-store", dest="blob_store", metavar="s3://BUCKET/PREFIX",
                       help="keep cached and uploaded files in an S3-compatible bucket (default: under the data dir)")
    serve.add_argument("--s3-endpoint-url", dest="s3_endpoint_url", metavar="URL",
                       help="the S3-compatible server (default: AWS)")
    serve.add_argument("--local-cache-size", dest="local_cache_size", metavar="SIZE",
                       help="with --blob-store: local disk kept for hot files (default 10GiB)")

    backup = commands.add_parser(
        "backup", help="back up the data directory while tidegate serves",
        description="Copy the local index and every other database with SQLite's backup API (a consistent "
                    "snapshot while tidegate serves), plus the uploaded and cached files, into DEST, a data "
                    "directory of its own: restore by serving from it (or copying it into place) while "
                    "tidegate is stopped. The page cache is left out (pages are fetched again). A second "
                    "backup into the same DEST copies only the files that are new.")
    backup.add_argument("dest", metavar="DEST", help="the backup directory (created if missing)")
    backup.add_argument("--without-cached-files", dest="cached_files", action="store_false",
                        help="leave out the files cached from upstreams (they can be fetched again)")
    backup.add_argument("--config", metavar="FILE", default=os.environ.get("TIDEGATE_CONFIG"))
    backup.add_argument("--data-dir", dest="data_dir", metavar="DIR")
    backup.add_argument("--database-url", dest="database_url", metavar="URL",
                        help="with PostgreSQL the database is not copied: back it up with pg_dump")

    hashpw = commands.add_parser("hash-password", help="print a hashed password for a [[users]] entry")
    hashpw.add_argument("--password", help="the password (default: prompt)")
    client_args.add_parsers(commands)
    admin_args.add_parsers(commands)
    from .airgap import cli as airgap_cli

    airgap_cli.add_parsers(commands)
    return parser


def settings_from_args(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    flags: dict[str, Any] = {
        key: getattr(args, key, None)
        for key in ("host", "port", "data_dir", "upstreams", "offline", "workers", "log_level", "blob_store",
                    "s3_endpoint_url", "local_cache_size",
                    "database_url", "import_verify_key")
    }
    return load(args.config, environ, flags)


def backup(settings: Settings, dest: str, cached_files: bool) -> int:
    from pathlib import Path

    from .storage import BackupError, backup_data_dir

    if settings.database_url:
        from .storage.postgres import safe_url

        print(f"tidegate: the index, sessions, tokens and audit log are in {safe_url(settings.database_url)}, "
              "which this backup does not copy: back it up with pg_dump", file=sys.stderr)
    try:
        report = backup_data_dir(settings, Path(dest), cached_files=cached_files)
    except BackupError as exc:
        print(f"tidegate: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {settings.data_dir} to {dest} in {report.seconds:.1f} s: {len(report.databases)} databases, "
          f"{report.files} files ({report.copied} new, {report.copied_bytes / 1e6:.1f} MB copied)")
    for filename in report.missing:
        print(f"tidegate: {filename} was deleted during the backup; the backup lists it without its file",
              file=sys.stderr)
    return 1 if report.missing else 0


def airgap_commands() -> tuple[str, ...]:
    from .airgap.cli import COMMANDS

    return COMMANDS


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "config":
        from importlib.resources import files

        sys.stdout.write(files("tidegate").joinpath("tidegate.toml").read_text())
        return 0
    local_yank = args.command == "yank" and (args.data_dir or args.config or getattr(args, "database_url", None))
    if args.command in ("upload", "session", "delete") or (args.command == "yank" and not local_yank):
        from .client import cli as client_cli  # imported only when used: it loads aiohttp

        return client_cli.run(args)
    if args.command == "hash-password":
        from .passwords import hash_password

        password = args.password if args.password is not None else getpass.getpass("Password: ")
        print(hash_password(password))
        return 0
    try:
        if args.command in airgap_commands():
            from .airgap import cli as airgap_cli

            return airgap_cli.run(args, lambda a: settings_from_args(a, dict(os.environ)))
        settings = settings_from_args(args, dict(os.environ))
    except ConfigError as exc:
        print(f"tidegate: bad setting {exc}", file=sys.stderr)
        return 2
    if args.command in ("token", "audit", "yank", "migrate"):
        from .admin import commands as admin  # imported only when used: it loads the storage

        try:
            return admin.run(args, settings)
        except ConfigError as exc:
            print(f"tidegate: bad setting {exc}", file=sys.stderr)
            return 2
    if args.command == "backup":
        return backup(settings, args.dest, args.cached_files)
    from .observe.requestlog import formatter

    handler = logging.StreamHandler()
    handler.setFormatter(formatter(settings.log_format))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    return serve(settings)


def serve(settings: Settings) -> int:
    import asyncio

    from .recovery import recover
    from .storage import DataDirError, EngineUnavailable, check_data_dir

    try:
        check_data_dir(settings)
    except DataDirError as exc:
        print(f"tidegate: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(recover(settings))
    except OSError as exc:
        print(f"tidegate: start-up repairs of {settings.data_dir} failed: {exc}", file=sys.stderr)
        return 1
    except EngineUnavailable as exc:
        print(f"tidegate: cannot start: {exc}", file=sys.stderr)
        return 1
    metrics_dir = _metrics_dir(settings) if settings.metrics else None
    try:
        return _serve(settings)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_dir(settings: Settings) -> str:
    """A fresh directory for the workers' metrics (prometheus-client's multiprocess mode), named
    in the environment before any worker imports prometheus_client. Directories of servers that
    are no longer running are removed."""
    from .storage.layout import layout

    parent = layout(settings.data_dir).metrics
    parent.mkdir(parents=True, exist_ok=True)
    for entry in parent.iterdir():
        if not entry.name.isdigit() or not _alive(int(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)
    mine = parent / str(os.getpid())
    mine.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mine)
    return str(mine)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _serve(settings: Settings) -> int:
    from . import process

    try:
        sock = process.listen(settings.host, settings.port)
    except OSError as exc:
        print(f"tidegate: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return 1
    workers = settings.effective_workers()
    host, port = sock.getsockname()[:2]
    log.info("tidegate serving http://%s:%s/simple/ with %d worker(s), data in %s, upstreams: %s", host, port,
             workers, settings.data_dir, ", ".join(u.display_url for u in settings.upstreams) or "none")
    if settings.offline:
        log.info("offline: upstreams are never contacted")
    if workers == 1:
        process.run_worker(settings, sock)
        return 0
    return process.supervise(settings, sock, workers)


if __name__ == "__main__":
    raise SystemExit(main())
