"""Pure: what an import keeps when the mirror already holds a copy of what a bundle carries.

A bundle may be older than what is here (bundles imported out of order, a delta of an older
chain after a newer full bundle, a page this server fetched itself since): the newer copy wins,
never the later import. Pages are compared by their own `fetched_at` (when the side that
fetched the page last had it confirmed by its upstream). (A local project's files are compared,
by the time the exporting side read them, in Publisher.import_bundle.)
"""

from __future__ import annotations

from dataclasses import replace

from ..storage.records import PageRecord


def newer_page(here: PageRecord | None, incoming: PageRecord) -> PageRecord | None:
    """The record to store for an imported page, or None to keep the one here (as new or newer)."""
    if here is None:
        return incoming
    if here.fetched_at >= incoming.fetched_at:
        return None
    if incoming.served == here.served:
        return replace(incoming, changed_at=here.changed_at)  # confirmed later, unchanged: same Last-Modified
    if incoming.changed_at <= here.changed_at:
        # Clocks of two sides: Last-Modified must still move forward (by a second, its resolution),
        # or a client's If-Modified-Since would get 304 for the changed page.
        return replace(incoming, changed_at=here.changed_at + 1)
    return incoming

