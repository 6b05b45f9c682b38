"""The request log (one line per request, named `tidegate.access`) and the formats of every
log line: "text" for people, "json" (one object per line) for log collectors.

A line never carries a secret: the query string and headers are not logged, and the tokens in
stage and session URLs (capabilities: whoever has one can read or publish the session) are
replaced by "<token>".
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from urllib.parse import quote, unquote, urlsplit

import msgspec

ACCESS_LOGGER = "tidegate.access"
ACCESS = logging.getLogger(ACCESS_LOGGER)
TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
# The token segment of a stage or session URL, however many slashes or dot segments lead to it.
_TOKEN = re.compile(r"^((?:/+\.{1,2}(?=/))*/+(?:stage|upload/+session)/+)[^/?]+")
_json = msgspec.json.Encoder()
_DIGITS2 = [f"{i:02d}" for i in range(100)]
_DIGITS3 = [f"{i:03d}" for i in range(1000)]


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


def loggable(path: str) -> str:
    """The path of a request target as the log shows it: origin-form, token redacted."""
    if path[:1] != "/":
        path = urlsplit(path).path or "/"  # absolute-form: its path is what the router matched
    if "%" in path or "stage" in path or "session" in path:  # what a token URL needs (see redact)
        path = redact(path)
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

    Not through the logging module, and not while the request is answered: a LogRecord, its
    formatting and a write cost ~18 us per request, a quarter of a warm page's time. The lines
    of a batch of requests (observe.journal) are formatted in one loop and written at once."""

    def __init__(self, log_format: str) -> None:
        self.json = log_format == "json"
        self._second = -1
        self._stamp = ""

    def write(self, entries: list[tuple], offset: float) -> None:
        """Write the lines of a batch of observe.journal.Entry tuples, whose perf_counter()
        times plus `offset` are wall-clock times."""
        # Per batch, not per line: the pid (a system call) and the line's fixed part.
        pid = os.getpid()
        head = f" {pid} INFO {ACCESS_LOGGER}: "
        lines = []
        add = lines.append
        stamped, stamp = self._second, self._stamp  # the time stamp of that second, to the second
        as_json, digits2, digits3 = self.json, _DIGITS2, _DIGITS3  # locals: read once a line
        for start, end, peer, method, target, route, _, status, sent, cache, upstream in entries:
            remote = peer[0] if type(peer) is tuple else peer or None  # as aiohttp's Request.remote has it
            millis = int((end + offset) * 1000.0)
            second = millis // 1000
            if second != stamped:
                stamped = second
                stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) if as_json
                         else time.strftime("%Y-%m-%d %H:%M:%S,", time.localtime(second)))
            millis = digits3[millis - second * 1000]
            query = target.find("?")
            path = target if query < 0 else target[:query]  # as sent (percent-encoded): no control characters
            if route.secret or path[:1] != "/":  # a route of tokens, no route, or an absolute-form target
                path = loggable(path)
            if as_json:
                add(_json.encode({
                    "time": f"{stamp}.{millis}Z", "level": "info",
                    "logger": ACCESS_LOGGER, "pid": pid, "message": "request", "remote": remote, "method": method,
                    "path": path, "status": status, "bytes": sent, "duration_ms": round((end - start) * 1000, 3),
                    "cache": cache, "upstream": upstream,
                }).decode())
                add("\n")
            else:
                # The milliseconds from tables, not format specs: a formatted float is most of a
                # line's cost.
                hundredths = int((end - start) * 100000.0 + 0.5)
                add(f'{stamp}{millis}{head}{remote or "-"} '
                    f'"{method} {path}" {status} {sent} {hundredths // 100}.{digits2[hundredths % 100]}ms '
                    f'cache={cache or "-"} upstream={upstream or "-"}\n')
        self._second, self._stamp = stamped, stamp
        stream = sys.stderr  # looked up now: whatever standard error is at the time
        try:
            stream.write("".join(lines))
            stream.flush()
        except (OSError, ValueError):  # a closed or full log stream must not fail requests
            pass
