"""Client side of the Upload 2.0 protocol (PEP 694), with a fallback to the legacy upload API.

Everything here is async over a caller-provided ``aiohttp.ClientSession`` (which carries the
credentials) and keeps no global state. Progress and notices go to a ``Reporter`` so the
protocol code never prints.

The flow for ``upload_dists``: one publishing session per (name, version); its files are
uploaded in parallel (create a file upload session, POST the bytes, complete, poll); once every
session is staged they are published one by one (unless staging only). Any failure or
cancellation cancels the sessions this client created and discards its unfinished files in
sessions it joined.
"""

from __future__ import annotations

import asyncio
import email.message
import email.parser
import email.utils
import hashlib
import json
import tarfile
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin

import aiohttp
from multidict import CIMultiDictProxy
from packaging.utils import (
    InvalidSdistFilename,
    canonicalize_name,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

from ..publish.protocol import MECHANISM, MEDIA_TYPE, META, PROBLEM_MEDIA_TYPE
from ..simple.names import is_wheel
from ..wheelmeta import MetadataError, read_wheel_metadata_from_path

CHUNK = 256 * 1024
# Extend a session when fewer than this many seconds remain, by EXTEND_FOR seconds.
EXTEND_MARGIN = 15 * 60
EXTEND_FOR = 3600
# Bounds on polling: never spin faster than MIN_POLL, never sleep longer than MAX_POLL at once.
MIN_POLL, MAX_POLL = 0.05, 30.0


class UploadError(Exception):
    """A failed request or an unexpected answer; `problem` is the RFC 9457 body, if any."""

    def __init__(self, message: str, *, status: int | None = None, problem: dict | None = None):
        super().__init__(message)
        self.status = status
        self.problem = problem

    def __str__(self) -> str:
        return self.args[0] + (format_problem(self.problem) if self.problem else "")


class NoUploadApi(UploadError):
    """The repository has no Upload 2.0 endpoint (404/405/406 on the root)."""


class DistError(ValueError):
    """A path that is not a wheel or sdist (a usage error, not a protocol failure)."""


def format_problem(problem: dict) -> str:
    """An RFC 9457 problem as indented lines (PEP 694 says `details`, RFC 9457 `detail`)."""
    lines = []
    head = problem.get("title") or ""
    if problem.get("status"):
        head = f"{head} (HTTP {problem['status']})".strip()
    if head:
        lines.append(head)
    for key in ("detail", "details"):
        if problem.get(key):
            lines.append(str(problem[key]))
    for err in problem.get("errors") or ():
        # Servers often repeat the detail as the only error's message: say it once.
        if isinstance(err, dict) and err.get("message") not in lines:
            source = f"{err['source']}: " if err.get("source") else ""
            lines.append(f"- {source}{err.get('message', '')}")
    for notice in problem.get("notices") or ():
        lines.append(f"notice: {notice}")
    return "".join(f"\n  {line}" for line in lines)


# --- distributions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    path: Path
    filename: str
    name: str  # canonical (PEP 503) name
    version: str  # normalized version
    filetype: str  # legacy API value: bdist_wheel or sdist

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def dist_from_path(path: str | Path) -> Dist:
    path = Path(path)
    filename = path.name
    try:
        if is_wheel(filename):
            name, version, _, _ = parse_wheel_filename(filename)
            filetype = "bdist_wheel"
        else:
            name, version = parse_sdist_filename(filename)
            filetype = "sdist"
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise DistError(f"{path}: not a wheel or sdist file name ({exc})") from None
    if not path.is_file():
        raise DistError(f"{path}: no such file")
    return Dist(path, filename, str(name), str(version), filetype)


def group_dists(paths: Iterable[str | Path]) -> dict[tuple[str, str], list[Dist]]:
    """Dists by (name, version): each group becomes one publishing session (PEP 694 requires
    one session per name-version). Order of first appearance is kept; duplicates dropped."""
    groups: dict[tuple[str, str], list[Dist]] = {}
    for path in paths:
        dist = dist_from_path(path)
        group = groups.setdefault((dist.name, dist.version), [])
        if all(d.filename != dist.filename for d in group):
            group.append(dist)
    return groups


def file_digests(path: Path) -> dict[str, str]:
    """sha256 (Upload 2.0 and legacy) and blake2b-256 (legacy), in one pass over the file."""
    sha256, blake2 = hashlib.sha256(), hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            blake2.update(chunk)
    return {"sha256": sha256.hexdigest(), "blake2_256": blake2.hexdigest()}


async def file_chunks(path: Path, on_chunk: Callable[[int], None] = lambda n: None,
                      chunk_size: int = CHUNK) -> AsyncIterator[bytes]:
    """The file as a stream of chunks read off the event loop, so a large dist is never held in
    memory; `on_chunk` sees each chunk's size (progress)."""
    with open(path, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, chunk_size):
            on_chunk(len(chunk))
            yield chunk


def core_metadata(dist: Dist) -> email.message.Message:
    """The dist's core metadata: a wheel's METADATA, an sdist's top-level PKG-INFO."""
    if dist.filetype == "bdist_wheel":
        try:
            raw = read_wheel_metadata_from_path(dist.path, dist.filename)
        except MetadataError as exc:
            raise UploadError(f"{dist.filename}: cannot read METADATA: {exc}") from None
    else:
        raw = _sdist_pkg_info(dist.path)
    return email.parser.BytesParser().parsebytes(raw)


def _sdist_pkg_info(path: Path) -> bytes:
    def is_pkg_info(member: str) -> bool:
        parts = member.split("/")
        return len(parts) == 2 and parts[1] == "PKG-INFO"

    try:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                member = next(n for n in zf.namelist() if is_pkg_info(n))
                return zf.read(member)
        with tarfile.open(path) as tf:
            info = next(m for m in tf.getmembers() if is_pkg_info(m.name) and m.isfile())
            data = tf.extractfile(info)
            assert data is not None
            return data.read()
    except (StopIteration, OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise UploadError(f"{path.name}: cannot read PKG-INFO ({exc or 'not found'})") from None


# --- reporting -------------------------------------------------------------------------------


class Reporter(Protocol):
    def file(self, filename: str, state: str, sent: int = 0, size: int = 0) -> None:
        """A file changed state (queued, uploading, processing, done, skipped, failed) or sent
        more bytes (`sent` of `size`)."""

    def note(self, message: str) -> None:
        """A human-readable message: server notices, warnings, cleanup actions."""


class NullReporter:
    def file(self, filename: str, state: str, sent: int = 0, size: int = 0) -> None:
        pass

    def note(self, message: str) -> None:
        pass


# --- HTTP ------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any  # parsed JSON, or the text when not JSON

    def retry_after(self, default: float = 1.0) -> float:
        value = self.headers.get("Retry-After", "")
        try:
            seconds = float(value)
        except ValueError:
            try:  # the HTTP-date form
                when = email.utils.parsedate_to_datetime(value)
                seconds = (when - datetime.now(timezone.utc)).total_seconds()
            except (TypeError, ValueError):
                seconds = default
        return min(max(seconds, MIN_POLL), MAX_POLL)


async def call(http: aiohttp.ClientSession, method: str, url: str, *, body: dict | None = None,
               ok: Iterable[int] = (200, 201, 202, 204), what: str = "") -> Reply:
    """One Upload 2.0 JSON request. Statuses outside `ok` raise UploadError with the problem."""
    headers = {"Accept": f"{MEDIA_TYPE}, {PROBLEM_MEDIA_TYPE};q=0.9, application/json;q=0.8"}
    data = None
    if body is not None:
        headers["Content-Type"] = MEDIA_TYPE
        data = json.dumps({"meta": META, **body}).encode()
    try:
        async with http.request(method, url, data=data, headers=headers) as resp:
            reply = Reply(resp.status, resp.headers, await _read_body(resp))
    except aiohttp.ClientError as exc:
        raise UploadError(f"{what or method + ' ' + url}: {exc}") from None
    if reply.status not in ok:
        raise _failure(reply, what or f"{method} {url}")
    return reply


async def _read_body(resp: aiohttp.ClientResponse) -> Any:
    text = await resp.text(errors="replace")
    if "json" in resp.content_type:
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _failure(reply: Reply, what: str) -> UploadError:
    problem = reply.body if isinstance(reply.body, dict) else None
    message = f"{what} failed: HTTP {reply.status}"
    if problem is None and isinstance(reply.body, str) and reply.body.strip():
        message += f": {reply.body.strip()[:500]}"
    return UploadError(message, status=reply.status, problem=problem)


# --- publishing sessions --------------------------------------------------------------------


@dataclass
class Session:
    """A publishing session as this client sees it."""

    body: dict  # the latest session body from the server
    created: bool  # False when joined (409 + Location): never cancel it then
    name: str = ""
    version: str = ""
    published: bool = False
    file_sessions: dict[str, str] = field(default_factory=dict)  # filename -> status URL
    completed: set[str] = field(default_factory=set)
    _extend_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _warned_expiry: bool = False

    @property
    def links(self) -> dict[str, str]:
        return self.body.get("links") or {}

    @property
    def url(self) -> str:
        return self.links["session"]

    @property
    def status(self) -> str:
        return self.body.get("status", "")


def session_url(repository: str, token_or_url: str) -> str:
    """A session status URL from what `upload --stage` printed: the URL itself, or the session
    token, which tidegate serves at `<repository>/upload/session/<token>`."""
    if token_or_url.startswith(("http://", "https://")):
        return token_or_url
    return f"{upload_root(repository)}session/{token_or_url}"


def upload_root(repository: str) -> str:
    return repository.rstrip("/") + "/upload/"


def _check_session_body(body: Any, what: str) -> dict:
    if not isinstance(body, dict) or not isinstance(body.get("links"), dict) or "session" not in body["links"]:
        raise UploadError(f"{what}: the server's answer is not a publishing session")
    return body


async def open_session(http: aiohttp.ClientSession, repository: str, name: str, version: str,
                       reporter: Reporter = NullReporter()) -> Session:
    """Create the publishing session for name-version, or join the live one the server points
    to with 409 + Location (PEP 694 lets any authorized publisher contribute to it)."""
    what = f"creating the publishing session for {name} {version}"
    reply = await call(http, "POST", upload_root(repository), body={"name": name, "version": version},
                       ok=(201, 404, 405, 406, 409), what=what)
    if reply.status in (404, 405, 406):
        raise NoUploadApi(f"{upload_root(repository)}: no Upload 2.0 endpoint (HTTP {reply.status})",
                          status=reply.status)
    if reply.status == 409:
        location = reply.headers.get("Location")
        if not location:
            raise _failure(reply, what)
        location = urljoin(upload_root(repository), location)
        joined = await call(http, "GET", location, ok=(200,), what=f"joining session {location}")
        session = Session(_check_session_body(joined.body, location), created=False, name=name, version=version)
        reporter.note(f"{name} {version}: joined the open session {session.url}")
    else:
        session = Session(_check_session_body(reply.body, what), created=True, name=name, version=version)
    for notice in session.body.get("notices") or ():
        reporter.note(f"{name} {version}: {notice}")
    if session.status not in ("open", "error"):
        raise UploadError(f"{name} {version}: session {session.url} is {session.status!r}, not open")
    return session


async def get_session(http: aiohttp.ClientSession, url: str) -> dict:
    reply = await call(http, "GET", url, ok=(200, 404), what=f"session {url}")
    if reply.status == 404:
        raise UploadError(f"session {url} does not exist (it may have expired, or ended and been purged)",
                          status=404)
    return _check_session_body(reply.body, url)


async def cancel_session(http: aiohttp.ClientSession, url: str) -> None:
    await call(http, "DELETE", url, ok=(200, 202, 204), what=f"canceling session {url}")


async def extend_session(http: aiohttp.ClientSession, session: Session, seconds: int = EXTEND_FOR) -> None:
    reply = await call(http, "POST", session.links["extend"], body={"extend-for": seconds},
                       ok=(200, 201), what=f"extending session {session.url}")
    if isinstance(reply.body, dict) and reply.body.get("expires-at"):
        session.body["expires-at"] = reply.body["expires-at"]


def seconds_left(body: dict) -> float | None:
    try:
        expires = datetime.fromisoformat(body["expires-at"].replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return None
    return (expires - datetime.now(timezone.utc)).total_seconds()


async def keep_alive(http: aiohttp.ClientSession, session: Session, reporter: Reporter) -> None:
    """Before a file starts: extend a session that is close to expiring (PEP 694 "Session
    Management"), or warn once when the server offers no extension."""
    async with session._extend_lock:  # parallel files must not all extend at once
        left = seconds_left(session.body)
        if left is None or left > EXTEND_MARGIN:
            return
        if "extend" in session.links:
            await extend_session(http, session)
        elif not session._warned_expiry:
            session._warned_expiry = True
            reporter.note(f"warning: session {session.url} expires in {int(left)}s and the server "
                          "does not offer extensions")


async def publish_session(http: aiohttp.ClientSession, session: Session | dict,
                          max_wait: float = 3600) -> dict:
    """Publish; a 202 means deferred processing: poll the session until published or error."""
    body = session.body if isinstance(session, Session) else session
    url = body["links"]["session"]
    reply = await call(http, "POST", body["links"]["publish"], body={}, ok=(200, 201, 202),
                       what=f"publishing session {url}")
    if reply.status != 202:
        result = reply.body if isinstance(reply.body, dict) else {**body, "status": "published"}
    else:
        result = await _poll(http, url, reply, ("published", "error"), max_wait, "publishing")
    if result.get("status", "published") != "published":
        raise UploadError(f"publishing session {url} failed (status {result.get('status')!r})",
                          problem={"notices": result.get("notices") or []})
    if isinstance(session, Session):
        session.body, session.published = result, True
    return result


async def _poll(http: aiohttp.ClientSession, url: str, reply: Reply, done: tuple[str, ...],
                max_wait: float, doing: str) -> dict:
    """GET `url` until its status is one of `done`, sleeping as Retry-After says."""
    deadline = time.monotonic() + max_wait
    while True:
        if time.monotonic() > deadline:
            raise UploadError(f"{url}: still {doing} after {int(max_wait)}s; giving up waiting")
        await asyncio.sleep(reply.retry_after())
        reply = await call(http, "GET", url, ok=(200,), what=f"status of {url}")
        if not isinstance(reply.body, dict):
            raise UploadError(f"{url}: unexpected status answer")
        if reply.body.get("status") in done:
            return reply.body


# --- file upload sessions ---------------------------------------------------------------------


class FileConflict(UploadError):
    """409 on creating a file upload session: already published/staged, or too many parallel."""


async def upload_file(http: aiohttp.ClientSession, session: Session, dist: Dist,
                      reporter: Reporter = NullReporter(), max_wait: float = 3600) -> None:
    """One file, via http-post-bytes: create the file upload session, stream the bytes,
    complete it and wait until the server has accepted the file."""
    size = dist.size
    digests = await asyncio.to_thread(file_digests, dist.path)
    what = f"{dist.filename}: starting the upload"
    reply = await call(http, "POST", session.links["upload"], ok=(201, 202, 409), what=what, body={
        "filename": dist.filename, "size": size, "hashes": {"sha256": digests["sha256"]},
        "mechanism": MECHANISM,
    })
    if reply.status == 409:
        err = _failure(reply, what)
        raise FileConflict(err.args[0], status=409, problem=err.problem)
    body = reply.body if isinstance(reply.body, dict) else {}
    links, mechanism = body.get("links") or {}, body.get("mechanism") or {}
    if "file-upload-session" not in links or "complete" not in links or "file_url" not in mechanism:
        raise UploadError(f"{what}: the server's answer is not a file upload session")
    if mechanism.get("identifier", MECHANISM) != MECHANISM:
        raise UploadError(f"{what}: the server chose mechanism {mechanism['identifier']!r}")
    status_url = links["file-upload-session"]
    session.file_sessions[dist.filename] = status_url

    sent = 0

    def on_chunk(n: int) -> None:
        nonlocal sent
        sent += n
        reporter.file(dist.filename, "uploading", sent, size)

    reporter.file(dist.filename, "uploading", 0, size)
    await _post_bytes(http, mechanism["file_url"], dist, size, on_chunk)
    reporter.file(dist.filename, "processing", size, size)
    reply = await call(http, "POST", links["complete"], body={}, ok=(200, 201, 202),
                       what=f"{dist.filename}: completing the upload")
    state = reply.body.get("status") if isinstance(reply.body, dict) else None
    if reply.status == 202 or state in ("pending", "processing"):
        final = await _poll(http, status_url, reply, ("completed", "error", "canceled"), max_wait,
                            "processing")
        if final["status"] != "completed":
            raise UploadError(f"{dist.filename}: the server rejected the file (status {final['status']!r})",
                              problem={"notices": final.get("notices") or []})
    session.completed.add(dist.filename)
    reporter.file(dist.filename, "done", size, size)


async def _post_bytes(http: aiohttp.ClientSession, url: str, dist: Dist, size: int,
                      on_chunk: Callable[[int], None]) -> None:
    # Content-Length up front: the body is a stream, and servers may want to refuse early.
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    try:
        async with http.post(url, data=file_chunks(dist.path, on_chunk), headers=headers) as resp:
            if resp.status >= 300:
                raise _failure(Reply(resp.status, resp.headers, await _read_body(resp)),
                               f"{dist.filename}: sending the file")
    except aiohttp.ClientError as exc:
        raise UploadError(f"{dist.filename}: sending the file: {exc}") from None


# --- the whole upload -------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one name-version."""

    name: str
    version: str
    session: Session | None  # None: uploaded through the legacy API
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


async def upload_dists(http: aiohttp.ClientSession, repository: str,
                       groups: dict[tuple[str, str], list[Dist]], *, stage: bool = False,
                       jobs: int = 4, skip_existing: bool = False,
                       reporter: Reporter = NullReporter()) -> list[Outcome]:
    """Stage every group in its own session, then publish them all (unless `stage`).

    Publishing only after everything is staged means a failed upload publishes nothing. On any
    failure or cancellation, sessions this call created and did not publish are canceled.
    """
    outcomes: list[Outcome] = []
    try:
        for (name, version), dists in groups.items():
            try:
                session = await open_session(http, repository, name, version, reporter)
            except NoUploadApi:
                if outcomes:
                    raise
                if stage:
                    raise UploadError(f"{repository} has no Upload 2.0 endpoint, so it cannot stage; "
                                      "run without --stage to use the legacy upload API") from None
                reporter.note(f"{upload_root(repository)} has no Upload 2.0 endpoint; using the legacy API")
                return await legacy_upload_all(http, repository, groups, jobs=jobs,
                                               skip_existing=skip_existing, reporter=reporter)
            outcome = Outcome(name, version, session)
            outcomes.append(outcome)
            await _upload_session_files(http, repository, outcome, dists, jobs, skip_existing, reporter)
            if not outcome.uploaded and session.created:
                # Everything was skipped: an empty session would only reserve the name.
                await cancel_session(http, session.url)
                outcome.session = None
        if not stage:
            for outcome in outcomes:
                if outcome.session is not None:
                    await publish_session(http, outcome.session)
    except BaseException:
        # A fresh task: this one may be cancelled (Ctrl-C), which must not cut the cleanup short.
        sessions = [o.session for o in outcomes if o.session is not None]
        await asyncio.shield(asyncio.ensure_future(_clean_up(http, sessions, reporter)))
        raise
    return outcomes


async def _upload_session_files(http: aiohttp.ClientSession, repository: str, outcome: Outcome,
                                dists: list[Dist], jobs: int, skip_existing: bool, reporter: Reporter) -> None:
    session = outcome.session
    assert session is not None
    for dist in dists:
        reporter.file(dist.filename, "queued", 0, dist.size)
    in_flight = 0
    finished = asyncio.Condition()

    async def one(dist: Dist) -> None:
        nonlocal in_flight
        while True:
            await keep_alive(http, session, reporter)
            in_flight += 1
            try:
                await upload_file(http, session, dist, reporter)
                outcome.uploaded.append(dist.filename)
                return
            except FileConflict:
                if in_flight == 1:  # nothing else of ours in flight: a real conflict
                    # PEP 694 refuses any file already published (409); the same bytes are
                    # success, as the legacy API answers them (and twine reports them).
                    if await is_published(http, repository, dist):
                        reporter.file(dist.filename, "exists", 0, dist.size)
                    elif skip_existing:
                        reporter.file(dist.filename, "skipped", 0, dist.size)
                    else:
                        raise
                    outcome.skipped.append(dist.filename)
                    return
            except BaseException:
                reporter.file(dist.filename, "failed", 0, dist.size)
                raise
            finally:
                in_flight -= 1
                async with finished:
                    finished.notify_all()
            # PEP 694: a server may refuse parallel uploads with 409; retry this file once
            # another of ours has finished.
            reporter.file(dist.filename, "queued", 0, dist.size)
            async with finished:
                await finished.wait()

    await run_bounded(jobs, [lambda d=dist: one(d) for dist in dists])


async def is_published(http: aiohttp.ClientSession, repository: str, dist: Dist) -> bool:
    """Whether the repository's index (PEP 691 JSON) lists this very file, by its sha256."""
    url = f"{repository.rstrip('/')}/simple/{canonicalize_name(dist.name)}/"
    try:
        async with http.get(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"}) as resp:
            if resp.status != 200 or "json" not in resp.content_type:
                return False
            page = json.loads(await resp.read())
    except (aiohttp.ClientError, ValueError):
        return False
    files = page.get("files") if isinstance(page, dict) else None
    entry = next((f for f in files or () if isinstance(f, dict) and f.get("filename") == dist.filename), None)
    hashes = entry.get("hashes") if entry else None
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        return False
    digests = await asyncio.to_thread(file_digests, dist.path)
    return hashes["sha256"].lower() == digests["sha256"]


async def run_bounded(jobs: int, factories: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the coroutines at most `jobs` at a time; the first failure cancels the rest and is
    raised as itself (not as an ExceptionGroup)."""
    limit = asyncio.Semaphore(max(1, jobs))

    async def bounded(factory: Callable[[], Awaitable[Any]]) -> Any:
        async with limit:
            return await factory()

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(bounded(f)) for f in factories]
    except BaseExceptionGroup as eg:
        raise _first_leaf(eg) from None
    return [t.result() for t in tasks]


def _first_leaf(eg: BaseExceptionGroup) -> BaseException:
    exc: BaseException = eg
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def _clean_up(http: aiohttp.ClientSession, sessions: list[Session], reporter: Reporter) -> None:
    """Cancel the unpublished sessions we created; in sessions we joined, only discard our
    unfinished files (a pending or failed file would block the other publishers' publish)."""
    for session in sessions:
        if session.published:
            continue
        try:
            async with asyncio.timeout(30):
                if session.created:
                    await cancel_session(http, session.url)
                    reporter.note(f"canceled session {session.url} ({session.name} {session.version})")
                    continue
                for filename, url in session.file_sessions.items():
                    if filename not in session.completed:
                        await call(http, "DELETE", url, ok=(200, 202, 204, 404),
                                   what=f"discarding {filename}")
                        reporter.note(f"discarded {filename} from the joined session {session.url}")
        except (UploadError, TimeoutError) as exc:
            reporter.note(f"could not clean up session {session.url}: {exc}")


# --- legacy API --------------------------------------------------------------------------------


def legacy_url(repository: str) -> str:
    return repository.rstrip("/") + "/legacy/"


def legacy_fields(dist: Dist, digests: dict[str, str]) -> dict[str, str]:
    """The form fields of a legacy `file_upload`, as twine sends them (minus the file)."""
    meta = core_metadata(dist)
    if dist.filetype == "bdist_wheel":
        pyversion = dist.filename[:-len(".whl")].split("-")[-3]  # the python tag
    else:
        pyversion = "source"
    return {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": meta.get("Name") or dist.name,
        "version": meta.get("Version") or dist.version,
        "filetype": dist.filetype,
        "pyversion": pyversion,
        "metadata_version": meta.get("Metadata-Version") or "",
        "sha256_digest": digests["sha256"],
        "blake2_256_digest": digests["blake2_256"],
    }


async def legacy_upload(http: aiohttp.ClientSession, repository: str, dist: Dist, *,
                        skip_existing: bool = False, reporter: Reporter = NullReporter()) -> bool:
    """Upload one file through the legacy API; False if it was already there (and skipped)."""
    digests = await asyncio.to_thread(file_digests, dist.path)
    fields = await asyncio.to_thread(legacy_fields, dist, digests)
    size = dist.size
    reporter.file(dist.filename, "uploading", 0, size)
    with open(dist.path, "rb") as content:
        form = aiohttp.FormData()
        for key, value in fields.items():
            form.add_field(key, value)
        form.add_field("content", content, filename=dist.filename, content_type="application/octet-stream")
        try:
            async with http.post(legacy_url(repository), data=form) as resp:
                reply = Reply(resp.status, resp.headers, await _read_body(resp))
                reason = resp.reason or ""
        except aiohttp.ClientError as exc:
            raise UploadError(f"{dist.filename}: legacy upload: {exc}") from None
    if reply.status == 200:
        reporter.file(dist.filename, "done", size, size)
        return True
    text = reply.body if isinstance(reply.body, str) else ""
    if reply.status == 400 and (text.startswith("File already exists") or reason.startswith("File already exists")):
        if skip_existing:
            reporter.file(dist.filename, "skipped", 0, size)
            return False
        reporter.file(dist.filename, "failed", 0, size)
        raise UploadError(f"{dist.filename}: the server already has this file (use --skip-existing to go on)",
                          status=400)
    reporter.file(dist.filename, "failed", 0, size)
    raise _failure(reply, f"{dist.filename}: legacy upload to {legacy_url(repository)}")


async def legacy_upload_all(http: aiohttp.ClientSession, repository: str,
                            groups: dict[tuple[str, str], list[Dist]], *, jobs: int,
                            skip_existing: bool, reporter: Reporter) -> list[Outcome]:
    outcomes = [Outcome(name, version, None) for name, version in groups]
    for dists in groups.values():
        for dist in dists:
            reporter.file(dist.filename, "queued", 0, dist.size)

    async def one(outcome: Outcome, dist: Dist) -> None:
        if await legacy_upload(http, repository, dist, skip_existing=skip_existing, reporter=reporter):
            outcome.uploaded.append(dist.filename)
        else:
            outcome.skipped.append(dist.filename)

    await run_bounded(jobs, [lambda o=o, d=d: one(o, d)
                             for o, dists in zip(outcomes, groups.values()) for d in dists])
    return outcomes
