"""prefetch's last check of a fetched file against the hashes its page or lock file names."""

from __future__ import annotations

import hashlib

from tidegate.airgap.prefetch import _mismatch


async def test_a_blob_keyed_by_its_sha256_is_not_read_again_for_it(tmp_path):
    data = b"wheel bytes" * 1000
    sha256 = hashlib.sha256(data).hexdigest()
    assert await _mismatch(None, sha256, {"sha256": sha256}) is None  # the key is the verified digest
    assert await _mismatch(None, sha256, {"sha256": "0" * 64}) == "sha256"
    assert await _mismatch(None, sha256, {"sha512": "0" * 128}) == "sha512"  # gone: cannot be checked


async def test_other_algorithms_and_unknown_keys_are_hashed_from_the_stored_bytes(tmp_path):
    data = b"wheel bytes" * 1000
    path = tmp_path / "blob"
    path.write_bytes(data)
    right = {"sha256": hashlib.sha256(data).hexdigest(), "SHA512": hashlib.sha512(data).hexdigest().upper()}
    with path.open("rb") as blob:
        assert await _mismatch(blob, None, right) is None  # a cached or local file: every hash read
        assert await _mismatch(blob, right["sha256"], {"sha512": right["SHA512"]}) is None
        assert await _mismatch(blob, None, {**right, "sha256": "0" * 64}) == "sha256"
        assert await _mismatch(blob, "url-" + "0" * 64, {"sha512": "0" * 128}) == "sha512"
