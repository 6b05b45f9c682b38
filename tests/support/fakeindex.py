"""A fake upstream Simple Repository API index (PEP 503 / 691 / 658 / 700) for tests.

Driven by plain data: tests mutate `FakeIndex` attributes between requests and the next
request sees the change. Serve it with `RunningFakeIndex.start(index)` (or the `fake_index`
fixture in conftest.py), which also offers a real outage via `down()` / `up()`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import astuple, dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Literal, NamedTuple
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler
from packaging.utils import parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .dists import normalize, sha256_of, wheel_metadata

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_V1_TYPE = "application/vnd.pypi.simple.v1+html"
HTML_TYPE = "text/html"
_ALIASES = {
    "application/vnd.pypi.simple.latest+json": JSON_TYPE,
    "application/vnd.pypi.simple.latest+html": HTML_V1_TYPE,
}
Mode = Literal["html", "json", "negotiate"]

# Request headers kept in `FakeIndex.log` for assertions.
RECORDED_HEADERS = (
    "Accept", "Range", "If-Range", "If-None-Match", "If-Modified-Since", "User-Agent",
)
_FLIP = bytes(255 - i for i in range(256))  # byte translation table used by `corrupt`


@dataclass
class FakeFile:
    filename: str
    path: Path  # the bytes served at /files/<filename>
    requires_python: str | None = None
    yanked: bool | str = False  # False, True, or the reason
    upload_time: str | None = None  # ISO 8601, e.g. "2024-01-02T03:04:05.000000Z"
    serve_metadata: bool = True  # offer PEP 658 `<filename>.metadata` (wheels only)
    sha256: str | None = None  # advertised hash; None = the real one (set it to lie)
    metadata: bytes | None = None  # `.metadata` body; None = METADATA from the wheel
    provenance: bytes | None = None  # PEP 740 provenance object served at `<filename>.provenance`

    @property
    def offers_metadata(self) -> bool:
        return self.serve_metadata and self.filename.endswith(".whl")

    def real_sha256(self) -> str:
        return _cached_sha256(self.path)

    def advertised_sha256(self) -> str:
        return self.sha256 or self.real_sha256()

    def metadata_bytes(self) -> bytes:
        return self.metadata if self.metadata is not None else wheel_metadata(self.path)


@dataclass
class Fault:
    """Misbehaviour injected for one request path; see `FakeIndex.faults`."""

    status: int | None = None  # answer with this status (and a tiny body) instead
    delay: float = 0.0  # seconds to wait before answering at all
    slow: float | None = None  # seconds to sleep before each body chunk
    reset_after: int | None = None  # send full headers, this many body bytes, then close
    corrupt: bool = False  # same length, every byte flipped
    times: int | None = None  # apply to the next N requests only; None = forever
    headers: dict[str, str] = field(default_factory=dict)  # extra headers (with `status`)
    chunk_size: int = 1024  # body chunk size while `slow`


# Per-request storage key for the active fault (RequestKey where aiohttp has it).
_FAULT_KEY = web.RequestKey("fault", Fault) if hasattr(web, "RequestKey") else "fault"


class LoggedRequest(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]  # only RECORDED_HEADERS that were sent


_sha_cache: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    st = os.stat(path)
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _sha_cache:
        _sha_cache[key] = sha256_of(path)
    return _sha_cache[key]


def project_of(filename: str) -> str:
    """Normalized project name from a wheel or sdist filename."""
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[0])
        return str(parse_sdist_filename(filename)[0])
    except ValueError:
        return normalize(filename.split("-", 1)[0])


def _version_of(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (ValueError, InvalidVersion):
        return None


def _parse_accept(header: str) -> list[tuple[str, float]]:
    out = []
    for part in header.split(","):
        mtype, *params = (p.strip() for p in part.split(";"))
        if not mtype:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        out.append((_ALIASES.get(mtype.lower(), mtype.lower()), q))
    return out


def _quality(ranges: list[tuple[str, float]], ctype: str) -> float:
    """q of the most specific Accept range matching ctype (0 if none)."""
    best = (0, 0.0)
    major = ctype.split("/")[0]
    for mtype, q in ranges:
        spec = 3 if mtype == ctype else 2 if mtype == f"{major}/*" else 1 if mtype == "*/*" else 0
        if spec > best[0]:
            best = (spec, q)
    return best[1]


_UNSATISFIABLE = "unsatisfiable"


def _parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """(first, last) inclusive, _UNSATISFIABLE, or None to ignore the header."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or not (m[1] or m[2]):
        return None  # malformed or multiple ranges: serve the whole file
    if m[1]:
        first = int(m[1])
        last = int(m[2]) if m[2] else size - 1
        if m[2] and last < first:
            return None
        return _UNSATISFIABLE if first >= size else (first, min(last, size - 1))
    n = int(m[2])
    return _UNSATISFIABLE if n == 0 or size == 0 else (max(0, size - n), size - 1)


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def _not_modified(request: web.Request, etag: str, last_modified: int) -> bool:
    inm = request.headers.get("If-None-Match")
    if inm is not None:  # takes precedence over If-Modified-Since (RFC 9110)
        return _etag_matches(inm, etag)
    ims = request.headers.get("If-Modified-Since")
    if ims:
        try:
            return last_modified <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def _chunks(source: bytes | Path, offset: int, length: int, size: int) -> Iterator[bytes]:
    if isinstance(source, bytes):
        for i in range(offset, offset + length, size):
            yield source[i : min(i + size, offset + length)]
        return
    with open(source, "rb") as f:
        f.seek(offset)
        while length > 0 and (data := f.read(min(size, length))):
            length -= len(data)
            yield data


class FakeIndex:
    """The data and behaviour of the fake index; `app()` builds the aiohttp application."""

    def __init__(
        self,
        mode: Mode = "negotiate",
        *,
        relative_urls: bool = True,
        include_size: bool = True,
        ranges: bool = True,
        prefer: Literal["json", "html"] = "json",
    ) -> None:
        self.mode: Mode = mode
        self.relative_urls = relative_urls  # "../../files/x" vs "http://host/files/x"
        self.include_size = include_size  # JSON "size" key
        self.ranges = ranges  # honour Range on files
        self.prefer = prefer  # negotiate mode: winner on equal q (and for */*)
        self.projects: dict[str, list[FakeFile]] = {}
        self.status: dict[str, str] = {}  # PEP 792 project status, e.g. "archived"
        self.status_reason: dict[str, str] = {}
        self.tracks: dict[str, list[str]] = {}  # PEP 708
        self.alternate_locations: dict[str, list[str]] = {}  # PEP 708
        self.raw_pages: dict[str, tuple[str, bytes]] = {}  # name -> (content type, body)
        self.page_headers: dict[str, str] = {}  # extra headers on project pages
        self.basic_auth: tuple[str, str] | None = None  # require these credentials on every request
        self.faults: dict[str, Fault] = {}  # exact request path -> fault
        self.requests: Counter[str] = Counter()  # path -> count
        self.method_requests: Counter[tuple[str, str]] = Counter()  # (method, path) -> count
        self.log: list[LoggedRequest] = []
        self.in_flight = self.max_in_flight = 0  # requests being answered, and their most at once
        self.connections: set[object] = set()  # client (address, port) pairs seen: one per connection
        self._changes: dict[str, tuple[str, int]] = {}  # name -> (fingerprint, last-modified)

    # -- data ------------------------------------------------------------------------------

    def add(self, path: Path | str, *, project: str | None = None, **attrs: object) -> FakeFile:
        """Offer a file (attrs: any FakeFile field, e.g. filename=, yanked=, upload_time=)."""
        path = Path(path)
        filename = str(attrs.pop("filename", path.name))
        ff = FakeFile(filename, path, **attrs)  # type: ignore[arg-type]
        name = normalize(project) if project else project_of(ff.filename)
        files = self.projects.setdefault(name, [])
        files[:] = [f for f in files if f.filename != ff.filename] + [ff]
        return ff

    def remove(self, name: str) -> None:
        """Forget a project entirely (its page becomes 404)."""
        name = normalize(name)
        for table in (self.projects, self.status, self.status_reason, self.tracks, self.alternate_locations,
                      self.raw_pages):
            table.pop(name, None)

    def remove_file(self, filename: str) -> None:
        for files in self.projects.values():
            files[:] = [f for f in files if f.filename != filename]

    def file(self, filename: str) -> FakeFile | None:
        for files in self.projects.values():
            for f in files:
                if f.filename == filename:
                    return f
        return None

    def reset_counters(self) -> None:
        self.requests.clear()
        self.method_requests.clear()
        self.log.clear()

    # -- rendering -------------------------------------------------------------------------

    def _api_version(self, name: str) -> str:
        return "1.4" if name in self.status else "1.2" if name in self.tracks else "1.1"

    def _url(self, origin: str, filename: str) -> str:
        rel = f"files/{quote(filename)}"
        return f"../../{rel}" if self.relative_urls else f"{origin}/{rel}"

    def render_json(self, name: str, origin: str) -> bytes:
        files = []
        for f in self.projects[name]:
            meta: dict[str, str] | bool = False
            if f.offers_metadata:
                meta = {"sha256": hashlib.sha256(f.metadata_bytes()).hexdigest()}
            entry: dict[str, object] = {
                "filename": f.filename,
                "url": self._url(origin, f.filename),
                "hashes": {"sha256": f.advertised_sha256()},
                "yanked": f.yanked,
                "core-metadata": meta,
                "dist-info-metadata": meta,
            }
            if f.requires_python is not None:
                entry["requires-python"] = f.requires_python
            if self.include_size:
                entry["size"] = f.path.stat().st_size
            if f.upload_time is not None:
                entry["upload-time"] = f.upload_time
            if f.provenance is not None:
                entry["provenance"] = self._url(origin, f.filename) + ".provenance"
            files.append(entry)
        versions = {v for f in self.projects[name] if (v := _version_of(f.filename))}
        doc: dict[str, object] = {
            "meta": {"api-version": self._api_version(name)},
            "name": name,
            "versions": sorted(versions, key=Version),
            "files": files,
        }
        if name in self.status:
            doc["project-status"] = {"status": self.status[name]}
            if name in self.status_reason:
                doc["project-status"]["reason"] = self.status_reason[name]  # type: ignore[index]
        if name in self.tracks:  # PEP 708: tracks live in meta
            doc["meta"]["tracks"] = self.tracks[name]  # type: ignore[index]
        if name in self.alternate_locations:
            doc["alternate-locations"] = self.alternate_locations[name]
        return json.dumps(doc, indent=1).encode()

    def render_html(self, name: str, origin: str) -> bytes:
        esc = html.escape
        head = [f'<meta name="pypi:repository-version" content="{self._api_version(name)}">']
        if name in self.status:
            head.append(f'<meta name="pypi:project-status" content="{esc(self.status[name])}">')
            if name in self.status_reason:
                reason = esc(self.status_reason[name])
                head.append(f'<meta name="pypi:project-status-reason" content="{reason}">')
        head += [f'<meta name="pypi:tracks" content="{esc(t)}">' for t in self.tracks.get(name, ())]
        head += [f'<meta name="pypi:alternate-locations" content="{esc(t)}">'
                 for t in self.alternate_locations.get(name, ())]
        links = []
        for f in self.projects[name]:
            attrs = f' href="{esc(self._url(origin, f.filename))}#sha256={f.advertised_sha256()}"'
            if f.requires_python is not None:
                attrs += f' data-requires-python="{esc(f.requires_python)}"'
            if f.yanked is not False:
                attrs += f' data-yanked="{esc(f.yanked if isinstance(f.yanked, str) else "")}"'
            if f.offers_metadata:
                digest = hashlib.sha256(f.metadata_bytes()).hexdigest()
                attrs += f' data-core-metadata="sha256={digest}"'
                attrs += f' data-dist-info-metadata="sha256={digest}"'
            if f.provenance is not None:
                attrs += f' data-provenance="{esc(self._url(origin, f.filename))}.provenance"'
            links.append(f"    <a{attrs}>{esc(f.filename)}</a><br />")
        return "\n".join([
            "<!DOCTYPE html>", "<html>", "  <head>", *(f"    {h}" for h in head),
            f"    <title>Links for {esc(name)}</title>", "  </head>", "  <body>",
            f"    <h1>Links for {esc(name)}</h1>", *links, "  </body>", "</html>", "",
        ]).encode()

    def _negotiate(self, request: web.Request) -> str | None:
        """Content type to answer with, or None for 406."""
        if self.mode == "html":
            return HTML_TYPE
        if self.mode == "json":
            return JSON_TYPE
        ranges = _parse_accept(request.headers.get("Accept", "")) or [("*/*", 1.0)]
        order = (
            [JSON_TYPE, HTML_V1_TYPE, HTML_TYPE] if self.prefer == "json"
            else [HTML_TYPE, HTML_V1_TYPE, JSON_TYPE]
        )
        best = max(order, key=lambda t: _quality(ranges, t))  # first wins ties
        return best if _quality(ranges, best) > 0 else None

    def _last_modified(self, name: str) -> int:
        """Epoch seconds of the project's last observed change; strictly increases per change."""
        state = (
            [(astuple(f), f.advertised_sha256()) for f in self.projects.get(name, ())],
            self.status.get(name), self.status_reason.get(name), self.tracks.get(name),
            self.alternate_locations.get(name),
            self.raw_pages.get(name), self.mode, self.relative_urls, self.include_size,
        )
        fp = hashlib.sha256(repr(state).encode()).hexdigest()
        prev = self._changes.get(name)
        if prev is None or prev[0] != fp:
            stamp = int(time.time()) if prev is None else max(int(time.time()), prev[1] + 1)
            self._changes[name] = (fp, stamp)
        return self._changes[name][1]

    # -- HTTP ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/simple/", self._root)
        app.router.add_get("/simple/{name}", self._add_slash)
        app.router.add_get("/simple/{name}/", self._project)
        app.router.add_get("/files/{filename}", self._file)
        return app

    def _take_fault(self, path: str) -> Fault | None:
        fault = self.faults.get(path)
        if fault is not None and fault.times is not None:
            if fault.times <= 0:
                del self.faults[path]
                return None
            fault.times -= 1
            if fault.times == 0:
                del self.faults[path]
        return fault

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.connections.add(peer)
        try:
            return await self._handle(request, handler)
        finally:
            self.in_flight -= 1

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path, method = request.path, request.method
        self.requests[path] += 1
        self.method_requests[(method, path)] += 1
        recorded = {h: request.headers[h] for h in RECORDED_HEADERS if h in request.headers}
        self.log.append(LoggedRequest(method, path, recorded))
        if self.basic_auth is not None:
            auth = request.headers.get("Authorization", "")
            expected = "Basic " + base64.b64encode(":".join(self.basic_auth).encode()).decode()
            if auth != expected:
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
        fault = self._take_fault(path)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                text = f"injected {fault.status}\n"
                return web.Response(status=fault.status, text=text, headers=fault.headers)
            request[_FAULT_KEY] = fault
        return await handler(request)

    async def _root(self, request: web.Request) -> web.StreamResponse:
        ctype = self._negotiate(request)
        if ctype is None:
            raise web.HTTPNotAcceptable()
        names = sorted(self.projects)
        if ctype == JSON_TYPE:
            doc = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
            body = json.dumps(doc).encode()
        else:
            links = "".join(f'<a href="{quote(n)}/">{html.escape(n)}</a>\n' for n in names)
            body = f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n".encode()
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        if _etag_matches(request.headers.get("If-None-Match", ""), etag):
            return web.Response(status=304, headers={"ETag": etag, "Vary": "Accept"})
        return web.Response(body=body, headers={"Content-Type": ctype, "Vary": "Accept", "ETag": etag})

    async def _add_slash(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(f"/simple/{quote(normalize(request.match_info['name']))}/")

    async def _project(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["name"]
        name = normalize(raw)
        if raw != name:
            raise web.HTTPMovedPermanently(f"/simple/{quote(name)}/")
        headers = dict(self.page_headers)
        if self.mode == "negotiate":
            headers["Vary"] = "Accept"
        if name in self.raw_pages:
            ctype, body = self.raw_pages[name]
        elif name in self.projects:
            negotiated = self._negotiate(request)
            if negotiated is None:
                raise web.HTTPNotAcceptable(headers=headers)
            ctype = negotiated
            origin = f"{request.scheme}://{request.host}"
            render = self.render_json if ctype == JSON_TYPE else self.render_html
            body = render(name, origin)
        else:
            raise web.HTTPNotFound()
        last_modified = self._last_modified(name)
        etag = '"' + hashlib.sha256(ctype.encode() + b"\0" + body).hexdigest()[:32] + '"'
        headers |= {"ETag": etag, "Last-Modified": formatdate(last_modified, usegmt=True)}
        if _not_modified(request, etag, last_modified):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = ctype
        return await self._send(request, 200, headers, body, 0, len(body))

    async def _file(self, request: web.Request) -> web.StreamResponse:
        filename = request.match_info["filename"]
        ff = self.file(filename)
        source: bytes | Path
        if ff is not None:
            source, etag, size = ff.path, ff.real_sha256(), ff.path.stat().st_size
            mtime = int(ff.path.stat().st_mtime)
        elif (
            filename.endswith(".metadata")
            and (ff := self.file(filename.removesuffix(".metadata"))) is not None
            and ff.offers_metadata
        ):
            source = ff.metadata_bytes()
            etag, size = hashlib.sha256(source).hexdigest(), len(source)
            mtime = int(ff.path.stat().st_mtime)
        elif (
            filename.endswith(".provenance")
            and (ff := self.file(filename.removesuffix(".provenance"))) is not None
            and ff.provenance is not None
        ):
            source = ff.provenance
            etag, size = hashlib.sha256(source).hexdigest(), len(source)
            mtime = int(ff.path.stat().st_mtime)
        else:
            raise web.HTTPNotFound()
        etag = f'"{etag[:32]}"'
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": etag,
            "Last-Modified": formatdate(mtime, usegmt=True),
        }
        if _not_modified(request, etag, mtime):
            return web.Response(status=304, headers=headers)
        first, last, status = 0, size - 1, 200
        if self.ranges:
            headers["Accept-Ranges"] = "bytes"
            rng, if_range = request.headers.get("Range"), request.headers.get("If-Range")
            if rng and (if_range is None or if_range in (etag, headers["Last-Modified"])):
                parsed = _parse_range(rng, size)
                if parsed == _UNSATISFIABLE:
                    headers["Content-Range"] = f"bytes */{size}"
                    return web.Response(status=416, headers=headers)
                if isinstance(parsed, tuple):
                    first, last, status = *parsed, 206
                    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return await self._send(request, status, headers, source, first, last + 1 - first)

    async def _send(
        self,
        request: web.Request,
        status: int,
        headers: dict[str, str],
        source: bytes | Path,
        offset: int,
        length: int,
    ) -> web.StreamResponse:
        """Stream a body, applying the request's slow/reset_after/corrupt fault if any."""
        fault: Fault | None = request.get(_FAULT_KEY)
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = length
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        limit = fault.reset_after if fault is not None else None
        chunk_size = fault.chunk_size if fault is not None and fault.slow else 1 << 16
        sent = 0
        try:
            for data in _chunks(source, offset, length, chunk_size):
                if limit is not None:
                    data = data[: limit - sent]
                if fault is not None and fault.corrupt:
                    data = data.translate(_FLIP)
                if fault is not None and fault.slow:
                    await asyncio.sleep(fault.slow)
                if data:
                    await resp.write(data)
                    sent += len(data)
                if limit is not None and sent >= limit:
                    break
        except ConnectionError:  # client went away, or down() dropped the connection
            return resp
        if limit is not None and limit < length:
            # Truncate: flush what was written, then drop the connection mid-body.
            if request.transport is not None:
                request.transport.close()
            return resp
        await resp.write_eof()
        return resp


class RunningFakeIndex:
    """A FakeIndex served on 127.0.0.1; `down()`/`up()` simulate a real outage on the same port."""

    def __init__(self, index: FakeIndex, runner: web.AppRunner, port: int) -> None:
        self.index = index
        self.port = port
        self._runner = runner
        self._site: web.TCPSite | None = None

    @classmethod
    async def start(cls, index: FakeIndex, port: int = 0) -> RunningFakeIndex:
        runner = web.AppRunner(index.app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        running = cls(index, runner, port)
        await running.up()
        return running

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The index URL, e.g. http://127.0.0.1:PORT/simple/"""
        return f"{self.origin}/simple/"

    def project_url(self, name: str) -> str:
        return f"{self.url}{normalize(name)}/"

    def file_url(self, filename: str) -> str:
        return f"{self.origin}/files/{quote(filename)}"

    @property
    def is_up(self) -> bool:
        return self._site is not None

    async def down(self) -> None:
        """Stop listening (connects get refused) and drop every open connection."""
        if self._site is None:
            return
        await self._site.stop()
        self._site = None
        for handler in self._runner.server.connections if self._runner.server else ():
            handler.force_close()

    async def up(self) -> None:
        """Listen again, on the same port."""
        if self._site is not None:
            return
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self._site, self.port = site, self._runner.addresses[0][1]

    async def close(self) -> None:
        await self._runner.cleanup()
        self._site = None


# What the `fake_index` fixture yields: `await make(mode="negotiate", **FakeIndex options)`.
MakeFakeIndex = Callable[..., Awaitable[RunningFakeIndex]]
