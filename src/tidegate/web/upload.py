"""Upload 2.0 (PEP 694) at /upload/: publishing sessions, file upload sessions, http-post-bytes.

URL layout (documented in the README): the session token is part of every session URL, so each
is as unguessable as the stage URL derived from it.

    POST   /upload/                                   create a publishing session
    GET    /upload/session/<token>                    status        DELETE: cancel
    POST   /upload/session/<token>/publish | /extend
    POST   /upload/session/<token>/files              create a file upload session
    GET    /upload/session/<token>/files/<id>         status        DELETE: cancel / delete
    POST   /upload/session/<token>/files/<id>/complete | /extend | /content | /attestations
    GET    /stage/<token>/simple/                     the stage preview index
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import hdrs, web

from ..config import User
from ..publish import states
from ..publish.service import Publisher, new_token
from ..publish.store import Conflict, Session, Upload
from ..publish.validate import UploadError, check_filename, check_hashes, check_name_version, check_size
from .auth import CHALLENGE, authenticate
from .keys import PUBLISHER, SETTINGS
from .problems import API_VERSION, UPLOAD_JSON, Problem, problems

log = logging.getLogger(__name__)

MECHANISM = "http-post-bytes"
RETRY_AFTER = "1"


def rfc3339(timestamp: float) -> str:
    """UTC, "Z", whole seconds: the form PEP 694 requires for expires-at."""
    return datetime.fromtimestamp(int(timestamp), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def respond(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=UPLOAD_JSON, headers=headers)


# --- request checks ---


async def read_request(request: web.Request) -> dict[str, Any]:
    """The JSON body of a non-file request: right Content-Type, an object, API version 2.x."""
    content_type = request.headers.get(hdrs.CONTENT_TYPE, "").split(";")[0].strip().lower()
    if content_type != UPLOAD_JSON:
        raise Problem(415, f"Send requests as {UPLOAD_JSON}.", source="Content-Type")
    body = parse_json(await request.read())
    if not isinstance(body, dict):
        raise Problem(400, "The request body must be a JSON object.", source="body")
    meta = body.get("meta")
    version = meta.get("api-version") if isinstance(meta, dict) else None
    if not isinstance(version, str) or not API_VERSIONS.fullmatch(version):
        raise Problem(400, 'meta.api-version must be "2.0" (Upload 2.0).', source="meta.api-version")
    return body


API_VERSIONS = re.compile(r"2\.[0-9]+")  # the major version is the contract; minors are compatible


def parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurd nesting
        raise Problem(400, "The request body is not valid JSON.", source="body") from None


def require_user(request: web.Request) -> User:
    user = authenticate(request, request.config_dict[SETTINGS])
    if user is None:
        raise Problem(401, "Authenticate with the username and password of a configured upload user.",
                      source="Authorization", headers=CHALLENGE)
    return user


def require_upload_right(user: User, project: str) -> None:
    """Checked on every request, as PEP 694 requires: rights can change while a session is open."""
    if not user.may_upload(project):
        raise Problem(403, f"User {user.name} may not upload to {project}.", source="Authorization")


def live_session(request: web.Request, user: User, *, allow_ended: bool = False) -> Session:
    """The session named in the URL, authorized for this user. Ended sessions keep only their
    status URL (allow_ended); their other URLs answer 404."""
    publisher = request.config_dict[PUBLISHER]
    session = publisher.local.store.session(request.match_info["token"])
    if session is not None and session.status in states.EDITABLE and session.expires_at < time.time():
        # Past expires-at is expired now, not at the next sweep.
        publisher.expire_now()
        session = publisher.local.store.session(session.token)
    if session is None:
        raise Problem(404, "No such publishing session (it may have expired and been purged).")
    require_upload_right(user, session.project)
    if not allow_ended and session.status == states.CANCELED:
        raise Problem(404, "This publishing session was canceled; its data is gone.")
    return session


def file_upload(request: web.Request, session: Session) -> Upload:
    upload = request.config_dict[PUBLISHER].local.store.upload(request.match_info["upload"])
    if upload is None or upload.token != session.token:
        raise Problem(404, "No such file upload session.")
    return upload


def upload_error(exc: UploadError) -> Problem:
    return Problem(exc.status, str(exc), source=exc.source)


def conflict(exc: Conflict, location: str | None = None) -> Problem:
    errors = [{"source": f, "message": str(exc)} for f in exc.files] or None
    return Problem(exc.status, str(exc), source="session", errors=errors,
                   headers={hdrs.LOCATION: location} if location else None)


def refused(exc: states.Refused) -> Problem:
    return Problem(exc.status, exc.message, source="status")


# --- response bodies ---


def session_url(request: web.Request, token: str) -> str:
    return f"{request.url.origin()}/upload/session/{token}"


def upload_url(request: web.Request, upload: Upload) -> str:
    return f"{session_url(request, upload.token)}/files/{upload.id}"


def session_body(request: web.Request, session: Session) -> dict[str, Any]:
    base = session_url(request, session.token)
    files = {}
    for upload in request.config_dict[PUBLISHER].local.store.uploads(session.token):
        if upload.status == states.CANCELED:
            continue  # a canceled or deleted file leaves the files mapping
        entry: dict[str, Any] = {"status": upload.status, "link": upload_url(request, upload)}
        if upload.notices:
            entry["notices"] = list(upload.notices)
        files[upload.filename] = entry
    body: dict[str, Any] = {
        "meta": {"api-version": API_VERSION},
        "links": {
            "stage": f"{request.url.origin()}/stage/{session.token}/simple/",
            "upload": f"{base}/files",
            "session": base,
            "publish": f"{base}/publish",
            "extend": f"{base}/extend",
        },
        "mechanisms": [MECHANISM],
        "session-token": session.token,
        "expires-at": rfc3339(session.expires_at),
        "status": session.status,
        "files": files,
    }
    if session.notices:
        body["notices"] = list(session.notices)
    return body


def upload_body(request: web.Request, upload: Upload) -> dict[str, Any]:
    base = upload_url(request, upload)
    body: dict[str, Any] = {
        "meta": {"api-version": API_VERSION},
        "links": {"file-upload-session": base, "complete": f"{base}/complete", "extend": f"{base}/extend"},
        "status": upload.status,
        "expires-at": rfc3339(upload.expires_at),
        "mechanism": {"identifier": upload.mechanism, "file_url": f"{base}/content",
                      "attestations_url": f"{base}/attestations"},
    }
    if upload.notices:
        body["notices"] = list(upload.notices)
    return body


# --- publishing sessions ---


async def create_session(request: web.Request) -> web.Response:
    user = require_user(request)
    body = await read_request(request)
    name, version = body.get("name"), body.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        raise Problem(400, "name and version are required strings.", source="name")
    try:
        project, version = check_name_version(name, version)
    except UploadError as exc:
        raise upload_error(exc) from None
    require_upload_right(user, project)  # 403 before 409: do not disclose a session to outsiders
    publisher = request.config_dict[PUBLISHER]
    settings = request.config_dict[SETTINGS]
    try:
        await publisher.check_new_name(project)
        session = await asyncio.to_thread(publisher.local.store.create_session, new_token(), project, version,
                                          time.time(), settings.session_lifetime)
    except UploadError as exc:
        raise upload_error(exc) from None
    except Conflict as exc:
        raise conflict(exc, session_url(request, exc.location or "")) from None
    location = session_url(request, session.token)
    return respond(session_body(request, session), 201, {hdrs.LOCATION: location})


async def session_status(request: web.Request) -> web.Response:
    session = live_session(request, require_user(request), allow_ended=True)
    return respond(session_body(request, session))


async def cancel_session(request: web.Request) -> web.Response:
    session = live_session(request, require_user(request), allow_ended=True)
    publisher = request.config_dict[PUBLISHER]
    try:
        orphans = await asyncio.to_thread(publisher.local.store.cancel_session, session.token, time.time())
    except states.Refused as exc:
        raise refused(exc) from None
    publisher.remove_blobs(orphans)
    return respond(session_body(request, publisher.local.store.session(session.token)))


async def publish_session(request: web.Request) -> web.Response:
    session = live_session(request, require_user(request))
    await read_request(request)
    publisher = request.config_dict[PUBLISHER]
    try:
        await asyncio.to_thread(publisher.local.store.publish, session.token, time.time())
    except Conflict as exc:
        raise conflict(exc) from None
    except states.Refused as exc:
        raise refused(exc) from None
    location = session_url(request, session.token)
    return respond(session_body(request, publisher.local.store.session(session.token)), 201, {hdrs.LOCATION: location})


MAX_EXTENSION = 10 * 365 * 86400.0  # beyond any configurable maximum lifetime


def extension(body: dict[str, Any]) -> float:
    seconds = body.get("extend-for")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise Problem(400, "extend-for must be a number of seconds.", source="extend-for")
    return float(min(seconds, MAX_EXTENSION))  # min first: float(10**400) would overflow


async def extend_session(request: web.Request) -> web.Response:
    session = live_session(request, require_user(request))
    seconds = extension(await read_request(request))
    store = request.config_dict[PUBLISHER].local.store
    if session.status in states.EDITABLE:
        # A suggestion: honoured up to the configured maximum age, never moved earlier.
        until = min(session.expires_at + seconds, session.created_at + request.config_dict[SETTINGS].session_max_lifetime)
        await asyncio.to_thread(store.extend_session, session.token, until)
    return respond(session_body(request, store.session(session.token)))


# --- file upload sessions ---


async def create_upload(request: web.Request) -> web.Response:
    session = live_session(request, require_user(request))
    body = await read_request(request)
    settings = request.config_dict[SETTINGS]
    filename = body.get("filename")
    if not isinstance(filename, str):
        raise Problem(400, "filename is a required string.", source="filename")
    try:
        check_filename(filename, session.project, session.version)
        size = check_size(body.get("size"), settings.max_upload_size)
        hashes = check_hashes(body.get("hashes"))
    except UploadError as exc:
        raise upload_error(exc) from None
    mechanism = body.get("mechanism")
    if mechanism != MECHANISM:
        raise Problem(422, f"Unsupported upload mechanism {mechanism!r}; this server offers {MECHANISM}.",
                      source="mechanism")
    store = request.config_dict[PUBLISHER].local.store
    try:
        upload = await asyncio.to_thread(store.create_upload, secrets.token_urlsafe(12), session.token, filename,
                                         size, hashes, mechanism, time.time(), settings.session_lifetime)
    except Conflict as exc:
        raise conflict(exc) from None
    except states.Refused as exc:
        raise refused(exc) from None
    return respond(upload_body(request, upload), 202, {"Retry-After": RETRY_AFTER, hdrs.LOCATION: upload_url(request, upload)})


async def upload_status(request: web.Request) -> web.Response:
    session = live_session(request, require_user(request), allow_ended=True)
    upload = file_upload(request, session)
    return respond(upload_body(request, upload), headers={"Retry-After": RETRY_AFTER})


async def delete_upload(request: web.Request) -> web.Response:
    session = live_session(request, require_user(request))
    upload = file_upload(request, session)
    publisher = request.config_dict[PUBLISHER]
    try:
        orphans = await asyncio.to_thread(publisher.local.store.delete_upload, upload.id)
    except Conflict as exc:
        raise conflict(exc) from None
    except states.Refused as exc:
        raise refused(exc) from None
    publisher.remove_blobs(orphans)
    return web.Response(status=204)


async def extend_upload(request: web.Request) -> web.Response:
    session = live_session(request, require_user(request))
    upload = file_upload(request, session)
    seconds = extension(await read_request(request))
    store = request.config_dict[PUBLISHER].local.store
    # A file upload lives as long as its session at most; extending the file extends both.
    until = min(upload.expires_at + seconds, session.created_at + request.config_dict[SETTINGS].session_max_lifetime)
    if upload.status != states.CANCELED and session.status in states.EDITABLE:
        await asyncio.to_thread(store.extend_session, session.token, until)
    return respond(upload_body(request, store.upload(upload.id)), headers={"Retry-After": RETRY_AFTER})


async def upload_content(request: web.Request) -> web.Response:
    """http-post-bytes: the raw file, streamed to disk and checked against the declared size and
    every declared hash before the upload session records it."""
    session = live_session(request, require_user(request))
    upload = file_upload(request, session)
    if not states.accepts_bytes(upload.status):
        raise Problem(409, f"This file upload is {upload.status}; bytes are accepted only while it is pending.",
                      source="status")
    if request.content_length is not None and request.content_length != upload.size:
        raise Problem(400, f"The body has {request.content_length} bytes; the upload session declared {upload.size}.",
                      source="Content-Length")
    publisher = request.config_dict[PUBLISHER]
    try:
        received = await publisher.receive(request.content.iter_chunked(1 << 20), algorithms=set(upload.hashes),
                                           limit=upload.size)
    except UploadError as exc:
        raise upload_error(exc) from None
    try:
        if received.size != upload.size:
            raise Problem(400, f"Received {received.size} bytes; the upload session declared {upload.size}.",
                          source="content")
        wrong = [name for name, digest in upload.hashes.items() if received.digests[name] != digest]
        if wrong:
            raise Problem(400, f"The bytes received do not match the declared {', '.join(wrong)}.", source="hashes")
        await publisher.commit(received)
        try:
            await asyncio.to_thread(publisher.local.store.set_upload_bytes, upload.id, received.sha256)
        except Conflict as exc:  # canceled or deleted while the bytes were arriving
            publisher.remove_blobs([received.sha256])
            raise conflict(exc) from None
    finally:
        publisher.discard(received)
    return web.Response(status=204)


async def upload_attestations(request: web.Request) -> web.Response:
    session = live_session(request, require_user(request))
    upload = file_upload(request, session)
    attestations = parse_json(await request.read())
    if not isinstance(attestations, list) or not attestations or not all(
        isinstance(a, dict) and isinstance(a.get("envelope"), dict) and "verification_material" in a
        for a in attestations
    ):
        raise Problem(400, "Attestations must be a JSON array of PEP 740 attestation objects.", source="body")
    try:
        await asyncio.to_thread(request.config_dict[PUBLISHER].local.store.set_attestations, upload.id,
                                json.dumps(attestations))
    except Conflict as exc:
        raise conflict(exc) from None
    return web.Response(status=204)


async def complete_upload(request: web.Request) -> web.Response:
    session = live_session(request, require_user(request))
    upload = file_upload(request, session)
    await read_request(request)
    publisher = request.config_dict[PUBLISHER]
    headers = {hdrs.LOCATION: upload_url(request, upload), "Retry-After": RETRY_AFTER}
    if upload.status != states.PENDING:
        raise Problem(409, f"This file upload is {upload.status}; only a pending upload can be completed.",
                      source="status")
    if upload.sha256 is None:
        await _fail(publisher, upload, "No bytes were uploaded before completion; delete this upload and start again.")
        raise Problem(400, "No bytes were uploaded before completion; delete this upload and start again.",
                      source="content", headers=headers)
    if upload.size > request.config_dict[SETTINGS].deferred_validation:
        try:
            updated = await asyncio.to_thread(publisher.local.store.finish_upload, upload.id,
                                              states.FileEvent.COMPLETE_DEFERRED)
        except states.Refused as exc:  # deleted meanwhile
            raise refused(exc) from None
        task = asyncio.ensure_future(_validate(publisher, session, upload, deferred=True))
        request.config_dict[BACKGROUND].add(task)
        task.add_done_callback(request.config_dict[BACKGROUND].discard)
        return respond(upload_body(request, updated), 202, headers)
    problem = await _validate(publisher, session, upload, deferred=False)
    if problem is not None:
        raise Problem(400, problem, source="content", headers=headers)
    return respond(upload_body(request, publisher.local.store.upload(upload.id)), 201, headers)


async def _validate(publisher: Publisher, session: Session, upload: Upload, *, deferred: bool) -> str | None:
    """Check the archive; move the upload to completed or error. Returns the error, if any."""
    try:
        inspected = await publisher.inspect(upload.sha256 or "", upload.filename, session.project, session.version)
        metadata_sha256 = await publisher.keep_metadata(upload.filename, inspected)
    except UploadError as exc:
        await _fail(publisher, upload, str(exc), deferred=deferred)
        return str(exc)
    event = states.FileEvent.PROCESSING_SUCCEEDED if deferred else states.FileEvent.COMPLETE_IMMEDIATE
    try:
        await asyncio.to_thread(publisher.local.store.finish_upload, upload.id, event,
                                requires_python=inspected.requires_python, metadata_sha256=metadata_sha256)
    except states.Refused:
        pass  # the session was canceled meanwhile (allowed while files process): discard the outcome
    return None


async def _fail(publisher: Publisher, upload: Upload, message: str, *, deferred: bool = False) -> None:
    event = states.FileEvent.PROCESSING_FAILED if deferred else states.FileEvent.COMPLETE_FAILED
    try:
        await asyncio.to_thread(publisher.local.store.finish_upload, upload.id, event, notice=message)
    except states.Refused:
        pass  # canceled meanwhile


BACKGROUND = web.AppKey("upload_background", set)


def app() -> web.Application:
    """The /upload/ sub-application: its own middleware turns Problems into RFC 9457 documents."""
    sub = web.Application(middlewares=[problems], client_max_size=1024**2)
    sub[BACKGROUND] = set()
    session = "/session/{token}"
    upload = session + "/files/{upload}"
    sub.add_routes([
        web.post("/", create_session),
        web.get(session, session_status),
        web.delete(session, cancel_session),
        web.post(session + "/publish", publish_session),
        web.post(session + "/extend", extend_session),
        web.post(session + "/files", create_upload),
        web.get(upload, upload_status),
        web.delete(upload, delete_upload),
        web.post(upload + "/complete", complete_upload),
        web.post(upload + "/extend", extend_upload),
        web.post(upload + "/content", upload_content),
        web.post(upload + "/attestations", upload_attestations),
    ])
    return sub
