"""`tidegate verify`: every cached and local file re-hashed against the hashes recorded for it.

Cached files are checked against every hash their page states (and their content address);
local files against the hashes they were published with. `repair` removes corrupt or
unreadable cached files (an online server fetches them again; offline pages stop listing
them) and never removes a local upload: that is reported for the operator to restore.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass, field

from ..cache.keys import blob_key
from ..publish.service import Publisher
from ..storage import BlobStore, Storage
from .progress import Progress

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Problem:
    kind: str  # "cached" or "local"
    filename: str
    what: str  # "corrupt: ..." or "missing"
    repaired: bool = False


@dataclass
class Report:
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)


def _check(fh, size: int | None, hashes: dict[str, str]) -> str | None:
    """What is wrong with the file, or None."""
    digests = {name: hashlib.new(name) for name in hashes if name in hashlib.algorithms_available}
    total = 0
    with fh:
        while chunk := fh.read(1024 * 1024):
            total += len(chunk)
            for d in digests.values():
                d.update(chunk)
    if size is not None and total != size:
        return f"corrupt: {total} bytes, {size} expected"
    for name, d in digests.items():
        if d.hexdigest() != hashes[name]:
            return f"corrupt: {name} does not match"
    return None


async def verify(storage: Storage, publisher: Publisher, *, repair: bool = False) -> Report:
    report = Report()
    # Cached files: what each page says of them, by blob key (one blob may serve several pages).
    expected: dict[str, tuple[str, int | None, dict[str, str]]] = {}
    for name in await storage.pages.names():
        record = await storage.pages.load(name)
        for f in (record.served.files if record is not None and record.served is not None else ()):
            expected.setdefault(blob_key(f), (f.filename, f.size, dict(f.hashes)))
    cached = await storage.cache_blobs.keys()
    local_files, _ = await publisher.published_files(lambda name: True)
    progress = Progress("verify", len(cached) + len(local_files))
    corrupt_cached: list[str] = []
    for key in cached:
        filename, size, hashes = expected.get(key, (key, None, {}))
        if _SHA256.fullmatch(key):
            hashes = {**hashes, "sha256": key}  # the content address, whatever the page says
        what = await _one(storage.cache_blobs, key, size, hashes)
        if what is not None:
            report.problems.append(Problem("cached", filename, what))
            corrupt_cached.append(key)
        report.checked += 1
        progress.advance()
    for pf in local_files:
        what = await _one(storage.local_blobs, pf.sha256 or "", pf.size, {**pf.hashes, "sha256": pf.sha256 or ""})
        if what is not None:
            report.problems.append(Problem("local", pf.filename, what))
        report.checked += 1
        progress.advance()
    progress.finish()
    if repair and corrupt_cached:
        for key in corrupt_cached:
            await storage.cache_blobs.remove(key)
        for problem in report.problems:
            problem.repaired = problem.kind == "cached"
        await storage.pages.mark_changed()  # offline workers stop listing what was removed
    return report


async def _one(store: BlobStore, key: str, size: int | None, hashes: dict[str, str]) -> str | None:
    fh = await store.open(key)
    if fh is None:
        return "missing"
    try:
        return await asyncio.to_thread(_check, fh, size, hashes)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
