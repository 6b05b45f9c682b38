"""PEP 740 provenance objects, as an index serves them: checked to be what they claim to be.

Pure. A provenance object from an upstream is kept and served only if it is well formed and
every attestation in it speaks of the very file it is attached to (the statement's single
subject has the file's name and, where the page gives one, its sha256). The signatures are not
verified: that needs Sigstore's trust roots, fetched online, which an air-gapped index lacks;
clients verify them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import msgspec


class _Envelope(msgspec.Struct):
    statement: str  # base64 of the in-toto statement
    signature: str


class _Attestation(msgspec.Struct):
    version: Literal[1]
    verification_material: dict[str, Any]
    envelope: _Envelope


class _Bundle(msgspec.Struct):
    publisher: dict[str, Any]
    attestations: list[_Attestation]


class _Provenance(msgspec.Struct):
    version: Literal[1]
    attestation_bundles: list[_Bundle]


class _Subject(msgspec.Struct):
    name: str
    digest: dict[str, str]


class _Statement(msgspec.Struct):
    subject: list[_Subject]


_PROVENANCE = msgspec.json.Decoder(_Provenance)
_STATEMENT = msgspec.json.Decoder(_Statement)


def check_provenance(body: bytes, filename: str, sha256: str | None) -> None:
    """Raise ValueError, saying why, unless `body` is a provenance object of this file."""
    try:
        provenance = _PROVENANCE.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a PEP 740 provenance object ({exc})") from None
    if not provenance.attestation_bundles or not all(b.attestations for b in provenance.attestation_bundles):
        raise ValueError("a provenance object needs at least one bundle, each with an attestation")
    for bundle in provenance.attestation_bundles:
        if not isinstance(bundle.publisher.get("kind"), str):
            raise ValueError("an attestation bundle's publisher has no kind")
        for attestation in bundle.attestations:
            try:
                statement = _STATEMENT.decode(base64.b64decode(attestation.envelope.statement, validate=True))
            except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise ValueError(f"an attestation's statement is not an in-toto statement ({exc})") from None
            if len(statement.subject) != 1:
                raise ValueError("an attestation's statement must have exactly one subject")
            subject = statement.subject[0]
            if subject.name != filename:
                raise ValueError(f"an attestation is about {subject.name[:100]!r}, not {filename}")
            if "sha256" not in subject.digest or (sha256 is not None and subject.digest["sha256"].lower() != sha256):
                raise ValueError(f"an attestation's sha256 is not that of {filename}")
