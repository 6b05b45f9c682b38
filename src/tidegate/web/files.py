"""Handlers for distribution files and their PEP 658 metadata: /files/<project>/<filename>."""

from __future__ import annotations

import hashlib
import logging

from aiohttp import hdrs, web

from ..cache.downloads import DownloadFailed, blob_key
from ..proxy import NotCached
from ..simple.model import is_valid_name, normalize
from ..upstream.client import UpstreamError
from ..wheelmeta import MetadataError
from .keys import PROXY
from .responses import IMMUTABLE, error, etag_matches, send_file

log = logging.getLogger(__name__)

METADATA_SUFFIX = ".metadata"
CONTENT_TYPES = {".whl": "application/zip", ".zip": "application/zip", ".gz": "application/gzip"}


def content_type_of(filename: str) -> str:
    return CONTENT_TYPES.get(filename[filename.rfind(".") :], "application/octet-stream")


async def _lookup(request: web.Request, filename: str):
    """The upstream file entry and client for /files/<project>/<filename>, or an error response."""
    proxy = request.app[PROXY]
    raw = request.match_info["project"]
    if not is_valid_name(raw):
        return error(404, f"{raw[:100]!r} is not a valid project name.")
    project = normalize(raw)
    try:
        record, _ = await proxy.page(project)
    except UpstreamError as exc:
        return error(502, f"No cached copy of {project} and the upstream failed: {exc}")
    source = proxy.source_of(record, filename) if record is not None else None
    if source is None:
        return error(404, f"{filename} is not a file of project {project}.")
    return source


async def file(request: web.Request) -> web.StreamResponse:
    filename = request.match_info["filename"]
    if filename.endswith(METADATA_SUFFIX):
        return await metadata(request, filename[: -len(METADATA_SUFFIX)])
    found = await _lookup(request, filename)
    if isinstance(found, web.Response):
        return found
    upstream_file, client = found
    proxy = request.app[PROXY]
    key = blob_key(upstream_file)
    etag = f'"{key}"'
    content_type = content_type_of(filename)

    fh = proxy.blobs.open(key)
    if fh is None:
        try:
            download = proxy.start_download(upstream_file, client)
        except NotCached as exc:
            return error(404, str(exc))
        if request.method == hdrs.METH_HEAD or request.headers.get(hdrs.RANGE):
            # Exact Content-Length and byte ranges come from the committed file.
            try:
                await download.result
            except DownloadFailed as exc:
                return error(502, f"Downloading {filename} from upstream failed: {exc}")
            fh = proxy.blobs.open(key)
        else:
            return await _stream(request, download, etag, content_type)
    if fh is None:
        return error(503, f"{filename} was evicted from the cache while being fetched; try again.")
    return await send_file(request, fh, etag=etag, content_type=content_type, extra={"X-Tidegate-Cache": "hit"})


async def _stream(request: web.Request, download, etag: str, content_type: str) -> web.StreamResponse:
    """Stream a file to the client while it downloads. If the download fails, the connection is
    cut before the declared length (or the final chunk) is reached, so the client sees a failed
    transfer, never a wrong file presented as complete."""
    await download.started.wait()
    if download.result.done() and download.result.exception() is not None:
        return error(502, f"Downloading {download.file.filename} from upstream failed: {download.result.exception()}")
    response = web.StreamResponse(
        headers={
            hdrs.CONTENT_TYPE: content_type,
            hdrs.CACHE_CONTROL: IMMUTABLE,
            hdrs.ETAG: etag,
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


async def metadata(request: web.Request, filename: str) -> web.StreamResponse:
    found = await _lookup(request, filename)
    if isinstance(found, web.Response):
        return found
    upstream_file, client = found
    if not upstream_file.is_wheel and not upstream_file.core_metadata:
        return error(404, f"No metadata file is available for {filename}.")
    try:
        body = await request.app[PROXY].metadata(upstream_file, client)
    except NotCached as exc:
        return error(404, str(exc))
    except (UpstreamError, DownloadFailed) as exc:
        return error(502, f"Could not get the metadata of {filename} from upstream: {exc}")
    except MetadataError as exc:
        return error(502, f"The upstream's {filename} is not a valid wheel: {exc}")
    etag = f'"{hashlib.sha256(body).hexdigest()}"'
    headers = {hdrs.ETAG: etag, hdrs.CACHE_CONTROL: IMMUTABLE}
    if etag_matches(request.headers.get(hdrs.IF_NONE_MATCH), etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/octet-stream", headers=headers)


def routes() -> list[web.AbstractRouteDef]:
    return [web.get("/files/{project}/{filename}", file)]  # web.get also answers HEAD
