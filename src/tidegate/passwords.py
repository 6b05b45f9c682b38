"""Password storage for configured upload users: plaintext, or PBKDF2-SHA256 from the stdlib."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_PREFIX = "pbkdf2_sha256"
_ITERATIONS = 600_000  # OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256


def hash_password(password: str, *, iterations: int = _ITERATIONS) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"{_PREFIX}${iterations}${salt}${base64.b64encode(digest).decode()}"


def is_hashed(stored: str) -> bool:
    parts = stored.split("$")
    return len(parts) == 4 and parts[0] == _PREFIX and parts[1].isdigit() and bool(parts[2] and parts[3])


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of a password against a plaintext or hashed stored value."""
    if is_hashed(stored):
        _, iterations, salt, expected = stored.split("$")
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
        return hmac.compare_digest(base64.b64encode(digest).decode(), expected)
    return hmac.compare_digest(password.encode(), stored.encode())
