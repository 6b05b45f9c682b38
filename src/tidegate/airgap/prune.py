"""`tidegate prune`: cached files (with their metadata and provenance) that the operator's rules
select, removed; local uploads only when asked (--local), and then through the publishing
service, as a deletion by the operator.

The rules are pure (`select`): a file goes when every rule given selects it. `--keep-latest N`
spares the N latest releases of each project (of those this mirror holds files of);
`--older-than AGE` spares files uploaded (as their page says; else cached) less than AGE ago;
`-r`/`--lock` spare every file the closure needs, resolved exactly as prefetch resolves it, but
against this mirror alone (an offline tidegate over the same data dir). A closure with an
unresolved requirement removes nothing: it would remove what that requirement needs.

Safe while a server runs: each cached file is removed under its download lock (the one a
worker fetching it holds), a response already sending it keeps its bytes (an open file
outlives its unlink on POSIX), and the page cache's change stamp moves afterwards, so every
worker's offline pages stop listing what went at their next request.
"""

from __future__ import annotations

import argparse
import datetime
import time
from dataclasses import dataclass, field, replace

from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ..cache.keys import blob_key, lock_name
from ..publish.errors import PublishError
from ..publish.service import Publisher
from ..storage import Storage
from ..storage.leases import acquire
from .export import selector


@dataclass(frozen=True)
class Candidate:
    project: str
    filename: str
    key: str  # the blob's key in its store
    size: int
    when: float | None  # uploaded (else cached), POSIX time
    local: bool = False

    @property
    def version(self) -> Version | None:
        try:
            if self.filename.endswith(".whl"):
                return parse_wheel_filename(self.filename)[1]
            return parse_sdist_filename(self.filename)[1]
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
            return None


@dataclass(frozen=True)
class Rules:
    keep_latest: int | None = None
    older_than: float | None = None  # seconds
    closure: frozenset[str] | None = None  # filenames the closure needs

    @property
    def any(self) -> bool:
        return self.keep_latest is not None or self.older_than is not None or self.closure is not None


def select(candidates: list[Candidate], rules: Rules, now: float) -> list[Candidate]:
    """The candidates every given rule selects. A file whose version or age cannot be told is
    spared by the rule that needs it."""
    latest: dict[tuple[str, bool], set[Version]] = {}
    if rules.keep_latest is not None:
        releases: dict[tuple[str, bool], set[Version]] = {}
        for c in candidates:
            if (v := c.version) is not None:
                releases.setdefault((c.project, c.local), set()).add(v)
        latest = {k: set(sorted(vs, reverse=True)[:rules.keep_latest]) for k, vs in releases.items()}
    goes = []
    for c in candidates:
        if rules.keep_latest is not None and (c.version is None or c.version in latest[(c.project, c.local)]):
            continue
        if rules.older_than is not None and (c.when is None or now - c.when <= rules.older_than):
            continue
        if rules.closure is not None and c.filename in rules.closure:
            continue
        goes.append(c)
    return goes


@dataclass
class Report:
    removed: list[Candidate] = field(default_factory=list)  # or, dry run, that would be
    local_spared: list[Candidate] = field(default_factory=list)  # selected, but local and no --local
    failed: list[tuple[Candidate, str]] = field(default_factory=list)


def _uploaded(upload_time: str | None) -> float | None:
    if not upload_time:
        return None
    try:
        return datetime.datetime.fromisoformat(upload_time).timestamp()
    except ValueError:
        return None


async def candidates(storage: Storage, publisher: Publisher, patterns: list[str]) -> tuple[list[Candidate], set[str]]:
    """Every cached file the selected projects' pages list, and every local upload of them; and
    the cached blobs the other projects' pages list (which stay whatever the rules say)."""
    wanted = selector(patterns)
    out: list[Candidate] = []
    elsewhere: set[str] = set()
    for name in await storage.pages.names():
        record = await storage.pages.load(name)
        for f in (record.served.files if record is not None and record.served is not None else ()):
            key = blob_key(f)
            if not wanted(name):
                elsewhere.add(key)
            elif (info := await storage.cache_blobs.info(key)) is not None:
                out.append(Candidate(name, f.filename, key, info.size, _uploaded(f.upload_time) or info.committed_at))
    local, _ = await publisher.published_files(wanted)
    out += [Candidate(f.project, f.filename, f.sha256 or "", f.size, _uploaded(f.upload_time), local=True)
            for f in local]
    return out, elsewhere


async def prune(storage: Storage, publisher: Publisher, rules: Rules, *, patterns: list[str], local: bool,
                dry_run: bool, who, now: float | None = None) -> Report:
    found, elsewhere = await candidates(storage, publisher, patterns)
    goes = select(found, rules, time.time() if now is None else now)
    report = Report()
    # One blob may back files of several pages: it goes only if every file it backs goes.
    kept = ({c.key for c in found if not c.local} - {c.key for c in goes if not c.local}) | elsewhere
    removed_keys: set[str] = set()
    for c in goes:
        if c.local and not local:
            report.local_spared.append(c)
            continue
        if not c.local and c.key in kept:
            continue
        if not dry_run:
            try:
                if c.local:  # audited; its name never comes back with other bytes
                    await publisher.delete_published(who, c.filename)
                else:
                    await _remove_cached(storage, c.key, removed_keys)
            except (PublishError, OSError) as exc:
                report.failed.append((c, str(exc)))
                continue
        report.removed.append(c)
    if removed_keys:
        await storage.pages.mark_changed()  # every worker's offline pages drop them now
    return report


async def _remove_cached(storage: Storage, key: str, removed: set[str]) -> None:
    if key in removed:
        return
    lease = await acquire(storage.locks, lock_name(key))  # not while a worker is fetching it
    try:
        await storage.cache_blobs.remove(key)
        for metadata in (key, "provenance-" + key):
            await storage.pages.remove_metadata(metadata)
    finally:
        await lease.release()
    removed.add(key)


async def closure_files(settings, args: argparse.Namespace) -> tuple[frozenset[str] | None, list[tuple[str, str]]]:
    """The filenames the requirements and lock files need, resolved as prefetch resolves them but
    against this mirror alone; and what could not be resolved or chosen (a blocker: what it
    needs would be removed). (None, []) without requirements."""
    if not (args.requirement_files or args.locks):
        return None, []
    import aiohttp

    from .prefetch import Outcome, closure, serving

    outcome = Outcome()
    offline = replace(settings, offline=True)  # what is here, never an upstream
    async with serving(offline) as (origin, _):
        async with aiohttp.ClientSession() as session:
            wanted = await closure(session, origin, args, outcome)
    return frozenset(wanted), outcome.unresolved + outcome.failed
