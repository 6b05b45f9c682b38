"""A served page: each representation rendered once, on first use, with its own strong ETag."""

from __future__ import annotations

from tidegate.readpath.pages import Page, file_link, public_view
from tidegate.simple.model import File, Project
from tidegate.simple.negotiate import Representation


def counting_page() -> tuple[Page, dict[str, int]]:
    calls = {"html": 0, "json": 0}

    def html() -> bytes:
        calls["html"] += 1
        return b"<html>" + b"x" * 1000

    def json() -> bytes:
        calls["json"] += 1
        return b'{"files": []}'

    return Page(html, json, 1700000000.0), calls


def test_nothing_is_rendered_before_it_is_asked_for_and_nothing_twice():
    page, calls = counting_page()
    assert calls == {"html": 0, "json": 0} and page.weight == 256
    for _ in range(3):
        page.rendered(Representation.JSON)[0]
        page.rendered(Representation.JSON)[1]
    assert calls == {"html": 0, "json": 1}
    page.rendered(Representation.HTML)[0]
    page.rendered(Representation.TEXT)[0]
    assert calls == {"html": 1, "json": 1}
    assert page.weight == 256 + 1006 + 13  # the shared HTML body counted once


def test_every_representation_has_its_own_etag():
    page, _ = counting_page()
    tags = {page.rendered(rep)[1] for rep in Representation}
    assert len(tags) == 3
    assert page.rendered(Representation.HTML)[0] is page.rendered(Representation.TEXT)[0]
    assert page.last_modified == "Tue, 14 Nov 2023 22:13:20 GMT"


def test_clients_see_links_to_tidegate_and_metadata_for_every_wheel():
    project = Project("demo-pkg", (
        File("demo_pkg-1.0-py3-none-any.whl", "https://files.example/a/demo_pkg-1.0-py3-none-any.whl"),
        File("demo_pkg-1.0.tar.gz", "https://files.example/b/demo_pkg-1.0.tar.gz"),
    ))
    wheel, sdist = public_view(project).files
    assert wheel.url == file_link("demo-pkg", wheel.filename) == "../../files/demo-pkg/demo_pkg-1.0-py3-none-any.whl"
    assert wheel.core_metadata is True and sdist.core_metadata is None
