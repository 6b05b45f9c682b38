"""Reading request bodies from clients that may stall: every wait for the next bytes is bounded
by the `client_timeout` setting, so a stuck client holds no upload (temp file, session) forever."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, TypeVar

from aiohttp import web

from ..publish.errors import Invalid
from .keys import SETTINGS

T = TypeVar("T")


def _stalled(seconds: float) -> Invalid:
    return Invalid(f"The request body stalled: nothing arrived for {seconds:g} s.", source="body", status=408)


async def bounded(request: web.Request, waiting: Awaitable[T]) -> T:
    """`waiting` (a read of the request), refused with 408 if the client sends nothing for too long."""
    seconds = request.config_dict[SETTINGS].client_timeout
    try:
        async with asyncio.timeout(seconds):
            return await waiting
    except TimeoutError:
        raise _stalled(seconds) from None


async def chunks(request: web.Request, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks of `stream`, each awaited for at most client_timeout."""
    iterator = aiter(stream)
    while True:
        try:
            chunk = await bounded(request, anext(iterator))
        except StopAsyncIteration:
            return
        yield chunk
