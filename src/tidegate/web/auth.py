"""HTTP Basic authentication against the configured [[users]], and upload authorization."""

from __future__ import annotations

import base64
import binascii

from aiohttp import hdrs, web

from ..config import Settings, User
from ..passwords import verify_password

CHALLENGE = {hdrs.WWW_AUTHENTICATE: 'Basic realm="tidegate"'}


def authenticate(request: web.Request, settings: Settings) -> User | None:
    """The user whose valid credentials the request carries, or None."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user = settings.user(name) if sep else None
    if user is None or not verify_password(password, user.password):
        return None
    return user
