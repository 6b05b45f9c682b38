"""What both upload APIs share: receiving bytes safely, validating archives, name policy."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from ..cache.sink import HashingSink
from ..config import Settings
from ..proxy import Proxy
from ..upstream.client import UpstreamError
from .index import LocalIndex
from .validate import Inspected, UploadError, inspect_archive


@dataclass(frozen=True, slots=True)
class Received:
    temp: Path
    size: int
    sha256: str
    digests: dict[str, str]  # every algorithm asked for, computed over the bytes received


def new_token() -> str:
    """An unguessable token: 192 bits from the OS's CSPRNG."""
    return secrets.token_urlsafe(24)


class Publisher:
    def __init__(self, settings: Settings, local: LocalIndex, proxy: Proxy) -> None:
        self.settings = settings
        self.local = local
        self.proxy = proxy

    async def receive(self, chunks: AsyncIterator[bytes], *, algorithms: set[str], limit: int) -> Received:
        """Stream an upload to a temp file (never whole in memory), hashing as it goes. The caller
        commits or discards the temp file; a failure here removes it. `algorithms` are hashlib
        names, plus "blake2_256" as the legacy API names BLAKE2b-256."""
        sink = HashingSink(self.local.blobs.temp_path("upload"), algorithms | {"sha256"})
        try:
            async for chunk in chunks:
                if sink.size + len(chunk) > limit:
                    raise UploadError(f"The file is larger than the {limit} bytes allowed.", status=413, source="content")
                await sink.write(chunk)
            digests = await sink.finish()
        except BaseException:
            await sink.abort()
            raise
        return Received(sink.path, sink.size, digests["sha256"], digests)

    def discard(self, received: Received) -> None:
        received.temp.unlink(missing_ok=True)

    async def commit(self, received: Received) -> Path:
        return await asyncio.to_thread(self.local.blobs.commit, received.temp, received.sha256)

    async def inspect(self, sha256: str, filename: str, project: str, version: str) -> Inspected:
        try:
            return await asyncio.to_thread(inspect_archive, self.local.blobs.path(sha256), filename, project, version)
        except FileNotFoundError:
            raise UploadError("The uploaded bytes are no longer stored; upload the file again.",
                              source="content") from None

    async def keep_metadata(self, filename: str, inspected: Inspected) -> str | None:
        """Store a wheel's METADATA as its PEP 658 metadata file; returns its sha256."""
        if not filename.endswith(".whl"):
            return None
        digest = hashlib.sha256(inspected.metadata).hexdigest()
        await asyncio.to_thread(self.local.store.put_metadata, digest, inspected.metadata)
        return digest

    async def check_new_name(self, project: str) -> None:
        """Refuse to register a local project that an upstream serves, unless configured: it
        would shadow the public package for every client of this index."""
        if self.local.store.is_registered(project) or self.settings.may_shadow(project):
            return
        try:
            record, _ = await self.proxy.page(project)
        except UpstreamError as exc:
            raise UploadError(f"Cannot check whether {project} exists upstream ({exc}); try again later.",
                              status=503, source="name") from exc
        if record is not None and record.served is not None:
            upstream = record.parts[0].upstream if record.parts else "an upstream"
            raise UploadError(
                f"{project} is a project on {upstream}; a local upload would shadow it for every client. "
                "Add it to `shadow` in the configuration if that is intended.", status=403, source="name")

    def expire_now(self) -> None:
        """Cancel expired sessions and purge their files (the sweep does this periodically)."""
        self.remove_blobs(self.local.store.expire(time.time(), self.settings.session_retention))

    def collect_garbage(self, grace: float = 3600.0) -> None:
        """Delete local blobs that nothing refers to, such as those a crash left between the
        commit of the bytes and the row that would have pointed at them. The grace period keeps
        the blob of an upload still between those two steps."""
        cutoff = time.time() - grace
        for key in self.local.blobs.keys():
            path = self.local.blobs.path(key)
            try:
                old = path.stat().st_mtime < cutoff
            except FileNotFoundError:
                old = True
            if old and not self.local.store.referenced(key):
                self.local.blobs.remove(key)

    def remove_blobs(self, sha256s: list[str]) -> None:
        for digest in sha256s:
            if not self.local.store.referenced(digest):
                self.local.blobs.remove(digest)
