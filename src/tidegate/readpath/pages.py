"""A page as served: one resource in every representation, each rendered once, on first use.

Render once, serve many: a Page is made when its content changes (or is loaded), and each
representation's body and strong ETag are computed the first time a client asks for it and
then kept with the page, so serving a warm page is a lookup and a write.
"""

from __future__ import annotations

import hashlib
from msgspec.structs import replace
from email.utils import formatdate
from typing import Callable, Iterable
from urllib.parse import quote

from ..simple.html_page import render_index_html, render_project_html
from ..simple.json_page import render_index_json, render_project_json
from ..simple.model import Project
from ..simple.negotiate import Representation
from ..storage.records import PageRecord


def file_link(project: str, filename: str) -> str:
    """The URL of a file relative to its project page. Relative, so that the same rendered body
    is right under /simple/ and under any prefix (a stage URL, a reverse proxy's path)."""
    return f"../../files/{quote(project)}/{quote(filename)}"


def public_view(project: Project) -> Project:
    """The project as our clients see it: every file link points at us, and every wheel
    advertises a PEP 658 metadata file (we extract one when the upstream has none)."""
    files = tuple(
        replace(f, url=file_link(project.name, f.filename),
                core_metadata=f.core_metadata or (True if f.is_wheel else f.core_metadata))
        for f in project.files
    )
    return replace(project, files=files)


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


class Page:
    """Bodies and ETags of one page, by representation. text/html and the v1 HTML type share a
    body but not an ETag: they are different representations."""

    __slots__ = ("record", "changed_at", "last_modified", "_html", "_json", "_bodies", "_etags")

    def __init__(self, render_html: Callable[[], bytes], render_json: Callable[[], bytes], changed_at: float,
                 record: PageRecord | None = None) -> None:
        self.record = record
        self.changed_at = changed_at
        self.last_modified = http_date(changed_at)
        self._html = render_html
        self._json = render_json
        self._bodies: dict[Representation, bytes] = {}
        self._etags: dict[Representation, str] = {}

    @classmethod
    def of_record(cls, record: PageRecord) -> Page:
        """The page of a project record (one that did not find the project has no bodies)."""
        view: list[Project] = []

        def public() -> Project:
            if not view:
                view.append(public_view(record.served))  # type: ignore[arg-type]
            return view[0]

        return cls(lambda: render_project_html(public()), lambda: render_project_json(public()),
                   record.changed_at, record)

    @classmethod
    def of_names(cls, names: Iterable[str], changed_at: float) -> Page:
        """The root list of projects."""
        listed = tuple(names)
        return cls(lambda: render_index_html(listed), lambda: render_index_json(listed), changed_at)

    def rendered(self, rep: Representation) -> tuple[bytes, str]:
        """The body and strong ETag of a representation."""
        if rep not in self._bodies:
            self._render(rep)
        return self._bodies[rep], self._etags[rep]

    def _render(self, rep: Representation) -> None:
        if rep is Representation.JSON:
            body = self._json()
            self._bodies[rep] = body
            self._etags[rep] = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
            return
        html = self._bodies.get(Representation.HTML) or self._bodies.get(Representation.TEXT) or self._html()
        tag = hashlib.sha256(html).hexdigest()[:32]
        self._bodies[Representation.HTML] = self._bodies[Representation.TEXT] = html
        self._etags[Representation.HTML] = f'"{tag}-v1"'
        self._etags[Representation.TEXT] = f'"{tag}"'

    def same_content(self, other: Page) -> bool:
        return self.rendered(Representation.JSON)[1] == other.rendered(Representation.JSON)[1]

    @property
    def weight(self) -> int:
        """Bytes held, for the memory bound (the HTML body counted once)."""
        bodies = {id(b): len(b) for b in self._bodies.values()}
        return sum(bodies.values()) + 256
