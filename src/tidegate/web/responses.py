"""Responses shared by the handlers: committed files via sendfile, short plain-text errors, and
the read path's refusals."""

from __future__ import annotations

import asyncio
import os
from typing import BinaryIO

from aiohttp import hdrs, web

from ..ranges import UNSATISFIABLE, parse_range
from ..readpath.errors import ReadError

IMMUTABLE = "public, max-age=31536000, immutable"


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A one-sentence plain-text refusal: what was wrong and, where it helps, what to do."""
    return web.Response(status=status, text=message.rstrip() + "\n", headers=headers)


def read_refusal(exc: ReadError, headers: dict[str, str] | None = None) -> web.Response:
    """The one mapping of the read path's errors to responses."""
    return error(exc.status, exc.message, headers)


def etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match / If-Range comparison (weak comparison, as RFC 9110 says for If-None-Match)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == bare for candidate in header.split(","))


async def send_file(
    request: web.Request, fh: BinaryIO, *, etag: str, content_type: str, extra: dict[str, str] | None = None
) -> web.StreamResponse:
    """Send an open, immutable file: HEAD, conditional requests, a single Range, sendfile.

    The caller opened the file, so eviction (unlink) while sending cannot cut the transfer short;
    this function closes it.
    """
    with fh:
        size = os.fstat(fh.fileno()).st_size
        headers = {
            hdrs.CONTENT_TYPE: content_type,
            hdrs.ETAG: etag,
            hdrs.CACHE_CONTROL: IMMUTABLE,
            hdrs.ACCEPT_RANGES: "bytes",
            **(extra or {}),
        }
        if etag_matches(request.headers.get(hdrs.IF_NONE_MATCH), etag):
            del headers[hdrs.CONTENT_TYPE]
            return web.Response(status=304, headers=headers)
        if_range = request.headers.get(hdrs.IF_RANGE)
        wanted = parse_range(request.headers.get(hdrs.RANGE), size)
        if if_range is not None and if_range.strip() != etag:  # If-Range needs a strong match
            wanted = None
        if wanted == UNSATISFIABLE:
            headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
            del headers[hdrs.CONTENT_TYPE]
            return web.Response(status=416, headers=headers)
        first, last = wanted if isinstance(wanted, tuple) else (0, size - 1)
        response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
        if wanted:
            response.headers[hdrs.CONTENT_RANGE] = f"bytes {first}-{last}/{size}"
        count = last - first + 1
        response.content_length = count
        await response.prepare(request)
        if request.method != hdrs.METH_HEAD and count > 0:
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("client went away")
            try:
                await asyncio.get_running_loop().sendfile(transport, fh, first, count)
            except NotImplementedError:  # e.g. TLS transports: copy in chunks instead
                fh.seek(first)
                remaining = count
                while remaining:
                    chunk = fh.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    await response.write(chunk)
                    remaining -= len(chunk)
        await response.write_eof()
        return response
