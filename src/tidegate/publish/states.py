"""The two PEP 694 (Upload 2.0) state machines: publishing sessions and file upload sessions.

The transition tables are data, laid out row by row like the PEP's "Publishing Session States"
and "File Upload Session States" tables, so the code can be checked against the PEP by eye.
Pure: no I/O. States are plain strings because they are stored and reported as the ``status``
key as they are; ``processing``, ``error`` and ``canceled`` exist in both machines.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CANCELED", "COMPLETED", "EDITABLE", "ERROR", "FILE_INITIAL", "FILE_STATES", "FILE_TABLE",
    "FILE_TERMINAL", "OPEN", "PENDING", "PROCESSING", "PUBLISHED", "SESSION_INITIAL",
    "SESSION_STATES", "SESSION_TABLE", "SESSION_TERMINAL", "UNCHANGED", "FileEvent", "Refused",
    "Rejection", "SessionEvent", "accepts_bytes", "file_transition", "is_terminal",
    "session_transition",
]

OPEN = "open"
PENDING = "pending"
PROCESSING = "processing"
COMPLETED = "completed"
PUBLISHED = "published"
ERROR = "error"
CANCELED = "canceled"

SESSION_STATES = (OPEN, PROCESSING, PUBLISHED, ERROR, CANCELED)
SESSION_INITIAL = OPEN  # "(none) -- Session created --> open"
SESSION_TERMINAL = frozenset({PUBLISHED, CANCELED})

FILE_STATES = (PENDING, PROCESSING, COMPLETED, ERROR, CANCELED)
FILE_INITIAL = PENDING  # "(none) -- File upload session created (202 Accepted) --> pending"
FILE_TERMINAL = frozenset({CANCELED})

# A publishing session in `error` permits exactly what `open` does: files may be uploaded,
# replaced and deleted, and it may be published or canceled.
EDITABLE = frozenset({OPEN, ERROR})


class SessionEvent(enum.Enum):
    """What can happen to a publishing session; the values are the PEP's wording."""

    FILE_CHANGED = "a file is uploaded, replaced, or deleted"
    PUBLISH_IMMEDIATE = "publish request completed immediately (201 Created)"
    PUBLISH_DEFERRED = "publish request accepted for deferred processing (202 Accepted)"
    PUBLISH_INCOMPLETE = "publish requested while any file is not completed"
    PUBLISH_FAILED_SYNC = "publish request fails synchronously"
    PUBLISH_SUCCEEDED = "deferred processing succeeds"
    PUBLISH_FAILED = "deferred processing fails"
    CANCEL = "session canceled (DELETE)"


class FileEvent(enum.Enum):
    """What can happen to a file upload session; the values are the PEP's wording."""

    BYTES_RECEIVED = "upload mechanism executes (bytes transferred)"
    COMPLETE_IMMEDIATE = "completion request completed immediately (201 Created)"
    COMPLETE_DEFERRED = "completion request accepted for deferred processing (202 Accepted)"
    COMPLETE_FAILED = "completion request fails synchronously"
    PROCESSING_SUCCEEDED = "deferred processing succeeds"
    PROCESSING_FAILED = "deferred processing fails"
    DELETE = "cancellation requested (DELETE)"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A table cell saying "rejected with <status>": the request fails, the state stays."""

    status: int
    reason: str


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


# A table cell saying "unchanged": the request fails (the error goes to the caller) but that is
# not a state change, unlike a rejection the PEP requires.
UNCHANGED = _Unchanged()

Target = str | Rejection | _Unchanged
Row = tuple[tuple[str, ...], enum.Enum, Target]

_NOT_COMPLETED = Rejection(409, "Every file must be completed before publishing; wait for the pending "
                                "and processing files, and delete files in error.")
_S = SessionEvent
_F = FileEvent

# "Publishing Session States". The first row, (none) -> open, is SESSION_INITIAL.
SESSION_TABLE: tuple[Row, ...] = (
    # From            Event                      To
    ((OPEN,),         _S.FILE_CHANGED,           OPEN),
    ((OPEN,),         _S.PUBLISH_IMMEDIATE,      PUBLISHED),
    ((OPEN,),         _S.PUBLISH_DEFERRED,       PROCESSING),
    ((OPEN, ERROR),   _S.PUBLISH_INCOMPLETE,     _NOT_COMPLETED),
    ((OPEN, ERROR),   _S.PUBLISH_FAILED_SYNC,    UNCHANGED),
    ((OPEN, ERROR),   _S.CANCEL,                 CANCELED),
    ((PROCESSING,),   _S.PUBLISH_SUCCEEDED,      PUBLISHED),
    ((PROCESSING,),   _S.PUBLISH_FAILED,         ERROR),
    ((PROCESSING,),   _S.CANCEL,                 Rejection(409, "The session is being published and can "
                                                           "no longer be canceled; wait for it to finish.")),
    ((ERROR,),        _S.FILE_CHANGED,           ERROR),
    # "Publish retried -> processing or published"
    ((ERROR,),        _S.PUBLISH_IMMEDIATE,      PUBLISHED),
    ((ERROR,),        _S.PUBLISH_DEFERRED,       PROCESSING),
)

# "File Upload Session States". The first row, (none) -> pending, is FILE_INITIAL.
FILE_TABLE: tuple[Row, ...] = (
    # From            Event                      To
    ((PENDING,),      _F.BYTES_RECEIVED,         PENDING),
    ((PENDING,),      _F.COMPLETE_IMMEDIATE,     COMPLETED),
    ((PENDING,),      _F.COMPLETE_DEFERRED,      PROCESSING),
    ((PENDING,),      _F.COMPLETE_FAILED,        ERROR),
    ((PENDING,),      _F.DELETE,                 CANCELED),
    ((PROCESSING,),   _F.PROCESSING_SUCCEEDED,   COMPLETED),
    ((PROCESSING,),   _F.PROCESSING_FAILED,      ERROR),
    ((PROCESSING,),   _F.DELETE,                 Rejection(409, "The file is still being processed and "
                                                           "cannot be deleted yet; wait for it to finish.")),
    ((COMPLETED,),    _F.DELETE,                 CANCELED),
    ((ERROR,),        _F.DELETE,                 CANCELED),
)


class Refused(Exception):
    """A request the state machine does not allow in the current state."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _index(table: tuple[Row, ...]) -> dict[tuple[str, enum.Enum], Target]:
    cells: dict[tuple[str, enum.Enum], Target] = {}
    for sources, event, target in table:
        for state in sources:
            assert (state, event) not in cells, f"duplicate row for {state!r}, {event}"
            cells[state, event] = target
    return cells


_SESSION = _index(SESSION_TABLE)
_FILE = _index(FILE_TABLE)


def _step(cells: dict[tuple[str, enum.Enum], Target], states: tuple[str, ...], terminal: frozenset[str],
          what: str, state: str, event: enum.Enum) -> str:
    if state not in states:
        raise ValueError(f"{state!r} is not a state of a {what}")
    target = cells.get((state, event))
    if isinstance(target, str):
        return target
    if target is UNCHANGED:
        return state
    if isinstance(target, Rejection):
        raise Refused(target.status, target.reason)
    # Not in the PEP's table: every such pair is a conflict with the current state.
    if state in terminal:
        raise Refused(409, f"The {what} is {state}, which is final; start a new one instead.")
    raise Refused(409, f"The {what} is {state}, which does not allow this ({event.value}).")


def session_transition(state: str, event: SessionEvent) -> str:
    """The publishing session's state after ``event``; Refused if the PEP does not allow it."""
    return _step(_SESSION, SESSION_STATES, SESSION_TERMINAL, "publishing session", state, event)


def file_transition(state: str, event: FileEvent) -> str:
    """The file upload session's state after ``event``; Refused if the PEP does not allow it."""
    return _step(_FILE, FILE_STATES, FILE_TERMINAL, "file upload session", state, event)


def is_terminal(state: str) -> bool:
    """Whether nothing more can happen (``published`` only exists for sessions, so one set serves both)."""
    return state in SESSION_TERMINAL or state in FILE_TERMINAL


def accepts_bytes(file_state: str) -> bool:
    """File bytes (and attestations) may only arrive while the upload is ``pending``."""
    return file_state == PENDING
