"""Shamir secret sharing of 256-bit secrets over GF(p), p = 2^521 - 1 (a Mersenne prime).

Shares are evaluated at x = 1..n (the member's index in a neighbourhood); any t shares
reconstruct, t - 1 reveal nothing. Coefficients come from ``secrets``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from guardians.crypto.errors import ShareError

P = (1 << 521) - 1
SECRET_BYTES = 32
SHARE_BYTES = 66  # ceil(521 / 8)


def split(secret: bytes, threshold: int, xs: Sequence[int]) -> list[bytes]:
    """Shares of a 32-byte ``secret`` at the points ``xs`` (distinct, 1 <= x < p)."""
    if len(secret) != SECRET_BYTES:
        raise ShareError(f"secret must be {SECRET_BYTES} bytes")
    if not 1 <= threshold <= len(xs):
        raise ShareError(f"threshold {threshold} impossible with {len(xs)} shares")
    if len(set(xs)) != len(xs) or any(not 0 < x < P for x in xs):
        raise ShareError("share points must be distinct and non-zero")
    coeffs = [int.from_bytes(secret, "big")] + [secrets.randbelow(P) for _ in range(threshold - 1)]
    out = []
    for x in xs:
        acc = 0
        for c in reversed(coeffs):  # Horner
            acc = (acc * x + c) % P
        out.append(acc.to_bytes(SHARE_BYTES, "big"))
    return out


def combine(points: Sequence[tuple[int, bytes]], threshold: int) -> bytes:
    """The secret from at least ``threshold`` (x, share) points (extra points are ignored)."""
    if len(points) < threshold:
        raise ShareError(f"{len(points)} shares, {threshold} needed")
    pts = list(points)[:threshold]
    xs = [x for x, _ in pts]
    if len(set(xs)) != len(xs):
        raise ShareError("duplicate share points")
    if any(not 0 < x < P for x in xs):
        raise ShareError("share points must be in 1..p-1")
    ys = []
    for _, y in pts:
        if len(y) != SHARE_BYTES:
            raise ShareError(f"a share must be {SHARE_BYTES} bytes")
        v = int.from_bytes(y, "big")
        if v >= P:
            raise ShareError("share value out of range")
        ys.append(v)
    secret = 0
    for i, (xi, yi) in enumerate(zip(xs, ys, strict=True)):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * xj % P
                den = den * (xj - xi) % P
        secret = (secret + yi * num * pow(den, -1, P)) % P
    if secret >= 1 << (8 * SECRET_BYTES):
        raise ShareError("shares are inconsistent (reconstructed value out of range)")
    return secret.to_bytes(SECRET_BYTES, "big")
