"""The publishing service: everything both upload APIs do, as one application service.

Handlers parse the request, authenticate the user and call one method here; every rule (rights,
names, files, the PEP 694 state machines, the shadowing guard) is applied here, once, and every
refusal is a PublishError. State changes are functions over the index rows run in one
transaction each (storage decides nothing); every status change goes through the transition
tables of states.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, Iterable, Mapping

from ..cache.sink import HashingSink
from ..config import Settings, User
from ..simple.names import NormalizedName, is_sdist
from ..storage import BlobStore, IndexStore, Locks
from ..storage.index import IndexRows
from ..storage.leases import acquire_all, release_all
from ..storage.protocols import Lease
from ..storage.records import PublishedFile, Session, Upload
from . import audit, states
from .actor import Actor, as_actor
from .errors import Conflict, Denied, Invalid, NotFound, PublishError, Unavailable
from .protocol import MECHANISM
from .rows import end_session, extend_session, file_changed, referenced, transition_upload
from .states import FileEvent, FileState, SessionEvent, SessionState

if TYPE_CHECKING:
    from .validate import Inspected

# validate.py (email, packaging.metadata, the archive formats) is imported by the methods that
# check what a client sends: the air-gap commands use this service but never validate an upload.

log = logging.getLogger(__name__)

# Does an upstream serve a project of this name? Its name, or None; Unavailable if unknown now.
UpstreamServes = Callable[[NormalizedName], Awaitable[str | None]]

MAX_EXTENSION = 10 * 365 * 86400.0  # beyond any configurable maximum lifetime
PROJECT_LOCK, BLOB_LOCK = "local-project:", "local-blob:"  # see Publisher.holding
VALIDATING = "validate:"  # the lock a background validation of an upload holds, by upload id
GARBAGE_GRACE = 3600.0  # an unreferenced local blob younger than this may still be on its way in
LEGACY_DIGESTS = {"md5_digest": "md5", "sha256_digest": "sha256", "blake2_256_digest": "blake2_256"}


@dataclass(frozen=True, slots=True)
class Received:
    """An upload's bytes in a temp file, with every digest asked for."""

    temp: Path
    size: int
    sha256: str
    digests: dict[str, str]


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session and its file uploads, as its status reports them."""

    session: Session
    uploads: tuple[Upload, ...]


async def no_upstream(name: NormalizedName) -> None:
    """The name check of commands that never register a name (recovery, yank)."""
    return None


def new_token() -> str:
    """An unguessable token: 192 bits from the OS's CSPRNG."""
    return secrets.token_urlsafe(24)


def upload_time(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def already_exists(filename: str) -> str:
    """The refusal twine's --skip-existing recognises (it looks for "File already exists")."""
    return (f"File already exists: {filename} was published with other contents; published files never "
            "change, so upload it under a new version.")


Who = Actor | User
SWEEP = Actor(User("tidegate", "", ()), address="local")  # the audit log's actor for expiry and bundle imports


def reused(filename: str) -> str:
    return (f"File already exists: {filename} was deleted from this index, and a file name never comes back "
            "with other contents (caches keep the old bytes); upload it under a new version.")


def require_right(who: Who, project: str) -> None:
    """Checked on every request, as PEP 694 requires: rights can change while a session is open."""
    if not who.may_upload(project):
        actor = as_actor(who)
        if actor.token and actor.user.may_upload(project):
            raise Denied(f"API token {actor.token} of {actor.name} is not scoped to {project}.",
                         source="Authorization")
        raise Denied(f"User {who.name} may not upload to {project}.", source="Authorization")


class Publisher:
    def __init__(self, settings: Settings, index: IndexStore, blobs: BlobStore, upstream_serves: UpstreamServes,
                 clock: Callable[[], float] = time.time, *, locks: Locks | None = None) -> None:
        self.settings = settings
        self._index = index
        # Held by a background validation, so that another instance's start-up (recover) on a
        # shared index leaves it running rather than failing it.
        self._locks = locks
        self._blobs = blobs
        self._upstream_serves = upstream_serves
        self._clock = clock
        self._background: set[asyncio.Task] = set()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # --- publishing sessions ---

    async def create_session(self, user: Who, name: object, version: object) -> SessionView:
        from .validate import check_name_version

        if not isinstance(name, str) or not isinstance(version, str):
            raise Invalid("name and version are required strings.", source="name")
        project, version = check_name_version(name, version)
        require_right(user, project)  # 403 before 409: do not disclose a session to outsiders
        await self._check_new_name(project)
        now, token = self._clock(), new_token()

        def create(rows: IndexRows) -> Session:
            live = [s for s in rows.sessions_of(project, version) if s.status in states.LIVE]
            if live:
                raise Conflict(f"A publishing session for {project} {version} is already in progress; use it.",
                               source="session", location=live[0].token)
            rows.register(project, now)
            session = Session(token=token, project=project, version=version, status=states.SESSION_INITIAL,
                              created_at=now, expires_at=now + self.settings.session_lifetime)
            rows.insert_session(session)
            audit.record(rows, as_actor(user), now, "session-create", f"{project} {version}")
            return session

        return SessionView(await self._index.write(create), ())

    async def session(self, user: Who, token: str, *, allow_ended: bool = False) -> SessionView:
        """A session, authorized for this user. Ended sessions keep only their status URL
        (allow_ended); their other URLs answer 404."""
        view = await self._view(token)
        if view is not None and view.session.status in states.EXPIRABLE and view.session.expires_at < self._clock():
            await self.expire_now()  # past expires-at is expired now, not at the next sweep
            view = await self._view(token)
        if view is None:
            raise NotFound("No such publishing session (it may have expired and been purged).")
        require_right(user, view.session.project)
        if not allow_ended and view.session.status == SessionState.CANCELED:
            raise NotFound("This publishing session was canceled; its data is gone.")
        return view

    async def _view(self, token: str) -> SessionView | None:
        def read(rows: IndexRows) -> SessionView | None:
            session = rows.session(token)
            return SessionView(session, tuple(rows.uploads(token))) if session else None

        return await self._index.read(read)

    async def cancel(self, user: Who, token: str) -> SessionView:
        view = await self.session(user, token, allow_ended=True)
        now = self._clock()

        def cancel(rows: IndexRows) -> list[str]:
            orphans = end_session(rows, token, SessionEvent.CANCEL, now, ())
            audit.record(rows, as_actor(user), now, "cancel", f"{view.session.project} {view.session.version}")
            return orphans

        orphans = await self._index.write(cancel)
        await self._remove_unreferenced(orphans)
        return await self.session(user, token, allow_ended=True)

    async def publish(self, user: Who, token: str) -> SessionView:
        view = await self.session(user, token)
        async with self.holding(projects=[view.session.project]):
            return await self._publish(user, token)

    async def _publish(self, user: Who, token: str) -> SessionView:
        now = self._clock()

        def publish(rows: IndexRows) -> None:
            session = rows.session(token)
            assert session is not None
            # The table decides whether this state may publish at all (Refused, 409, if not).
            published = states.session_transition(session.status, SessionEvent.PUBLISH_IMMEDIATE)
            if session.expires_at < now:
                raise NotFound("The session has expired.", source="session")
            uploads = [u for u in rows.uploads(token) if u.status != FileState.CANCELED]
            unfinished = [u for u in uploads if u.status != FileState.COMPLETED]
            if unfinished:
                try:
                    states.session_transition(session.status, SessionEvent.PUBLISH_INCOMPLETE)
                except states.Refused as exc:
                    raise Conflict(exc.message + " Not completed: " + ", ".join(
                        f"{u.filename} is {u.status}" for u in unfinished) + ".", source="session",
                        files=[u.filename for u in unfinished]) from None
            # Every refusal below is "publish request fails synchronously": the state stays.
            states.session_transition(session.status, SessionEvent.PUBLISH_FAILED_SYNC)
            if not uploads:
                raise Invalid("The session has no files to publish; upload at least one.", source="session")
            taken = [u.filename for u in uploads if rows.published(u.filename) is not None]
            if taken:
                raise Conflict("Already published, and published files never change: " + ", ".join(taken) + ".",
                               source="session", files=taken)
            reborn = [u.filename for u in uploads if rows.deleted(u.filename) not in (None, u.sha256)]
            if reborn:
                raise Conflict(reused(reborn[0]), source="session", files=reborn)
            sdists = [u.filename for u in uploads if is_sdist(u.filename)] + [
                f.filename for f in rows.files_of(session.project) if f.version == session.version and is_sdist(f.filename)]
            if len(sdists) > 1:
                raise Conflict("A release has one source distribution; these compete: " + ", ".join(sdists) + ".",
                               source="session", files=sdists)
            stamp = upload_time(now)
            for u in uploads:
                # The sha256 we computed is always advertised, whatever the client declared.
                rows.insert_file(PublishedFile(
                    filename=u.filename, project=session.project, version=session.version, sha256=u.sha256,
                    hashes={**u.hashes, "sha256": u.sha256 or ""}, size=u.size, upload_time=stamp,
                    requires_python=u.requires_python, metadata_sha256=u.metadata_sha256,
                    attestations=u.attestations), session=token)
            rows.update_session(token, status=published, ended_at=now)
            audit.record(rows, as_actor(user), now, "publish", f"{session.project} {session.version}",
                         files=[u.filename for u in uploads])

        await self._index.write(publish)
        return await self.session(user, token, allow_ended=True)

    async def extend(self, user: Who, token: str, seconds: float) -> SessionView:
        view = await self.session(user, token)
        session = view.session
        if session.status in states.EDITABLE:
            # A suggestion: honoured up to the configured maximum age, never moved earlier.
            until = min(session.expires_at + _extension(seconds),
                        session.created_at + self.settings.session_max_lifetime)
            await self._index.write(lambda rows: self._extend(rows, user, session, token, until))
        return await self.session(user, token)

    def _extend(self, rows: IndexRows, user: Who, session: Session, token: str, until: float,
                filename: str | None = None) -> None:
        extend_session(rows, token, until)
        audit.record(rows, as_actor(user), self._clock(), "extend", f"{session.project} {session.version}",
                     file=filename, until=round(until))

    # --- file upload sessions ---

    async def upload(self, user: Who, token: str, upload_id: str, *, allow_ended: bool = False) -> Upload:
        view = await self.session(user, token, allow_ended=allow_ended)
        upload = next((u for u in view.uploads if u.id == upload_id), None)
        if upload is None:
            raise NotFound("No such file upload session.")
        return upload

    async def add_file(self, user: Who, token: str, request: Mapping[str, object]) -> Upload:
        """A new file upload session from a request's filename, size, hashes and mechanism."""
        from .validate import check_filename, check_hashes, check_size

        session = (await self.session(user, token)).session
        filename = request.get("filename")
        if not isinstance(filename, str):
            raise Invalid("filename is a required string.", source="filename")
        check_filename(filename, session.project, session.version)
        size = check_size(request.get("size"), self.settings.max_upload_size)
        hashes = check_hashes(request.get("hashes"))
        mechanism = request.get("mechanism")
        if mechanism != MECHANISM:
            raise Invalid(f"Unsupported upload mechanism {str(mechanism)[:100]!r}; this server offers {MECHANISM}.",
                          source="mechanism", status=422)
        now = self._clock()
        upload = Upload(id=secrets.token_urlsafe(12), token=token, filename=filename, status=states.FILE_INITIAL,
                        size=size, hashes=hashes, mechanism=mechanism, created_at=now, sha256=None,
                        expires_at=min(now + self.settings.session_lifetime, session.expires_at))

        def add(rows: IndexRows) -> Upload:
            current = file_changed(rows, token)  # refused (409) unless the session is editable
            if current.expires_at < now:
                raise NotFound("The session has expired.", source="session")
            if rows.published(filename) is not None:
                raise Conflict(f"{filename} is already published, and published files never change.",
                               source="filename")
            gone = rows.deleted(filename)  # without a declared sha256, publish checks it
            if gone is not None and hashes.get("sha256", gone) != gone:
                raise Conflict(reused(filename), source="filename")
            other = next((u for u in rows.uploads(token) if u.filename == filename and u.status != FileState.CANCELED),
                         None)
            if other is not None:
                raise Conflict(f"{filename} is already in this session ({other.status}); delete that upload first "
                               "to replace it.", source="filename")
            rows.insert_upload(upload)
            return upload

        return await self._index.write(add)

    async def receive_file(self, user: Who, token: str, upload_id: str, chunks: AsyncIterator[bytes],
                           content_length: int | None) -> None:
        """http-post-bytes: the raw file, streamed to disk and checked against the declared size
        and every declared hash before the upload session records it."""
        upload = await self.upload(user, token, upload_id)
        if upload.status not in states.ACCEPTS_BYTES:
            raise Conflict(f"This file upload is {upload.status}; bytes are accepted only while it is pending.",
                           source="status")
        if content_length is not None and content_length != upload.size:
            raise Invalid(f"The body has {content_length} bytes; the upload session declared {upload.size}.",
                          source="Content-Length")
        received = await self.receive(chunks, algorithms=set(upload.hashes), limit=upload.size)
        try:
            if received.size != upload.size:
                raise Invalid(f"Received {received.size} bytes; the upload session declared {upload.size}.",
                              source="content")
            wrong = [name for name, digest in upload.hashes.items() if received.digests[name] != digest]
            if wrong:
                raise Invalid(f"The bytes received do not match the declared {', '.join(wrong)}.", source="hashes")

            def record(rows: IndexRows) -> None:
                transition_upload(rows, upload_id, FileEvent.BYTES_RECEIVED,
                                   "This file upload is {status}; bytes are only accepted while it is pending.")
                rows.update_upload(upload_id, sha256=received.sha256)
                audit.record(rows, as_actor(user), self._clock(), "upload", upload.filename, api="upload-2.0",
                             sha256=received.sha256, size=received.size)

            try:
                async with self.holding(blobs=[received.sha256]):
                    await self._commit(received)
                    await self._index.write(record)
            except PublishError:  # canceled or deleted while the bytes were arriving
                await self._remove_unreferenced([received.sha256])
                raise
        finally:
            self.discard(received)

    async def set_attestations(self, user: Who, token: str, upload_id: str, body: bytes) -> None:
        await self.upload(user, token, upload_id)
        try:
            attestations = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise Invalid("The request body is not valid JSON.", source="body") from None
        if not isinstance(attestations, list) or not attestations or not all(
            isinstance(a, dict) and isinstance(a.get("envelope"), dict) and "verification_material" in a
            for a in attestations
        ):
            raise Invalid("Attestations must be a JSON array of PEP 740 attestation objects.", source="body")

        def record(rows: IndexRows) -> None:
            transition_upload(rows, upload_id, FileEvent.BYTES_RECEIVED,
                               "Attestations must be uploaded before the file upload is completed.")
            rows.update_upload(upload_id, attestations=json.dumps(attestations))

        await self._index.write(record)

    async def complete(self, user: Who, token: str, upload_id: str) -> tuple[Upload, bool]:
        """Validate the uploaded file: (the upload, whether validation goes on in the background)."""
        session = (await self.session(user, token)).session
        upload = await self.upload(user, token, upload_id)
        if upload.status not in states.ACCEPTS_BYTES:
            raise Conflict(f"This file upload is {upload.status}; only a pending upload can be completed.",
                           source="status")
        if upload.sha256 is None:
            message = "No bytes were uploaded before completion; delete this upload and start again."
            await self._finish(upload_id, FileEvent.COMPLETE_FAILED, notice=message)
            raise Invalid(message, source="content")
        if upload.size > self.settings.deferred_validation:
            updated = await self._finish(upload_id, FileEvent.COMPLETE_DEFERRED, strict=True)
            lease = await self._locks.try_acquire(VALIDATING + upload_id) if self._locks else None
            task = asyncio.ensure_future(self._validate(session, upload, deferred=True, lease=lease))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return updated, True
        problem = await self._validate(session, upload, deferred=False)
        if problem is not None:
            raise Invalid(problem, source="content")
        return await self.upload(user, token, upload_id), False

    async def _validate(self, session: Session, upload: Upload, *, deferred: bool, lease: Lease | None = None) -> str | None:
        """Check the archive; move the upload to completed or error. Returns the error, if any."""
        try:
            try:
                inspected = await self._inspect(upload.sha256 or "", upload.filename, session.project, session.version)
                metadata_sha256 = await self._keep_metadata(upload.filename, inspected)
            except PublishError as exc:
                event = FileEvent.PROCESSING_FAILED if deferred else FileEvent.COMPLETE_FAILED
                await self._finish(upload.id, event, notice=exc.message)
                return exc.message
            event = FileEvent.PROCESSING_SUCCEEDED if deferred else FileEvent.COMPLETE_IMMEDIATE
            await self._finish(upload.id, event, requires_python=inspected.requires_python,
                               metadata_sha256=metadata_sha256)
            return None
        finally:
            if lease is not None:
                await lease.release()

    async def _finish(self, upload_id: str, event: FileEvent, *, strict: bool = False, notice: str | None = None,
                      **changes: object) -> Upload:
        """Apply a completion outcome to a file upload. Unless `strict`, an upload deleted or
        canceled meanwhile (allowed while files process) just drops the outcome."""

        def finish(rows: IndexRows) -> Upload:
            current = rows.upload(upload_id)
            assert current is not None
            status = states.file_transition(current.status, event)
            notices = current.notices + ((notice,) if notice else ())
            fields = {k: v for k, v in changes.items() if v is not None}
            rows.update_upload(upload_id, status=status, notices=notices, **fields)
            file_changed(rows, current.token)
            return replace(current, status=status, notices=notices, **fields)

        try:
            return await self._index.write(finish)
        except states.Refused:
            if strict:
                raise
            return await self._index.read(lambda rows: rows.upload(upload_id))

    async def delete_file(self, user: Who, token: str, upload_id: str) -> None:
        await self.upload(user, token, upload_id)

        def delete(rows: IndexRows) -> list[str]:
            upload = rows.upload(upload_id)
            assert upload is not None
            file_changed(rows, token)  # a file is deleted: refused (409) unless the session is editable
            rows.update_upload(upload_id, status=states.file_transition(upload.status, FileEvent.DELETE))
            session = rows.session(token)
            audit.record(rows, as_actor(user), self._clock(), "delete-staged", upload.filename,
                         session=f"{session.project} {session.version}" if session else None, sha256=upload.sha256)
            return [upload.sha256] if upload.sha256 else []

        await self._remove_unreferenced(await self._index.write(delete))

    async def extend_file(self, user: Who, token: str, upload_id: str, seconds: float) -> Upload:
        view = await self.session(user, token)
        upload = await self.upload(user, token, upload_id)
        # A file upload lives as long as its session at most; extending the file extends both.
        until = min(upload.expires_at + _extension(seconds),
                    view.session.created_at + self.settings.session_max_lifetime)
        if upload.status != FileState.CANCELED and view.session.status in states.EDITABLE:
            await self._index.write(lambda rows: self._extend(rows, user, view.session, token, until, upload.filename))
        return await self.upload(user, token, upload_id)

    # --- stage previews ---

    async def stage(self, token: str) -> SessionView | None:
        """The session behind a stage URL, while it is open for previews."""
        view = await self._view(token)
        if view is None or view.session.status in states.SESSION_TERMINAL or view.session.expires_at < self._clock():
            return None
        return view

    # --- the legacy API ---

    async def legacy_upload(self, user: Who, fields: Mapping[str, str], received: Received, filename: str) -> bool:
        """Publish one file uploaded through the legacy API; False if the same file was already
        published (a re-upload changes nothing). The caller discards `received`."""
        from .validate import check_filename, check_name_version

        project, version = check_name_version(fields.get("name", ""), fields.get("version", ""))
        check_filename(filename, project, version)
        require_right(user, project)
        for field, algorithm in LEGACY_DIGESTS.items():
            given = fields.get(field, "").strip().lower()
            if given and given != received.digests[algorithm]:
                raise Invalid(f"{field} does not match the uploaded file; the upload was corrupted or the digest is "
                              "wrong.", source=field)
        existing = await self._index.read(lambda rows: rows.published(filename))
        if existing is not None:  # before any content check: twine --skip-existing looks for this
            if existing.sha256 == received.sha256:
                return False
            raise Invalid(already_exists(filename), source="content")
        await self._check_new_name(project)
        try:
            async with self.holding(projects=[project], blobs=[received.sha256]):
                return await self._legacy_publish(user, received, filename, project, version, fields)
        except PublishError:
            await self._remove_unreferenced([received.sha256])
            raise

    async def _legacy_publish(self, user: Who, received: Received, filename: str, project: NormalizedName,
                              version: str, fields: Mapping[str, str]) -> bool:
        await self._commit(received)
        inspected = await self._inspect(received.sha256, filename, project, version)
        metadata_sha256 = await self._keep_metadata(filename, inspected)
        attestations = fields.get("attestations")
        now = self._clock()
        file = PublishedFile(filename=filename, project=project, version=version, sha256=received.sha256,
                             hashes={"sha256": received.sha256}, size=received.size, upload_time=upload_time(now),
                             requires_python=inspected.requires_python, metadata_sha256=metadata_sha256,
                             attestations=attestations if attestations and _is_json_list(attestations) else None)

        def add(rows: IndexRows) -> bool:
            existing = rows.published(filename)
            if existing is not None:
                if existing.sha256 == file.sha256:
                    return False
                raise Invalid(already_exists(filename), source="content")
            if rows.deleted(filename) not in (None, file.sha256):
                raise Invalid(reused(filename), source="content")
            if is_sdist(filename):
                other = [f.filename for f in rows.files_of(project) if f.version == version and is_sdist(f.filename)]
                if other:
                    raise Invalid(f"A release has one source distribution, and {version} has {other[0]}.",
                                  source="content")
            rows.register(project, now)
            rows.insert_file(file, session=None)
            audit.record(rows, as_actor(user), now, "upload", filename, api="legacy", sha256=file.sha256,
                         size=file.size)
            return True

        return await self._index.write(add)

    # --- air-gap bundles (tidegate export / import) ---

    async def published_files(self, wanted: Callable[[str], bool]) -> tuple[list[PublishedFile], dict[str, bytes]]:
        """The published files of the local projects `wanted` selects, and their metadata files."""

        def read(rows: IndexRows) -> tuple[list[PublishedFile], dict[str, bytes]]:
            files = [f for p in sorted(rows.local_projects()) if wanted(p) for f in rows.files_of(p)]
            metadata = {f.metadata_sha256: body for f in files
                        if f.metadata_sha256 and (body := rows.metadata(f.metadata_sha256)) is not None}
            return files, metadata

        return await self._index.read(read)

    async def bundle_imported(self, bundle: str) -> bool:
        return await self._index.read(lambda rows: rows.bundle_imported(bundle))

    async def import_bundle(self, bundle: str, base: str | None, files: list[PublishedFile],
                            metadata: dict[str, bytes], as_of: float) -> list[str]:
        """Publish a bundle's local files (their blobs committed already) and record the bundle,
        in one transaction: all of it, or nothing (Invalid if a file of the same name was
        published here with other contents). Yank states follow the bundle's, project by
        project, unless a copy read later (`as_of`: when the exporting side read them) was
        imported already: then the bundle's rows of that project are left out, and it is
        among the projects returned."""
        now = self._clock()

        def apply(rows: IndexRows) -> list[str]:
            # A copy read later wins over one read earlier (their order of import does not matter).
            older = sorted({f.project for f in files if (rows.imported_as_of(f.project) or as_of) > as_of})
            for project in {f.project for f in files} - set(older):
                rows.set_imported_as_of(project, as_of)
            for f in files:
                if f.project in older:
                    continue
                existing = rows.published(f.filename)
                if existing is None and rows.deleted(f.filename) not in (None, f.sha256):
                    raise Invalid(f"{f.filename} was deleted here and cannot come back with other contents.",
                                  source="content")
                if existing is None:
                    rows.register(f.project, now)
                    rows.insert_file(f, session=None)
                elif existing.sha256 != f.sha256:
                    raise Invalid(already_exists(f.filename), source="content")
                else:
                    rows.set_yanked_state(f.filename, f.yanked)
            for digest, body in metadata.items():
                rows.put_metadata(digest, body)
            rows.record_bundle(bundle, base, now)
            audit.record(rows, SWEEP, now, "import", bundle, base=base, files=len(files) or None,
                         older=older or None)
            return older

        return await self._index.write(apply)

    # --- administration ---

    async def yank(self, who: Who, filename: str, reason: str | None) -> PublishedFile:
        """Yank a published file (reason "" for none) or, with None, un-yank it (PEP 592)."""
        await self._published(who, filename)
        now = self._clock()

        def yank(rows: IndexRows) -> PublishedFile:
            file = self._still_published(rows, filename)
            rows.set_yanked(filename, reason)
            audit.record(rows, as_actor(who), now, "unyank" if reason is None else "yank", filename, reason=reason)
            return replace(file, yanked=reason)

        return await self._index.write(yank)

    async def yank_release(self, who: Who, name: str, version: str, reason: str | None) -> list[PublishedFile]:
        """Yank (or un-yank) every file of a local release, as PyPI yanks releases."""
        project, version = await self._release(who, name, version)
        now = self._clock()

        def yank(rows: IndexRows) -> list[PublishedFile]:
            files = [f for f in rows.files_of(project) if f.version == version]
            for f in files:
                rows.set_yanked(f.filename, reason)
            audit.record(rows, as_actor(who), now, "unyank" if reason is None else "yank", f"{project} {version}",
                         reason=reason, files=[f.filename for f in files])
            return [replace(f, yanked=reason) for f in files]

        return await self._index.write(yank)

    async def delete_published(self, who: Who, filename: str) -> PublishedFile:
        """Remove a published file from the local index for good (its bytes too, unless a live
        upload shares them). Installers that pinned it fail from now on: yanking is the gentle way."""
        await self._published(who, filename)
        now = self._clock()

        def delete(rows: IndexRows) -> PublishedFile:
            file = self._still_published(rows, filename)
            rows.delete_file(filename, file.sha256 or "")
            audit.record(rows, as_actor(who), now, "delete", filename, sha256=file.sha256)
            return file

        file = await self._index.write(delete)
        await self._remove_unreferenced([file.sha256] if file.sha256 else [])
        return file

    async def delete_release(self, who: Who, name: str, version: str) -> list[PublishedFile]:
        """Remove every file of a local release, in one transaction."""
        project, version = await self._release(who, name, version)
        now = self._clock()

        def delete(rows: IndexRows) -> list[PublishedFile]:
            files = [f for f in rows.files_of(project) if f.version == version]
            for f in files:
                rows.delete_file(f.filename, f.sha256 or "")
            audit.record(rows, as_actor(who), now, "delete", f"{project} {version}",
                         files=[f.filename for f in files])
            return files

        files = await self._index.write(delete)
        await self._remove_unreferenced([f.sha256 for f in files if f.sha256])
        return files

    async def open_sessions(self, who: Who) -> list[SessionView]:
        """The live sessions of every project this caller may upload: a lost session URL is
        found again here (PEP 694 lets any authorized publisher work on a session)."""
        now = self._clock()

        def read(rows: IndexRows) -> list[SessionView]:
            return [SessionView(s, tuple(rows.uploads(s.token))) for s in rows.sessions_live()
                    if s.status in states.LIVE and s.expires_at >= now and who.may_upload(s.project)]

        return await self._index.read(read)

    async def _published(self, who: Who, filename: str) -> PublishedFile:
        """A published file this caller may manage: 404 if there is none, 403 if not theirs."""
        file = await self._index.read(lambda rows: rows.published(filename))
        if file is None:
            raise NotFound(f"{filename} is not a published file of the local index.", source="filename")
        require_right(who, file.project)
        return file

    @staticmethod
    def _still_published(rows: IndexRows, filename: str) -> PublishedFile:
        file = rows.published(filename)
        if file is None:  # deleted since it was authorized
            raise NotFound(f"{filename} is not a published file of the local index.", source="filename")
        return file

    async def _release(self, who: Who, name: str, version: str) -> tuple[NormalizedName, str]:
        from .validate import check_name_version

        project, version = check_name_version(name, version)
        require_right(who, project)
        files = await self._index.read(lambda rows: [f for f in rows.files_of(project) if f.version == version])
        if not files:
            raise NotFound(f"{project} {version} has no published files in the local index.", source="version")
        return project, version

    async def expire_now(self) -> None:
        """Cancel expired sessions and pending uploads (purging their files) and forget ended
        sessions older than the retention period (the sweep runs this periodically)."""
        now = self._clock()
        retention = self.settings.session_retention

        def expire(rows: IndexRows) -> list[str]:
            orphans: list[str] = []
            for session in rows.sessions_expired(now):
                if session.status in states.EXPIRABLE:
                    orphans += end_session(rows, session.token, SessionEvent.EXPIRE, now, ("The session expired.",))
                    audit.record(rows, SWEEP, now, "expire", f"{session.project} {session.version}")
            # Pending uploads past their own expiry are canceled too (their session lives on).
            for upload in rows.uploads_expired(now):
                if upload.status == FileState.PENDING:
                    rows.update_upload(upload.id, status=states.file_transition(upload.status, FileEvent.EXPIRE))
                    orphans += [upload.sha256] if upload.sha256 else []
            for token in rows.sessions_ended_before(now - retention):
                rows.delete_session(token)
            return orphans

        await self._remove_unreferenced(await self._index.write(expire))

    async def recover(self) -> None:
        """After a restart, no deferred completion of ours is running any more: fail it, so the
        client can delete and re-upload the file instead of waiting forever. With locks, those
        another instance (on a shared index) is still validating are left to it."""
        leases: list[Lease] = []
        running: set[str] = set()
        if self._locks is not None:
            for upload in await self._index.read(lambda rows: rows.uploads_in(FileState.PROCESSING)):
                lease = await self._locks.try_acquire(VALIDATING + upload.id)
                if lease is None:
                    running.add(upload.id)
                else:
                    leases.append(lease)

        def recover(rows: IndexRows) -> None:
            for upload in rows.uploads_in(FileState.PROCESSING):
                if upload.id in running:
                    continue
                rows.update_upload(upload.id, status=states.file_transition(upload.status, FileEvent.INTERRUPTED),
                                   notices=upload.notices + ("tidegate restarted while validating this file; "
                                                             "upload it again.",))

        try:
            await self._index.write(recover)
        finally:
            for lease in leases:
                await lease.release()

    async def collect_garbage(self, grace: float = GARBAGE_GRACE) -> None:
        """Delete local blobs that nothing refers to, such as those a crash left between the
        commit of the bytes and the row that would have pointed at them. The grace period keeps
        the blob of an upload still between those two steps."""
        cutoff = self._clock() - grace
        for key in await self._blobs.keys():
            info = await self._blobs.info(key)
            if info is None or info.committed_at < cutoff:
                await self._remove_unreferenced([key])

    # --- bytes ---

    async def receive(self, chunks: AsyncIterator[bytes], *, algorithms: set[str], limit: int) -> Received:
        """Stream an upload to a temp file (never whole in memory), hashing as it goes. The caller
        commits or discards it; a failure here removes it. `algorithms` are hashlib names, plus
        "blake2_256" as the legacy API names BLAKE2b-256."""
        try:
            sink = HashingSink(self._blobs.temp_path("upload"), algorithms | {"sha256"})
        except OSError as exc:
            _raise_if_full(exc)
            raise
        try:
            async for chunk in chunks:
                if sink.size + len(chunk) > limit:
                    raise Invalid(f"The file is larger than the {limit} bytes allowed.", source="content", status=413)
                await sink.write(chunk)
            digests = await sink.finish()
        except OSError as exc:
            await sink.abort()
            _raise_if_full(exc)
            raise
        except BaseException:
            await sink.abort()
            raise
        return Received(sink.path, sink.size, digests["sha256"], digests)

    def discard(self, received: Received) -> None:
        received.temp.unlink(missing_ok=True)

    async def _commit(self, received: Received) -> None:
        try:
            await self._blobs.commit(received.temp, received.sha256)
        except OSError as exc:
            _raise_if_full(exc)
            raise

    async def _inspect(self, sha256: str, filename: str, project: str, version: str) -> Inspected:
        from .validate import inspect_archive

        fh = await self._blobs.open(sha256)
        if fh is None:
            raise Invalid("The uploaded bytes are no longer stored; upload the file again.", source="content")
        with fh:
            return await asyncio.to_thread(inspect_archive, fh, filename, project, version)

    async def _keep_metadata(self, filename: str, inspected: Inspected) -> str | None:
        """Store a wheel's METADATA as its PEP 658 metadata file; returns its sha256."""
        if inspected.kind != "wheel":
            return None
        digest = hashlib.sha256(inspected.metadata).hexdigest()
        await self._index.write(lambda rows: rows.put_metadata(digest, inspected.metadata))
        return digest

    async def _check_new_name(self, project: NormalizedName) -> None:
        """Refuse to register a local project that an upstream serves, unless configured: it
        would shadow the public package for every client of this index."""
        if self.settings.may_shadow(project) or await self._index.read(lambda rows: rows.is_registered(project)):
            return
        upstream = await self._upstream_serves(project)
        if upstream is not None:
            raise Denied(f"{project} is a project on {upstream}; a local upload would shadow it for every client. "
                            "Add it to `shadow` in the configuration if that is intended.", source="name")

    async def _remove_unreferenced(self, sha256s: list[str]) -> None:
        for digest in dict.fromkeys(sha256s):
            # Under the blob's lock: a blob committed but not referenced yet (an upload or an
            # import between its commit and its row) is held by its writer until the row is in.
            async with self.holding(blobs=[digest]):
                if not await self._index.read(lambda rows: referenced(rows, digest)):
                    await self._blobs.remove(digest)

    @contextlib.asynccontextmanager
    async def holding(self, *, projects: Iterable[str] = (), blobs: Iterable[str] = ()) -> AsyncIterator[None]:
        """Hold the locks of these local projects and local blobs (all processes, through the
        storage seam; nothing without locks). A writer holds a project's from its checks through
        the transaction that publishes, and a blob's from its commit until a row refers to it;
        so an import and a concurrent upload of the same project never act on what the other
        is about to change. Taken all at once, in one order: holders never wait in a circle."""
        leases = await self.hold(projects=projects, blobs=blobs)
        try:
            yield
        finally:
            await release_all(leases)

    async def hold(self, *, projects: Iterable[str] = (), blobs: Iterable[str] = ()) -> list[Lease]:
        """The leases of holding(), for a holder whose steps do not nest (release_all them)."""
        if self._locks is None:
            return []
        return await acquire_all(self._locks, [PROJECT_LOCK + p for p in projects] + [BLOB_LOCK + b for b in blobs])


def _extension(seconds: float) -> float:
    return min(seconds, MAX_EXTENSION)


def _raise_if_full(exc: OSError) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise Unavailable("This server's storage is full; the upload was not kept. Try again later.",
                          source="content", status=507) from exc


def _is_json_list(text: str) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except ValueError:
        return False
