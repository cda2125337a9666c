"""A member's attestation of its witness keys: its composite identity key signs (consortium,
member, log origin, witness name and public keys). The trust file lists each witness with its
attestation, and the members' identity keys are the log's first entries, so an auditor checks
that every listed witness key belongs to the member it is listed for — the log operator cannot
slip in a witness of its own."""

from __future__ import annotations

from guardians.crypto.hashing import frame_all
from guardians.crypto.sign import VerifyKey
from guardians.ledger.note import CosignerKey

CONTEXT = b"ledger/witness-key"


def payload(consortium: str, member: str, origin: str, key: CosignerKey) -> bytes:
    return frame_all(consortium.encode(), member.encode(), origin.encode(), key.name.encode(),
                     key.ed25519, key.mldsa44)  # fmt: skip


def check(
    consortium: str, member: str, identity: VerifyKey, origin: str, key: CosignerKey,
    attestation: bytes,
) -> None:  # fmt: skip
    """Raises :class:`~guardians.crypto.errors.SignatureError` (or ``KeyFormatError``) unless
    ``member`` attested ``key`` as its witness for ``origin``."""
    identity.verify(attestation, payload(consortium, member, origin, key), CONTEXT)
