"""The BLS12-381 G1 group through arkworks (``py-arkworks-bls12381``), for vector commitments
too long for ristretto255 one scalar multiplication at a time.

What this layer adds over the binding: canonical 48-byte compressed encodings that are
rejected unless on the curve and in the prime-order subgroup; scalars as Python integers mod
r; a multi-scalar multiplication (Pippenger, in Rust) split over the machine's cores; and
independent generators from RFC 9380 hash-to-curve (suite BLS12381G1_XMD:SHA-256_SSWU_RO_) of a
domain-separated label and index, cached on disk because deriving 65,536 of them takes
≈ 20 s (the cache carries a digest and is spot-checked against the derivation on load).
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from py_arkworks_bls12381 import G1Point
from py_arkworks_bls12381 import Scalar as _ArkScalar

from guardians.crypto.group import InvalidEncodingError
from guardians.crypto.hashing import PREFIX, tagged_hash

ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001  # r
POINT_BYTES = 48
SCALAR_BYTES = 32
DST = PREFIX + b"bls12-381/generators"
_MSM_SPLIT = 8192  # below this, one thread is as fast as two

Point = G1Point


def point_from_bytes(data: bytes) -> G1Point:
    """Decode a compressed point, refusing anything off the curve or outside the subgroup."""
    if len(data) != POINT_BYTES:
        raise InvalidEncodingError(f"a G1 point is {POINT_BYTES} bytes, got {len(data)}")
    try:
        p = G1Point.from_compressed_bytes(bytes(data))
    except Exception as exc:  # the binding raises bare exceptions for every malformed input
        raise InvalidEncodingError(f"not a valid G1 point encoding: {exc}") from None
    # The binding ignores the bits after an infinity flag: demand the one canonical encoding.
    if bytes(p.to_compressed_bytes()) != bytes(data):
        raise InvalidEncodingError("non-canonical G1 point encoding")
    return p


def point_bytes(p: G1Point) -> bytes:
    return bytes(p.to_compressed_bytes())


def scalar_from_bytes(data: bytes) -> int:
    """A canonical 32-byte little-endian scalar (< r); anything else is refused."""
    if len(data) != SCALAR_BYTES:
        raise InvalidEncodingError(f"a scalar is {SCALAR_BYTES} bytes, got {len(data)}")
    v = int.from_bytes(data, "little")
    if v >= ORDER:
        raise InvalidEncodingError("non-canonical scalar (not below the group order)")
    return v


def scalar_bytes(v: int) -> bytes:
    return (v % ORDER).to_bytes(SCALAR_BYTES, "little")


def random_scalars(n: int) -> list[int]:
    """n uniform scalars from the OS CSPRNG (384 bits each, reduced: bias below 2^-128)."""
    buf = os.urandom(48 * n)
    return [int.from_bytes(buf[48 * i : 48 * i + 48], "little") % ORDER for i in range(n)]


def random_scalar() -> int:
    return secrets.randbits(384) % ORDER


def _ark(values: Sequence[int]) -> list[_ArkScalar]:
    f = _ArkScalar.from_le_bytes_mod_order
    return [f((v % ORDER).to_bytes(SCALAR_BYTES, "little")) for v in values]


def _ark_unsigned(mags: np.ndarray) -> list[_ArkScalar]:
    """Non-negative 64-bit integers → scalars without going through Python integers."""
    raw = np.ascontiguousarray(mags, dtype="<u8").tobytes()
    f = _ArkScalar.from_le_bytes_mod_order
    return [f(raw[8 * i : 8 * i + 8]) for i in range(len(mags))]


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


# One share of an MSM per core (a server verifying a round's proofs scales with its cores),
# none smaller than half the split size, below which the bucket work does not amortize.
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on
    except AttributeError:  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


_WORKERS = max(1, min(_cores(), 32))


def _shares(n: int) -> int:
    if _WORKERS == 1 or n < _MSM_SPLIT:
        return 1
    return max(1, min(_WORKERS, n // (_MSM_SPLIT // 2)))


def _msm_many(jobs: Sequence[tuple[list[G1Point], list[_ArkScalar]]]) -> list[G1Point]:
    """Several MSMs at once, each large one split into a share per core."""
    global _pool
    with _pool_lock:
        if _pool is None and _WORKERS > 1:
            # The calling thread computes one share itself.
            _pool = ThreadPoolExecutor(_WORKERS - 1, thread_name_prefix="guardians-msm")
    # Submit every large job's other shares before computing any last share here, so the
    # shares of all jobs overlap (the Rust MSM releases the GIL).
    pending = []
    for pts, sc in jobs:
        k = _shares(len(pts)) if _pool is not None else 1
        cuts = [len(pts) * i // k for i in range(k + 1)]
        futs = [
            _pool.submit(G1Point.multiexp_unchecked, pts[a:b], sc[a:b])
            for a, b in itertools.pairwise(cuts[:-1])
        ] if _pool is not None else []  # fmt: skip
        pending.append((futs, pts[cuts[-2] :], sc[cuts[-2] :]))
    out = []
    for futs, pts, sc in pending:
        acc = G1Point.multiexp_unchecked(pts, sc) if pts else G1Point.identity()
        for f in futs:
            acc = acc + f.result()
        out.append(acc)
    return out


def msm(points: Sequence[G1Point], scalars: Sequence[int]) -> G1Point:
    """Σ scalars[i]·points[i] for integer scalars (any sign; reduced mod r)."""
    if len(points) != len(scalars):
        raise ValueError(f"{len(points)} points and {len(scalars)} scalars")
    return _msm_many([(list(points), _ark(scalars))])[0]


def msm_packed(points: Sequence[G1Point], raw: bytes, width: int = SCALAR_BYTES) -> G1Point:
    """Σ sᵢ·points[i] for scalars packed in ``raw`` as little-endian ``width``-byte integers
    (reduced mod r): no Python integer per scalar."""
    if len(raw) != width * len(points):
        raise ValueError(f"{len(points)} points and {len(raw)} bytes of {width}-byte scalars")
    f = _ArkScalar.from_le_bytes_mod_order
    sc = [f(raw[i : i + width]) for i in range(0, len(raw), width)]
    return _msm_many([(list(points), sc)])[0]


def msm_small(points: Sequence[G1Point], values: np.ndarray) -> G1Point:
    """Σ values[i]·points[i] for signed 64-bit integers (a quantized vector), much faster than
    :func:`msm`: the cost of an MSM grows with the bit length of its largest scalar, and a
    negative value mod r is a full-size scalar, so positive and negative entries go into two
    MSMs of magnitudes (the second subtracted)."""
    v = np.asarray(values, dtype=np.int64)
    if len(points) != len(v):
        raise ValueError(f"{len(points)} points and {len(v)} values")
    if (v == np.iinfo(np.int64).min).any():  # no 64-bit magnitude: take the general path
        return msm(points, [int(x) for x in v.tolist()])
    pts = np.empty(len(v), dtype=object)
    pts[:] = list(points)
    pos, neg = np.flatnonzero(v > 0), np.flatnonzero(v < 0)
    plus, minus = _msm_many([
        (pts[pos].tolist(), _ark_unsigned(v[pos])),
        (pts[neg].tolist(), _ark_unsigned(-v[neg])),
    ])  # fmt: skip
    return plus - minus


def mul(p: G1Point, k: int) -> G1Point:
    return p * _ArkScalar.from_le_bytes_mod_order((k % ORDER).to_bytes(SCALAR_BYTES, "little"))


# --- generators -------------------------------------------------------------------------------
def _derive(label: str, start: int, stop: int) -> list[G1Point]:
    lab = label.encode()
    return [
        G1Point.hash_to_curve(len(lab).to_bytes(2, "big") + lab + i.to_bytes(8, "big"), DST)
        for i in range(start, stop)
    ]


def _cache_dir() -> Path:
    base = os.environ.get("GUARDIANS_STATE_DIR")
    if base:
        return Path(base) / "generators"
    return (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "guardians"
        / ("generators")
    )


def _cache_file(label: str) -> Path:
    return _cache_dir() / f"{tagged_hash('bls12-381/generator-cache', label.encode()).hex()[:32]}"


def _load(label: str) -> list[G1Point]:
    path = _cache_file(label)
    try:
        data = path.read_bytes()
    except OSError:
        return []
    digest, body = data[:32], data[32:]
    n = len(body) // 96
    # A digest against corruption (bit rot, a truncated write), then a spread of entries
    # recomputed from their derivation. The cache lives in the user's own state directory.
    if n == 0 or len(body) % 96 or tagged_hash("bls12-381/generator-cache", body) != digest:
        return []
    try:
        pts = [G1Point.from_xy_bytes_unchecked_be(body[96 * i : 96 * i + 96]) for i in range(n)]
    except Exception:
        return []
    probe = sorted({0, n - 1, *(secrets.randbelow(n) for _ in range(6))})
    for i in probe:
        if _derive(label, i, i + 1)[0] != pts[i]:
            return []
    return pts


def _store(label: str, pts: list[G1Point]) -> None:
    path = _cache_file(label)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        body = b"".join(bytes(p.to_xy_bytes_be()) for p in pts)
        tmp.write_bytes(tagged_hash("bls12-381/generator-cache", body) + body)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home still works, just slower next time


_generators: dict[str, list[G1Point]] = {}
_gen_lock = threading.Lock()


def generators(label: str, n: int) -> list[G1Point]:
    """The first ``n`` generators of the family ``label``: hash-to-curve of (label, i), so no
    discrete-log relation between any two is known to anyone."""
    with _gen_lock:
        have = _generators.get(label)
        if have is None:
            have = _generators[label] = _load(label)
        if len(have) < n:
            have.extend(_derive(label, len(have), n))
            _store(label, have)
        return have[:n]


def generator(label: str) -> G1Point:
    return generators(label, 1)[0]
