"""HTTP Basic authentication against the configured [[users]] and, for uploads and release
management, their API tokens (user `__token__`)."""

from __future__ import annotations

import base64
import binascii
import ipaddress

from aiohttp import hdrs, web

from ..config import Settings, User
from ..passwords import DUMMY_HASH, is_hashed, verified
from ..publish.actor import TOKEN_USERNAME, Actor
from ..publish.errors import PublishError
from ..publish.tokens import Tokens

CHALLENGE = {hdrs.WWW_AUTHENTICATE: 'Basic realm="tidegate"'}


def credentials(request: web.Request) -> tuple[str, str] | None:
    """The (name, password) of a Basic Authorization header, or None."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (name, password) if sep else None


async def authenticate(request: web.Request, settings: Settings) -> User | None:
    """The configured user whose valid credentials the request carries, or None (the read
    path's check: no index lookup, so tokens are for uploading and managing only).

    PBKDF2 runs off the event loop, a few checks at a time (passwords.VerifiedPasswords), so
    wrong passwords cannot stall the worker; an unknown name is checked against a dummy hash
    the same way, so the time of an answer does not tell which names exist."""
    given = credentials(request)
    if given is None or given[0] == TOKEN_USERNAME:  # no name, or the public name of tokens
        return None
    user = settings.user(given[0])
    if user is None:
        hashed = any(is_hashed(u.password) for u in settings.users)
        await verified.averify(given[1], DUMMY_HASH if hashed else "\0")
        return None
    return user if await verified.averify(given[1], user.password) else None


def client_address(remote: str | None, forwarded_for: str, trusted: tuple) -> str:
    """The client's address: the peer's, or, when the peer is a trusted front, the last
    X-Forwarded-For hop that is not one (hops further left may be forged by the client)."""
    hops = [remote or "unknown"] + [h.strip() for h in reversed(forwarded_for.split(",")) if h.strip()]
    for hop in hops:
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return hop  # not an address (a unix socket, garbage): stop believing here
        if not any(address in network for network in trusted):
            return hop
    return hops[-1]


async def authenticate_publisher(request: web.Request, settings: Settings, tokens: Tokens) -> Actor | None:
    """Who an upload or management request comes from: a configured user, or `__token__` with
    an API token as the password (Denied, 401, for an expired or revoked one); else None."""
    given = credentials(request)
    # Every X-Forwarded-For line: a front that appends a line of its own (HAProxy) leaves the
    # client's forged one first.
    forwarded = ", ".join(request.headers.getall("X-Forwarded-For", ()))
    address = client_address(request.remote, forwarded, settings.trusted_proxies)
    if given is not None and given[0] == TOKEN_USERNAME:
        return await tokens.verify(given[1], address)
    user = await authenticate(request, settings)
    return Actor(user, address) if user else None


async def may_read(request: web.Request, settings: Settings, tokens: Tokens) -> bool:
    """For read_auth (and metrics_auth): a configured user, or a valid API token (looked up only
    when one is presented, so other reads cost no index query)."""
    if await authenticate(request, settings) is not None:
        return True
    given = credentials(request)
    if given is None or given[0] != TOKEN_USERNAME:
        return False
    try:
        return await tokens.verify(given[1], request.remote or "unknown") is not None
    except PublishError:  # expired or revoked
        return False
