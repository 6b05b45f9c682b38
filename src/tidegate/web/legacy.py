"""The legacy upload API at /legacy/, as twine and `uv publish` speak it today.

A multipart form with `:action=file_upload`, the release's name and version, optional digests
and the file as the `content` part. Errors are plain text, and the message is also the HTTP
reason phrase, where twine looks for "File already exists" (--skip-existing): refuse() is the
one place the publishing service's refusals become legacy responses.
"""

from __future__ import annotations

import logging
import sqlite3

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ..publish.errors import Denied, Invalid, PublishError, storage_full
from ..publish.service import Publisher, Received
from ..storage.full import FULL_MESSAGE, disk_full
from .auth import CHALLENGE, authenticate_publisher
from .bodies import bounded
from .keys import PUBLISHER, SETTINGS, TOKENS
from .serverlog import one_line

log = logging.getLogger(__name__)

MAX_FIELD = 1024 * 1024  # a form field other than the file (a long description fits)


def refuse(exc: PublishError) -> web.Response:
    reason = " ".join(exc.message.split())[:300].encode("latin-1", "replace").decode("latin-1")
    return web.Response(status=exc.status, reason=reason, text=exc.message + "\n",
                        headers=CHALLENGE if exc.status == 401 else None)


async def read_form(request: web.Request, publisher: Publisher, limit: int) -> tuple[dict[str, str], Received, str]:
    """The form fields, and the `content` part streamed to a temp file (with its filename)."""
    fields: dict[str, str] = {}
    received, filename = None, None
    try:
        reader = await request.multipart()
        while (part := await bounded(request, reader.next())) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            if part.name == "content":
                if received is not None:
                    raise Invalid("Send exactly one `content` part.", source="content")
                filename = part.filename

                async def chunks(part: BodyPartReader = part):
                    while chunk := await bounded(request, part.read_chunk(1 << 20)):
                        yield chunk

                received = await publisher.receive(chunks(), algorithms={"md5", "blake2_256"}, limit=limit)
            else:
                value = bytearray()
                while chunk := await bounded(request, part.read_chunk(64 * 1024)):
                    value += chunk
                    if len(value) > MAX_FIELD:  # checked while reading: never buffer a huge field
                        raise Invalid(f"The form field {part.name} is too large.", source=part.name)
                fields[part.name] = bytes(part.decode(bytes(value))).decode("utf-8", "replace")
    except (ValueError, HttpProcessingError) as exc:  # a malformed multipart body
        if received is not None:
            publisher.discard(received)
        raise Invalid(f"The multipart body could not be read: {one_line(exc)}", source="body") from None
    except BaseException:
        if received is not None:
            publisher.discard(received)
        raise
    if received is None:
        raise Invalid("The upload has no `content` part holding the file.", source="content")
    return fields, received, filename or ""


async def upload(request: web.Request) -> web.Response:
    try:
        return await _upload(request)
    except PublishError as exc:
        return refuse(exc)
    except (OSError, sqlite3.Error) as exc:
        if not disk_full(exc):
            raise
        log.warning("refused an upload to /legacy/: %s (%s)", FULL_MESSAGE, exc)
        return refuse(storage_full())


async def _upload(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    publisher = request.config_dict[PUBLISHER]
    user = await authenticate_publisher(request, settings, request.config_dict[TOKENS])
    if user is None:
        raise Denied("Authenticate with the username and password of a configured upload user, or as "
                     "__token__ with an API token.", status=401)
    if not request.content_type.startswith("multipart/"):
        raise Invalid("Send the upload as multipart/form-data, as twine does.")
    fields, received, filename = await read_form(request, publisher, settings.max_upload_size)
    try:
        action = request.query.get(":action") or fields.get(":action")
        if action != "file_upload":
            raise Invalid(f"Unsupported :action {str(action)[:100]!r}; only file_upload is supported.")
        added = await publisher.legacy_upload(user, fields, received, filename)
    finally:
        publisher.discard(received)
    return web.Response(text="OK\n" if added else "OK: identical file already published\n")


def routes() -> list[web.AbstractRouteDef]:
    # Both spellings answer directly: an upload is never redirected.
    return [web.post("/legacy/", upload), web.post("/legacy", upload)]
