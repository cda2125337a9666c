"""The ristretto255 prime-order group (RFC 9496) through libsodium (``rbcl``), and scalars
modulo its order ℓ.

Points are immutable 32-byte canonical encodings; decoding rejects every non-canonical or
invalid encoding. Scalars are integers in [0, ℓ) with canonical 32-byte little-endian
encodings. Independent generators come from hash-to-group (RFC 9496 §4.3.4, one-way map of
SHA-512 of a domain-separated label), so nobody knows a discrete log between any two of them.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import rbcl

from guardians.crypto.errors import KeyFormatError
from guardians.crypto.hashing import PREFIX, frame_all

ORDER = 2**252 + 27742317777372353535851937790883648493  # ℓ
POINT_BYTES = 32
SCALAR_BYTES = 32


class InvalidEncodingError(KeyFormatError):
    """Bytes that are not the canonical encoding of a group element or scalar."""


@dataclass(frozen=True, slots=True)
class Scalar:
    value: int

    def __post_init__(self) -> None:
        if not 0 <= self.value < ORDER:
            raise ValueError("scalar out of range")

    @classmethod
    def of(cls, v: int) -> Scalar:
        return cls(v % ORDER)

    @classmethod
    def random(cls) -> Scalar:
        return cls(secrets.randbelow(ORDER))

    @classmethod
    def from_bytes(cls, b: bytes) -> Scalar:
        if len(b) != SCALAR_BYTES:
            raise InvalidEncodingError(f"a scalar is {SCALAR_BYTES} bytes, got {len(b)}")
        v = int.from_bytes(b, "little")
        if v >= ORDER:
            raise InvalidEncodingError("non-canonical scalar (not reduced modulo the order)")
        return cls(v)

    @classmethod
    def from_hash(cls, label: str, *parts: bytes) -> Scalar:
        """A uniform scalar: SHA-512 of framed, labelled input, reduced mod ℓ (wide reduction)."""
        digest = hashlib.sha512(frame_all(PREFIX + label.encode(), *parts)).digest()
        return cls(int.from_bytes(digest, "little") % ORDER)

    def to_bytes(self) -> bytes:
        return self.value.to_bytes(SCALAR_BYTES, "little")

    def __add__(self, o: Scalar) -> Scalar:
        return Scalar((self.value + o.value) % ORDER)

    def __sub__(self, o: Scalar) -> Scalar:
        return Scalar((self.value - o.value) % ORDER)

    def __mul__(self, o: Scalar) -> Scalar:
        return Scalar((self.value * o.value) % ORDER)

    def __neg__(self) -> Scalar:
        return Scalar((-self.value) % ORDER)

    def inverse(self) -> Scalar:
        if self.value == 0:
            raise ZeroDivisionError("zero has no inverse")
        return Scalar(pow(self.value, -1, ORDER))


@dataclass(frozen=True, slots=True)
class Point:
    encoding: bytes

    @classmethod
    def from_bytes(cls, b: bytes) -> Point:
        if len(b) != POINT_BYTES:
            raise InvalidEncodingError(f"a group element is {POINT_BYTES} bytes, got {len(b)}")
        if not rbcl.crypto_core_ristretto255_is_valid_point(bytes(b)):
            raise InvalidEncodingError("not a canonical ristretto255 encoding")
        return cls(bytes(b))

    @classmethod
    def hash_to_group(cls, label: str, *parts: bytes) -> Point:
        digest = hashlib.sha512(frame_all(PREFIX + label.encode(), *parts)).digest()
        return cls(rbcl.crypto_core_ristretto255_from_hash(digest))

    @classmethod
    def base_mul(cls, s: Scalar) -> Point:
        return cls(rbcl.crypto_scalarmult_ristretto255_base_allow_scalar_zero(s.to_bytes()))

    def to_bytes(self) -> bytes:
        return self.encoding

    def __add__(self, o: Point) -> Point:
        return Point(rbcl.crypto_core_ristretto255_add(self.encoding, o.encoding))

    def __sub__(self, o: Point) -> Point:
        return Point(rbcl.crypto_core_ristretto255_sub(self.encoding, o.encoding))

    def __neg__(self) -> Point:
        return IDENTITY - self

    def __mul__(self, s: Scalar) -> Point:
        mul = rbcl.crypto_scalarmult_ristretto255_allow_scalar_zero
        return Point(mul(s.to_bytes(), self.encoding))

    __rmul__ = __mul__


IDENTITY = Point(bytes(POINT_BYTES))
BASEPOINT = Point.base_mul(Scalar(1))


def multiscalar(scalars: list[Scalar], points: list[Point]) -> Point:
    """Σ sᵢ·Pᵢ (straightforward; libsodium exposes no multi-scalar multiplication)."""
    if len(scalars) != len(points):
        raise ValueError("as many scalars as points")
    acc = IDENTITY
    for s, p in zip(scalars, points, strict=True):
        if s.value:
            acc = acc + p * s
    return acc
