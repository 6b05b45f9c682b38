"""Audit entries, written by the publish domain inside the transaction of the change itself,
so the log can neither miss a change nor record one that was rolled back."""

from __future__ import annotations

from typing import Any

from ..storage.index import IndexRows
from ..storage.records import AuditEntry
from .actor import Actor


def record(rows: IndexRows, actor: Actor, at: float, action: str, subject: str, **detail: Any) -> None:
    rows.append_audit(AuditEntry(at=at, actor=actor.label, address=actor.address, action=action, subject=subject,
                                 detail={k: v for k, v in detail.items() if v is not None}))
