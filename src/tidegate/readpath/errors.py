"""Why the read path could not answer, with the status each maps to (web/ maps them once)."""

from __future__ import annotations

from typing import ClassVar


class ReadError(Exception):
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ReadError):
    """No source has the project or the file."""

    status = 404


class NotCached(NotFound):
    """Offline, and the cache does not have it."""


class UpstreamFailed(ReadError):
    """Nothing cached to serve, and the upstream that has (or may have) it failed."""

    status = 502


class Unavailable(ReadError):
    """A passing condition (a file evicted while it was fetched); trying again will do."""

    status = 503


class StorageFull(ReadError):
    """The disk is full: what is cached is still served, but nothing new can be kept."""

    status = 507
