"""How a distribution file is addressed in the blob store, and the lock of its download. Pure,
and apart from downloads.py so that the commands that only work on the store (export, import,
verify, prune) need not import the HTTP stack."""

from __future__ import annotations

import hashlib

from ..simple.model import File


def blob_key(file: File) -> str:
    """Files are addressed by their sha256; one the upstream gave no sha256 for, by its URL."""
    if file.sha256:
        return file.sha256
    return "url-" + hashlib.sha256(file.url.encode()).hexdigest()


def lock_name(key: str) -> str:
    """The lock held while the blob `key` is downloaded (and while prune removes it)."""
    return "download:" + key
