"""The local index as the read path sees it: project pages built from published files, and
stage views that overlay one session's completed files on the regular index.

Pages are rendered once per change of the store (another worker's commits included, detected
with SQLite's data_version), then served from memory like cached upstream pages.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..cache.blobs import BlobStore
from ..cache.pages import PageRecord, file_link, render
from ..simple.model import File, Project
from .store import PublishedFile, Session, Store, Upload
from . import states


class LocalIndex:
    def __init__(self, data_dir: Path) -> None:
        self.store = Store(data_dir / "local" / "index.db")
        # Uploaded files are never evicted: the size limit is effectively infinite.
        self.blobs = BlobStore(data_dir / "local", max_size=2**62)
        self._names: set[str] = set()
        self._pages: dict[object, PageRecord] = {}
        self._seen: tuple[int, int] | None = None
        self._generation = 0

    def close(self) -> None:
        self.store.close()
        self.blobs.close()

    def _sync(self) -> None:
        """Drop what was rendered from an older state of the store."""
        stamp = self.store.stamp()
        if stamp != self._seen:
            self._seen = stamp
            self._generation += 1
            self._names = self.store.local_projects()
            self._pages.clear()

    def generation(self) -> int:
        """Changes whenever the local index (in any worker) changed."""
        self._sync()
        return self._generation

    def has(self, name: str) -> bool:
        self._sync()
        return name in self._names

    def names(self) -> set[str]:
        self._sync()
        return set(self._names)

    def page(self, name: str) -> PageRecord:
        self._sync()
        record = self._pages.get(name)
        if record is None:
            record = self._pages[name] = _record(name, [published_entry(f) for f in self.store.files_of(name)])
        return record

    def stage_page(self, session: Session, base: PageRecord | None) -> PageRecord:
        """The session's project as its stage shows it: what the regular index shows for it (the
        local project, or nothing for a first release) plus the session's completed files."""
        self._sync()
        key = ("stage", session.token)
        record = self._pages.get(key)
        if record is None:
            files = list(base.served.files) if base is not None and base.served is not None else []
            staged = [staged_entry(session.project, u) for u in self.store.uploads(session.token)
                      if u.status == states.COMPLETED]
            record = self._pages[key] = _record(session.project, staged + files)
        return record

    def live_session(self, token: str) -> Session | None:
        """The session behind a stage URL, if it is still open for previews."""
        session = self.store.session(token)
        if session is None or states.is_terminal(session.status) or session.expires_at < time.time():
            return None
        return session


def _record(name: str, files: list[File]) -> PageRecord:
    now = time.time()
    seen: set[str] = set()
    unique = [f for f in files if not (f.filename in seen or seen.add(f.filename))]
    record = PageRecord(name=name, parts=(), served=Project(name=name, files=tuple(unique)), fetched_at=now, changed_at=now)
    render(record)
    return record


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
        provenance=file_link(f.project, f.filename) + ".provenance" if f.attestations else None,
    )


def staged_entry(project: str, u: Upload) -> File:
    return File(
        filename=u.filename,
        url=file_link(project, u.filename),
        hashes=u.hashes,
        requires_python=u.requires_python,
        core_metadata={"sha256": u.metadata_sha256} if u.metadata_sha256 else None,
        size=u.size,
        provenance=file_link(project, u.filename) + ".provenance" if u.attestations else None,
    )
