"""Long vectors of BLS12-381 scalars as packed bytes, with the arithmetic a proof needs done
in numpy instead of one Python integer at a time.

A vector of n scalars is ``bytes`` of 32·n: each entry canonical (< r), little-endian. Viewed
as an (n, 16) array of 16-bit limbs, products of two limbs are below 2^32, so float64 matrix
products stay exact (below 2^53) while they sum at most 2^20 rows at a time; larger vectors
are processed in chunks of that many rows. Projections by a 0/1 matrix use byte limbs in
float32 instead (exact while a block sums at most 2^16 columns: below 255·2^16 < 2^24).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from guardians.crypto.bls import ORDER, SCALAR_BYTES
from guardians.crypto.group import InvalidEncodingError

LIMBS = SCALAR_BYTES // 2
_CHUNK_ROWS = 1 << 20
# r as four little-endian 64-bit words, for the vectorized "is canonical" test.
_ORDER_WORDS = [(ORDER >> (64 * i)) & 0xFFFF_FFFF_FFFF_FFFF for i in range(4)]
_TOP_WORD_MASK = np.uint64((1 << 63) - 1)  # keeps 255 bits of a 256-bit entry


def below_order(raw: bytes | np.ndarray, n: int) -> np.ndarray:
    """For each 32-byte entry, whether it is below r (lexicographic over 64-bit words)."""
    w = np.frombuffer(raw, dtype="<u8", count=4 * n).reshape(n, 4)
    lt = np.zeros(n, dtype=bool)
    eq = np.ones(n, dtype=bool)
    for i in (3, 2, 1, 0):
        o = np.uint64(_ORDER_WORDS[i])
        lt |= eq & (w[:, i] < o)
        eq &= w[:, i] == o
    return lt


def from_bytes(raw: bytes, n: int) -> bytes:
    """Check ``raw`` holds exactly n canonical scalars; returns it (as bytes)."""
    if len(raw) != SCALAR_BYTES * n:
        raise InvalidEncodingError(f"{n} scalars are {SCALAR_BYTES * n} bytes, got {len(raw)}")
    ok = below_order(raw, n)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise InvalidEncodingError(f"scalar {i} is non-canonical (not below the group order)")
    return bytes(raw)


def random(n: int) -> bytes:
    """n scalars uniform in [0, r) from the OS CSPRNG: 255-bit candidates below r are kept
    (about 91% are), so the result is exactly uniform."""
    out = np.empty((0, 4), dtype="<u8")
    while len(out) < n:
        want = n - len(out)
        raw = bytearray(os.urandom(32 * (want + want // 8 + 16)))
        cand = np.frombuffer(raw, dtype="<u8").reshape(-1, 4)
        cand[:, 3] &= _TOP_WORD_MASK
        keep = below_order(cand, len(cand))
        out = np.concatenate([out, cand[keep]])
    return out[:n].tobytes()


def from_ints(values: Sequence[int]) -> bytes:
    return b"".join((v % ORDER).to_bytes(SCALAR_BYTES, "little") for v in values)


def to_ints(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i : i + SCALAR_BYTES], "little")
            for i in range(0, len(raw), SCALAR_BYTES)]  # fmt: skip


def limbs(raw: bytes) -> np.ndarray:
    """(n, 16) float64 array of the 16-bit limbs, least significant first."""
    return np.frombuffer(raw, dtype="<u2").reshape(-1, LIMBS).astype(np.float64)


def sum_squares(raw: bytes) -> int:
    """Σ zᵢ² mod r, from the Gram matrix of the limb columns."""
    total = 0
    step = SCALAR_BYTES * _CHUNK_ROWS
    for s in range(0, len(raw), step):
        lb = limbs(raw[s : s + step])
        gram = (lb.T @ lb).tolist()  # Σᵢ limbₖ·limbₗ, exact below 2^53
        for k in range(LIMBS):
            for m in range(LIMBS):
                total += int(gram[k][m]) << (16 * (k + m))
    return total % ORDER


# A projection block: rows × columns of A converted to float32 at once (8 MiB). With 8-bit
# limbs every block sum is below 2^8·2^16 = 2^24 in magnitude: exact in float32, whose matrix
# products run twice as fast as float64's and need half the memory traffic.
_PROJECT_BLOCK = (32, 1 << 16)
if 255 * _PROJECT_BLOCK[1] >= 1 << 24:  # pragma: no cover - a guard on the constant above
    raise AssertionError("projection blocks too wide for exact float32 sums")


def project(rows: np.ndarray, raw: bytes) -> list[int]:
    """A·z mod r for a 0/1 matrix A (k × n) and the scalar vector z."""
    return _project(rows, raw, None)[0]


def project_with(rows: np.ndarray, raw: bytes, x: np.ndarray) -> tuple[list[int], list[int]]:
    """(A·z mod r, A·x over the integers) for the scalar vector z and signed 64-bit integers x:
    the prover's two projections, converting each block of A to float32 once."""
    return _project(rows, raw, np.asarray(x, dtype=np.int64))


def _project(rows: np.ndarray, raw: bytes, x: np.ndarray | None) -> tuple[list[int], list[int]]:
    # Exactness rests on A being 0/1 (the callers' rows are unpacked bits; a full scan to
    # check it would cost as much as the product's conversion).
    if rows.dtype != np.uint8 or rows.ndim != 2:
        raise ValueError(f"projection rows must be a 2-D uint8 0/1 matrix, not {rows.dtype}")
    k, n = rows.shape
    if len(raw) != SCALAR_BYTES * n:
        raise ValueError(f"{k} × {n} matrix and {len(raw) // SCALAR_BYTES} scalars")
    if x is not None and x.shape != (n,):
        raise ValueError(f"{k} × {n} matrix and {x.shape} integers")
    # z as 32 unsigned bytes per entry; x as seven unsigned bytes and a signed top one.
    xb = (
        np.concatenate([(x >> s) & 0xFF for s in range(0, 56, 8)] + [x >> 56])
        .reshape(8, n)
        .T.astype(np.float32)
        if x is not None
        else None
    )
    width = SCALAR_BYTES + (8 if xb is not None else 0)
    acc = np.zeros((k, width), dtype=np.int64)
    bk, bn = _PROJECT_BLOCK
    for s in range(0, n, bn):
        lb = np.frombuffer(raw, dtype=np.uint8, count=SCALAR_BYTES * min(bn, n - s),
                           offset=SCALAR_BYTES * s).reshape(-1, SCALAR_BYTES)  # fmt: skip
        lb = lb.astype(np.float32)
        if xb is not None:
            lb = np.hstack([lb, xb[s : s + bn]])
        for j in range(0, k, bk):
            block = rows[j : j + bk, s : s + bn].astype(np.float32)
            acc[j : j + bk] += (block @ lb).astype(np.int64)

    def value(row: list[int]) -> int:
        return sum(v << (8 * i) for i, v in enumerate(row))

    z = [value(r) % ORDER for r in acc[:, :SCALAR_BYTES].tolist()]
    xs = [value(r) for r in acc[:, SCALAR_BYTES:].tolist()]
    return z, xs


def signed_limbs(x: np.ndarray) -> np.ndarray:
    """(n, 4) float64 limbs of signed 64-bit integers: three 16-bit ones and a signed top one,
    so Σₖ limbₖ·2^(16k) = x and a product with a 16-bit limb stays below 2^32 in magnitude."""
    x = np.asarray(x, dtype=np.int64)
    return np.stack([(x >> s) & 0xFFFF for s in (0, 16, 32)] + [x >> 48], axis=1).astype(np.float64)


def dot_small(raw: bytes, x: np.ndarray) -> int:
    """Σ zᵢ·xᵢ mod r for signed 64-bit integers x (see :func:`signed_limbs`)."""
    xl = signed_limbs(x)
    total = 0
    for s in range(0, len(x), _CHUNK_ROWS):
        lb = limbs(raw[SCALAR_BYTES * s : SCALAR_BYTES * (s + _CHUNK_ROWS)])
        m = (lb.T @ xl[s : s + _CHUNK_ROWS]).tolist()
        for k in range(LIMBS):
            for j in range(4):
                total += int(m[k][j]) << (16 * (k + j))
    return total % ORDER


def combined_width(count: int, weight_bits: int = 128) -> int:
    """Bytes per entry of :func:`combine`'s output for ``count`` vectors."""
    return -(-(SCALAR_BYTES * 8 + weight_bits + count.bit_length()) // 8)


def combine(raws: Sequence[bytes], weights: Sequence[int], weight_bits: int = 128) -> bytes:
    """Σᵤ weightsᵤ·zᵤ per entry, not reduced, little-endian in :func:`combined_width` bytes (a
    binding that reduces mod r on input takes it as is, and converts a shorter input faster
    than a 64-byte one). Weights are below 2^weight_bits."""
    if len(raws) != len(weights) or not raws:
        raise ValueError("one weight per vector, at least one vector")
    wl = -(-weight_bits // 16)
    if any(not 0 <= w < 1 << weight_bits for w in weights):
        raise ValueError(f"weights must be in [0, 2^{weight_bits})")
    if len(raws) * min(LIMBS, wl) >= 1 << 20:
        raise ValueError("too many vectors to combine exactly")
    n = len(raws[0]) // SCALAR_BYTES
    if any(len(raw) != SCALAR_BYTES * n for raw in raws):
        raise ValueError("vectors of different lengths")
    if LIMBS + wl + 2 > 32:
        raise ValueError("weights too wide for 64-byte entries")
    acc = np.zeros((n, LIMBS + wl), dtype=np.float64)
    for raw, w in zip(raws, weights, strict=True):
        wlimbs = [(w >> (16 * j)) & 0xFFFF for j in range(wl)]
        toeplitz = np.zeros((LIMBS, LIMBS + wl))
        for k in range(LIMBS):
            toeplitz[k, k : k + wl] = wlimbs
        acc += limbs(raw) @ toeplitz  # each entry < 2^32·min(16, wl) per vector: exact
    res = np.zeros((n, 32), dtype=np.int64)
    res[:, : LIMBS + wl] = acc.astype(np.int64)
    for j in range(31):  # carry propagation, vectorized over entries
        res[:, j + 1] += res[:, j] >> 16
        res[:, j] &= 0xFFFF
    width = combined_width(len(raws), weight_bits)
    return res.astype("<u2").view(np.uint8)[:, :width].tobytes()
