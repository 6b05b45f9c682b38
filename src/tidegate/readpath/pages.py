"""A page as served: one resource in every representation, each rendered once, on first use.

Render once, serve many: a Page is made when its content changes (or is loaded), and each
representation's body and strong ETag, in each content coding, are computed the first time a
client asks for it and then kept with the page, so serving a warm page is a lookup and a write.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import zlib
from email.utils import formatdate
from typing import Callable, Iterable, NamedTuple
from urllib.parse import quote

import zstandard
from msgspec.structs import replace

from ..simple.html_page import render_index_html, render_project_html
from ..simple.json_page import render_index_json, render_project_json
from ..simple.model import Project
from ..simple.negotiate import Encoding, Representation
from ..storage.records import PageRecord


def file_link(project: str, filename: str) -> str:
    """The URL of a file relative to its project page. Relative, so that the same rendered body
    is right under /simple/ and under any prefix (a stage URL, a reverse proxy's path)."""
    return f"../../files/{_quoted(project)}/{_quoted(filename)}"


_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")


def _quoted(segment: str) -> str:
    # quote() costs a microsecond a call, thousands of times a page; most names need nothing.
    return segment if _UNRESERVED.fullmatch(segment) else quote(segment)


def public_view(project: Project) -> Project:
    """The project as our clients see it: every file link points at us, every wheel advertises a
    PEP 658 metadata file (we extract one when the upstream has none), and provenance (PEP 740)
    is served by us too, so that it is there offline."""
    files = tuple(
        replace(f, url=(link := file_link(project.name, f.filename)),
                core_metadata=f.core_metadata or (True if f.is_wheel else f.core_metadata),
                provenance=link + ".provenance" if f.provenance is not None else None)
        for f in project.files
    )
    return replace(project, files=files)


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


COMPRESS_ABOVE = 1024  # bytes; a smaller body is sent as it is
BIG_PAGE = 256 * 1024  # bytes, or files on a page: rendered and compressed in a thread
GZIP_LEVEL = 6
ZSTD_LEVEL = 3


def compress(body: bytes, encoding: Encoding) -> bytes:
    if encoding is Encoding.GZIP:
        gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: the gzip container, mtime 0
        return gz.compress(body) + gz.flush()
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(body)


class Rendered(NamedTuple):
    body: bytes
    etag: str
    encoding: Encoding  # as sent: identity for bodies too small to be worth compressing


class Page:
    """One page in every representation and content coding, each rendered (or compressed) the
    first time a client asks for it, then kept. text/html and the v1 HTML type share a body but
    not an ETag: they are different representations; so is each content coding."""

    __slots__ = ("record", "changed_at", "last_modified", "fresh_until", "_html", "_json", "_big", "_done",
                 "_pending", "_weight")

    def __init__(self, render_html: Callable[[], bytes], render_json: Callable[[], bytes], changed_at: float,
                 record: PageRecord | None = None, *, big: bool = False) -> None:
        self.record = record
        self.changed_at = changed_at
        self.last_modified = http_date(changed_at)
        self._html = render_html
        self._json = render_json
        self._big = big
        self._done: dict[tuple[Representation, Encoding], Rendered] = {}
        self._pending: dict[tuple[Representation, Encoding], asyncio.Future[Rendered]] = {}
        self._weight = 256
        self.fresh_until = 0.0  # set by whoever knows how long the page's source keeps it fresh

    @classmethod
    def of_record(cls, record: PageRecord) -> Page:
        """The page of a project record (one that did not find the project has no bodies)."""
        view: list[Project] = []

        def public() -> Project:
            if not view:
                view.append(public_view(record.served))  # type: ignore[arg-type]
            return view[0]

        files = len(record.served.files) if record.served is not None else 0
        return cls(lambda: render_project_html(public()), lambda: render_project_json(public()),
                   record.changed_at, record, big=files > BIG_PAGE // 256)

    @classmethod
    def of_names(cls, names: Iterable[str], changed_at: float) -> Page:
        """The root list of projects."""
        listed = tuple(names)
        return cls(lambda: render_index_html(listed), lambda: render_index_json(listed), changed_at,
                   big=len(listed) > BIG_PAGE // 64)

    def renewed(self, record: PageRecord) -> Page:
        """This page for a newer record of the same content (revalidated): renderings kept."""
        page = Page(self._html, self._json, self.changed_at, record, big=self._big)
        page._done, page._weight = self._done, self._weight
        return page

    def cached(self, rep: Representation, encoding: Encoding = Encoding.IDENTITY) -> Rendered | None:
        return self._done.get((rep, encoding))

    async def rendered(self, rep: Representation, encoding: Encoding = Encoding.IDENTITY) -> Rendered:
        """The body and strong ETag of a representation in a content coding; big pages are
        rendered in a thread, so the event loop keeps serving meanwhile. Concurrent requests for
        the same one wait for a single rendering."""
        key = (rep, encoding)
        done = self._done.get(key)
        if done is not None:
            return done
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = asyncio.ensure_future(self._make(rep, encoding))
            pending.add_done_callback(lambda _f, key=key: self._pending.pop(key, None))
        return await asyncio.shield(pending)

    async def _make(self, rep: Representation, encoding: Encoding) -> Rendered:
        identity = self._done.get((rep, Encoding.IDENTITY))
        if identity is None:
            body = await self._work(self._json if rep is Representation.JSON else self._html_body)
            identity = self._store(rep, Encoding.IDENTITY, body, body)
        if encoding is Encoding.IDENTITY or len(identity.body) < COMPRESS_ABOVE:
            self._done[rep, encoding] = identity  # the same body: no weight added
            return identity
        packed = await self._work(lambda: compress(identity.body, encoding)) if self._big \
            else compress(identity.body, encoding)
        return self._store(rep, encoding, identity.body, packed)

    async def _work(self, fn: Callable[[], bytes]) -> bytes:
        return await asyncio.to_thread(fn) if self._big else fn()

    def _html_body(self) -> bytes:
        for rep in (Representation.HTML, Representation.TEXT):
            if (rep, Encoding.IDENTITY) in self._done:
                return self._done[rep, Encoding.IDENTITY].body
        return self._html()

    def _store(self, rep: Representation, encoding: Encoding, identity: bytes, body: bytes) -> Rendered:
        tag = hashlib.sha256(identity).hexdigest()[:32]
        suffix = {Representation.JSON: "", Representation.HTML: "-v1", Representation.TEXT: ""}[rep]
        rendered = Rendered(body, f'"{tag}{suffix}{encoding.etag_suffix}"', encoding)
        if all(r.body is not body for r in self._done.values()):
            self._weight += len(body)  # a body shared by representations counts once
        self._done[rep, encoding] = rendered
        return rendered

    async def same_content(self, other: Page) -> bool:
        mine, theirs = await self.rendered(Representation.JSON), await other.rendered(Representation.JSON)
        return mine.etag == theirs.etag

    @property
    def weight(self) -> int:
        """Bytes held, for the memory bound (a body shared by representations counted once)."""
        return self._weight
