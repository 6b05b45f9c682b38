"""Names and filenames: the rules every part of tidegate shares."""

from __future__ import annotations

import pytest
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from tidegate.simple.names import checked_name, file_version, is_valid_name, names_release, valid_filename

WHEELS = [
    "numpy-2.1.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "a-1.0-1-py3-none-any.whl",
    "a-1.0-1build-py3-none-any.whl", "a-01.0-py3-none-any.whl", "a-1.0.post1.dev2-py3-none-any.whl",
    "a-1.0rc1-py3-none-any.whl", "a-1.0-py3-none-any.extra.whl", "a__b-1.0-py3-none-any.whl",
    "a-1.0-x-y-z-w.whl", "a-1.0-py3-none.whl", "A.B_c-1!2.0+local-py2.py3-none-any.whl", "a-1.0a0-py3-none-any.whl",
]


@pytest.mark.parametrize("filename", WHEELS)
def test_wheel_versions_are_what_packaging_reads(filename: str) -> None:
    try:
        expected: str | None = str(parse_wheel_filename(filename)[1])
    except InvalidWheelFilename:
        expected = None
    assert file_version(filename) == expected


def test_sdist_versions() -> None:
    assert file_version("demo_pkg-1.0.tar.gz") == "1.0"
    assert file_version("demo-pkg-01.0.zip") == "1.0"
    assert file_version("demo.exe") is None


def test_names() -> None:
    assert checked_name("Demo.Pkg_x") == "demo-pkg-x"
    assert checked_name("-bad") is None and checked_name("bad\n") is None and checked_name("a" * 201) is None
    assert is_valid_name("a" * 200)
    assert not valid_filename("../x.whl") and not valid_filename("x" * 256) and valid_filename("x-1.0.tar.gz")


def test_release_directories_in_any_spelling() -> None:
    assert names_release("Foo.Bar-1.0.0", "foo-bar", Version("1.0"))
    assert names_release("foo_bar-1.0", "Foo.Bar", Version("1.0"))
    assert not names_release("foo_bar-1.1", "foo-bar", Version("1.0"))
    assert not names_release("foobar", "foo-bar", Version("1.0"))
