"""Who asks: a configured user, possibly through one of their API tokens, from an address.

Every publish-domain method takes an Actor (a bare User is accepted too, for callers with no
address, such as tests and local commands); rights are the user's `upload` patterns, narrowed
by a token's scopes, and the audit log names the actor as `label`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from ..config import User

TOKEN_USERNAME = "__token__"  # the user name twine, uv and PyPI use for API tokens


@dataclass(frozen=True, slots=True)
class Actor:
    user: User
    address: str = "local"
    token: str | None = None  # id of the API token used, if any
    scopes: tuple[str, ...] | None = None  # the token's patterns; None: all the user's

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def label(self) -> str:
        return f"{self.user.name} (token {self.token})" if self.token else self.user.name

    def may_upload(self, project: str) -> bool:
        if not self.user.may_upload(project):
            return False
        return self.scopes is None or any(fnmatch.fnmatchcase(project, p) for p in self.scopes)


def as_actor(who: Actor | User) -> Actor:
    return who if isinstance(who, Actor) else Actor(who)
