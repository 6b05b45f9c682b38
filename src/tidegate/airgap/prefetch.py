"""`tidegate prefetch`: the dependency closure of requirements (or lock files) for every
(Python version, platform) target, put into the data dir through tidegate's own read path.

Resolution is uv's (`uv pip compile` per target, with --python-version and --python-platform):
a well-kept, fast resolver that evaluates markers and extras for a target other than the
machine it runs on, which pip's resolver cannot. Its index is a tidegate server started in this
process on 127.0.0.1 over the same data dir, so every page and PEP 658 metadata file the
resolver reads is cached exactly as a client's request would cache it. Then every file the
targets need is fetched through the same server's read path, in-process (tidegate verifies
the download against the page's hashes before committing it; prefetch then checks that the
committed file is the one the page or lock file names). Files already cached
are not fetched again, so a prefetch killed midway resumes where it stopped. It may run while a
server uses the same data dir: storage is shared through locks, as between workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp import web
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from ..config import Settings
from .progress import Progress
from .targets import Target, targets

JSON = "application/vnd.pypi.simple.v1+json"
PARALLEL = 8
RESOLVE_TIMEOUT = 600


@dataclass
class Wanted:
    project: str
    filename: str
    hashes: dict[str, str]
    metadata: bool = False
    provenance: bool = False


@dataclass
class Outcome:
    unresolved: list[tuple[str, str]] = field(default_factory=list)  # (requirement, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (filename, reason)
    fetched: int = 0
    present: int = 0


def uv_binary() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def top_level(requirements: list[str], files: list[Path]) -> list[str]:
    """The requirements named on the command line and in the files (options and hashes dropped),
    each resolved alone to tell which one cannot be resolved."""
    out = list(requirements)
    for path in files:
        text = path.read_text()
        text = re.sub(r"\\\n", " ", text)
        for line in text.splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("-"):
                if line.startswith(("-r ", "--requirement")):
                    nested = line.split(None, 1)[1].strip()
                    out += top_level([], [path.parent / nested])
                continue
            out.append(re.split(r"\s+--hash", line)[0].strip())
    return out


def _reason(output: str) -> str:
    """uv's explanation, on one line."""
    lines = [re.sub(r"^(?:[\s╰─▶×│]|cause:|error:)+", "", line).strip() for line in output.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("Resolved", "warning", "hint"))]
    because = [line for line in lines if line.startswith(("Because", "No solution"))]
    text = " ".join(because[-1:] or lines[-1:]) or "uv failed without saying why"
    return text if len(text) < 400 else text[:397] + "..."


async def _compile(index: str, target: Target, requirements: list[str], files: list[Path],
                   sdists: bool | None, env: dict[str, str]) -> tuple[int, str, str]:
    cmd = [uv_binary(), "pip", "compile", "--no-config", "--no-cache", "--no-header", "--no-annotate",
           "--index-url", index, "--python-version", target.python]
    platform = target.uv_platform()
    if platform is not None:
        cmd += ["--python-platform", platform]
    if sdists is False:
        cmd += ["--only-binary", ":all:"]
    cmd += [str(path) for path in files]  # requirement files are uv pip compile's arguments
    with tempfile.NamedTemporaryFile("w", suffix=".in", delete=False) as extra:
        extra.write("\n".join(requirements) + "\n")
    cmd.append(extra.name)
    try:
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), RESOLVE_TIMEOUT)
    finally:
        os.unlink(extra.name)
    return proc.returncode or 0, out.decode(), err.decode()


def _pins(output: str) -> list[tuple[str, str]]:
    pins = []
    for line in output.splitlines():
        line = line.split("#")[0].strip().rstrip("\\").strip()
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)", line)
        if m:
            pins.append((canonicalize_name(m.group(1)), m.group(3)))
    return pins


async def resolve(index: str, target: Target, requirements: list[str], files: list[Path], sdists: bool | None,
                  env: dict[str, str], outcome: Outcome) -> list[tuple[str, str]]:
    code, out, err = await _compile(index, target, requirements, files, sdists, env)
    if code == 0:
        return _pins(out)
    # Which requirement cannot be resolved: each alone, then the rest together.
    good: list[str] = []
    for req in top_level(requirements, files):
        code, _, err = await _compile(index, target, [req], [], sdists, env)
        if code == 0:
            good.append(req)
        else:
            outcome.unresolved.append((req, f"{_reason(err)} [{target}]"))
    if not good:
        return []
    code, out, err = await _compile(index, target, good, [], sdists, env)
    if code != 0:
        outcome.unresolved.append((" ".join(good), f"not resolvable together: {_reason(err)} [{target}]"))
        return []
    return _pins(out)


def _version_of(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except ValueError:
        return None


async def _choose(session: aiohttp.ClientSession, origin: str, target: Target, pins: list[tuple[str, str]],
                  sdists: bool | None, wanted: dict[str, Wanted], outcome: Outcome) -> None:
    tag_set = target.tags()
    from packaging.version import Version

    for project, version in pins:
        async with session.get(f"{origin}/simple/{project}/", headers={"Accept": JSON}) as r:
            if r.status != 200:
                outcome.failed.append((f"{project}=={version}", f"its page answered {r.status}"))
                continue
            page = json.loads(await r.read())
        files = [f for f in page["files"] if (v := _version_of(f["filename"])) is not None
                 and Version(v) == Version(version)]
        wheels = [f for f in files if f["filename"].endswith(".whl") and target.accepts(f["filename"], tag_set)]
        sdist = [f for f in files if not f["filename"].endswith(".whl")]
        chosen = wheels + (sdist if sdists or (sdists is None and not wheels) else [])
        if not chosen:
            outcome.failed.append((f"{project}=={version}", f"no file for {target}"))
        for f in chosen:
            wanted.setdefault(f["filename"], Wanted(project, f["filename"], f.get("hashes", {}),
                                                     metadata=bool(f.get("core-metadata") or f.get("dist-info-metadata")),
                                                     provenance=bool(f.get("provenance"))))


def from_lock(path: Path) -> list[Wanted]:
    """Every file a pylock.toml lists (PEP 751), with its hashes."""
    try:
        lock = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    out = []
    for package in lock.get("packages", []):
        project = canonicalize_name(package["name"])
        for entry in [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]:
            filename = entry.get("name") or unquote(urlsplit(entry.get("url", "")).path.rsplit("/", 1)[-1])
            if filename:
                out.append(Wanted(project, filename, dict(entry.get("hashes", {})), metadata=filename.endswith(".whl")))
    return out


async def _fetch(session: aiohttp.ClientSession, origin: str, app: web.Application, item: Wanted,
                 outcome: Outcome) -> None:
    from ..cache.downloads import DownloadFailed
    from ..readpath.answers import BlobAnswer, FileQuery, StreamAnswer
    from ..readpath.errors import ReadError
    from ..simple.names import normalize
    from ..web.keys import PROXY, STORAGE

    base = f"{origin}/files/{normalize(item.project)}/{item.filename}"
    storage = app[STORAGE]
    sha256 = item.hashes.get("sha256")
    if sha256 and await storage.cache_blobs.exists(sha256):
        outcome.present += 1
    else:
        # The file through the server's own read path, in this process, not over HTTP: the
        # download is verified against the page's hashes before it is committed, so what is
        # left to check here is that it is the file the page or lock file names.
        try:
            answer = await app[PROXY].answer(FileQuery(normalize(item.project), item.filename))
            if isinstance(answer, StreamAnswer):
                await asyncio.shield(answer.download.result)  # shared with the server's clients
                key, blob = answer.download.key, None
            elif isinstance(answer, BlobAnswer):  # cached or local under a key we did not know: hash it all
                key, blob = None, answer.file
            else:
                raise ReadError(f"tidegate answered {type(answer).__name__} for the file")
        except ReadError as exc:
            outcome.failed.append((item.filename, exc.message))
            return
        except DownloadFailed as exc:
            outcome.failed.append((item.filename, f"download failed: {exc}"))
            return
        except Exception as exc:  # a store or engine failing: listed like any failed file, as over HTTP
            outcome.failed.append((item.filename, f"{type(exc).__name__}: {exc}"))
            return
        try:
            if blob is None:
                blob = await storage.cache_blobs.open(key)
            bad = await _mismatch(blob, key, item.hashes)
        except OSError as exc:
            outcome.failed.append((item.filename, f"cannot read it back: {exc}"))
            return
        finally:
            if blob is not None:
                blob.close()
        if bad:
            outcome.failed.append((item.filename, f"{bad} does not match"))
            return
        outcome.fetched += 1
    for suffix, wanted in ((".metadata", item.metadata), (".provenance", item.provenance)):
        if wanted:
            async with session.get(base + suffix) as r:
                await r.read()
                if r.status != 200:
                    outcome.failed.append((item.filename + suffix, f"tidegate answered {r.status}"))


async def _mismatch(blob, key: str | None, hashes: dict[str, str]) -> str | None:
    """The first of `hashes` the committed blob (open as `blob`, or None if it is gone) does not
    have, or None. A blob the download keyed by its verified sha256 needs no second pass over its
    bytes for that one; any other algorithm, or a blob of unknown key, is hashed."""
    wanted = {n.lower(): v.lower() for n, v in hashes.items() if n.lower() in hashlib.algorithms_available}
    if key is not None and not key.startswith("url-") and "sha256" in wanted:
        if wanted.pop("sha256") != key:
            return "sha256"
    for name, expected in wanted.items():
        if blob is None:
            return name
        blob.seek(0)
        digest = await asyncio.to_thread(hashlib.file_digest, blob, name)
        if digest.hexdigest() != expected:
            return name
    return None


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[str, web.Application]]:
    """A tidegate server in this process on 127.0.0.1 over the settings' data dir: its origin
    and application, for the resolver and the fetches (prefetch), or the closure (prune)."""
    from ..app import make_app

    runner = web.AppRunner(make_app(settings), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", runner.app
    finally:
        await runner.cleanup()


def resolver_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    return env | {"UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


async def closure(session: aiohttp.ClientSession, origin: str, args: argparse.Namespace,
                  outcome: Outcome) -> dict[str, Wanted]:
    """Every file the requirements (resolved for each target) and lock files need, by filename,
    as the server at `origin` lists them; what cannot be resolved goes to outcome.unresolved."""
    env = resolver_env()
    wanted: dict[str, Wanted] = {}
    if args.requirements or args.requirement_files:
        for target in targets(args.pythons, args.platforms):
            try:
                target.uv_platform()
            except ValueError as exc:
                outcome.unresolved.append(("--platform " + str(target.platform), str(exc)))
                continue
            pins = await resolve(origin + "/simple/", target, args.requirements, args.requirement_files,
                                 args.sdists, env, outcome)
            await _choose(session, origin, target, pins, args.sdists, wanted, outcome)
    for lock in args.locks:
        try:
            items = from_lock(lock)
        except (ValueError, KeyError) as exc:
            outcome.unresolved.append((str(lock), str(exc)))
            continue
        for item in items:
            async with session.get(f"{origin}/simple/{item.project}/", headers={"Accept": JSON}) as r:
                await r.read()  # the page, cached for the offline side
            wanted.setdefault(item.filename, item)
    return wanted


async def prefetch(settings: Settings, args: argparse.Namespace) -> Outcome:
    outcome = Outcome()
    async with serving(settings) as (origin, app):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=300)) as session:
            wanted = await closure(session, origin, args, outcome)
            progress = Progress("prefetch", len(wanted))
            queue = list(wanted.values())

            async def worker() -> None:
                while queue:
                    await _fetch(session, origin, app, queue.pop(), outcome)
                    progress.advance()

            await asyncio.gather(*(worker() for _ in range(PARALLEL)))
            progress.finish()
    return outcome


def run(settings: Settings, args: argparse.Namespace) -> int:
    if settings.offline:
        print("tidegate: prefetch needs the upstreams; it cannot run offline", file=sys.stderr)
        return 2
    if not (args.requirements or args.requirement_files or args.locks):
        print("tidegate: prefetch needs requirements, -r files or --lock files", file=sys.stderr)
        return 2
    outcome = asyncio.run(prefetch(settings, args))
    grouped: dict[tuple[str, str], list[str]] = {}  # one line a requirement and reason, naming the targets
    for req, reason in outcome.unresolved:
        why, _, where = reason.partition(" [")
        grouped.setdefault((req, why), []).append(where.rstrip("]"))
    for (req, why), where in grouped.items():
        print(f"unresolved: {req}: {why}" + (f" (for {'; '.join(w for w in where if w)})" if any(where) else ""))
    for filename, reason in outcome.failed:
        print(f"failed: {filename}: {reason}")
    print(f"{outcome.fetched} files fetched, {outcome.present} already cached, "
          f"{len(outcome.unresolved)} requirements unresolved, {len(outcome.failed)} files failed")
    return 1 if outcome.unresolved or outcome.failed else 0
