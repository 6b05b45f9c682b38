"""This process's memory of recently served pages, bounded in bytes (least recently used out)."""

from __future__ import annotations

from collections import OrderedDict

from .pages import Page


class PageMemory:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pages: OrderedDict[str, Page] = OrderedDict()
        self._weights: dict[str, int] = {}
        self._bytes = 0

    def get(self, name: str) -> Page | None:
        page = self._pages.get(name)
        if page is not None:
            self._pages.move_to_end(name)
            if page.weight != self._weights[name]:
                self._account(name, page)  # bodies are rendered on first use: the weight grows
        return page

    def clear(self) -> None:
        self._pages.clear()
        self._weights.clear()
        self._bytes = 0

    def put(self, name: str, page: Page) -> Page:
        self._pages[name] = page
        self._pages.move_to_end(name)
        self._account(name, page)
        return page

    def _account(self, name: str, page: Page) -> None:
        weight = page.weight
        self._bytes += weight - self._weights.get(name, 0)
        self._weights[name] = weight
        while self._bytes > self._limit and len(self._pages) > 1:
            evicted, _ = self._pages.popitem(last=False)
            self._bytes -= self._weights.pop(evicted)
