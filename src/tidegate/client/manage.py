"""Client side of release management (<repository>/manage/): the caller's open sessions, yank
and delete, over a caller-provided aiohttp ClientSession carrying the credentials."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp

from .upload import Reply, UploadError, _failure, _read_body


def manage_root(repository: str) -> str:
    return repository.rstrip("/") + "/manage/"


def target_path(target: list[str]) -> str:
    """files/<filename> for one argument, releases/<name>/<version> for two."""
    if len(target) == 1:
        return "files/" + quote(target[0], safe="")
    if len(target) == 2:
        return "releases/" + "/".join(quote(part, safe="") for part in target)
    raise UploadError("give one published file, or a project name and a version")


async def request(http: aiohttp.ClientSession, method: str, url: str, body: dict | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json, application/problem+json;q=0.9"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        async with http.request(method, url, data=data, headers=headers) as resp:
            reply = Reply(resp.status, resp.headers, await _read_body(resp))
    except aiohttp.ClientError as exc:
        raise UploadError(f"{method} {url}: {exc}") from None
    if reply.status == 404 and not isinstance(reply.body, dict):
        raise UploadError(f"{url}: this server has no release management API (HTTP 404)", status=404)
    if reply.status != 200 or not isinstance(reply.body, dict):
        raise _failure(reply, f"{method} {url}")
    return reply.body


async def open_sessions(http: aiohttp.ClientSession, repository: str) -> list[dict]:
    body = await request(http, "GET", manage_root(repository) + "sessions")
    sessions = body.get("sessions")
    if not isinstance(sessions, list):
        raise UploadError(f"{manage_root(repository)}sessions: the answer lists no sessions")
    return [s for s in sessions if isinstance(s, dict)]


async def yank(http: aiohttp.ClientSession, repository: str, target: list[str], reason: str | None) -> list[dict]:
    action = "unyank" if reason is None else "yank"
    body = await request(http, "POST", f"{manage_root(repository)}{target_path(target)}/{action}",
                         None if reason is None else {"reason": reason})
    return body.get("files") or []


async def delete(http: aiohttp.ClientSession, repository: str, target: list[str]) -> list[dict]:
    body = await request(http, "DELETE", manage_root(repository) + target_path(target))
    return body.get("deleted") or []
