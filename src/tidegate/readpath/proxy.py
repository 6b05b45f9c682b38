"""The read path's one entry point: an ordered list of sources, and who answers for a name.

The first source that has a project answers for it, for its page and for every file of it:
the local index before the upstreams (a local project shadows a public one entirely), and a
stage overlay before both. A source that does not have a project says None and the next one is
asked; errors (upstream failures, offline misses) end the search as they are.
"""

from __future__ import annotations

import time
from typing import Hashable, Protocol, Sequence

from ..simple.names import NormalizedName
from .answers import Answer, CacheResult, FileAnswer, FileQuery, PageAnswer, PageQuery
from .errors import NotFound
from .pages import Page
from .roots import FilePage, RootLists

ROOT_MEMO_SECONDS = 10.0  # the root list picks up other workers' new projects this often


class Source(Protocol):
    async def page(self, name: NormalizedName, *, revalidate: bool = False) -> PageAnswer | None:
        """This source's page of the project, or None if it does not have the project."""

    async def file(self, query: FileQuery, answer: PageAnswer) -> FileAnswer:
        """A file of a project this source answered `answer` for (NotFound if not a file of it)."""

    async def names(self) -> set[str]:
        """The projects this source would list at the root."""

    def changed(self) -> Hashable:
        """Differs once this source's list of names may have changed."""


class Proxy:
    def __init__(self, sources: Sequence[Source], roots: RootLists | None = None) -> None:
        self.sources = tuple(sources)
        self._roots = roots if roots is not None and roots.active else None
        self._root: tuple[Page, object] | None = None  # the page, and the names memo it was built from
        self._names: tuple[set[str], float, tuple[Hashable, ...]] | None = None

    def overlaid(self, source: Source) -> Proxy:
        """The same sources with `source` in front (a stage preview)."""
        return Proxy((source, *self.sources), self._roots)

    async def answer(self, query: PageQuery | FileQuery) -> Answer:
        """What to send for a project page or a file of it; a ReadError when there is nothing."""
        revalidate = isinstance(query, PageQuery) and query.revalidate
        for source in self.sources:
            found = await source.page(query.project, revalidate=revalidate)
            if found is None:
                continue
            if isinstance(query, PageQuery):
                return found
            return await source.file(query, found)
        raise NotFound(f"Project {query.project} was not found locally or on any upstream.")

    async def names(self) -> set[str]:
        """Every project the sources know, memoized until a source's list changed (or, for what
        other workers learnt, for ROOT_MEMO_SECONDS)."""
        stamps = tuple(s.changed() for s in self.sources)
        memo = self._names
        if memo is None or memo[2] != stamps or time.monotonic() - memo[1] > ROOT_MEMO_SECONDS:
            names: set[str] = set()
            for source in self.sources:
                names |= await source.names()
            self._names = memo = (names, time.monotonic(), stamps)
        return memo[0]

    async def root(self) -> PageAnswer | FilePage:
        """The root page: every project the sources know, and every project of the upstreams
        that list theirs (then a page in files, for a list may be the size of PyPI's)."""
        names = await self.names()
        if self._roots is not None:
            return await self._roots.page(names)
        memo = self._root
        if memo is None or memo[1] is not self._names:
            page = Page.of_names(sorted(names), time.time())
            if memo is not None and await page.same_content(memo[0]):
                page = memo[0]  # unchanged: keep its Last-Modified and rendered bodies
            self._root = memo = (page, self._names)
        return PageAnswer(memo[0], CacheResult.LOCAL)
