"""/simple/ with the upstreams' root lists: every project they have, whatever their number.

Each upstream that lists its projects (`list_projects`) has its root list fetched when a client
asks for /simple/, kept, revalidated after its ttl and kept as it was when the upstream fails,
like a page. A list the size of PyPI's is never whole in memory: its names are streamed from
the upstream to a file to the root-list store, and the merged root page is written from there to
files (every representation and content coding in one pass), which are then sent with sendfile.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import logging
import os
import time
import zlib
from itertools import groupby
from pathlib import Path
from typing import IO, Iterable, Iterator

import zstandard

from ..config import Settings
from ..simple.html_page import render_index_html_parts
from ..simple.json_page import render_index_json_parts
from ..simple.negotiate import Encoding, Representation
from ..storage import Storage
from ..storage.rootlists import BATCH, RootList
from ..upstream.client import PageUnchanged, UpstreamClient, UpstreamError
from .pages import GZIP_LEVEL, ZSTD_LEVEL, http_date

log = logging.getLogger(__name__)

LOCK_POLL = 0.05  # seconds between tries for a list or page another worker is writing
_SUFFIX = {Representation.JSON: "", Representation.HTML: "-v1", Representation.TEXT: ""}


class FilePage:
    """A root page written to files: (path, strong ETag) by representation and coding."""

    def __init__(self, files: dict[tuple[Representation, Encoding], tuple[Path, str]], changed_at: float) -> None:
        self.files = files
        self.changed_at = changed_at
        self.last_modified = http_date(changed_at)


class RootLists:
    def __init__(self, settings: Settings, storage: Storage, clients: list[UpstreamClient]) -> None:
        self._store = storage.roots
        self._locks = storage.locks
        self._dir = storage.roots.pages_dir
        self._clients = [c for c in clients if c.upstream.list_projects] if not settings.offline else []
        self._memo: tuple[str, FilePage] | None = None

    @property
    def active(self) -> bool:
        """Whether any upstream's list is part of the root page."""
        return bool(self._clients)

    async def page(self, names: set[str]) -> FilePage:
        """The root page: the upstreams' lists (fresh, or as they were when an upstream fails)
        and `names`, the projects the other sources know."""
        lists = await self._store.lists()
        now = time.time()
        for client in self._clients:
            known = lists.get(client.name)
            if known is None or now - known.fetched_at >= client.upstream.ttl:
                lists[client.name] = await self._refresh(client, known) or known  # type: ignore[assignment]
        present = [lists[c.name] for c in self._clients if lists.get(c.name) is not None]
        key = hashlib.sha256(json.dumps([[r.upstream, r.digest] for r in present] + sorted(names)).encode()).hexdigest()
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        page = await self._written(key, [r.upstream for r in present], names,
                                   max([r.changed_at for r in present], default=now))
        self._memo = (key, page)
        return page

    async def _refresh(self, client: UpstreamClient, known: RootList | None) -> RootList | None:
        """Fetch (or revalidate) one list, once across workers; None when the upstream fails."""
        lease = None
        while lease is None:
            lease = await self._locks.try_acquire("root:" + client.name)
            if lease is None:
                await asyncio.sleep(LOCK_POLL)
        staged = self._dir / f"names-{client.name.encode().hex()[:64]}-{os.getpid()}.tmp"
        try:
            latest = (await self._store.lists()).get(client.name)
            if latest is not None and latest is not known and time.time() - latest.fetched_at < client.upstream.ttl:
                return latest  # another worker refreshed it meanwhile
            with open(staged, "w", encoding="utf-8") as out:
                digest = hashlib.sha256()

                def sink(batch: list[str]) -> None:
                    text = "".join(name + "\n" for name in batch)
                    out.write(text)
                    digest.update(text.encode())

                result = await client.fetch_root(known.validators if known else None, sink)
            now = time.time()
            if isinstance(result, PageUnchanged) and known is not None:
                root = RootList(client.name, now, known.changed_at, known.validators, known.digest, known.names)
                await self._store.replace(root, None)
                return root
            assert not isinstance(result, PageUnchanged)
            same = known is not None and known.digest == digest.hexdigest()
            root = RootList(client.name, now, known.changed_at if same and known else now, result.validators,
                            digest.hexdigest(), result.names)
            await self._store.replace(root, None if same else staged)
            return root
        except UpstreamError as exc:
            log.warning("the root list of %s failed%s: %s", client.name,
                        "; serving the one from before" if known else "", exc)
            return None
        finally:
            staged.unlink(missing_ok=True)
            await lease.release()

    async def _written(self, key: str, upstreams: list[str], names: set[str], changed_at: float) -> FilePage:
        """The page's files for this key, written now unless a worker has written them."""
        index = self._dir / f"{key}.files"
        lease = None
        while lease is None and not index.exists():
            lease = await self._locks.try_acquire("root-page:" + key)
            if lease is None:
                await asyncio.sleep(LOCK_POLL)
        try:
            if not index.exists():
                await asyncio.to_thread(self._write, key, upstreams, sorted(names), changed_at)
        finally:
            if lease is not None:
                await lease.release()
        stored = json.loads(index.read_text())
        files = {(Representation[rep], Encoding[enc]): (self._dir / name, etag) for rep, enc, name, etag in stored["files"]}
        return FilePage(files, stored["changed_at"])

    def _write(self, key: str, upstreams: list[str], names: list[str], changed_at: float) -> None:
        listed: list[list] = []
        for kind, render in (("html", render_index_html_parts), ("json", render_index_json_parts)):
            parts = render(self._merged(upstreams, names))
            written = _write_codings(self._dir / f"{key}.page.{kind}", parts)
            reps = (Representation.HTML, Representation.TEXT) if kind == "html" else (Representation.JSON,)
            for rep in reps:
                for encoding, (path, digest) in written.items():
                    listed.append([rep.name, encoding.name, path.name, f'"{digest}{_SUFFIX[rep]}{encoding.etag_suffix}"'])
        temp = self._dir / f"{key}.files.tmp"
        temp.write_text(json.dumps({"files": listed, "changed_at": changed_at}))
        os.replace(temp, self._dir / f"{key}.files")
        self._prune(keep=key)

    def _merged(self, upstreams: list[str], names: list[str]) -> Iterator[list[str]]:
        """Every name of the lists and of `names`, sorted, each once, in batches."""
        stream = heapq.merge((n for batch in self._store.names(upstreams) for n in batch), names)
        unique = (name for name, _ in groupby(stream))
        while batch := [n for _, n in zip(range(BATCH), unique)]:
            yield batch

    def _prune(self, keep: str) -> None:
        """Root pages of earlier states go: one page is kept (and the newest others' pages)."""
        pages = sorted(self._dir.glob("*.files"), key=lambda p: p.stat().st_mtime, reverse=True)
        for index in pages[3:]:
            if index.stem != keep:
                for part in self._dir.glob(index.stem + ".*"):
                    part.unlink(missing_ok=True)


def _write_codings(base: Path, parts: Iterable[bytes]) -> dict[Encoding, tuple[Path, str]]:
    """Write the parts as they come to a file per content coding; their identity digests."""
    paths = {Encoding.IDENTITY: base, Encoding.GZIP: base.with_name(base.name + ".gz"),
             Encoding.ZSTD: base.with_name(base.name + ".zst")}
    digest = hashlib.sha256()
    handles: dict[Encoding, IO[bytes]] = {e: open(p.with_name(p.name + ".tmp"), "wb") for e, p in paths.items()}
    try:
        gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        zst = zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(handles[Encoding.ZSTD], closefd=False)
        for part in parts:
            digest.update(part)
            handles[Encoding.IDENTITY].write(part)
            handles[Encoding.GZIP].write(gz.compress(part))
            zst.write(part)
        handles[Encoding.GZIP].write(gz.flush())
        zst.flush(zstandard.FLUSH_FRAME)
    finally:
        for handle in handles.values():
            handle.close()
    for path in paths.values():
        os.replace(path.with_name(path.name + ".tmp"), path)
    tag = digest.hexdigest()[:32]
    return {encoding: (path, tag) for encoding, path in paths.items()}
