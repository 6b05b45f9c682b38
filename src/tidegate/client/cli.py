"""`tidegate upload` and `tidegate session`: the command line of the Upload 2.0 client.

Registered on the main parser through `add_parsers`; `run(args)` executes a parsed command.
Exit codes: 0 success, 1 upload or protocol failure (or interrupted), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import configparser
import getpass
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import aiohttp

from .. import __version__
from . import manage
from . import upload as up
from .args import DEFAULT_REPOSITORY, UsageError, add_parsers  # noqa: F401 - re-exported

def run(args: argparse.Namespace) -> int:
    """Run a parsed `upload` or `session` command; the exit code."""
    try:
        return asyncio.run(run_async(args))
    except KeyboardInterrupt:
        print("tidegate: interrupted", file=sys.stderr)
        return 1


async def run_async(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    handler = {"upload": upload_command, "session": session_command, "yank": yank_command,
               "delete": delete_command}[args.command]
    try:
        return await handler(args, os.environ if environ is None else environ)
    except UsageError as exc:
        print(f"tidegate: {exc}", file=sys.stderr)
        return 2
    except up.UploadError as exc:
        print(f"tidegate: error: {exc}", file=sys.stderr)
        return 1


async def upload_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.legacy and args.stage:
        raise UsageError("--stage needs Upload 2.0; it cannot be combined with --legacy")
    try:
        groups = up.group_dists(args.files)
    except up.DistError as exc:
        raise UsageError(str(exc)) from None
    target = resolve_target(args, environ)
    progress = Progress(sys.stderr)
    async with client_session(target) as http:
        try:
            if args.legacy:
                outcomes = await up.legacy_upload_all(http, target.repository, groups, jobs=args.jobs,
                                                      skip_existing=args.skip_existing, reporter=progress)
            else:
                outcomes = await up.upload_dists(http, target.repository, groups, stage=args.stage,
                                                 jobs=args.jobs, skip_existing=args.skip_existing,
                                                 reporter=progress)
        finally:
            progress.close()
    for outcome in outcomes:
        print_outcome(outcome, args.stage)
    return 0


async def session_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    target = resolve_target(args, environ)
    if args.action == "list":
        if args.id:
            raise UsageError("session list takes no ID")
        async with client_session(target) as http:
            sessions = await manage.open_sessions(http, target.repository)
        for body in sessions:
            print_listed(body)
        if not sessions:
            print(f"no open sessions at {target.repository} for your projects", file=sys.stderr)
        return 0
    if not args.id:
        raise UsageError(f"session {args.action} needs the session URL or token (`tidegate session list` shows them)")
    url = up.session_url(target.repository, args.id)
    async with client_session(target) as http:
        if args.action == "cancel":
            await up.cancel_session(http, url)
            print(f"canceled {url}")
            return 0
        body = await up.get_session(http, url)
        if args.action == "publish":
            if body.get("status") == "published":
                print(f"{url} was already published")
                return 0
            print(f"publishing {url} ...", file=sys.stderr)
            body = await up.publish_session(http, body)
            print(f"published {url}")
            return 0
        print_session(body)
        return 0


async def yank_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    _check_release_target(args.target)
    target = resolve_target(args, environ)
    reason = None if args.undo else args.reason
    async with client_session(target) as http:
        files = await manage.yank(http, target.repository, args.target, reason)
    for f in files:
        print(f"{f.get('filename')}: {'un-yanked' if reason is None else 'yanked'}")
    return 0


async def delete_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    _check_release_target(args.target)
    target = resolve_target(args, environ)
    async with client_session(target) as http:
        files = await manage.delete(http, target.repository, args.target)
    for f in files:
        print(f"{f.get('filename')}: deleted")
    return 0


def _check_release_target(target: list[str]) -> None:
    if len(target) not in (1, 2):
        raise UsageError("give one published file, or a project name and a version")


# --- output ------------------------------------------------------------------------------------


def print_listed(body: dict) -> None:
    links = body.get("links") or {}
    files = body.get("files") or {}
    print(f"{body.get('project', '?')} {body.get('version', '?')}  {body.get('status', '?')}  "
          f"{len(files)} file(s)  expires {body.get('expires-at', '?')}")
    print(f"  stage:   {links.get('stage', '?')}")
    print(f"  session: {links.get('session', '?')}")


def print_outcome(outcome: up.Outcome, stage: bool) -> None:
    label = f"{outcome.name} {outcome.version}"
    skipped = f", skipped {len(outcome.skipped)} already there" if outcome.skipped else ""
    session = outcome.session
    if session is None:
        if outcome.uploaded:
            print(f"{label}: uploaded {len(outcome.uploaded)} file(s) with the legacy API{skipped}")
        else:
            print(f"{label}: nothing uploaded{skipped}")
    elif session.published:
        print(f"{label}: published {len(outcome.uploaded)} file(s){skipped} ({session.url})")
    else:
        print(f"{label}: staged {len(outcome.uploaded)} file(s){skipped}, not published")
        if session.links.get("stage"):
            print(f"  stage:   {session.links['stage']}")
        print(f"  session: {session.url}")
        if session.body.get("session-token"):
            print(f"  token:   {session.body['session-token']}")
        print(f"  publish: tidegate session publish {session.url}")
        print(f"  cancel:  tidegate session cancel {session.url}")


LIVE_STATUSES = ("open", "processing", "error")  # PEP 694's non-terminal session states


def print_session(body: dict) -> None:
    links = body.get("links") or {}
    print(f"session: {links.get('session', '?')}")
    print(f"status:  {body.get('status', '?')}")
    if body.get("expires-at"):
        print(f"expires: {body['expires-at']}")
    if links.get("stage") and body.get("status") in LIVE_STATUSES:
        print(f"stage:   {links['stage']}")  # an ended session's stage URL answers 404
    files = body.get("files") or {}
    print(f"files:   {len(files)}")
    for filename, info in sorted(files.items()):
        info = info if isinstance(info, dict) else {}
        print(f"  {filename}  {info.get('status', '?')}")
        for notice in info.get("notices") or ():
            print(f"    notice: {notice}")
    for notice in body.get("notices") or ():
        print(f"notice: {notice}")


class Progress:
    """Per-file progress on a terminal: a block of lines redrawn in place; rows that are done
    scroll out of the block for good. Not a terminal (CI logs): one line per state change."""

    SETTLED = ("done", "exists", "skipped", "failed")
    SAID = {"exists": "already published, identical: nothing to do",
            "skipped": "skipped, a file of this name is already published"}

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.rows: dict[str, tuple[str, int, int]] = {}  # filename -> (state, sent, size)
        self.live: list[str] = []  # rows in the redrawn block, in order
        self.drawn = 0  # lines of the block currently on screen
        self.last_draw = 0.0

    def file(self, filename: str, state: str, sent: int = 0, size: int = 0) -> None:
        previous = self.rows.get(filename)
        self.rows[filename] = (state, sent, size)
        if previous is None:
            self.live.append(filename)
        changed = previous is None or previous[0] != state
        if not self.tty:
            if changed and state != "queued":
                said = self.SAID.get(state, state) + (f" ({_human(size)})" if state == "uploading" else "")
                self._write(f"{filename}: {said}\n")
        elif changed or time.monotonic() - self.last_draw >= 0.1:  # bytes only: ~10 redraws/s
            self._draw()

    def note(self, message: str) -> None:
        if self.tty and self.drawn:
            self._write(f"\x1b[{self.drawn}A\r\x1b[2K{message}\n")
            self.drawn = 0  # the cursor is now where the block starts, one line lower
            self._draw()
        else:
            self._write(message + "\n")

    def close(self) -> None:
        if self.tty:
            self._draw()

    def _draw(self) -> None:
        self.last_draw = time.monotonic()
        width = shutil.get_terminal_size().columns - 1
        out = [f"\x1b[{self.drawn}A\r"] if self.drawn > 0 else []
        while self.live and self.rows[self.live[0]][0] in self.SETTLED:
            out.append("\x1b[2K" + self._line(self.live.pop(0))[:width] + "\n")
        out += ["\x1b[2K" + self._line(name)[:width] + "\n" for name in self.live]
        self.drawn = len(self.live)
        self._write("".join(out))

    def _line(self, filename: str) -> str:
        state, sent, size = self.rows[filename]
        fraction = sent / size if size else (1.0 if state == "done" else 0.0)
        bar = "#" * int(fraction * 20)
        width = min(60, max(map(len, self.rows)))
        return (f"{filename:<{width}}  [{bar:-<20}] {int(fraction * 100):3d}% {_human(sent)}/{_human(size)}  "
                f"{self.SAID.get(state, state)}")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError


# --- repository and credentials ----------------------------------------------------------------


@dataclass
class Target:
    repository: str
    username: str | None
    password: str | None


def resolve_target(args: argparse.Namespace, environ: Mapping[str, str],
                   pypirc: Path | None = None) -> Target:
    """Repository URL and credentials; each value from the first source that has it:
    flags, then environment, then ~/.pypirc (see CREDENTIALS_HELP)."""
    servers = read_pypirc(pypirc or Path.home() / ".pypirc")
    section: dict[str, str] = {}
    if args.repository_name:
        if args.repository_name not in servers:
            raise UsageError(f"no [{args.repository_name}] index server in ~/.pypirc")
        section = servers[args.repository_name]
    repository = base_url(args.repository or section.get("repository") or environ.get("TIDEGATE_REPOSITORY")
                          or environ.get("TWINE_REPOSITORY_URL") or DEFAULT_REPOSITORY)
    if not args.repository_name:
        section = next((s for s in servers.values() if base_url(s.get("repository", "")) == repository), {})
    username = (args.username or environ.get("TIDEGATE_USERNAME") or environ.get("TWINE_USERNAME")
                or section.get("username"))
    password = (args.password or environ.get("TIDEGATE_PASSWORD") or environ.get("TWINE_PASSWORD")
                or section.get("password"))
    if username and password is None and sys.stdin.isatty():
        password = getpass.getpass(f"Password for {username} at {repository}: ")
    return Target(repository, username, password)


API_SUFFIXES = ("/legacy", "/upload", "/simple")


def base_url(url: str) -> str:
    """The server's base URL from any of its API URLs: a .pypirc written for twine says
    `repository = https://host/legacy/`, and Upload 2.0 lives beside it at /upload/."""
    url = url.strip().rstrip("/")
    for suffix in API_SUFFIXES:
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def read_pypirc(path: Path) -> dict[str, dict[str, str]]:
    """Index server sections of a .pypirc: those listed in [distutils] index-servers, or every
    section when there is no such list."""
    parser = configparser.RawConfigParser()  # raw: passwords may contain '%'
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    names = parser.get("distutils", "index-servers", fallback="").split()
    names = names or [s for s in parser.sections() if s != "distutils"]
    return {name: dict(parser.items(name)) for name in names if parser.has_section(name)}


def client_session(target: Target) -> aiohttp.ClientSession:
    headers = {"User-Agent": f"tidegate/{__version__}"}
    if target.username:
        # HTTP Basic on every request (aiohttp drops it on redirects to another origin).
        token = base64.b64encode(f"{target.username}:{target.password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    # No total timeout: a large file on a slow link may take long; stalls are caught by sock_read.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    return aiohttp.ClientSession(timeout=timeout, headers=headers)
