"""Release management at /manage/: what an operator needs no shell for. JSON in and out, errors
as RFC 9457 problem documents; each request is authorized like an upload (the caller must be
allowed to upload the project: a user, or an API token scoped to it).

    GET    /manage/sessions                             the caller's open publishing sessions
    POST   /manage/files/<filename>/yank | /unyank      PEP 592, body {"reason": "..."} (optional)
    DELETE /manage/files/<filename>                     delete a published local file
    POST   /manage/releases/<project>/<version>/yank | /unyank
    DELETE /manage/releases/<project>/<version>         delete every file of a local release
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import hdrs, web

from ..publish.errors import Invalid
from ..storage.records import PublishedFile
from .keys import PUBLISHER
from .problems import problems_for
from .upload import require_user, session_body

MAX_REASON = 1000  # characters; pip and uv show the reason on one line


def respond(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


async def reason(request: web.Request) -> str:
    """The yank reason of an optional JSON body {"reason": "..."} ("" without one)."""
    data = await request.read()
    if not data.strip():
        return ""
    if request.headers.get(hdrs.CONTENT_TYPE, "").split(";")[0].strip().lower() != "application/json":
        raise Invalid("Send the request body as application/json.", source="Content-Type", status=415)
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Invalid("The request body is not valid JSON.", source="body") from None
    text = body.get("reason", "") if isinstance(body, dict) else None
    if not isinstance(text, str) or len(text) > MAX_REASON:
        raise Invalid(f"reason must be a string of at most {MAX_REASON} characters.", source="reason")
    return " ".join(text.split())


def file_entry(f: PublishedFile) -> dict[str, Any]:
    return {"filename": f.filename, "project": f.project, "version": f.version, "yanked": f.yanked}


async def sessions(request: web.Request) -> web.Response:
    views = await request.config_dict[PUBLISHER].open_sessions(await require_user(request))
    return respond({"sessions": [{"project": v.session.project, "version": v.session.version,
                                  **session_body(request, v)} for v in views]})


async def yank_file(request: web.Request) -> web.Response:
    actor = await require_user(request)
    why = await reason(request) if request.match_info["action"] == "yank" else None
    file = await request.config_dict[PUBLISHER].yank(actor, request.match_info["filename"], why)
    return respond({"files": [file_entry(file)]})


async def delete_file(request: web.Request) -> web.Response:
    file = await request.config_dict[PUBLISHER].delete_published(await require_user(request),
                                                                 request.match_info["filename"])
    return respond({"deleted": [file_entry(file)]})


async def yank_release(request: web.Request) -> web.Response:
    actor = await require_user(request)
    why = await reason(request) if request.match_info["action"] == "yank" else None
    files = await request.config_dict[PUBLISHER].yank_release(actor, request.match_info["project"],
                                                              request.match_info["version"], why)
    return respond({"files": [file_entry(f) for f in files]})


async def delete_release(request: web.Request) -> web.Response:
    files = await request.config_dict[PUBLISHER].delete_release(await require_user(request),
                                                                request.match_info["project"],
                                                                request.match_info["version"])
    return respond({"deleted": [file_entry(f) for f in files]})


def app() -> web.Application:
    sub = web.Application(middlewares=[problems_for("release management")], client_max_size=64 * 1024)
    sub.add_routes([
        web.get("/sessions", sessions),
        web.post("/files/{filename}/{action:yank|unyank}", yank_file),
        web.delete("/files/{filename}", delete_file),
        web.post("/releases/{project}/{version}/{action:yank|unyank}", yank_release),
        web.delete("/releases/{project}/{version}", delete_release),
    ])
    return sub
