"""Hybrid pairwise secrets: X25519 (RFC 7748) and ML-KEM-768 (FIPS 203), combined with HKDF.

Two members u < v each publish an ephemeral X25519 key and an ephemeral ML-KEM-768 encapsulation
key. The lower-named member encapsulates to the other. The pair secret is

    HKDF(ikm = X25519(u, v) ‖ ML-KEM shared secret,
         info = label ‖ context ‖ both X25519 keys ‖ both ML-KEM keys ‖ the ML-KEM ciphertext)

so it stays secret while either X25519 or ML-KEM holds (the combiner hashes both secrets with
the whole transcript, in the spirit of X-Wing), and it is bound to the round and both identities
through ``context``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from guardians.crypto.errors import KeyFormatError
from guardians.crypto.kdf import derive

X25519_BYTES = 32
MLKEM768_EK = 1184
MLKEM768_CT = 1088


@dataclass(frozen=True)
class HybridPublic:
    x25519: bytes
    mlkem: bytes

    def __post_init__(self) -> None:
        if len(self.x25519) != X25519_BYTES or len(self.mlkem) != MLKEM768_EK:
            raise KeyFormatError(
                f"hybrid public key needs {X25519_BYTES}+{MLKEM768_EK} bytes, got "
                f"{len(self.x25519)}+{len(self.mlkem)}"
            )


class HybridKeyPair:
    """An ephemeral X25519 + ML-KEM-768 key pair (one per member per round)."""

    def __init__(self) -> None:
        self._x = x25519.X25519PrivateKey.generate()
        self._k = mlkem.MLKEM768PrivateKey.generate()
        self.public = HybridPublic(
            self._x.public_key().public_bytes_raw(), self._k.public_key().public_bytes_raw()
        )

    def _dh(self, peer: HybridPublic) -> bytes:
        try:
            shared = self._x.exchange(x25519.X25519PublicKey.from_public_bytes(peer.x25519))
        except ValueError as exc:  # all-zero output: a low-order point
            raise KeyFormatError(f"unusable X25519 public key: {exc}") from None
        return shared

    def encapsulate_to(self, peer: HybridPublic, label: str, context: bytes) -> tuple[bytes, bytes]:
        """(ciphertext for the peer, pair secret). Called by the lower-named member."""
        try:
            ek = mlkem.MLKEM768PublicKey.from_public_bytes(peer.mlkem)
        except ValueError as exc:
            raise KeyFormatError(f"malformed ML-KEM key: {exc}") from None
        ss, ct = ek.encapsulate()
        return ct, self._combine(self._dh(peer), ss, self.public, peer, ct, label, context)

    def decapsulate_from(self, peer: HybridPublic, ct: bytes, label: str, context: bytes) -> bytes:
        """The pair secret, from the lower-named peer's ciphertext."""
        if len(ct) != MLKEM768_CT:
            raise KeyFormatError(f"ML-KEM-768 ciphertext must be {MLKEM768_CT} bytes")
        # ML-KEM decapsulation never fails (implicit rejection): a forged ciphertext gives an
        # unrelated secret, which the first AEAD message under it exposes.
        ss = self._k.decapsulate(ct)
        return self._combine(self._dh(peer), ss, peer, self.public, ct, label, context)

    @staticmethod
    def _combine(
        dh: bytes, ss: bytes, lo: HybridPublic, hi: HybridPublic, ct: bytes, label: str,
        context: bytes,
    ) -> bytes:  # fmt: skip
        return derive(dh + ss, label, context, lo.x25519, hi.x25519, lo.mlkem, hi.mlkem, ct)
