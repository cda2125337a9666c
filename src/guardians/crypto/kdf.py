"""HKDF-SHA256 (RFC 5869) with Guardians' labels as info."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from guardians.crypto.hashing import PREFIX, frame_all


def hkdf(ikm: bytes, *, salt: bytes | None, info: bytes, length: int = 32) -> bytes:
    """Raw HKDF-SHA256 (tested against the RFC 5869 vectors)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def derive(ikm: bytes, label: str, *context: bytes, length: int = 32) -> bytes:
    """A key for one purpose (``label``) bound to ``context`` (round, identities, transcript)."""
    return hkdf(ikm, salt=None, info=frame_all(PREFIX + label.encode(), *context), length=length)
