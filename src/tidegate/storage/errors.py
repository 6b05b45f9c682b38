"""Errors the storage seam raises whatever engine is behind it."""

from __future__ import annotations


class EngineUnavailable(Exception):
    """A shared engine (a database, an object store) cannot be reached or refused the request
    right now. A passing condition: the web layer answers 503 with this message and a
    Retry-After, and nothing was changed by the request that met it."""

    def __init__(self, engine: str, reason: str) -> None:
        super().__init__(f"{engine} is unavailable: {reason}")
        self.engine = engine
        self.reason = reason
