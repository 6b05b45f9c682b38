"""What aiohttp's server logger says about a client's mistakes: one line, never a traceback.

aiohttp logs "Error handling request" with a traceback (at ERROR) both for a request it cannot
parse (a malformed request line or header, which it has already answered with a correct 400) and
for a client that disconnects while its response is being written. Neither is tidegate's fault nor
anything an operator can act on, and a fuzzing client turns them into thousands of tracebacks. The
filter below rewrites exactly those records, by the type of their exception: a malformed request
becomes one INFO line, a client gone away a DEBUG line; every other error (a bug) keeps its
traceback.
"""

from __future__ import annotations

import logging
import time

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (aiohttp's parse errors span several)."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:300]


class ClientMistakes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            level, message = logging.INFO, "refused a malformed request: %s"
        elif isinstance(exc, ConnectionError):
            level, message = logging.DEBUG, "the client went away before its response was complete: %s"
        else:
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.msg = message + (" (from %s)" if remote else "")
        record.args = (one_line(exc), remote) if remote else (one_line(exc),)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno, record.levelname = level, logging.getLevelName(level)
        return logging.getLogger(record.name).isEnabledFor(level)


def install() -> None:
    """Add the filter to aiohttp's server logger, once per process."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, ClientMistakes) for f in logger.filters):
        logger.addFilter(ClientMistakes())


class Once:
    """Logs a recurring condition (too many open files) once a minute at most, with how many
    times it happened meanwhile, instead of once per request."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self._logger, self._interval = logger, interval
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def warning(self, key: str, message: str) -> None:
        now = time.monotonic()
        self._since[key] = self._since.get(key, 0) + 1
        if now - self._last.get(key, -self._interval) >= self._interval:
            count = self._since.pop(key)
            self._last[key] = now
            self._logger.warning("%s%s", message, f" ({count} times in the last minute)" if count > 1 else "")
