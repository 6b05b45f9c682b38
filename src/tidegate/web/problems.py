"""RFC 9457 problem documents, with the `meta` and `errors` members PEP 694 asks for."""

from __future__ import annotations

import json
from http import HTTPStatus

from aiohttp import web

UPLOAD_JSON = "application/vnd.pypi.upload.v2+json"
PROBLEM_JSON = "application/problem+json"
API_VERSION = "2.0"


class Problem(Exception):
    """Raised by upload handlers; the middleware turns it into a problem document."""

    def __init__(self, status: int, detail: str, *, source: str = "request",
                 headers: dict[str, str] | None = None, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors or [{"source": source, "message": detail}]

    def response(self) -> web.Response:
        body = {
            "type": "about:blank",
            "status": self.status,
            "title": HTTPStatus(self.status).phrase,
            "detail": self.detail,
            "meta": {"api-version": API_VERSION},
            "errors": self.errors,
        }
        return web.Response(status=self.status, body=json.dumps(body).encode(), content_type=PROBLEM_JSON,
                            headers=self.headers)


@web.middleware
async def problems(request: web.Request, handler) -> web.StreamResponse:
    """Every error of the upload API as a problem document, aiohttp's own (404, 405, 413) too."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = {404: "No such Upload 2.0 endpoint.", 405: f"{request.method} is not allowed here.",
                  413: "The request body is too large."}.get(exc.status, exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return Problem(exc.status, detail, headers=headers).response()
