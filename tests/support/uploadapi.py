"""A thin client for tidegate's Upload 2.0 API, shared by the upload tests."""

from __future__ import annotations

import base64
import json
from typing import Any

UPLOAD = "application/vnd.pypi.upload.v2+json"
PROBLEM = "application/problem+json"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
META = {"api-version": "2.0"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class UploadApi:
    def __init__(self, tg: Any, auth: dict[str, str]) -> None:
        self.tg, self.auth = tg, auth

    async def call(self, method: str, url: str, body: dict | None = None, *, auth: dict | None = None,
                   raw: bytes | None = None, headers: dict | None = None, data: bytes | None = None):
        """(status, JSON payload or raw bytes or None, headers). `body` gets the meta member
        and the Upload 2.0 content type; `raw` is sent as is with that content type."""
        h = dict(self.auth if auth is None else auth)
        if body is not None:
            h["Content-Type"] = UPLOAD
            data = json.dumps({"meta": META, **body}).encode()
        if raw is not None:
            h["Content-Type"] = UPLOAD
            data = raw
        h.update(headers or {})
        if not url.startswith("http"):
            url = self.tg.origin + url
        async with self.tg.session.request(method, url, data=data, headers=h, allow_redirects=False) as r:
            text = await r.read()
            if not text:
                return r.status, None, r.headers
            try:
                return r.status, json.loads(text), r.headers
            except ValueError:
                return r.status, text, r.headers

    async def add_file(self, session: dict, path: Any) -> tuple[int, Any]:
        """Upload a file into a session with http-post-bytes and complete it: (status, upload)."""
        import hashlib

        data = path.read_bytes()
        status, upload, _ = await self.call("POST", session["links"]["upload"], {
            "filename": path.name, "size": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
            "mechanism": "http-post-bytes"})
        if status != 202:
            return status, upload
        status, body, _ = await self.call("POST", upload["mechanism"]["file_url"], data=data,
                                          headers={"Content-Type": "application/octet-stream"})
        if status >= 300:
            return status, body
        status, upload, _ = await self.call("POST", upload["links"]["complete"], {})
        return status, upload
