"""Composite signatures: Ed25519 and ML-DSA-65 (FIPS 204) over the same message; both must verify.

A forger has to break both schemes, so signatures stay sound against a future quantum adversary
(ML-DSA) and against a flaw in the young post-quantum scheme (Ed25519). Every signature is bound
to a context string naming its purpose: the Ed25519 part signs a framed (label, context, message)
and the ML-DSA part uses FIPS 204's context argument with the same label.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from guardians.crypto.errors import KeyFormatError, SignatureError
from guardians.crypto.hashing import PREFIX, frame_all

ED25519_PK = 32
ED25519_SIG = 64
MLDSA65_PK = 1952
MLDSA65_SIG = 3309
PUBLIC_KEY_BYTES = ED25519_PK + MLDSA65_PK
SIGNATURE_BYTES = ED25519_SIG + MLDSA65_SIG
_LABEL = PREFIX + b"composite-sig/ed25519+mldsa65"


def _ed_message(context: bytes, message: bytes) -> bytes:
    return frame_all(_LABEL, context, message)


def _mldsa_context(context: bytes) -> bytes:
    ctx = b"guardians:" + context
    if len(ctx) > 255:  # FIPS 204 limits the context string to 255 bytes
        raise ValueError("signature context too long")
    return ctx


@dataclass(frozen=True)
class VerifyKey:
    """A member's public identity key: Ed25519 ‖ ML-DSA-65 raw public keys."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != PUBLIC_KEY_BYTES:
            raise KeyFormatError(
                f"composite public key must be {PUBLIC_KEY_BYTES} bytes, got {len(self.raw)}"
            )

    def verify(self, signature: bytes, message: bytes, context: bytes) -> None:
        """Raise SignatureError unless both component signatures verify."""
        if len(signature) != SIGNATURE_BYTES:
            raise SignatureError(
                f"composite signature must be {SIGNATURE_BYTES} bytes, got {len(signature)}"
            )
        try:
            ed = ed25519.Ed25519PublicKey.from_public_bytes(self.raw[:ED25519_PK])
            ml = mldsa.MLDSA65PublicKey.from_public_bytes(self.raw[ED25519_PK:])
        except ValueError as exc:
            raise KeyFormatError(f"malformed composite public key: {exc}") from None
        ok = True
        try:
            ed.verify(signature[:ED25519_SIG], _ed_message(context, message))
        except InvalidSignature:
            ok = False
        try:
            ml.verify(signature[ED25519_SIG:], message, _mldsa_context(context))
        except InvalidSignature:
            ok = False
        if not ok:
            raise SignatureError("signature does not verify (forged, tampered or wrong context)")

    def fingerprint(self) -> str:
        from guardians.crypto.hashing import tagged_hash

        return tagged_hash("identity-fingerprint", self.raw).hex()[:16]


class SigningKey:
    """A member's long-term identity key pair (keep private)."""

    def __init__(self, ed: ed25519.Ed25519PrivateKey, ml: mldsa.MLDSA65PrivateKey) -> None:
        self._ed = ed
        self._ml = ml
        self.verify_key = VerifyKey(
            ed.public_key().public_bytes_raw() + ml.public_key().public_bytes_raw()
        )

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ed25519.Ed25519PrivateKey.generate(), mldsa.MLDSA65PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Deterministic key from a 64-byte secret seed (32 for each component)."""
        if len(seed) != 64:
            raise KeyFormatError("identity seed must be 64 bytes")
        return cls(
            ed25519.Ed25519PrivateKey.from_private_bytes(seed[:32]),
            mldsa.MLDSA65PrivateKey.from_seed_bytes(seed[32:]),
        )

    def sign(self, message: bytes, context: bytes) -> bytes:
        return self._ed.sign(_ed_message(context, message)) + self._ml.sign(
            message, _mldsa_context(context)
        )
