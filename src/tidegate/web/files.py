"""Handlers for distribution files and their PEP 658 metadata: /files/<project>/<filename>."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Callable, Union

from aiohttp import hdrs, web

from ..cache.downloads import DownloadFailed, blob_key
from ..proxy import NotCached
from ..publish.store import PublishedFile, Upload
from ..simple.model import checked_name
from ..upstream.client import UpstreamError
from ..wheelmeta import MetadataError
from .keys import PROXY
from .responses import IMMUTABLE, error, etag_matches, send_file

log = logging.getLogger(__name__)

LocalFile = Union[PublishedFile, Upload]  # both carry sha256, metadata_sha256 and attestations

METADATA_SUFFIX = ".metadata"
PROVENANCE_SUFFIX = ".provenance"
CONTENT_TYPES = {".whl": "application/zip", ".zip": "application/zip", ".gz": "application/gzip"}


def split_suffix(filename: str) -> tuple[str, str]:
    """("x.whl", ".metadata") for "x.whl.metadata"; the suffix is "" for the file itself."""
    for suffix in (METADATA_SUFFIX, PROVENANCE_SUFFIX):
        if filename.endswith(suffix):
            return filename[: -len(suffix)], suffix
    return filename, ""


async def local_file(request: web.Request, entry: LocalFile, filename: str, suffix: str) -> web.StreamResponse:
    """A file of the local index (or of a stage): its bytes, PEP 658 metadata or PEP 740 provenance."""
    local_index = request.app[PROXY].local
    if suffix == METADATA_SUFFIX:
        body = local_index.store.metadata(entry.metadata_sha256) if entry.metadata_sha256 else None
        if body is None:
            return error(404, f"No metadata file is available for {filename}.")
        return immutable_bytes(request, body, "application/octet-stream")
    if suffix == PROVENANCE_SUFFIX:
        if not entry.attestations:
            return error(404, f"No provenance is available for {filename}.")
        provenance = {"version": 1, "attestation_bundles": [
            {"publisher": {"kind": "tidegate-upload"}, "attestations": json.loads(entry.attestations)}]}
        return immutable_bytes(request, json.dumps(provenance).encode(), "application/json")
    fh = local_index.blobs.open(entry.sha256 or "")
    if fh is None:
        return error(404, f"{filename} is missing from local storage.")
    return await send_file(request, fh, etag=f'"{entry.sha256}"', content_type=content_type_of(filename),
                           extra={"X-Tidegate-Cache": "local"})


def immutable_bytes(request: web.Request, body: bytes, content_type: str) -> web.Response:
    etag = f'"{hashlib.sha256(body).hexdigest()}"'
    headers = {hdrs.ETAG: etag, hdrs.CACHE_CONTROL: IMMUTABLE}
    if etag_matches(request.headers.get(hdrs.IF_NONE_MATCH), etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=content_type, headers=headers)


def content_type_of(filename: str) -> str:
    return CONTENT_TYPES.get(filename[filename.rfind(".") :], "application/octet-stream")


async def _lookup(request: web.Request, project: str, filename: str):
    """The upstream file entry and client for /files/<project>/<filename>, or an error response."""
    proxy = request.app[PROXY]
    try:
        record, _ = await proxy.page(project)
    except UpstreamError as exc:
        return error(502, f"No cached copy of {project} and the upstream failed: {exc}")
    source = proxy.source_of(record, filename) if record is not None else None
    if source is None:
        return error(404, f"{filename} is not a file of project {project}.")
    return source


async def file(request: web.Request, staged: Callable[[str, str], LocalFile | None] | None = None) -> web.StreamResponse:
    """/files/<project>/<filename>[.metadata|.provenance]: a local (published or, through a
    stage, staged) file, else a file of a cached upstream page."""
    filename = request.match_info["filename"]
    raw = request.match_info["project"]
    project = checked_name(raw)
    if project is None:
        return error(404, f"{raw[:100]!r} is not a valid project name.")
    base, suffix = split_suffix(filename)
    local_index = request.app[PROXY].local
    entry = staged(project, base) if staged else None
    if entry is None and local_index is not None and local_index.has(project):
        entry = local_index.store.published(base)
        if entry is None or entry.project != project:
            return error(404, f"{base} is not a file of project {project}.")
    if entry is not None:
        return await local_file(request, entry, base, suffix)
    if suffix == PROVENANCE_SUFFIX:
        return error(404, f"No provenance is available for {base}.")
    if suffix == METADATA_SUFFIX:
        return await metadata(request, project, base)
    found = await _lookup(request, project, filename)
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
                await asyncio.shield(download.result)  # shared with other clients: never cancel it
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


async def metadata(request: web.Request, project: str, filename: str) -> web.StreamResponse:
    found = await _lookup(request, project, filename)
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
    return immutable_bytes(request, body, "application/octet-stream")


def routes() -> list[web.AbstractRouteDef]:
    return [web.get("/files/{project}/{filename}", file)]  # web.get also answers HEAD
