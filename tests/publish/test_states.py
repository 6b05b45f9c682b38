"""Tests for the PEP 694 state machines (tidegate.publish.states).

The expected rows are copied from the PEP's two transition tables by hand, not derived from the
module's tables, so a wrong or missing row in the module fails here.
"""

from __future__ import annotations

import itertools

import pytest

from tidegate.publish import states
from tidegate.publish.states import (
    ACCEPTS_BYTES,
    EDITABLE,
    EXPIRABLE,
    FILE_TERMINAL,
    LIVE,
    SESSION_TERMINAL,
    FileEvent,
    FileState,
    Refused,
    SessionEvent,
    SessionState,
    file_transition,
    session_transition,
)

OPEN, PROCESSING, PUBLISHED, ERROR, CANCELED = (SessionState.OPEN, SessionState.PROCESSING, SessionState.PUBLISHED,
                                                SessionState.ERROR, SessionState.CANCELED)
PENDING, COMPLETED = FileState.PENDING, FileState.COMPLETED
SESSION_STATES, FILE_STATES = tuple(SessionState), tuple(FileState)

S = SessionEvent
F = FileEvent
REJECT_409 = "rejected with 409"
SAME = "unchanged"

# "Publishing Session States", one entry per (from, event); "open or error" rows appear twice.
PEP_SESSION_ROWS = [
    (OPEN, S.FILE_CHANGED, OPEN),                  # A file is uploaded, replaced, or deleted
    (OPEN, S.PUBLISH_IMMEDIATE, PUBLISHED),        # Publish request completed immediately (201)
    (OPEN, S.PUBLISH_DEFERRED, PROCESSING),        # Publish request accepted for deferred processing (202)
    (OPEN, S.PUBLISH_INCOMPLETE, REJECT_409),      # Publish requested while any file is not completed
    (ERROR, S.PUBLISH_INCOMPLETE, REJECT_409),
    (OPEN, S.PUBLISH_FAILED_SYNC, SAME),           # Publish request fails synchronously
    (ERROR, S.PUBLISH_FAILED_SYNC, SAME),
    (OPEN, S.CANCEL, CANCELED),                    # Session canceled (DELETE)
    (ERROR, S.CANCEL, CANCELED),
    (PROCESSING, S.PUBLISH_SUCCEEDED, PUBLISHED),  # Deferred processing succeeds
    (PROCESSING, S.PUBLISH_FAILED, ERROR),         # Deferred processing fails
    (PROCESSING, S.CANCEL, REJECT_409),            # Cancellation requested
    (ERROR, S.FILE_CHANGED, ERROR),                # A file is uploaded, replaced, or deleted
    (ERROR, S.PUBLISH_IMMEDIATE, PUBLISHED),       # Publish retried -> processing or published
    (ERROR, S.PUBLISH_DEFERRED, PROCESSING),
]

# "File Upload Session States".
PEP_FILE_ROWS = [
    (PENDING, F.BYTES_RECEIVED, PENDING),           # Upload mechanism executes (bytes transferred)
    (PENDING, F.COMPLETE_IMMEDIATE, COMPLETED),     # Completion request completed immediately (201)
    (PENDING, F.COMPLETE_DEFERRED, PROCESSING),     # Completion request accepted for deferred processing (202)
    (PENDING, F.COMPLETE_FAILED, ERROR),            # Completion request fails synchronously
    (PENDING, F.DELETE, CANCELED),                  # Cancellation requested (DELETE)
    (PROCESSING, F.PROCESSING_SUCCEEDED, COMPLETED),  # Deferred processing succeeds
    (PROCESSING, F.PROCESSING_FAILED, ERROR),       # Deferred processing fails
    (PROCESSING, F.DELETE, REJECT_409),             # Cancellation requested
    (COMPLETED, F.DELETE, CANCELED),                # File deleted (DELETE)
    (ERROR, F.DELETE, CANCELED),                    # File deleted (DELETE)
]

# What the PEP leaves to the server, as tidegate decides it (the "tidegate" rows of the module).
TIDEGATE_SESSION_ROWS = [
    (OPEN, S.EXPIRE, CANCELED),                     # an expired session is canceled
    (ERROR, S.EXPIRE, CANCELED),
]
TIDEGATE_FILE_ROWS = [
    (PENDING, F.EXPIRE, CANCELED),                  # a pending upload expires on its own
    (PENDING, F.SESSION_ENDED, CANCELED),           # every file goes with its session
    (PROCESSING, F.SESSION_ENDED, CANCELED),
    (COMPLETED, F.SESSION_ENDED, CANCELED),
    (ERROR, F.SESSION_ENDED, CANCELED),
    (PROCESSING, F.INTERRUPTED, ERROR),             # a restart fails a validation in progress
]
ALL_SESSION_ROWS = PEP_SESSION_ROWS + TIDEGATE_SESSION_ROWS
ALL_FILE_ROWS = PEP_FILE_ROWS + TIDEGATE_FILE_ROWS


def _expect(transition, state, event, expected) -> None:
    if expected == REJECT_409:
        with pytest.raises(Refused) as info:
            transition(state, event)
        assert info.value.status == 409
        assert info.value.message and str(info.value) == info.value.message
    elif expected == SAME:
        assert transition(state, event) == state
    else:
        assert transition(state, event) == expected


def test_initial_states() -> None:
    assert states.SESSION_INITIAL == OPEN  # (none) -- Session created --> open
    assert states.FILE_INITIAL == PENDING  # (none) -- File upload session created --> pending


@pytest.mark.parametrize(("state", "event", "expected"), ALL_SESSION_ROWS)
def test_session_row(state: str, event: SessionEvent, expected: str) -> None:
    _expect(session_transition, state, event, expected)


@pytest.mark.parametrize(("state", "event", "expected"), ALL_FILE_ROWS)
def test_file_row(state: str, event: FileEvent, expected: str) -> None:
    _expect(file_transition, state, event, expected)


SESSION_UNDEFINED = sorted(
    set(itertools.product(SESSION_STATES, SessionEvent)) - {(s, e) for s, e, _ in ALL_SESSION_ROWS},
    key=repr,
)
FILE_UNDEFINED = sorted(
    set(itertools.product(FILE_STATES, FileEvent)) - {(s, e) for s, e, _ in ALL_FILE_ROWS},
    key=repr,
)


@pytest.mark.parametrize(("state", "event"), SESSION_UNDEFINED)
def test_session_undefined_refused(state: str, event: SessionEvent) -> None:
    with pytest.raises(Refused) as info:
        session_transition(state, event)
    assert info.value.status == 409
    assert state in info.value.message


@pytest.mark.parametrize(("state", "event"), FILE_UNDEFINED)
def test_file_undefined_refused(state: str, event: FileEvent) -> None:
    with pytest.raises(Refused) as info:
        file_transition(state, event)
    assert info.value.status == 409
    assert state in info.value.message


def test_undefined_lists_cover_terminal_states() -> None:
    # Sanity check of the test data itself: terminal states have no outgoing rows at all.
    assert {e for s, e in SESSION_UNDEFINED if s == PUBLISHED} == set(SessionEvent)
    assert {e for s, e in SESSION_UNDEFINED if s == CANCELED} == set(SessionEvent)
    assert {e for s, e in FILE_UNDEFINED if s == CANCELED} == set(FileEvent)


def test_terminal_message_says_final() -> None:
    with pytest.raises(Refused, match="final"):
        session_transition(PUBLISHED, S.CANCEL)
    with pytest.raises(Refused, match="final"):
        file_transition(CANCELED, F.DELETE)


def test_unknown_state_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        session_transition(PENDING, S.CANCEL)  # a file state, not a session state
    with pytest.raises(ValueError):
        file_transition(OPEN, F.DELETE)


def test_derived_state_sets() -> None:
    assert EDITABLE == {OPEN, ERROR}
    assert LIVE == {OPEN, PROCESSING, ERROR}
    assert EXPIRABLE == {OPEN, ERROR}
    assert SESSION_TERMINAL == {PUBLISHED, CANCELED}
    assert FILE_TERMINAL == {CANCELED}
    assert ACCEPTS_BYTES == {PENDING}


def test_statuses_are_the_strings_pep_694_reports() -> None:
    assert [str(s) for s in SessionState] == ["open", "processing", "published", "error", "canceled"]
    assert [str(s) for s in FileState] == ["pending", "processing", "completed", "error", "canceled"]
    assert session_transition("open", S.CANCEL) is SessionState.CANCELED
