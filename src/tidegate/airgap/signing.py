"""Ed25519 signatures over a bundle's manifest, with the `cryptography` library (no crypto of
our own). Keys are PEM files: the private key PKCS#8 (mode 0600), the public key beside it as
KEYFILE.pub (SubjectPublicKeyInfo).

`cryptography` is imported by the functions that use it: an unsigned export or an import without
a key would pay its load time for nothing."""

from __future__ import annotations

import os
from pathlib import Path


class KeyFileError(ValueError):
    """A key file that cannot be used, with a one-line reason."""


def keygen(path: Path) -> Path:
    """Write a new key pair: `path` (private) and `path`.pub; returns the public key's path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite a key
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    pub = path.with_name(path.name + ".pub")
    pub.write_bytes(public)
    return pub


def sign(key_file: Path, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(f"cannot read the signing key {key_file}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{key_file} is not an Ed25519 private key")
    return key.sign(data)


def verify(public_key_file: Path, data: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(public_key_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read the public key {public_key_file}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{public_key_file} is not an Ed25519 public key")
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
