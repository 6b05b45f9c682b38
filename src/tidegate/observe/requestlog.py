"""The request log (one line per request, named `tidegate.access`) and the formats of every
log line: "text" for people, "json" (one object per line) for log collectors.

A line never carries a secret: the query string and headers are not logged, and the tokens in
stage and session URLs (capabilities: whoever has one can read or publish the session) are
replaced by "<token>".
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from urllib.parse import quote, unquote

import msgspec

ACCESS = logging.getLogger("tidegate.access")
TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
# The token segment of a stage or session URL, however many slashes or dot segments lead to it.
_TOKEN = re.compile(r"^((?:/+\.{1,2}(?=/))*/+(?:stage|upload/+session)/+)[^/?]+")
_json = msgspec.json.Encoder()


# What quote() leaves as it is in a redacted path: the characters of a path and query as sent.
_SAFE = "/?&=+;:@!$'()*,~<>%"


def redact(path: str) -> str:
    """The path (origin-form, as sent or decoded, with or without its query) with the secret
    token of a stage or session URL replaced. Matched on the decoded path, as the router
    matches, so that no spelling of it (/%73tage/...) keeps the token; a redacted path is
    given back percent-encoded, so it holds no control characters."""
    if _TOKEN.match(path):
        return _TOKEN.sub(r"\1<token>", path, count=1)
    if "%" in path:
        decoded = unquote(path)
        if _TOKEN.match(decoded):
            return quote(_TOKEN.sub(r"\1<token>", decoded, count=1), safe=_SAFE)
    return path


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _json.encode(line).decode()


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


class RequestLog:
    """Writes the request log: a line per request, in the text or JSON format of every other
    log line, to standard error like them.

    Not through the logging module, and not formatted while the request is answered: a
    LogRecord, its formatting and a write cost ~18 us per request, a quarter of a warm page's
    time. A request adds a tuple of plain values; every FLUSH_INTERVAL the waiting ones are
    formatted and written at once, so at most that much of the log is lost if the process is
    killed."""

    FLUSH_INTERVAL = 0.2

    def __init__(self, log_format: str) -> None:
        self.json = log_format == "json"
        self._pending: list[tuple] = []
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""
        self._pid = os.getpid()

    def add(self, entry: tuple) -> None:
        """(time, remote, method, origin-form raw path with query, status, bytes sent, seconds, cache
        result, upstreams asked, comma-separated, or None) of an answered request."""
        self._pending.append(entry)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._pid = os.getpid()  # once per batch: it is a system call
        text = "".join(map(self.line, pending))
        stream = sys.stderr  # looked up now: whatever standard error is at the time
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # a closed or full log stream must not fail requests
            pass

    def line(self, entry: tuple) -> str:
        now, remote, method, raw_path, status, sent, seconds, cache, upstream = entry
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) if self.json
                           else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
        millis = int((now - second) * 1000)
        path = redact(raw_path.partition("?")[0])  # as sent (percent-encoded): no control characters
        if self.json:
            return _json.encode({
                "time": f"{self._stamp}.{millis:03d}Z", "level": "info", "logger": ACCESS.name, "pid": self._pid,
                "message": "request", "remote": remote, "method": method, "path": path, "status": status,
                "bytes": sent, "duration_ms": round(seconds * 1000, 3), "cache": cache, "upstream": upstream,
            }).decode() + "\n"
        return (f'{self._stamp},{millis:03d} {self._pid} INFO {ACCESS.name}: {remote or "-"} "{method} {path}" '
                f'{status} {sent} {seconds * 1000:.2f}ms cache={cache or "-"} upstream={upstream or "-"}\n')
