"""Fetching project pages, files and byte ranges from one upstream index."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Callable
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from ..config import Upstream
from ..observe.metrics import Metrics
from ..observe.trace import note_upstream
from ..simple.html_page import RootScanner, parse_project_html
from ..simple.json_page import parse_json_page
from ..simple.model import Project
from ..storage.records import Validators

log = logging.getLogger(__name__)

# JSON first, HTML as the fallback: whatever the upstream speaks, we dispatch on what it sends.
PAGE_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
)
USER_AGENT = "tidegate/0.1"
BIG_PAGE = 256 * 1024  # bytes of a page parsed in a thread
RETRY_STATUSES = frozenset({500, 502, 503, 504, 429})
# After failed page fetches, the upstream is not asked again for this long: during an outage
# cached pages are served at once instead of each request waiting out timeouts and retries.
FAILURE_BACKOFF = 15.0
# Page fetches failing in a row before that: one slow or failed request is not an outage.
FAILURES_BEFORE_BACKOFF = 3
# A page must arrive within this many read timeouts: an upstream trickling a byte now and then
# never trips the read timeout, but must not hold a request (and a page lock) forever.
PAGE_DEADLINE_FACTOR = 4


class UpstreamError(Exception):
    """The upstream could not give an answer (connection failure, timeout, 5xx, bad page)."""


class UpstreamUnavailable(UpstreamError):
    """The upstream itself is failing (connection error, timeout, 5xx): not just one project."""


@dataclass(frozen=True, slots=True)
class PageFound:
    project: Project
    validators: Validators
    document: bytes | None = None  # the page itself, when it is PEP 691 JSON that can be stored as it came


class PageUnchanged:  # the upstream answered 304 to our conditional request
    pass


class PageMissing:  # the upstream does not have the project (404/410)
    pass


PageResult = PageFound | PageUnchanged | PageMissing


@dataclass(frozen=True, slots=True)
class RootFound:
    names: int
    validators: Validators


RootResult = RootFound | PageUnchanged


def _conditions(validators: Validators | None) -> dict[str, str]:
    """The headers of a conditional request."""
    headers = {}
    if validators and validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators and validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    return headers


def _parse_html(body: bytes, page_url: str, name: str) -> tuple[Project, bool]:
    return parse_project_html(body, page_url, name), False


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The system trust store, plus a corporate CA bundle when one is configured."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def split_credentials(url: str) -> tuple[str, str | None]:
    """Take user:password out of a URL, so that it is sent as a header and never logged."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    authorization = basic_authorization(unquote(parts.username), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=netloc)), authorization


class UpstreamClient:
    def __init__(self, upstream: Upstream, session: aiohttp.ClientSession, max_page_size: int,
                 metrics: Metrics | None = None) -> None:
        self.upstream = upstream
        self._metrics = metrics
        self.name = upstream.name
        self.base_url, url_auth = split_credentials(upstream.url)
        if upstream.username is not None:
            self._authorization = basic_authorization(upstream.username, upstream.password or "")
        else:
            self._authorization = url_auth
        self._origin = urlsplit(self.base_url)[:2]
        self._session = session
        self._max_page_size = max_page_size
        self._limit = asyncio.Semaphore(upstream.max_connections)
        self._timeout = aiohttp.ClientTimeout(total=None, connect=upstream.timeout, sock_read=upstream.timeout)
        self._down_until = 0.0  # monotonic time before which page fetches fail fast
        self._failures = 0  # page fetches failed in a row
        self.page_deadline = upstream.timeout * PAGE_DEADLINE_FACTOR
        self._proxies: dict[tuple[str, str | None], tuple[URL | None, aiohttp.BasicAuth | None]] = {}

    def _headers(self, url: str, extra: dict[str, str]) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, **extra}
        # Credentials go only to the upstream's own origin, never to a file host it links to.
        if self._authorization and urlsplit(url)[:2] == self._origin:
            headers["Authorization"] = self._authorization
        return headers

    def _proxy(self, url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        """The proxy for a URL from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, looked up once per host
        (aiohttp's trust_env would read the environment and ~/.netrc on every request)."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname)
        found = self._proxies.get(key)
        if found is None:
            try:
                found = get_env_proxy_for_url(URL(url))
            except LookupError:
                found = (None, None)
            self._proxies[key] = found
        return found

    def project_url(self, name: str) -> str:
        return f"{self.base_url}{quote(name)}/"

    async def _retrying(self, method: str, url: str, headers: dict[str, str], *, decompress: bool = True) -> aiohttp.ClientResponse:
        """Send a request, retrying with backoff on connection errors and retryable statuses.
        The caller must release the response. Every attempt is counted in the metrics; failures
        are logged by the read path, which knows what they cost the client."""
        attempts = self.upstream.retries + 1
        note_upstream(self.name)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            start = time.perf_counter()
            try:
                proxy, proxy_auth = self._proxy(url)
                response = await self._session.request(
                    method, url, headers=self._headers(url, headers), timeout=self._timeout, allow_redirects=True,
                    auto_decompress=decompress, proxy=proxy, proxy_auth=proxy_auth,
                )
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                timeout = isinstance(exc, asyncio.TimeoutError)
                self._count("timeout" if timeout else "error", None)
                if last:
                    raise UpstreamUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc
            else:
                self._count(str(response.status), time.perf_counter() - start)
                if response.status not in RETRY_STATUSES or last:
                    return response
                response.release()
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        raise AssertionError("unreachable")

    def _count(self, outcome: str, seconds: float | None) -> None:
        if self._metrics is not None:
            self._metrics.upstream(self.name, outcome, seconds)

    async def fetch_page(self, name: str, validators: Validators | None) -> PageResult:
        if time.monotonic() < self._down_until:
            raise UpstreamError(f"{self.name} failed moments ago; not retrying yet")
        try:
            result = await self._fetch_page(name, validators)
        except UpstreamUnavailable:
            self._failures += 1
            if self._failures >= FAILURES_BEFORE_BACKOFF:
                self._down_until = time.monotonic() + FAILURE_BACKOFF
            raise
        self._failures = 0
        return result

    async def fetch_root(self, validators: Validators | None, sink: Callable[[list[str]], None]) -> RootResult:
        """The upstream's root list (PEP 503 HTML: it can be read as it arrives, in bounded
        memory), its names handed to `sink` a piece at a time; or that it is unchanged."""
        headers = {"Accept": "text/html", **_conditions(validators)}
        scanner, count = RootScanner(), 0
        async with self._limit:
            response = await self._retrying("GET", self.base_url, headers)
            try:
                if response.status == 304 and validators:
                    return PageUnchanged()
                if response.status != 200:
                    raise UpstreamUnavailable(f"{self.name}: its root list answered {response.status}")
                async for piece in response.content.iter_chunked(256 * 1024):
                    names = await asyncio.to_thread(scanner.feed, piece)  # ~5,000 names a piece
                    count += len(names)
                    sink(names)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise UpstreamUnavailable(f"{self.name}: reading its root list: {type(exc).__name__}: {exc}") from exc
            finally:
                response.release()
        return RootFound(count, Validators(response.headers.get("ETag"), response.headers.get("Last-Modified")))

    async def _fetch_page(self, name: str, validators: Validators | None) -> PageResult:
        url = self.project_url(name)
        headers = {"Accept": PAGE_ACCEPT, **_conditions(validators)}
        async with self._limit:
            try:
                async with asyncio.timeout(self.page_deadline):
                    response = await self._retrying("GET", url, headers)
                    try:
                        if response.status == 304 and validators:
                            return PageUnchanged()
                        if response.status in (404, 410):
                            return PageMissing()
                        if response.status >= 500:
                            raise UpstreamUnavailable(f"{self.name}: {url} answered {response.status}")
                        if response.status != 200:
                            raise UpstreamError(f"{self.name}: {url} answered {response.status}")
                        body = await self._read_limited(response)
                        content_type = response.headers.get("Content-Type", "").lower()
                        page_url = str(response.url)
                    except (aiohttp.ClientError, OSError) as exc:
                        raise UpstreamUnavailable(f"{self.name}: reading {url}: {type(exc).__name__}: {exc}") from exc
                    finally:
                        response.release()
            except TimeoutError as exc:  # aiohttp's read timeouts, and the page's deadline
                raise UpstreamUnavailable(f"{self.name}: {url} did not arrive in time "
                                          f"({self.upstream.timeout:g} s without a byte, or {self.page_deadline:g} s "
                                          "in all)") from exc
        parse = parse_json_page if "json" in content_type else _parse_html
        try:
            if len(body) > BIG_PAGE:  # thousands of files: keep the event loop serving meanwhile
                project, whole = await asyncio.to_thread(parse, body, page_url, name)
            else:
                project, whole = parse(body, page_url, name)
        except ValueError as exc:
            raise UpstreamError(f"{self.name}: unusable page for {name}: {exc}") from exc
        validators = Validators(response.headers.get("ETag"), response.headers.get("Last-Modified"))
        return PageFound(project, validators, body if whole else None)

    async def _read_limited(self, response: aiohttp.ClientResponse) -> bytes:
        if (response.content_length or 0) > self._max_page_size:
            raise UpstreamError(f"{self.name}: page larger than max_page_size")
        chunks, total = [], 0
        async for chunk in response.content.iter_chunked(256 * 1024):
            total += len(chunk)
            if total > self._max_page_size:
                raise UpstreamError(f"{self.name}: page larger than max_page_size")
            chunks.append(chunk)
        return b"".join(chunks)

    @asynccontextmanager
    async def stream(self, url: str, headers: dict[str, str] | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """A GET of a file (or part of one), holding one of the upstream's connection permits
        until the body is read. Bytes arrive exactly as sent: no decompression, and we ask for
        none (identity), because they are checked against the index's hashes."""
        async with self._limit:
            response = await self._retrying("GET", url, {"Accept-Encoding": "identity", **(headers or {})},
                                            decompress=False)
            try:
                yield response
            finally:
                response.release()

    async def fetch_bytes(self, url: str, limit: int, headers: dict[str, str] | None = None,
                          expect: int = 200) -> tuple[int, dict[str, str], bytes]:
        """A small GET (a metadata file, a byte range): status, headers and the whole body. The body
        is read only for the expected status, and a body over `limit` bytes is an error."""
        async with self.stream(url, headers) as response:
            if response.status != expect:
                return response.status, dict(response.headers), b""
            return response.status, dict(response.headers), await self.read_body(response, limit)

    async def read_body(self, response: aiohttp.ClientResponse, limit: int) -> bytes:
        """All of an open response's body, at most `limit` bytes and exactly its Content-Length."""
        url = response.url
        try:
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > limit:
                    raise UpstreamError(f"{self.name}: {url} sent more than the {limit} bytes expected")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise UpstreamError(f"{self.name}: reading {url}: {exc}") from exc
        if response.content_length is not None and len(body) != response.content_length:
            raise UpstreamError(f"{self.name}: {url} ended after {len(body)} of {response.content_length} bytes")
        return bytes(body)

    async def size_of(self, url: str) -> int | None:
        """A file's size from a HEAD request, or None if the upstream does not say."""
        async with self._limit:
            response = await self._retrying("HEAD", url, {"Accept-Encoding": "identity"}, decompress=False)
            response.release()
        return response.content_length if response.status == 200 else None
