"""A member's attestation of its witness keys: its composite identity key signs (consortium,
member, the log it witnesses — origin and note key — and the witness's name and public keys).

The trust file lists each witness with its attestation, so whoever holds the members' identity
keys checks that every listed witness key belongs to the member it is listed for, and that it
witnesses this log and no other (a fork under a new origin or a new log key meets witnesses
that never attested it)."""

from __future__ import annotations

from guardians.crypto.errors import SignatureError
from guardians.crypto.hashing import frame_all
from guardians.crypto.sign import VerifyKey
from guardians.ledger.note import CosignerKey

CONTEXT = b"ledger/witness-key"


def witness_name(member: str, consortium: str) -> str:
    """The one name a member's witness goes by: nobody else's witness can take it."""
    return f"{member}.witness.{consortium}"


def payload(consortium: str, member: str, origin: str, log_key: bytes, key: CosignerKey) -> bytes:
    return frame_all(consortium.encode(), member.encode(), origin.encode(), log_key,
                     key.name.encode(), key.ed25519, key.mldsa44)  # fmt: skip


def check(
    consortium: str, member: str, identity: VerifyKey, origin: str, log_key: bytes,
    key: CosignerKey, attestation: bytes,
) -> None:  # fmt: skip
    """Raises :class:`~guardians.crypto.errors.SignatureError` (or ``KeyFormatError``) unless
    ``member`` attested ``key``, under its own witness name, as its witness of the log
    (``origin``, ``log_key``)."""
    if key.name != witness_name(member, consortium):
        raise SignatureError(f"witness name {key.name!r} is not {member!r}'s")
    identity.verify(attestation, payload(consortium, member, origin, log_key, key), CONTEXT)
