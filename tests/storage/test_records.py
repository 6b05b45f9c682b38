"""The stored format of page records: versioned JSON, PEP 691 for the projects."""

from __future__ import annotations

import json

import pytest

from test_page_cache import record
from tidegate.storage.records import PAGE_FORMAT, decode_page, encode_page


@pytest.mark.parametrize("original", [record(), record("merged", merged=True), record("unknown", found=False)],
                         ids=["one-upstream", "merged", "not-found"])
def test_round_trip(original):
    assert decode_page(encode_page(original), original.name) == original


def test_the_format_is_json_with_a_version_and_pep_691_projects():
    doc = json.loads(encode_page(record()))
    assert doc["format"] == PAGE_FORMAT
    project = doc["parts"][0]["project"]
    assert project["meta"]["api-version"].startswith("1.")
    assert project["files"][0]["filename"] == "demo_pkg-1.0-py3-none-any.whl"
    assert doc["served"] == {"part": 0}  # the usual case stores the page once


def test_a_hostile_stored_record_is_validated_like_an_upstream_page():
    doc = json.loads(encode_page(record()))
    doc["parts"][0]["project"]["files"].append({"filename": "../../etc/passwd", "url": "file:///etc/passwd",
                                                "hashes": {}})
    decoded = decode_page(json.dumps(doc).encode(), "demo-pkg")
    assert [f.filename for f in decoded.parts[0].project.files] == ["demo_pkg-1.0-py3-none-any.whl"]


@pytest.mark.parametrize("data", [b"", b"[]", b'{"format": 1}', b'{"format": 1, "name": "demo-pkg", "parts": 3}'])
def test_malformed_records_decode_as_none(data):
    assert decode_page(data, "demo-pkg") is None
