#!/usr/bin/env python3
"""A pass-through HTTP proxy that adds a fixed delay before every response: a stand-in for
the network between a client (or tidegate) and a real index, used by bench/realnet.py.

    python bench/delayproxy.py --port 8001 --upstream http://127.0.0.1:8000 --delay-ms 40 --log FILE

For each request it waits --delay-ms, then forwards method, path, query, headers and body to
--upstream, and sends back status, headers and body bytes exactly as received: no
decompression (Content-Encoding, Content-Length and ETag pass through), Range/206,
If-None-Match/304 and HEAD are the upstream's own answers. Only hop-by-hop headers are
dropped. Headers the client did not send are not added (aiohttp's default Accept,
Accept-Encoding and User-Agent are suppressed).

Every finished request is one JSON line in --log (flushed at once), which is how the harness
counts what reached "the upstream". Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
from aiohttp import web
from yarl import URL

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host",
})
CLIENT_DEFAULTS = ("Accept", "Accept-Encoding", "User-Agent")  # aiohttp adds these unless skipped


def build_app(upstream: str, delay: float, log_path: str) -> web.Application:
    app = web.Application(client_max_size=1 << 30)
    logf = open(log_path, "a", buffering=1)
    state: dict = {}

    async def start(app):
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, force_close=False)
        state["session"] = aiohttp.ClientSession(
            connector=connector, auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120))

    async def stop(app):
        await state["session"].close()
        logf.close()

    async def handle(request: web.Request) -> web.StreamResponse:
        t0 = time.time()
        await asyncio.sleep(delay)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        skip = [h for h in CLIENT_DEFAULTS if h not in request.headers]
        data = request.content if request.body_exists else None
        status, sent, ce = 502, 0, ""
        response: web.StreamResponse | None = None
        try:
            async with state["session"].request(
                    request.method, URL(upstream + request.raw_path, encoded=True), headers=headers, skip_auto_headers=skip, data=data,
                    allow_redirects=False) as up:
                status, ce = up.status, up.headers.get("Content-Encoding", "")
                response = web.StreamResponse(status=up.status, reason=up.reason)
                for k, v in up.headers.items():
                    if k.lower() not in HOP_BY_HOP:
                        response.headers.add(k, v)
                await response.prepare(request)
                if request.method != "HEAD":
                    async for chunk in up.content.iter_chunked(256 * 1024):
                        sent += len(chunk)
                        await response.write(chunk)
                await response.write_eof()
                return response
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if response is not None and response.prepared:  # cut mid-body: the client sees a failed transfer
                if request.transport is not None:
                    request.transport.abort()
                return response
            status = 502
            return web.Response(status=502, text=f"delayproxy: {type(exc).__name__}: {exc}\n")
        finally:
            h = request.headers
            logf.write(json.dumps({
                "t": round(t0, 4), "ms": round((time.time() - t0) * 1e3, 1), "method": request.method,
                "path": request.rel_url.path, "status": status, "bytes": sent, "ce": ce,
                "accept": h.get("Accept", ""), "ae": h.get("Accept-Encoding", ""),
                "cc": h.get("Cache-Control", ""), "pragma": h.get("Pragma", ""),
                "inm": h.get("If-None-Match", ""), "ims": h.get("If-Modified-Since", ""),
                "range": h.get("Range", ""), "ua": h.get("User-Agent", "")[:60],
            }) + "\n")

    app.router.add_route("*", "/{tail:.*}", handle)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8000 (no trailing slash)")
    ap.add_argument("--delay-ms", type=float, default=40.0)
    ap.add_argument("--log", required=True, help="JSON-lines request log")
    a = ap.parse_args()
    if not a.upstream.startswith(("http://127.0.0.1", "http://localhost")):
        raise SystemExit("delayproxy only forwards to a local upstream")
    web.run_app(build_app(a.upstream.rstrip("/"), a.delay_ms / 1e3, a.log), host="127.0.0.1", port=a.port,
                access_log=None, print=None, shutdown_timeout=2)


if __name__ == "__main__":
    main()
