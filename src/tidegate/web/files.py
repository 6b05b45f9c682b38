"""Handlers for distribution files and their PEP 658 metadata and PEP 740 provenance:
/files/<project>/<filename>[.metadata|.provenance]."""

from __future__ import annotations

import hashlib
import logging

from aiohttp import hdrs, web

from ..cache.downloads import DownloadFailed
from ..readpath.answers import BlobAnswer, BytesAnswer, FileAnswer, FileQuery, PageAnswer, Part, StreamAnswer, \
    UncachedAnswer, content_type_of
from ..readpath.errors import ReadError
from ..readpath.proxy import Proxy
from ..readpath.upstream import failed_download
from ..simple.names import checked_name
from ..upstream.client import UpstreamError
from .keys import PROXY, SETTINGS
from .responses import IMMUTABLE, error, etag_matches, read_refusal, send_file

log = logging.getLogger(__name__)


async def file(request: web.Request, proxy: Proxy | None = None) -> web.StreamResponse:
    raw = request.match_info["project"]
    project = checked_name(raw)
    if project is None:
        return error(404, f"{raw[:100]!r} is not a valid project name.")
    filename, part = Part.split(request.match_info["filename"])
    query = FileQuery(project, filename, part, head=request.method == hdrs.METH_HEAD,
                      range=request.headers.get(hdrs.RANGE), if_range=request.headers.get(hdrs.IF_RANGE))
    try:
        answer = await (proxy or request.app[PROXY]).answer(query)
    except ReadError as exc:
        return read_refusal(exc)
    assert not isinstance(answer, PageAnswer)
    return await send(request, answer)


async def send(request: web.Request, answer: FileAnswer) -> web.StreamResponse:
    if isinstance(answer, BlobAnswer):
        return await send_file(request, answer.file, etag=answer.etag, content_type=answer.content_type,
                               extra={"X-Tidegate-Cache": answer.how})
    if isinstance(answer, BytesAnswer):
        cache = IMMUTABLE if answer.immutable else request.app[SETTINGS].cache_control
        response = small_file(request, answer.body, answer.content_type, cache)
        if answer.how is not None:
            response.headers["X-Tidegate-Cache"] = answer.how
        return response
    if isinstance(answer, UncachedAnswer):
        return await uncached_part(request, answer)
    return await stream(request, answer)


async def uncached_part(request: web.Request, answer: UncachedAnswer) -> web.StreamResponse:
    """HEAD, or a byte range, of a file not cached yet, answered without waiting for all of it."""
    headers = {hdrs.CONTENT_TYPE: answer.content_type, hdrs.CACHE_CONTROL: IMMUTABLE, hdrs.ETAG: answer.etag,
               hdrs.ACCEPT_RANGES: "bytes", "X-Tidegate-Cache": "miss"}
    if answer.chunks is None:
        response = web.StreamResponse(headers=headers)
        response.content_length = answer.size
        await response.prepare(request)
        await response.write_eof()
        return response
    headers[hdrs.CONTENT_RANGE] = f"bytes {answer.first}-{answer.last}/{answer.size}"
    response = web.StreamResponse(status=206, headers=headers)
    response.content_length = answer.last - answer.first + 1
    await response.prepare(request)
    try:
        async for chunk in answer.chunks:
            await response.write(chunk)
    except (DownloadFailed, UpstreamError) as exc:
        log.warning("aborting a range of %s: %s", request.match_info["filename"], exc)
        if request.transport is not None:
            request.transport.abort()  # short of its Content-Length: a failed transfer
        return response
    await response.write_eof()
    return response


def small_file(request: web.Request, body: bytes, content_type: str, cache_control: str) -> web.Response:
    etag = f'"{hashlib.sha256(body).hexdigest()}"'
    headers = {hdrs.ETAG: etag, hdrs.CACHE_CONTROL: cache_control}
    if etag_matches(request.headers.get(hdrs.IF_NONE_MATCH), etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=content_type, headers=headers)


async def stream(request: web.Request, answer: StreamAnswer) -> web.StreamResponse:
    """Stream a file to the client while it downloads. If the download fails, the connection is
    cut before the declared length (or the final chunk) is reached, so the client sees a failed
    transfer, never a wrong file presented as complete."""
    download = answer.download
    await download.started.wait()
    if download.result.done() and isinstance(failure := download.result.exception(), DownloadFailed):
        return read_refusal(failed_download(download.file, failure))
    response = web.StreamResponse(
        headers={
            hdrs.CONTENT_TYPE: content_type_of(download.file.filename),
            hdrs.CACHE_CONTROL: IMMUTABLE,
            hdrs.ETAG: f'"{download.key}"',
            hdrs.ACCEPT_RANGES: "bytes",
            "X-Tidegate-Cache": "miss",
        }
    )
    if download.size is not None:
        response.content_length = download.size
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        async for chunk in download.follow():
            await response.write(chunk)
    except DownloadFailed as exc:
        log.warning("aborting transfer of %s: %s", download.file.filename, exc)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


def routes() -> list[web.AbstractRouteDef]:
    return [web.get("/files/{project}/{filename}", file)]  # web.get also answers HEAD
