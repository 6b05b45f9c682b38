"""Content negotiation for the Simple API (PEP 691): which representation a request gets, and in
which content coding.

Pure: takes the Accept header and the optional ?format= value, returns a Representation or None
(406); takes Accept-Encoding, returns an Encoding. Malformed parts are ignored, never an error.
"""

from __future__ import annotations

import enum
from typing import Iterator

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
JSON_LATEST = "application/vnd.pypi.simple.latest+json"
HTML_LATEST = "application/vnd.pypi.simple.latest+html"
TEXT_HTML = "text/html"


class Representation(enum.Enum):
    """What we send: the body format and the Content-Type it goes out with."""

    JSON = JSON_V1
    HTML = HTML_V1
    TEXT = TEXT_HTML

    @property
    def is_json(self) -> bool:
        return self is Representation.JSON

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self]


# The charset makes the HTML types unambiguous for browsers and old clients.
_CONTENT_TYPES = {rep: rep.value if rep.is_json else f"{rep.value}; charset=utf-8" for rep in Representation}

# Every media type we answer, and what it maps to. `latest` is answered with v1 (PEP 691).
SERVED: dict[str, Representation] = {
    JSON_V1: Representation.JSON,
    JSON_LATEST: Representation.JSON,
    HTML_V1: Representation.HTML,
    HTML_LATEST: Representation.HTML,
    TEXT_HTML: Representation.TEXT,
}

# Among equally acceptable types named explicitly or by `type/*`, JSON wins; a bare `*/*`
# (or no Accept at all) means a legacy client, which gets text/html.
_PREFERENCE = (JSON_V1, JSON_LATEST, HTML_V1, HTML_LATEST, TEXT_HTML)
_WILDCARD_RANK = {TEXT_HTML: 0, JSON_V1: 1, HTML_V1: 2}

_QUALITY_OF_SENT = {JSON_LATEST: JSON_V1, HTML_LATEST: HTML_V1}  # alias -> the type actually sent

NOT_ACCEPTABLE_BODY = (
    "406 Not Acceptable: this index serves " + ", ".join(_PREFERENCE) + "\n"
).encode()


def _weighted(header: str) -> Iterator[tuple[str, float]]:
    """(lowercased token, q) of each part of an Accept-style header; parts with a malformed or
    out-of-range q (NaN included) are skipped."""
    for part in header.split(","):
        token, *params = part.split(";")
        q = 1.0
        for param in params:
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
                break
        if 0.0 <= q <= 1.0:
            yield token.strip().lower(), q


def parse_accept(header: str) -> list[tuple[str, str, float]]:
    """Split an Accept header into (type, subtype, q) triples, skipping malformed parts."""
    ranges = []
    for media, q in _weighted(header):
        type_, sep, subtype = media.partition("/")
        if not sep or not type_ or not subtype or (type_ == "*" and subtype != "*"):
            continue
        ranges.append((type_, subtype, q))
    return ranges


def _quality(media_type: str, ranges: list[tuple[str, str, float]]) -> tuple[float, int]:
    """The q the most specific matching range gives media_type, and that range's specificity."""
    type_, _, subtype = media_type.partition("/")
    best: tuple[float, int] = (0.0, -1)
    for rtype, rsub, q in ranges:
        if rtype == type_ and rsub == subtype:
            spec = 2
        elif rtype == type_ and rsub == "*":
            spec = 1
        elif rtype == "*":
            spec = 0
        else:
            continue
        if spec > best[1] or (spec == best[1] and q > best[0]):
            best = (q, spec)
    return best


def negotiate(accept: str | None, format_param: str | None = None) -> Representation | None:
    """The representation to send, or None when nothing acceptable is served (406)."""
    if format_param is not None:
        # An unescaped "+" in a query string arrives as a space; no served type has spaces.
        return SERVED.get(format_param.strip().lower().replace(" ", "+"))
    if accept is None or not accept.strip():
        return Representation.TEXT
    ranges = parse_accept(accept)
    if not ranges:
        return Representation.TEXT  # nothing parseable: treat like a missing header
    best_type, best_key = None, (0.0, -1, 0)
    for order, media_type in enumerate(_PREFERENCE):
        q, spec = _quality(media_type, ranges)
        if q <= 0.0 or _QUALITY_OF_SENT.get(media_type) and _quality(_QUALITY_OF_SENT[media_type], ranges) == (0.0, 2):
            continue  # a `latest` alias must not smuggle in the v1 type the client refused by name
        rank = _WILDCARD_RANK.get(media_type, 9) if spec == 0 else order
        key = (q, spec, -rank)
        if key > best_key:
            best_type, best_key = media_type, key
    return SERVED[best_type] if best_type else None


class Encoding(enum.Enum):
    """A content coding of page bodies, with the ETag suffix that keeps each one's tag distinct."""

    IDENTITY = "identity"
    GZIP = "gzip"
    ZSTD = "zstd"

    @property
    def etag_suffix(self) -> str:
        return {"identity": "", "gzip": "-gz", "zstd": "-zst"}[self.value]


# Among equally acceptable codings the smaller and faster one wins.
_ENCODING_PREFERENCE = (Encoding.ZSTD, Encoding.GZIP, Encoding.IDENTITY)


def negotiate_encoding(header: str | None) -> Encoding:
    """The content coding to send a page in (RFC 9110 section 12.5.3): the acceptable coding with
    the highest q, zstd before gzip before identity on a tie. Identity is acceptable unless
    refused by name or by `*;q=0`; when everything is refused, identity is sent anyway (a page
    is better than a 406 for a client that cannot express what it wants)."""
    if not header:
        return Encoding.IDENTITY
    named: dict[str, float] = {}
    star: float | None = None
    for token, q in _weighted(header):
        if token == "*":
            star = q
        elif token:
            named["gzip" if token == "x-gzip" else token] = q

    def quality(encoding: Encoding) -> float:
        if encoding.value in named:
            return named[encoding.value]
        if star is not None:
            return star
        return 1.0 if encoding is Encoding.IDENTITY else 0.0

    best = max(_ENCODING_PREFERENCE, key=lambda e: (quality(e), -_ENCODING_PREFERENCE.index(e)))
    return best if quality(best) > 0 else Encoding.IDENTITY
