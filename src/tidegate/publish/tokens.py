"""API tokens: created by an operator for a configured user, narrowed to project patterns, used
as the password of `__token__` by twine, `uv publish` and `tidegate upload`.

A token is 256 random bits from `secrets`; the index keeps only its sha256 (a slow KDF buys
nothing against a secret that cannot be guessed), so a stolen index.db holds no usable token.
Every creation and revocation is audited in the same transaction.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Callable

from ..config import Settings
from ..storage import IndexStore
from ..storage.index import IndexRows
from ..storage.records import ApiToken
from . import audit
from .actor import Actor
from .errors import Denied, Invalid, NotFound

PREFIX = "tdg_"  # makes a leaked token recognisable to secret scanners and to people


@dataclass(frozen=True, slots=True)
class Created:
    token: ApiToken
    secret: str  # shown once, never stored


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def within(scope: str, patterns: tuple[str, ...]) -> bool:
    """Whether a scope pattern stays inside a user's patterns: it must match one of them when
    read as a name (so "acme-*" is within "acme-*" and "acme-core" within "acme-*", but "*" is
    not). Use narrows to the user's rights as well, so this only catches mistakes early."""
    return any(fnmatch.fnmatchcase(scope, pattern) for pattern in patterns)


def state(token: ApiToken, now: float) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


class Tokens:
    def __init__(self, settings: Settings, index: IndexStore, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._index = index
        self._clock = clock

    async def create(self, by: Actor, user_name: str, scopes: tuple[str, ...], lifetime: float | None) -> Created:
        user = self._settings.user(user_name)
        if user is None:
            raise NotFound(f"No configured user {user_name!r}; tokens act for a [[users]] entry.", source="user")
        if not user.upload:
            raise Invalid(f"User {user_name} may not upload anything, so a token would have no use.", source="user")
        scopes = tuple(s.lower() for s in scopes) or user.upload
        outside = [s for s in scopes if not within(s, user.upload)]
        if outside:
            raise Invalid(f"Scope {outside[0]!r} is not within what {user_name} may upload "
                          f"({', '.join(user.upload)}).", source="scope")
        now = self._clock()
        secret = PREFIX + secrets.token_urlsafe(32)
        token = ApiToken(id=secrets.token_hex(6), user=user_name, sha256=digest(secret), scopes=scopes,
                         created_at=now, expires_at=None if lifetime is None else now + lifetime)

        def insert(rows: IndexRows) -> None:
            rows.insert_token(token)
            audit.record(rows, by, now, "token-create", token.id, user=user_name, scopes=list(scopes),
                         expires_at=token.expires_at)

        await self._index.write(insert)
        return Created(token, secret)

    async def list(self) -> list[ApiToken]:
        return await self._index.read(lambda rows: rows.tokens())

    async def revoke(self, by: Actor, token_id: str) -> ApiToken:
        now = self._clock()

        def revoke(rows: IndexRows) -> ApiToken:
            token = rows.token(token_id)
            if token is None:
                raise NotFound(f"No token with id {token_id!r}; `tidegate token list` shows them.", source="id")
            if token.revoked_at is None:
                rows.revoke_token(token_id, now)
                audit.record(rows, by, now, "token-revoke", token_id, user=token.user)
            return rows.token(token_id)  # type: ignore[return-value]

        return await self._index.write(revoke)

    async def verify(self, secret: str, address: str) -> Actor | None:
        """The actor a presented token stands for, or None if it is unknown, expired, revoked or
        its user is no longer configured (Denied, 401, naming why, for an expired or revoked one).
        One indexed lookup: only uploads and management ask."""
        if not secret.startswith(PREFIX):
            return None
        presented = digest(secret)
        token = await self._index.read(lambda rows: rows.token_by_hash(presented))
        if token is None or not hmac.compare_digest(token.sha256, presented):
            return None
        user = self._settings.user(token.user)
        if user is None:
            return None
        status = state(token, self._clock())
        if status != "active":  # the holder learns why, in one line
            raise Denied(f"API token {token.id} is {status}; create a new one with `tidegate token create`.",
                         source="Authorization", status=401)
        return Actor(user, address, token=token.id, scopes=token.scopes)
