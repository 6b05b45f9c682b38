"""The local administration commands: each opens the server's storage through the seam and
works through the publish domain's services, never on SQL of its own."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import socket
import sys
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, TypeVar

from ..config import ConfigError, Settings, User, parse_duration
from ..publish.actor import Actor
from ..publish.errors import PublishError
from ..publish.service import Publisher, no_upstream
from ..publish.tokens import Tokens, state
from ..storage import DataDirError, EngineUnavailable, Storage, open_storage

T = TypeVar("T")


def operator() -> Actor:
    """Whoever runs a command on the data directory: they can change anything, and the audit
    log names their login and host."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return Actor(User(name=f"{login}@{socket.gethostname()}", password="", upload=("*",)), address="local")


def with_storage(settings: Settings, fn: Callable[[Storage], Awaitable[T]]) -> T:
    async def run() -> T:
        storage = await open_storage(settings)
        try:
            return await fn(storage)
        finally:
            await storage.close()

    return asyncio.run(run())


def stamp(ts: float | None) -> str:
    return "never" if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_since(raw: str, now: float) -> float:
    """A UTC date or date-time, or an age ("7d", "12h") back from now."""
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        try:
            return now - parse_duration("--since", raw)
        except ConfigError:
            raise ConfigError("--since", f"expected a date such as 2026-12-01 or an age such as 7d, got {raw!r}")
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.command == "token":
            return token(args, settings)
        if args.command == "audit":
            return audit(args, settings)
        if args.command == "migrate":
            return migrate(settings)
        return yank(args, settings)
    except PublishError as exc:
        print(f"tidegate: {exc.message}", file=sys.stderr)
        return 1
    except (DataDirError, EngineUnavailable) as exc:
        print(f"tidegate: {exc}", file=sys.stderr)
        return 1


def migrate(settings: Settings) -> int:
    if not settings.database_url:
        raise ConfigError("database_url", "`tidegate migrate` is for a PostgreSQL database; SQLite migrates itself")
    from ..storage.postgres import migrate_database, safe_url

    applied = migrate_database(settings.database_url)
    for line in applied:
        print(f"applied migration {line}")
    print(f"{safe_url(settings.database_url)}: schema up to date ({len(applied)} migration(s) applied)")
    return 0


def token(args: argparse.Namespace, settings: Settings) -> int:
    if args.token_action == "create":
        lifetime = None if args.expires.strip().lower() == "never" else parse_duration("--expires", args.expires)
        if lifetime == 0:
            raise ConfigError("--expires", "a token needs a lifetime above zero, or \"never\"")
        created = with_storage(settings, lambda s: Tokens(settings, s.index).create(
            operator(), args.user, tuple(args.scope), lifetime))
        t = created.token
        print(created.secret)
        print(f"id {t.id}, user {t.user}, scopes {', '.join(t.scopes)}, expires {stamp(t.expires_at)}; "
              "use it as the password of user __token__ (it is not shown again)", file=sys.stderr)
        return 0
    if args.token_action == "revoke":
        t = with_storage(settings, lambda s: Tokens(settings, s.index).revoke(operator(), args.id))
        print(f"revoked token {t.id} of {t.user}")
        return 0
    tokens = with_storage(settings, lambda s: Tokens(settings, s.index).list())
    now = time.time()
    for t in tokens:
        if args.json:
            print(json.dumps({"id": t.id, "user": t.user, "scopes": list(t.scopes), "created": stamp(t.created_at),
                              "expires": stamp(t.expires_at), "state": state(t, now)}))
        else:
            print(f"{t.id}  {t.user:<16} {state(t, now):<8} created {stamp(t.created_at)}  "
                  f"expires {stamp(t.expires_at)}  scopes {', '.join(t.scopes)}")
    if not tokens and not args.json:
        print("no tokens", file=sys.stderr)
    return 0


def audit(args: argparse.Namespace, settings: Settings) -> int:
    since = parse_since(args.since, time.time()) if args.since else 0.0
    entries = with_storage(settings, lambda s: s.index.read(lambda rows: rows.audit_since(since)))
    for e in entries:
        if args.json:
            print(json.dumps({"at": stamp(e.at), "actor": e.actor, "address": e.address, "action": e.action,
                              "subject": e.subject, "detail": e.detail}))
        else:
            detail = "  ".join(f"{k}={_short(k, v)}" for k, v in sorted(e.detail.items()))
            print(f"{stamp(e.at)}  {e.actor}  from {e.address}  {e.action} {e.subject}" + (f"  {detail}" if detail else ""))
    return 0


def _short(key: str, value: Any) -> str:
    if key.endswith("_at") and isinstance(value, (int, float)):
        return stamp(value)
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def yank(args: argparse.Namespace, settings: Settings) -> int:
    """`tidegate yank --data-dir DIR ...`: on the data directory, as the operator."""
    reason = None if args.undo else args.reason

    async def run(storage: Storage) -> list:
        publisher = Publisher(settings, storage.index, storage.local_blobs, no_upstream)
        if len(args.target) == 2:
            return await publisher.yank_release(operator(), args.target[0], args.target[1], reason)
        return [await publisher.yank(operator(), args.target[0], reason)]

    for f in with_storage(settings, run):
        print(f"{f.filename}: {'un-yanked' if reason is None else 'yanked'}")
    return 0
