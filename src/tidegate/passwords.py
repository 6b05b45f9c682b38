"""Password storage for configured upload users: plaintext, or PBKDF2-SHA256 from the stdlib."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
import weakref

_PREFIX = "pbkdf2_sha256"
_ITERATIONS = 600_000  # OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256
# What an unknown user name is checked against, so that its answer takes as long as a known
# name's: a well-formed hash that no password matches (its digest is not PBKDF2's output).
DUMMY_HASH = f"{_PREFIX}${_ITERATIONS}$00000000000000000000000000000000${base64.b64encode(bytes(32)).decode()}"
# PBKDF2 checks running at once per event loop, in threads (hashlib releases the GIL): more
# wait their turn, so guessing cannot take every thread of the default executor.
CONCURRENT_CHECKS = 4


def hash_password(password: str, *, iterations: int = _ITERATIONS) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"{_PREFIX}${iterations}${salt}${base64.b64encode(digest).decode()}"


def is_hashed(stored: str) -> bool:
    parts = stored.split("$")
    # isascii: str.isdigit() also takes "²", which int() refuses.
    return (len(parts) == 4 and parts[0] == _PREFIX and parts[1].isascii() and parts[1].isdigit()
            and int(parts[1]) >= 1 and bool(parts[2] and parts[3]))


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of a password against a plaintext or hashed stored value."""
    if is_hashed(stored):
        _, iterations, salt, expected = stored.split("$")
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
        return hmac.compare_digest(base64.b64encode(digest).decode(), expected)
    return hmac.compare_digest(password.encode(), stored.encode())


class VerifiedPasswords:
    """Credentials that verified against a PBKDF2 hash, remembered by this process for a while.

    PBKDF2 is slow on purpose (about 0.15 s of CPU; averify runs it in a thread, a few at a
    time, off the event loop), and HTTP Basic sends the password with every request: an Upload 2.0 upload makes several, and with read_auth every
    page and file request would pay it. Only a keyed digest (HMAC with a random key of this
    process) of hash and password is kept, in memory, so nothing here helps an offline attack;
    a failed attempt is never remembered, so guessing still pays PBKDF2 every time.
    """

    def __init__(self, ttl: float = 300.0, size: int = 1024, clock=time.monotonic) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl, self._size, self._clock = ttl, size, clock
        self._until: dict[bytes, float] = {}

    def _tag(self, password: str, stored: str) -> bytes:
        return hmac.new(self._key, stored.encode() + b"\0" + password.encode(), hashlib.sha256).digest()

    def known(self, password: str, stored: str) -> bool | None:
        """The answer when it needs no PBKDF2 (a plaintext stored value, or a hash this password
        verified against lately), else None."""
        if not is_hashed(stored):
            return verify_password(password, stored)
        return True if self._until.get(self._tag(password, stored), 0.0) > self._clock() else None

    def verify(self, password: str, stored: str) -> bool:
        """Blocking: PBKDF2 in the calling thread unless the answer is known (see averify)."""
        answer = self.known(password, stored)
        if answer is not None:
            return answer
        if not verify_password(password, stored):
            return False
        self._remember(self._tag(password, stored))
        return True

    async def averify(self, password: str, stored: str) -> bool:
        """verify() for the event loop: a known answer at once, else PBKDF2 in a thread, at
        most CONCURRENT_CHECKS at a time in this loop."""
        answer = self.known(password, stored)
        if answer is not None:
            return answer
        async with _checks():
            if not await asyncio.to_thread(verify_password, password, stored):
                return False
        self._remember(self._tag(password, stored))
        return True

    def _remember(self, tag: bytes) -> None:
        now = self._clock()
        if len(self._until) >= self._size:  # forget the expired, else the oldest
            self._until = {k: t for k, t in self._until.items() if t > now} or {}
            while len(self._until) >= self._size:
                self._until.pop(next(iter(self._until)))
        self._until[tag] = now + self._ttl


_semaphores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = weakref.WeakKeyDictionary()


def _checks() -> asyncio.Semaphore:
    """This event loop's semaphore (a semaphore is bound to the loop it first waits in)."""
    loop = asyncio.get_running_loop()
    semaphore = _semaphores.get(loop)
    if semaphore is None:
        semaphore = _semaphores[loop] = asyncio.Semaphore(CONCURRENT_CHECKS)
    return semaphore


verified = VerifiedPasswords()  # per process: a forked worker keeps its own copy
