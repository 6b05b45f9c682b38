"""HTTP Range requests (RFC 9110 section 14): which bytes of a file of known size to send. Pure."""

from __future__ import annotations

import re

UNSATISFIABLE = "unsatisfiable"
_DIGITS = re.compile(r"[0-9]*")


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last) inclusive byte positions, UNSATISFIABLE (416), or None (send the whole file).

    Only a single range is served; a header we cannot parse, or one asking for several ranges,
    is ignored as RFC 9110 allows, and the whole file is sent.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash:
        return None
    first_text, last_text = first_text.strip(), last_text.strip()
    if not _DIGITS.fullmatch(first_text) or not _DIGITS.fullmatch(last_text):
        return None  # str.isdigit() would accept "²", which int() refuses
    if not first_text:  # suffix range: the last N bytes
        if not last_text:
            return None
        length = int(last_text)
        if length == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - length), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # invalid range-spec: ignore the header
    if first >= size:
        return UNSATISFIABLE
    return first, min(int(last_text), size - 1) if last_text else size - 1
