"""Every refusal of the publish domain, in one hierarchy: one class per thing a client can do
about it, the precise HTTP status on the instance.

Each error carries its HTTP status, a one-sentence message (what was wrong, what to do) and the
input it concerns (`source`). The upload APIs map the whole hierarchy once each: Upload 2.0 to
RFC 9457 problem documents, the legacy API to plain text. An error that is not a PublishError
is a bug, never a refusal.
"""

from __future__ import annotations

from typing import ClassVar, Sequence


class PublishError(Exception):
    status: ClassVar[int] = 400

    def __init__(self, message: str, *, source: str = "request", files: Sequence[str] = (),
                 location: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.files = list(files)  # filenames the refusal is about (PEP 694 `errors` entries)
        self.location = location  # a session token to point at (the live session of a 409)
        if status is not None:
            self.status = status


class Invalid(PublishError):
    """The request or the uploaded file breaks a rule (names, hashes, archive contents): the
    client must change what it sends. Also 413 (too large), 415 (wrong media type) and 422 (an
    unsupported mechanism)."""

    status = 400


class Denied(PublishError):
    """401 without valid credentials, 403 when this user may not do it."""

    status = 403


class NotFound(PublishError):
    status = 404


class Conflict(PublishError):
    """The request contradicts the current state (a session's or file's status, a published
    name): it may succeed once the state changes."""

    status = 409


class Unavailable(PublishError):
    """tidegate cannot do it now (503: an upstream it must ask is failing; 507: its storage is
    full); the same request may succeed later."""

    status = 503


class StorageFull(Unavailable):
    """The disk is full: nothing can be uploaded until space is freed; nothing was lost."""

    status = 507


def storage_full() -> StorageFull:
    return StorageFull("tidegate's storage is full; nothing was stored. Try again once space is freed.",
                       source="storage")
