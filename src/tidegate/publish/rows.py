"""The rules of the local index that run inside one transaction, over the index rows: every
status change through the PEP 694 tables. Called by the publishing service in its `write`s."""

from __future__ import annotations

from ..storage.index import IndexRows
from ..storage.records import Session
from . import states
from .errors import Conflict
from .states import FileEvent, SessionEvent


def file_changed(rows: IndexRows, token: str) -> Session:
    """A file of the session changed: FILE_CHANGED (open stays open, error stays error; refused
    in any other state)."""
    session = rows.session(token)
    assert session is not None
    status = states.session_transition(session.status, SessionEvent.FILE_CHANGED)
    if status != session.status:
        rows.update_session(token, status=status)
    return session


def transition_upload(rows: IndexRows, upload_id: str, event: FileEvent, refusal: str) -> None:
    upload = rows.upload(upload_id)
    assert upload is not None
    try:
        states.file_transition(upload.status, event)
    except states.Refused:
        raise Conflict(refusal.format(status=upload.status), source="status") from None


def end_session(rows: IndexRows, token: str, event: SessionEvent, now: float, notices: tuple[str, ...]) -> list[str]:
    """Cancel or expire a session and its files. Returns the blobs of its files (candidates
    for removal), and forgets a reserved name nothing was published under."""
    session = rows.session(token)
    assert session is not None
    rows.update_session(token, status=states.session_transition(session.status, event), ended_at=now,
                        notices=notices)
    blobs = []
    for upload in rows.uploads(token):
        if upload.status not in states.FILE_TERMINAL:
            rows.update_upload(upload.id, status=states.file_transition(upload.status, FileEvent.SESSION_ENDED))
        if upload.sha256:
            blobs.append(upload.sha256)
    # A canceled first release leaves no trace.
    if not rows.files_of(session.project) and not any(
            s.status in states.LIVE for s in rows.sessions_of(session.project)):
        rows.unregister(session.project)
    return blobs


def extend_session(rows: IndexRows, token: str, until: float) -> None:
    session = rows.session(token)
    assert session is not None
    rows.update_session(token, expires_at=max(session.expires_at, until))
    for upload in rows.uploads(token):
        if upload.status not in states.FILE_TERMINAL:
            rows.update_upload(upload.id, expires_at=max(upload.expires_at, until))


def referenced(rows: IndexRows, sha256: str) -> bool:
    """Whether a published file or a file upload of a live session still needs this blob (a
    published session's uploads do not: its files do, until one is deleted)."""
    if rows.files_with_blob(sha256) > 0:
        return True
    for upload in rows.uploads_with_blob(sha256):
        session = rows.session(upload.token) if upload.status not in states.FILE_TERMINAL else None
        if session is not None and session.status in states.LIVE:
            return True
    return False
