"""The local index as a source of pages and files, and stage previews as an overlay on it.

A local project shadows upstream projects of the same name entirely: the proxy asks this source
first, and whatever it claims, for pages and files alike, no upstream is asked about. Pages are
rendered once per change of the index (by any worker: the index store says when) and then
served from memory like cached upstream pages.
"""

from __future__ import annotations

import json
import time
from typing import Hashable

from ..publish.states import FileState
from ..simple.model import File, Project, dedupe_files
from ..simple.names import NormalizedName
from ..storage import BlobStore, IndexStore
from ..storage.records import LocalFile, PageRecord, PublishedFile, Session, Upload
from .answers import BlobAnswer, BytesAnswer, CacheResult, FileAnswer, FileQuery, PageAnswer, Part, content_type_of
from .errors import NotFound
from .pages import Page, file_link


class LocalSource:
    def __init__(self, index: IndexStore, blobs: BlobStore) -> None:
        self._index = index
        self._blobs = blobs
        self._seen: Hashable = None
        self._names: set[str] = set()
        self._pages: dict[Hashable, Page] = {}

    def changed(self) -> Hashable:
        return self._index.changed()

    async def _sync(self) -> None:
        """Forget what was rendered from an older state of the index."""
        stamp = self._index.changed()
        if stamp != self._seen:
            names = await self._index.read(lambda rows: rows.local_projects())
            self._seen, self._names = stamp, names
            self._pages.clear()

    async def names(self) -> set[str]:
        await self._sync()
        return set(self._names)

    async def has(self, name: str) -> bool:
        await self._sync()
        return name in self._names

    async def _page(self, key: Hashable, load) -> Page:
        page = self._pages.get(key)
        if page is None:
            before = self._index.changed()
            page = await load()
            if before == self._seen:  # not rendered from a state older than the one remembered
                self._pages[key] = page
        return page

    async def page(self, name: NormalizedName, *, revalidate: bool = False) -> PageAnswer | None:
        if not await self.has(name):
            return None

        async def load() -> Page:
            files = await self._index.read(lambda rows: rows.files_of(name))
            return local_page(name, [published_entry(f) for f in files])

        return PageAnswer(await self._page(name, load), CacheResult.LOCAL)

    async def file(self, query: FileQuery, answer: PageAnswer) -> FileAnswer:
        entry = await self._index.read(lambda rows: rows.published(query.filename))
        if entry is None or entry.project != query.project:
            raise NotFound(f"{query.filename} is not a file of project {query.project}.")
        return await self.local_file(entry, query)

    async def local_file(self, entry: LocalFile, query: FileQuery) -> FileAnswer:
        """A local file (published or staged): its bytes, PEP 658 metadata or PEP 740 provenance."""
        if query.part is Part.METADATA:
            digest = entry.metadata_sha256
            body = await self._index.read(lambda rows: rows.metadata(digest)) if digest else None
            if body is None:
                raise NotFound(f"No metadata file is available for {query.filename}.")
            return BytesAnswer(body, "application/octet-stream", how=CacheResult.LOCAL)
        if query.part is Part.PROVENANCE:
            if not entry.attestations:
                raise NotFound(f"No provenance is available for {query.filename}.")
            provenance = {"version": 1, "attestation_bundles": [
                {"publisher": {"kind": "tidegate-upload"}, "attestations": json.loads(entry.attestations)}]}
            return BytesAnswer(json.dumps(provenance).encode(), "application/json", immutable=False)
        fh = await self._blobs.open(entry.sha256 or "")
        if fh is None:
            raise NotFound(f"{query.filename} is missing from local storage.")
        return BlobAnswer(fh, f'"{entry.sha256}"', content_type_of(query.filename), CacheResult.LOCAL)

    async def stage_page(self, session: Session, staged: list[Upload]) -> Page:
        """The session's project as its stage shows it: what the regular index shows for it (the
        local project, or nothing for a first release) plus the session's completed files."""
        base = await self.page(NormalizedName(session.project))

        async def load() -> Page:
            files = list(base.page.record.served.files) if base and base.page.record and base.page.record.served else []
            return local_page(session.project, [staged_entry(session.project, u) for u in staged] + files)

        return await self._page(("stage", session.token, tuple(u.id for u in staged)), load)


class StageSource:
    """One publishing session's completed files, overlaid on its project's local page."""

    def __init__(self, local: LocalSource, session: Session, uploads: list[Upload]) -> None:
        self._local = local
        self._session = session
        self._staged = [u for u in uploads if u.status == FileState.COMPLETED]

    def changed(self) -> Hashable:
        return self._local.changed()

    async def names(self) -> set[str]:
        return {self._session.project}  # a first release that nobody else sees yet

    async def page(self, name: NormalizedName, *, revalidate: bool = False) -> PageAnswer | None:
        if name != self._session.project:
            return None
        return PageAnswer(await self._local.stage_page(self._session, self._staged), CacheResult.STAGE)

    async def file(self, query: FileQuery, answer: PageAnswer) -> FileAnswer:
        entry = next((u for u in self._staged if u.filename == query.filename), None)
        if entry is not None:
            return await self._local.local_file(entry, query)
        if await self._local.has(query.project):
            return await self._local.file(query, answer)
        raise NotFound(f"{query.filename} is not a file of project {query.project}.")


def local_page(name: str, files: list[File]) -> Page:
    now = time.time()
    project = Project(name=name, files=dedupe_files(files))
    return Page.of_record(PageRecord(name=name, parts=(), served=project, fetched_at=now, changed_at=now))


def published_entry(f: PublishedFile) -> File:
    return File(
        filename=f.filename,
        url=file_link(f.project, f.filename),
        hashes=f.hashes,
        requires_python=f.requires_python,
        yanked=(f.yanked or True) if f.yanked is not None else False,
        core_metadata={"sha256": f.metadata_sha256} if f.metadata_sha256 else None,
        size=f.size,
        upload_time=f.upload_time,
        provenance=file_link(f.project, f.filename) + Part.PROVENANCE if f.attestations else None,
    )


def staged_entry(project: str, u: Upload) -> File:
    return File(
        filename=u.filename,
        url=file_link(project, u.filename),
        hashes=u.hashes,
        requires_python=u.requires_python,
        core_metadata={"sha256": u.metadata_sha256} if u.metadata_sha256 else None,
        size=u.size,
        provenance=file_link(project, u.filename) + Part.PROVENANCE if u.attestations else None,
    )
