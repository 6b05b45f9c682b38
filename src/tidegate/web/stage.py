"""Stage previews: /stage/<token>/simple/ is a whole index, the regular one with one publishing
session's completed files overlaid on its project, so it works with --index-url alone as well
as with --extra-index-url. The token is the capability: no credentials are asked for."""

from __future__ import annotations

from aiohttp import web

from ..publish import states
from . import files, simple
from .keys import PROXY
from .responses import error


def _session(request: web.Request):
    return request.app[PROXY].local.live_session(request.match_info["token"])


GONE = "No such stage: the session was published, canceled or has expired."


async def stage_root(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    if session is None:
        return error(404, GONE)
    return await simple.root_index(request, extra=session.project)


async def stage_project(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    if session is None:
        return error(404, GONE)
    local = request.app[PROXY].local

    def overlay(name: str):
        if name != session.project:
            return None
        return local.stage_page(session, local.page(name) if local.has(name) else None)

    return await simple.project_page(request, overlay, prefix=f"/stage/{session.token}")


async def stage_file(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    if session is None:
        return error(404, GONE)
    store = request.app[PROXY].local.store

    def staged(project: str, filename: str):
        if project != session.project:
            return None
        return next((u for u in store.uploads(session.token)
                     if u.filename == filename and u.status == states.COMPLETED), None)

    return await files.file(request, staged)


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/stage/{token}/simple/", stage_root),
        web.get("/stage/{token}/simple/{project}/", stage_project),
        web.get("/stage/{token}/simple/{project}", stage_project),
        web.get("/stage/{token}/files/{project}/{filename}", stage_file),
    ]
