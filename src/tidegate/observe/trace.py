"""The request being served, as far as the code below the handlers needs to know it: which
upstreams it made tidegate ask. A context variable, so no signature has to carry it; tasks
started for a request (single-flight fetches, downloads) copy the context and so add to the
same trace."""

from __future__ import annotations

import contextvars

# The names of the upstreams asked while serving the current request, in order.
UPSTREAMS: contextvars.ContextVar[list[str]] = contextvars.ContextVar("tidegate_upstreams")


def note_upstream(name: str) -> None:
    """Record that the current request (if any) made tidegate ask upstream `name`."""
    asked = UPSTREAMS.get(None)
    if asked is not None and name not in asked:
        asked.append(name)
