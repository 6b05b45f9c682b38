"""The token service over a real index store: scopes narrow the user's rights, secrets are
never stored, and expiry and revocation are decided by its clock."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from tidegate.config import User, build
from tidegate.publish.actor import Actor
from tidegate.publish.errors import Denied, Invalid, NotFound
from tidegate.publish.tokens import Tokens, within
from tidegate.storage import open_storage

RM = {"name": "rm", "password": "pw", "upload": ["acme-*", "tools"]}


@pytest.fixture
async def tokens(tmp_path) -> AsyncIterator[tuple[Tokens, list[float]]]:
    settings = build({"data_dir": str(tmp_path), "upstreams": [], "users": [RM]})
    storage = await open_storage(settings)
    now = [1_000_000.0]
    yield Tokens(settings, storage.index, clock=lambda: now[0]), now
    await storage.close()


OPERATOR = Actor(User("op@host", "", ("*",)))


@pytest.mark.parametrize("scope, inside", [("acme-*", True), ("acme-core", True), ("acme-[ab]*", True),
                                           ("tools", True), ("*", False), ("acme*", False), ("other", False)])
def test_a_scope_must_stay_within_the_users_patterns(scope, inside):
    assert within(scope, ("acme-*", "tools")) is inside


async def test_scopes_narrow_what_the_token_may_do(tokens):
    service, _ = tokens
    made = await service.create(OPERATOR, "rm", ("acme-core",), None)
    actor = await service.verify(made.secret, "10.0.0.1")
    assert actor is not None and actor.address == "10.0.0.1" and actor.label == f"rm (token {made.token.id})"
    assert actor.may_upload("acme-core") and not actor.may_upload("acme-lib") and not actor.may_upload("tools")
    everything = await service.verify((await service.create(OPERATOR, "rm", (), None)).secret, "x")
    assert everything.may_upload("acme-lib") and everything.may_upload("tools") and not everything.may_upload("x")
    assert made.secret not in repr(await service.list())


async def test_expiry_and_revocation(tokens):
    service, now = tokens
    made = await service.create(OPERATOR, "rm", (), 3600.0)
    assert await service.verify(made.secret, "x") is not None
    now[0] += 3600
    with pytest.raises(Denied, match="is expired"):
        await service.verify(made.secret, "x")
    other = await service.create(OPERATOR, "rm", (), None)
    await service.revoke(OPERATOR, other.token.id)
    with pytest.raises(Denied, match="is revoked"):
        await service.verify(other.secret, "x")
    assert await service.verify("tdg_unknown", "x") is None and await service.verify("no-prefix", "x") is None
    with pytest.raises(NotFound):
        await service.revoke(OPERATOR, "nope")


async def test_refused_creations(tokens):
    service, _ = tokens
    with pytest.raises(NotFound):
        await service.create(OPERATOR, "nobody", (), None)
    with pytest.raises(Invalid, match="not within"):
        await service.create(OPERATOR, "rm", ("acme-core", "*"), None)
    assert await service.list() == []
