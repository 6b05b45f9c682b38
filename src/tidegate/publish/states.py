"""The two PEP 694 (Upload 2.0) state machines: publishing sessions and file upload sessions.

The transition tables are data, laid out row by row like the PEP's "Publishing Session States"
and "File Upload Session States" tables, so the code can be checked against the PEP by eye.
Below each PEP table, a few rows marked "tidegate" cover what the PEP leaves to the server:
expiry, the files of a session that ends, and a restart during deferred processing. Every
status change anywhere in tidegate goes through `session_transition` or `file_transition`, and
the sets of live, editable and terminal states are derived from the tables. Pure: no I/O.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .errors import Conflict

__all__ = [
    "ACCEPTS_BYTES", "EDITABLE", "FILE_INITIAL", "FILE_TABLE", "FILE_TERMINAL", "LIVE",
    "SESSION_INITIAL", "SESSION_TABLE", "SESSION_TERMINAL", "UNCHANGED", "FileEvent", "FileState", "parse_table",
    "Refused", "Rejection", "SessionEvent", "SessionState", "file_transition", "session_transition",
]


class SessionState(enum.StrEnum):
    """A publishing session's ``status``, as stored and reported."""

    OPEN = "open"
    PROCESSING = "processing"
    PUBLISHED = "published"
    ERROR = "error"
    CANCELED = "canceled"


class FileState(enum.StrEnum):
    """A file upload session's ``status``, as stored and reported."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELED = "canceled"


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
    EXPIRE = "the session's expires-at passes (tidegate)"


class FileEvent(enum.Enum):
    """What can happen to a file upload session; the values are the PEP's wording."""

    BYTES_RECEIVED = "upload mechanism executes (bytes transferred)"
    COMPLETE_IMMEDIATE = "completion request completed immediately (201 Created)"
    COMPLETE_DEFERRED = "completion request accepted for deferred processing (202 Accepted)"
    COMPLETE_FAILED = "completion request fails synchronously"
    PROCESSING_SUCCEEDED = "deferred processing succeeds"
    PROCESSING_FAILED = "deferred processing fails"
    DELETE = "cancellation requested (DELETE)"
    EXPIRE = "the file upload session's expires-at passes (tidegate)"
    SESSION_ENDED = "its publishing session is canceled or expires (tidegate)"
    INTERRUPTED = "tidegate restarts during deferred processing (tidegate)"


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

Target = SessionState | FileState | Rejection | _Unchanged
Row = tuple[tuple[enum.StrEnum, ...], enum.Enum, Target]

# The "rejected with 409" cells, by the name a table gives them.
REJECTIONS = {
    "not-completed": Rejection(409, "Every file must be completed before publishing; wait for the pending "
                                    "and processing files, and delete files in error."),
    "publishing": Rejection(409, "The session is being published and can no longer be canceled; wait for "
                                 "it to finish."),
    "processing": Rejection(409, "The file is still being processed and cannot be deleted yet; wait for it "
                                 "to finish."),
}


def parse_table(states: type[enum.StrEnum], events: type[enum.Enum], text: str) -> tuple[Row, ...]:
    """Rows from a table written as the PEP writes it: "from (one or more states), event, to",
    columns two or more spaces apart; "to" is a state, "unchanged" or "rejected: <reason>"."""
    rows = []
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        sources, event, target = re.split(r"\s{2,}", line)
        if target == "unchanged":
            to: Target = UNCHANGED
        elif target.startswith("rejected: "):
            to = REJECTIONS[target.removeprefix("rejected: ")]
        else:
            to = states(target)
        rows.append((tuple(states(s) for s in sources.split()), events[event], to))
    return tuple(rows)


# "Publishing Session States". The first row, (none) -> open, is SESSION_INITIAL.
SESSION_INITIAL = SessionState.OPEN
SESSION_TABLE = parse_table(SessionState, SessionEvent, """
    # From              Event                   To
    open                FILE_CHANGED            open
    open                PUBLISH_IMMEDIATE       published
    open                PUBLISH_DEFERRED        processing
    open error          PUBLISH_INCOMPLETE      rejected: not-completed
    open error          PUBLISH_FAILED_SYNC     unchanged
    open error          CANCEL                  canceled
    processing          PUBLISH_SUCCEEDED       published
    processing          PUBLISH_FAILED          error
    processing          CANCEL                  rejected: publishing
    error               FILE_CHANGED            error
    error               PUBLISH_IMMEDIATE       published     # "Publish retried -> processing or published"
    error               PUBLISH_DEFERRED        processing
    # tidegate: an expired session is canceled, like a DELETE (a publish in progress finishes).
    open error          EXPIRE                  canceled
""")

# "File Upload Session States". The first row, (none) -> pending, is FILE_INITIAL.
FILE_INITIAL = FileState.PENDING
FILE_TABLE = parse_table(FileState, FileEvent, """
    # From              Event                   To
    pending             BYTES_RECEIVED          pending
    pending             COMPLETE_IMMEDIATE      completed
    pending             COMPLETE_DEFERRED       processing
    pending             COMPLETE_FAILED         error
    pending             DELETE                  canceled
    processing          PROCESSING_SUCCEEDED    completed
    processing          PROCESSING_FAILED       error
    processing          DELETE                  rejected: processing
    completed           DELETE                  canceled
    error               DELETE                  canceled
    # tidegate: a pending upload expires on its own; every file goes with its session; a
    # validation cut short by a restart fails, so the client can delete and upload again.
    pending             EXPIRE                  canceled
    pending processing completed error    SESSION_ENDED    canceled
    processing          INTERRUPTED             error
""")


class Refused(Conflict):
    """A request the state machine does not allow in the current state."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, source="status", status=status)


def _index(table: tuple[Row, ...]) -> dict[tuple[str, enum.Enum], Target]:
    cells: dict[tuple[str, enum.Enum], Target] = {}
    for sources, event, target in table:
        for state in sources:
            assert (state, event) not in cells, f"duplicate row for {state!r}, {event}"
            cells[state, event] = target
    return cells


_SESSION = _index(SESSION_TABLE)
_FILE = _index(FILE_TABLE)


def _sources(cells: dict[tuple[str, enum.Enum], Target], event: enum.Enum, allowed: type) -> frozenset:
    return frozenset(state for (state, e), target in cells.items() if e is event and isinstance(target, allowed))


def _terminal(states: type[enum.StrEnum], cells: dict[tuple[str, enum.Enum], Target]) -> frozenset:
    """States no row leads out of."""
    return frozenset(s for s in states if not any(state == s for state, _ in cells))


SESSION_TERMINAL = _terminal(SessionState, _SESSION)  # published, canceled
FILE_TERMINAL = _terminal(FileState, _FILE)  # canceled
LIVE = frozenset(SessionState) - SESSION_TERMINAL  # a session that still counts for its release
# Where files may be uploaded, replaced or deleted: open, and error (which allows what open does).
EDITABLE = _sources(_SESSION, SessionEvent.FILE_CHANGED, SessionState)
ACCEPTS_BYTES = _sources(_FILE, FileEvent.BYTES_RECEIVED, FileState)  # bytes and attestations: pending only
EXPIRABLE = _sources(_SESSION, SessionEvent.EXPIRE, SessionState)


def _step(cells: dict[tuple[str, enum.Enum], Target], states: type[enum.StrEnum], terminal: frozenset,
          what: str, state: str, event: enum.Enum):
    if state not in states.__members__.values():
        raise ValueError(f"{state!r} is not a state of a {what}")
    target = cells.get((state, event))
    if isinstance(target, states):
        return target
    if target is UNCHANGED:
        return states(state)
    if isinstance(target, Rejection):
        raise Refused(target.status, target.reason)
    # Not in the table: every such pair is a conflict with the current state.
    if state in terminal:
        raise Refused(409, f"The {what} is {state}, which is final; start a new one instead.")
    raise Refused(409, f"The {what} is {state}, which does not allow this ({event.value}).")


def session_transition(state: str, event: SessionEvent) -> SessionState:
    """The publishing session's state after ``event``; Refused if the table does not allow it."""
    return _step(_SESSION, SessionState, SESSION_TERMINAL, "publishing session", state, event)


def file_transition(state: str, event: FileEvent) -> FileState:
    """The file upload session's state after ``event``; Refused if the table does not allow it."""
    return _step(_FILE, FileState, FILE_TERMINAL, "file upload session", state, event)
