"""The air-gap commands: keygen, export, import, verify, prefetch (registered by tidegate.cli)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

COMMANDS = ("keygen", "export", "import", "verify", "prefetch", "prune")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", default=os.environ.get("TIDEGATE_CONFIG"),
                        help="TOML settings file (default: $TIDEGATE_CONFIG, else none)")
    parser.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="the server's data directory")
    parser.add_argument("--upstream", dest="upstreams", action="append", metavar="URL",
                        help="upstream simple index, as for serve (repeat for several)")


def add_parsers(commands: Any) -> None:
    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair for signing bundles",
                                 description="Write a new Ed25519 private key to KEYFILE (mode 0600) and its "
                                             "public key to KEYFILE.pub, for export --sign-key and "
                                             "import --verify-key.")
    keygen.add_argument("keyfile", type=Path)

    export = commands.add_parser("export", help="write the mirror (or part of it) as one bundle file",
                                 description="Write every selected page (PEP 691 JSON), its cached files, "
                                             "metadata and provenance, and the local index's projects to one "
                                             "bundle, with a manifest of every file's size and sha256.")
    export.add_argument("--output", "-o", required=True, type=Path, metavar="BUNDLE")
    export.add_argument("--since", type=Path, metavar="EARLIER_BUNDLE",
                        help="hold only what EARLIER_BUNDLE (and the bundles it extends) lacked")
    export.add_argument("--project", dest="projects", action="append", default=[], metavar="PATTERN",
                        help="only projects matching this name or glob (repeat; default: all)")
    export.add_argument("--sign-key", type=Path, metavar="KEY", help="Ed25519 private key (tidegate keygen)")
    _common(export)

    imp = commands.add_parser("import", help="import a bundle: checked whole, then visible at once",
                              description="Check the bundle's signature (with --verify-key), manifest and every "
                                          "byte, then make all of it visible. A running server sees it without "
                                          "a restart. Importing a bundle twice changes nothing.")
    imp.add_argument("bundle", type=Path)
    signature = imp.add_mutually_exclusive_group()
    signature.add_argument("--verify-key", dest="import_verify_key", metavar="PUBKEY",
                           help="require a signature by this Ed25519 public key (default: the import_verify_key "
                                "setting; with neither, a signed bundle is refused)")
    signature.add_argument("--no-verify-signature", dest="no_verify_signature", action="store_true",
                           help="import a signed bundle without checking who signed it (every byte is still "
                                "checked against the manifest)")
    _common(imp)

    ver = commands.add_parser("verify", help="re-hash every cached and local file",
                              description="Re-hash every cached and local file against its recorded hashes and "
                                          "report each corrupt or missing one (exit status 1 if any).")
    ver.add_argument("--repair", action="store_true",
                     help="remove corrupt cached files (fetched again online); local uploads are only reported")
    _common(ver)

    _add_prefetch(commands, _common)
    _add_prune(commands)


def _duration(raw: str) -> float:
    from ..config import ConfigError, parse_duration

    try:
        return parse_duration("--older-than", raw)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _at_least_one(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of releases, 1 or more, got {raw!r}")
    return int(raw)


def _add_prune(commands) -> None:
    p = commands.add_parser(
        "prune", help="remove cached files that rules select (local uploads only with --local)",
        description="Remove the cached files (with their metadata and provenance) that every rule given selects, "
                    "among the projects chosen (default: all); offline pages stop listing them at once, also on a "
                    "running server. Local uploads are never removed unless --local is given. Give at least one "
                    "rule. With -r or --lock, what the closure needs is resolved as prefetch resolves it, against "
                    "this mirror alone; if any of it cannot be resolved, nothing is removed.")
    p.add_argument("--keep-latest", type=_at_least_one, metavar="N",
                   help="select all but the N latest releases of each project (of those with files here)")
    p.add_argument("--older-than", type=_duration, metavar="AGE",
                   help="select files uploaded more than AGE ago, e.g. 180d (a file without an upload time: "
                        "cached more than AGE ago)")
    p.add_argument("--project", dest="projects", action="append", default=[], metavar="PATTERN",
                   help="only projects matching this name or glob (repeat; default: all)")
    p.add_argument("-r", "--requirement", dest="requirement_files", action="append", default=[], type=Path,
                   metavar="REQUIREMENTS", help="select the files the closure of this requirements file does not need")
    p.add_argument("--lock", dest="locks", action="append", default=[], type=Path, metavar="PYLOCK",
                   help="select the files this pylock.toml does not list")
    _targets(p, sdists="the closure keeps every pinned release's sdist too", no_sdists="wheels only")
    p.add_argument("--local", action="store_true",
                   help="also delete the local uploads the rules select (audited, as a deletion by you; a deleted "
                        "file's name never comes back with other contents)")
    p.add_argument("--dry-run", action="store_true", help="print what would be removed, and remove nothing")
    p.set_defaults(requirements=[])
    _common(p)


def _targets(p: argparse.ArgumentParser, *, sdists: str, no_sdists: str) -> None:
    """The (Python version, platform) targets a closure is resolved for, and whether it holds
    sdists: the same options for prefetch and prune (which keeps a closure)."""
    p.add_argument("--python", dest="pythons", action="append", default=[], metavar="X.Y",
                   help="a target Python version (repeat; default: this interpreter's)")
    p.add_argument("--platform", dest="platforms", action="append", default=[], metavar="TAG",
                   help="a target platform tag, e.g. manylinux_2_28_x86_64, win_amd64 (repeat; default: this machine)")
    sd = p.add_mutually_exclusive_group()
    sd.add_argument("--sdists", dest="sdists", action="store_const", const=True, default=None, help=sdists)
    sd.add_argument("--no-sdists", dest="sdists", action="store_const", const=False, help=no_sdists)


# Here, not in prefetch.py: building the parser must not import aiohttp (every command would pay it).
def _add_prefetch(commands, common) -> None:
    p = commands.add_parser(
        "prefetch", help="cache the dependency closure of requirements for several targets",
        description="Resolve the whole dependency closure (markers and extras included) for every "
                    "(--python, --platform) target with uv, and cache every page, file, .metadata and "
                    "provenance it needs, hash-verified. Re-running fetches only what is missing; what "
                    "cannot be resolved is listed one requirement a line, and the exit status is 1.")
    p.add_argument("requirements", nargs="*", metavar="REQUIREMENT")
    p.add_argument("-r", "--requirement", dest="requirement_files", action="append", default=[], type=Path,
                   metavar="REQUIREMENTS", help="a requirements file (hashes, extras, markers allowed)")
    p.add_argument("--lock", dest="locks", action="append", default=[], type=Path, metavar="PYLOCK",
                   help="a pylock.toml (PEP 751): every file it lists is fetched and checked against its hashes")
    _targets(p, sdists="fetch every pinned release's sdist too",
             no_sdists="wheels only (resolution then uses wheels only); default: an sdist only where no wheel fits")
    common(p)


def run(args: argparse.Namespace, settings_of) -> int:
    """Run an air-gap command; `settings_of(args)` gives the settings (or raises ConfigError)."""
    if args.command == "keygen":
        from .signing import keygen

        try:
            public = keygen(args.keyfile)
        except OSError as exc:
            print(f"tidegate: cannot write {args.keyfile}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"private key: {args.keyfile}\npublic key:  {public}")
        return 0
    settings = settings_of(args)
    if args.command == "prefetch":
        from .prefetch import run as prefetch

        return prefetch(settings, args)
    return asyncio.run(_with_storage(settings, args))


async def _with_storage(settings, args: argparse.Namespace) -> int:
    from ..publish.service import Publisher, no_upstream
    from ..storage import DataDirError, open_storage

    try:
        storage = await open_storage(settings)
    except DataDirError as exc:
        print(f"tidegate: {exc}", file=sys.stderr)
        return 1
    publisher = Publisher(settings, storage.index, storage.local_blobs, no_upstream, locks=storage.locks)
    try:
        if args.command == "export":
            return await _export(storage, publisher, args)
        if args.command == "import":
            return await _import(storage, publisher, args, settings.import_verify_key)
        if args.command == "prune":
            return await _prune(storage, publisher, args, settings)
        return await _verify(storage, publisher, args)
    finally:
        await storage.close()


async def _export(storage, publisher, args) -> int:
    from .export import ExportError, export
    from .signing import KeyFileError

    try:
        done = await export(storage, publisher, args.output, since=args.since, patterns=args.projects,
                            sign_key=args.sign_key)
    except (ExportError, KeyFileError) as exc:
        print(f"tidegate: export failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"tidegate: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    extends = f", extends {done.base}" if done.base else ""
    print(f"bundle {done.bundle}{extends}: {done.pages} pages, {done.files} files, {done.bytes} bytes -> {args.output}")
    return 0


async def _import(storage, publisher, args, verify_key: Path | None) -> int:
    from .imports import Refused, import_bundle
    from .signing import KeyFileError

    try:
        done = await import_bundle(storage, publisher, args.bundle,
                                   verify_key=None if args.no_verify_signature else verify_key,
                                   unchecked_signature=args.no_verify_signature)
    except (Refused, KeyFileError) as exc:
        print(f"tidegate: import refused, nothing changed: {exc}", file=sys.stderr)
        return 1
    if done.already:
        print(f"bundle {done.bundle} was imported already: nothing to do")
    else:
        if done.kept_pages or done.kept_projects:
            print(f"kept the newer copies here of {done.kept_pages} pages"
                  + (f" and of the local projects {', '.join(done.kept_projects)}" if done.kept_projects else "")
                  + " (the bundle's are older)")
        print(f"bundle {done.bundle}: {done.pages} pages, {done.files} files, {done.bytes} bytes imported"
              + ("" if done.checked_signature else " (every byte checked against the manifest, but not who made "
                 "it: " + ("--no-verify-signature)" if args.no_verify_signature else "unsigned)")))
    return 0


async def _prune(storage, publisher, args, settings) -> int:
    from ..admin.commands import operator
    from .prune import Rules, closure_files, prune

    if args.keep_latest is None and args.older_than is None and not (args.requirement_files or args.locks):
        print("tidegate: prune needs a rule: --keep-latest, --older-than, -r or --lock", file=sys.stderr)
        return 2
    closure, problems = await closure_files(settings, args)
    for what, why in problems:
        print(f"unresolved: {what}: {why}")
    if problems:
        print("tidegate: nothing removed: the closure is not complete, and what it lacks would be removed too",
              file=sys.stderr)
        return 1
    rules = Rules(keep_latest=args.keep_latest, older_than=args.older_than, closure=closure)
    report = await prune(storage, publisher, rules, patterns=args.projects, local=args.local, dry_run=args.dry_run,
                         who=operator())
    verb = "would remove" if args.dry_run else "removed"
    for c in report.removed:
        print(f"{verb}: " + (f"local upload {c.filename} (--local)" if c.local else f"cached {c.filename}")
              + f", {c.size} bytes")
    for c in report.local_spared:
        print(f"kept: local upload {c.filename} (selected, but local uploads go only with --local)")
    for c, why in report.failed:
        print(f"failed: {c.filename}: {why}")
    print(f"{len(report.removed)} files, {sum(c.size for c in report.removed)} bytes {verb}"
          + (f"; {len(report.local_spared)} local uploads kept" if report.local_spared else "")
          + (f"; {len(report.failed)} failed" if report.failed else ""))
    return 1 if report.failed else 0


async def _verify(storage, publisher, args) -> int:
    from .verify import verify

    report = await verify(storage, publisher, repair=args.repair)
    unrepaired = 0
    for p in report.problems:
        if p.repaired:
            note = "removed from the cache"
        elif p.kind == "local":
            note = "local upload, NOT removed: restore it from its source"
        else:
            note = "run with --repair to remove it"
        print(f"{p.kind} {p.filename}: {p.what} ({note})")
        unrepaired += not p.repaired
    print(f"{report.checked} files checked, {len(report.problems)} problems"
          + (f", {len(report.problems) - unrepaired} repaired" if args.repair else ""))
    return 1 if unrepaired else 0
