"""How a distribution file is addressed in the blob store. Pure, and apart from downloads.py so
that the commands that only read the store (export, verify) need not import the HTTP stack."""

from __future__ import annotations

import hashlib

from ..simple.model import File


def blob_key(file: File) -> str:
    """Files are addressed by their sha256; one the upstream gave no sha256 for, by its URL."""
    if file.sha256:
        return file.sha256
    return "url-" + hashlib.sha256(file.url.encode()).hexdigest()
