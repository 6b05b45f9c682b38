"""The legacy upload API at /legacy/, as twine and `uv publish` speak it today.

A multipart form with `:action=file_upload`, the release's name and version, optional digests
and the file as the `content` part. Errors are plain text, and the message is also the HTTP
reason phrase, where twine looks for "File already exists" (--skip-existing).
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import BodyPartReader, web

from ..publish.service import Publisher, Received
from ..publish.store import Conflict, PublishedFile, already_exists, upload_time
from ..publish.validate import UploadError, check_filename, check_name_version
from .auth import CHALLENGE, authenticate
from .keys import PUBLISHER, SETTINGS

MAX_FIELD = 1024 * 1024  # a form field other than the file (a long description fits)
DIGEST_FIELDS = {"md5_digest": "md5", "sha256_digest": "sha256", "blake2_256_digest": "blake2_256"}


def refuse(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    reason = " ".join(message.split())[:300].encode("latin-1", "replace").decode("latin-1")
    return web.Response(status=status, reason=reason, text=message + "\n", headers=headers)


async def read_form(request: web.Request, publisher: Publisher, limit: int) -> tuple[dict[str, str], Received | None, str | None]:
    """The form fields, and the `content` part streamed to a temp file (with its filename)."""
    fields: dict[str, str] = {}
    received, filename = None, None
    reader = await request.multipart()
    try:
        async for part in reader:
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            if part.name == "content":
                if received is not None:
                    raise UploadError("Send exactly one `content` part.", source="content")
                filename = part.filename

                async def chunks(part: BodyPartReader = part):
                    while chunk := await part.read_chunk(1 << 20):
                        yield chunk

                received = await publisher.receive(chunks(), algorithms={"md5", "blake2_256"}, limit=limit)
            else:
                value = bytearray()
                while chunk := await part.read_chunk(64 * 1024):
                    value += chunk
                    if len(value) > MAX_FIELD:  # checked while reading: never buffer a huge field
                        raise UploadError(f"The form field {part.name} is too large.", source=part.name)
                fields[part.name] = bytes(part.decode(bytes(value))).decode("utf-8", "replace")
    except BaseException:
        if received is not None:
            publisher.discard(received)
        raise
    return fields, received, filename


async def upload(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    publisher = request.config_dict[PUBLISHER]
    user = authenticate(request, settings)
    if user is None:
        return refuse(401, "Authenticate with the username and password of a configured upload user.", CHALLENGE)
    if not request.content_type.startswith("multipart/"):
        return refuse(400, "Send the upload as multipart/form-data, as twine does.")
    try:
        fields, received, filename = await read_form(request, publisher, settings.max_upload_size)
    except UploadError as exc:
        return refuse(exc.status, str(exc))
    except ValueError as exc:  # a malformed multipart body
        return refuse(400, f"The multipart body could not be read: {exc}")
    if received is None:
        return refuse(400, "The upload has no `content` part holding the file.")
    try:
        return await _publish(request, publisher, user, fields, received, filename or "")
    finally:
        publisher.discard(received)


async def _publish(request, publisher: Publisher, user, fields: dict[str, str], received: Received, filename: str) -> web.Response:
    action = request.query.get(":action") or fields.get(":action")
    if action != "file_upload":
        return refuse(400, f"Unsupported :action {action!r}; only file_upload is supported.")
    try:
        project, version = check_name_version(fields.get("name", ""), fields.get("version", ""))
        check_filename(filename, project, version)
    except UploadError as exc:
        return refuse(400, str(exc))
    if not user.may_upload(project):
        return refuse(403, f"User {user.name} may not upload to {project}.")
    for field, algorithm in DIGEST_FIELDS.items():
        given = fields.get(field, "").strip().lower()
        if given and given != received.digests[algorithm]:
            return refuse(400, f"{field} does not match the uploaded file; the upload was corrupted or the digest is wrong.")
    existing = publisher.local.store.published(filename)
    if existing is not None and existing.sha256 == received.sha256:
        return web.Response(text="OK: identical file already published\n")  # re-upload: nothing changes
    if existing is not None:  # before any content check: twine --skip-existing looks for this
        return refuse(400, already_exists(filename))
    try:
        await publisher.check_new_name(project)
        await publisher.commit(received)
        inspected = await publisher.inspect(received.sha256, filename, project, version)
        metadata_sha256 = await publisher.keep_metadata(filename, inspected)
    except UploadError as exc:
        publisher.remove_blobs([received.sha256])
        return refuse(exc.status, str(exc))
    attestations = fields.get("attestations")
    file = PublishedFile(
        filename=filename, project=project, version=version, sha256=received.sha256,
        hashes={"sha256": received.sha256}, size=received.size, upload_time=upload_time(time.time()),
        requires_python=inspected.requires_python, metadata_sha256=metadata_sha256, yanked=None,
        attestations=attestations if attestations and _is_json_list(attestations) else None,
    )
    try:
        await asyncio.to_thread(publisher.local.store.add_legacy_file, file, time.time())
    except Conflict as exc:
        publisher.remove_blobs([received.sha256])
        return refuse(exc.status, str(exc))
    return web.Response(text="OK\n")


def _is_json_list(text: str) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except ValueError:
        return False


def routes() -> list[web.AbstractRouteDef]:
    # Both spellings answer directly: an upload is never redirected.
    return [web.post("/legacy/", upload), web.post("/legacy", upload)]
