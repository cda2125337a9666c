"""A Fiat–Shamir transcript: labelled, length-framed absorption, then challenges.

Every absorbed item is framed (label, length, bytes) into a running SHA-512 state started with
the protocol's name, so two different sequences of messages can never hash alike, and every
challenge depends on everything absorbed before it — including the context (round, member,
purpose) that binds a proof to one place and forbids replaying it anywhere else.
"""

from __future__ import annotations

import hashlib

from guardians.crypto.group import ORDER, Point, Scalar
from guardians.crypto.hashing import PREFIX


def _frame(b: bytes) -> bytes:
    return len(b).to_bytes(8, "big") + b


class Transcript:
    def __init__(self, protocol: str) -> None:
        self._h = hashlib.sha512(_frame(PREFIX + b"transcript/" + protocol.encode()))

    def copy(self) -> Transcript:
        """An independent fork (a prover retrying from this point)."""
        t = Transcript.__new__(Transcript)
        t._h = self._h.copy()
        return t

    def append(self, label: str, data: bytes) -> None:
        self._h.update(_frame(label.encode()) + _frame(data))

    def append_point(self, label: str, p: Point) -> None:
        self.append(label, p.to_bytes())

    def append_scalar(self, label: str, s: Scalar) -> None:
        self.append(label, s.to_bytes())

    def append_int(self, label: str, v: int) -> None:
        # Minimal two's-complement bytes, framed: any size of integer, one encoding each.
        self.append(label, v.to_bytes(v.bit_length() // 8 + 1, "big", signed=True))

    def challenge_bytes(self, label: str) -> bytes:
        """64 bytes that depend on everything absorbed so far (and are absorbed in turn)."""
        self.append("challenge", label.encode())
        # The challenge itself is absorbed too, so later challenges depend on it.
        digest = self._h.copy().digest()
        self._h.update(_frame(digest))
        return digest

    def challenge_mod(self, label: str, modulus: int) -> int:
        """A challenge in [0, modulus) for a modulus below 2^256 (bias below 2^-256)."""
        return int.from_bytes(self.challenge_bytes(label), "little") % modulus

    def challenge(self, label: str) -> Scalar:
        return Scalar(self.challenge_mod(label, ORDER))
