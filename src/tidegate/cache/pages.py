"""Cached project pages: the upstream answers they came from, and their rendered bodies.

Render once, serve many: a page's HTML and JSON bodies and ETags are computed when its content
changes and stored with it (diskcache, shared by all workers and kept across restarts). Each worker
also keeps recently served pages in memory, bounded in bytes, so the hot path is a dict lookup.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import diskcache

from ..simple.html_page import render_project_html
from ..simple.json_page import render_project_json
from ..simple.model import Project
from ..simple.negotiate import Representation
from ..upstream.client import Validators


@dataclass(frozen=True, slots=True)
class Part:
    """What one upstream said about a project."""

    upstream: str
    project: Project
    validators: Validators


@dataclass(slots=True)
class PageRecord:
    name: str
    parts: tuple[Part, ...]  # upstreams that have the project, priority order; empty: unknown
    served: Project | None  # what we show (after merge policy and cooldown); None: unknown
    fetched_at: float  # last time the upstreams confirmed this (wall clock)
    changed_at: float  # last time `served` changed
    bodies: dict[Representation, bytes] = field(default_factory=dict)
    etags: dict[Representation, str] = field(default_factory=dict)
    last_modified: str = ""  # changed_at as an HTTP date, formatted once

    @property
    def found(self) -> bool:
        return self.served is not None

    @property
    def weight(self) -> int:
        return sum(len(b) for b in self.bodies.values()) + 256


def file_link(project: str, filename: str) -> str:
    """The URL of a file relative to its project page. Relative, so that the same rendered body
    is right under /simple/ and under any prefix (a stage URL, a reverse proxy's path)."""
    return f"../../files/{quote(project)}/{quote(filename)}"


def public_view(project: Project) -> Project:
    """The project as our clients see it: every file link points at us, and every wheel
    advertises a PEP 658 metadata file (we extract one when the upstream has none)."""
    files = tuple(
        replace(
            f,
            url=file_link(project.name, f.filename),
            core_metadata=f.core_metadata or (True if f.is_wheel else f.core_metadata),
        )
        for f in project.files
    )
    return replace(project, files=files)


def render(record: PageRecord) -> None:
    """Fill in the bodies and strong ETags of every representation of a found page."""
    record.last_modified = http_date(record.changed_at)
    if record.served is None:
        return
    view = public_view(record.served)
    html = render_project_html(view)
    json_body = render_project_json(view)
    html_tag = hashlib.sha256(html).hexdigest()[:32]
    json_tag = hashlib.sha256(json_body).hexdigest()[:32]
    record.bodies = {Representation.JSON: json_body, Representation.HTML: html, Representation.TEXT: html}
    # Same HTML body, different Content-Type: different representations, so different ETags.
    record.etags = {
        Representation.JSON: f'"{json_tag}"',
        Representation.HTML: f'"{html_tag}-v1"',
        Representation.TEXT: f'"{html_tag}"',
    }


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


class PageStore:
    def __init__(self, directory: Path, memory_limit: int) -> None:
        self._disk = diskcache.Cache(str(directory), size_limit=8 * 1024**3, eviction_policy="least-recently-stored")
        self._memory: OrderedDict[str, PageRecord] = OrderedDict()
        self._memory_bytes = 0
        self._memory_limit = memory_limit
        self._listed: set[str] = set()  # names this worker knows are listed: skips a write

    def close(self) -> None:
        self._disk.close()

    def get(self, name: str) -> PageRecord | None:
        """The newest record this worker knows: its memory, else the shared disk cache."""
        record = self._memory.get(name)
        if record is not None:
            self._memory.move_to_end(name)
            return record
        return self.load(name)

    def load(self, name: str) -> PageRecord | None:
        """The record on disk (another worker may have refreshed it), remembered in memory."""
        record = self._disk.get(("page", name))
        if record is not None:
            self._remember(record)
        return record

    def put(self, record: PageRecord) -> None:
        self._disk.set(("page", record.name), record)
        # A separate small key per listed project keeps the root list cheap to build; it is
        # written only when it changes, since every diskcache write takes the shared write lock.
        if record.found and record.name not in self._listed:
            self._disk.set(("listed", record.name), True)
            self._listed.add(record.name)
        elif not record.found and (record.name in self._listed or ("listed", record.name) in self._disk):
            self._disk.delete(("listed", record.name))
            self._listed.discard(record.name)
        self._remember(record)

    def names(self) -> list[str]:
        """Projects with a cached page: what the root /simple/ lists (we never fetch an
        upstream's root list, which for PyPI is hundreds of thousands of names)."""
        return sorted(key[1] for key in self._disk.iterkeys() if key[0] == "listed")

    def get_metadata(self, key: str) -> bytes | None:
        return self._disk.get(("metadata", key))

    def put_metadata(self, key: str, metadata: bytes) -> None:
        self._disk.set(("metadata", key), metadata)

    def _remember(self, record: PageRecord) -> None:
        old = self._memory.pop(record.name, None)
        if old is not None:
            self._memory_bytes -= old.weight
        self._memory[record.name] = record
        self._memory_bytes += record.weight
        while self._memory_bytes > self._memory_limit and len(self._memory) > 1:
            _, evicted = self._memory.popitem(last=False)
            self._memory_bytes -= evicted.weight

