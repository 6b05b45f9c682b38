"""RFC 9457 problem documents, with the `meta` and `errors` members PEP 694 asks for: the one
place where the publish domain's refusals become Upload 2.0 (and release management) responses."""

from __future__ import annotations

import json
import logging
import sqlite3
from http import HTTPStatus

from aiohttp import hdrs, web

from ..observe.requestlog import redact
from ..publish.errors import PublishError, storage_full
from ..storage.errors import EngineUnavailable
from ..storage.full import FULL_MESSAGE, disk_full
from ..publish.protocol import API_VERSION, PROBLEM_MEDIA_TYPE
from .auth import CHALLENGE
from .landing import origin

log = logging.getLogger(__name__)


def problem(status: int, detail: str, errors: list[dict[str, str]], headers: dict[str, str] | None = None) -> web.Response:
    body = {
        "type": "about:blank",
        "status": status,
        "title": HTTPStatus(status).phrase,
        "detail": detail,
        "meta": {"api-version": API_VERSION},
        "errors": errors,
    }
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=PROBLEM_MEDIA_TYPE,
                        headers=headers)


def refusal(request: web.Request, exc: PublishError) -> web.Response:
    errors = [{"source": f, "message": exc.message} for f in exc.files] or [{"source": exc.source, "message": exc.message}]
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers.update(CHALLENGE)
    if exc.location:  # the session a conflict is about
        headers[hdrs.LOCATION] = f"{origin(request)}/upload/session/{exc.location}"
    return problem(exc.status, exc.message, errors, headers)


def full(request: web.Request, exc: BaseException) -> web.Response:
    log.warning("refused %s %s: %s (%s)", request.method, redact(request.rel_url.raw_path), FULL_MESSAGE, exc)
    return refusal(request, storage_full())


def problems_for(api: str):
    """A middleware answering every error of an API as a problem document, aiohttp's own (404,
    405, 413) too, and a full disk as 507."""

    @web.middleware
    async def problems(request: web.Request, handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except PublishError as exc:
            return refusal(request, exc)
        except EngineUnavailable as exc:
            detail = f"{exc}; try again in a moment."
            return problem(503, detail, [{"source": "server", "message": detail}], {"Retry-After": "2"})
        except (OSError, sqlite3.Error) as exc:
            if not disk_full(exc):
                raise  # too many open files, say: the application's last line of defence answers it
            return full(request, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            detail = {404: f"No such {api} endpoint.", 405: f"{request.method} is not allowed here.",
                      413: "The request body is too large."}.get(exc.status, exc.reason)
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            return problem(exc.status, detail, [{"source": "request", "message": detail}], headers)

    return problems


problems = problems_for("Upload 2.0")
