"""Stage previews: /stage/<token>/simple/ is a whole index, the regular one with one publishing
session's completed files overlaid on its project, so it works with --index-url alone as well
as with --extra-index-url. The token is the capability: no credentials are asked for."""

from __future__ import annotations

from aiohttp import web

from ..readpath.local import StageSource
from ..readpath.proxy import Proxy
from . import files, simple
from .keys import LOCAL, PROXY, PUBLISHER
from .responses import error

GONE = "No such stage: the session was published, canceled or has expired."


async def _stage(request: web.Request) -> Proxy | None:
    """The read path as the stage in the URL sees it, or None."""
    view = await request.app[PUBLISHER].stage(request.match_info["token"])
    if view is None:
        return None
    return request.app[PROXY].overlaid(StageSource(request.app[LOCAL], view.session, list(view.uploads)))


async def stage_root(request: web.Request) -> web.StreamResponse:
    proxy = await _stage(request)
    return error(404, GONE) if proxy is None else await simple.root_index(request, proxy)


async def stage_project(request: web.Request) -> web.StreamResponse:
    proxy = await _stage(request)
    if proxy is None:
        return error(404, GONE)
    return await simple.project_page(request, proxy, prefix=f"/stage/{request.match_info['token']}")


async def stage_file(request: web.Request) -> web.StreamResponse:
    proxy = await _stage(request)
    return error(404, GONE) if proxy is None else await files.file(request, proxy)


def routes() -> list[web.AbstractRouteDef]:
    """The regular index's URLs under /stage/<token>/, a project page with or without its slash."""
    stage = "/stage/{token}"
    return [web.get(stage + "/simple/", stage_root), web.get(stage + "/files/{project}/{filename}", stage_file),
            *(web.get(stage + path, stage_project) for path in ("/simple/{project}/", "/simple/{project}"))]
