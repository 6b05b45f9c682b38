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

Handlers parse the request, authenticate, call the publishing service and render its answer;
the service's refusals become problem documents in problems.py.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from aiohttp import hdrs, web

from ..publish.actor import Actor
from ..publish.errors import Denied, Invalid
from ..publish.protocol import API_VERSION, COMPATIBLE_VERSIONS, MECHANISM, MEDIA_TYPE
from ..publish.service import SessionView
from ..publish.states import FileState
from ..storage.records import Upload
from . import bodies
from .auth import authenticate_publisher
from .keys import PUBLISHER, SETTINGS, TOKENS
from .landing import origin
from .problems import problems

RETRY_AFTER = "1"


def rfc3339(timestamp: float) -> str:
    """UTC, "Z", whole seconds: the form PEP 694 requires for expires-at."""
    return datetime.fromtimestamp(int(timestamp), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def respond(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=MEDIA_TYPE, headers=headers)


# --- request parsing ---


async def read_request(request: web.Request) -> dict[str, Any]:
    """The JSON body of a non-file request: right Content-Type, an object, API version 2.x."""
    content_type = request.headers.get(hdrs.CONTENT_TYPE, "").split(";")[0].strip().lower()
    if content_type != MEDIA_TYPE:
        raise Invalid(f"Send requests as {MEDIA_TYPE}.", source="Content-Type", status=415)
    try:
        body = json.loads(await bodies.bounded(request, request.read()))
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurd nesting
        raise Invalid("The request body is not valid JSON.", source="body") from None
    if not isinstance(body, dict):
        raise Invalid("The request body must be a JSON object.", source="body")
    meta = body.get("meta")
    version = meta.get("api-version") if isinstance(meta, dict) else None
    if not isinstance(version, str) or not COMPATIBLE_VERSIONS.fullmatch(version):
        raise Invalid(f'meta.api-version must be "{API_VERSION}" (Upload 2.0).', source="meta.api-version")
    return body


async def require_user(request: web.Request) -> Actor:
    actor = await authenticate_publisher(request, request.config_dict[SETTINGS], request.config_dict[TOKENS])
    if actor is None:
        raise Denied("Authenticate with the username and password of a configured upload user, or as "
                     "__token__ with an API token.", source="Authorization", status=401)
    return actor


def extension(body: dict[str, Any]) -> float:
    seconds = body.get("extend-for")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise Invalid("extend-for must be a number of seconds.", source="extend-for")
    return float(min(seconds, 1e12))  # min first: float(10**400) would overflow


# --- response bodies ---


def session_url(request: web.Request, token: str) -> str:
    return f"{origin(request)}/upload/session/{token}"


def upload_url(request: web.Request, upload: Upload) -> str:
    return f"{session_url(request, upload.token)}/files/{upload.id}"


def session_body(request: web.Request, view: SessionView) -> dict[str, Any]:
    session = view.session
    base = session_url(request, session.token)
    files = {}
    for upload in view.uploads:
        if upload.status == FileState.CANCELED:
            continue  # a canceled or deleted file leaves the files mapping
        entry: dict[str, Any] = {"status": upload.status, "link": upload_url(request, upload)}
        if upload.notices:
            entry["notices"] = list(upload.notices)
        files[upload.filename] = entry
    body: dict[str, Any] = {
        "meta": {"api-version": API_VERSION},
        "links": {
            "stage": f"{origin(request)}/stage/{session.token}/simple/",
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
    user = await require_user(request)
    body = await read_request(request)
    view = await request.config_dict[PUBLISHER].create_session(user, body.get("name"), body.get("version"))
    return respond(session_body(request, view), 201, {hdrs.LOCATION: session_url(request, view.session.token)})


async def session_status(request: web.Request) -> web.Response:
    view = await request.config_dict[PUBLISHER].session(await require_user(request), request.match_info["token"],
                                                        allow_ended=True)
    return respond(session_body(request, view))


async def cancel_session(request: web.Request) -> web.Response:
    view = await request.config_dict[PUBLISHER].cancel(await require_user(request), request.match_info["token"])
    return respond(session_body(request, view))


async def publish_session(request: web.Request) -> web.Response:
    user = await require_user(request)
    await read_request(request)
    view = await request.config_dict[PUBLISHER].publish(user, request.match_info["token"])
    return respond(session_body(request, view), 201, {hdrs.LOCATION: session_url(request, view.session.token)})


async def extend_session(request: web.Request) -> web.Response:
    user = await require_user(request)
    seconds = extension(await read_request(request))
    view = await request.config_dict[PUBLISHER].extend(user, request.match_info["token"], seconds)
    return respond(session_body(request, view))


# --- file upload sessions ---


async def create_upload(request: web.Request) -> web.Response:
    user = await require_user(request)
    publisher = request.config_dict[PUBLISHER]
    await publisher.session(user, request.match_info["token"])  # 404 before a body is read
    upload = await publisher.add_file(user, request.match_info["token"], await read_request(request))
    return respond(upload_body(request, upload), 202,
                   {"Retry-After": RETRY_AFTER, hdrs.LOCATION: upload_url(request, upload)})


async def upload_status(request: web.Request) -> web.Response:
    upload = await request.config_dict[PUBLISHER].upload(await require_user(request), request.match_info["token"],
                                                         request.match_info["upload"], allow_ended=True)
    return respond(upload_body(request, upload), headers={"Retry-After": RETRY_AFTER})


async def delete_upload(request: web.Request) -> web.Response:
    await request.config_dict[PUBLISHER].delete_file(await require_user(request), request.match_info["token"],
                                                     request.match_info["upload"])
    return web.Response(status=204)


async def extend_upload(request: web.Request) -> web.Response:
    user = await require_user(request)
    publisher = request.config_dict[PUBLISHER]
    await publisher.upload(user, request.match_info["token"], request.match_info["upload"])
    seconds = extension(await read_request(request))
    upload = await publisher.extend_file(user, request.match_info["token"], request.match_info["upload"], seconds)
    return respond(upload_body(request, upload), headers={"Retry-After": RETRY_AFTER})


async def upload_content(request: web.Request) -> web.Response:
    await request.config_dict[PUBLISHER].receive_file(
        await require_user(request), request.match_info["token"], request.match_info["upload"],
        bodies.chunks(request, request.content.iter_chunked(1 << 20)), request.content_length)
    return web.Response(status=204)


async def upload_attestations(request: web.Request) -> web.Response:
    user = await require_user(request)
    publisher = request.config_dict[PUBLISHER]
    await publisher.upload(user, request.match_info["token"], request.match_info["upload"])
    await publisher.set_attestations(user, request.match_info["token"], request.match_info["upload"],
                                     await bodies.bounded(request, request.read()))
    return web.Response(status=204)


async def complete_upload(request: web.Request) -> web.Response:
    user = await require_user(request)
    publisher = request.config_dict[PUBLISHER]
    await publisher.upload(user, request.match_info["token"], request.match_info["upload"])
    await read_request(request)
    upload, deferred = await publisher.complete(user, request.match_info["token"], request.match_info["upload"])
    headers = {hdrs.LOCATION: upload_url(request, upload), "Retry-After": RETRY_AFTER}
    return respond(upload_body(request, upload), 202 if deferred else 201, headers)


def app() -> web.Application:
    """The /upload/ sub-application: its own middleware turns refusals into RFC 9457 documents."""
    sub = web.Application(middlewares=[problems], client_max_size=1024**2)
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
