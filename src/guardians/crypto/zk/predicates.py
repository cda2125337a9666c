"""Predicates over a committed attribute, proven with Bulletproofs range proofs.

Given C = v·G + γ·H:

- v ≥ L: C − L·G commits to v − L; prove it lies in [0, 2^n).
- v ≤ U: U·G − C commits to U − v (blinding −γ); prove it lies in [0, 2^n) — and v ≥ 0 too,
  since "U − v small" alone would also hold for a "negative" v (a value near the group order).
- L ≤ v ≤ U: both.

Attributes are non-negative integers: an upper bound alone means 0 ≤ v ≤ U.

Examples: "the dataset has ≥ N records", "certified before day D" (≤), "privacy budget spent
≤ ε" (in fixed point), "age ≥ 18". The bound is part of the statement: each range proof is bound
to a context whose purpose names the predicate and its bound, so a proof never verifies for a
different bound, commitment, member, round or purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

from guardians.crypto.commit import G
from guardians.crypto.group import Point, Scalar
from guardians.crypto.zk.bulletproofs import BIT_SIZES, proof_size, prove_range, verify_range
from guardians.crypto.zk.sigma import Context, FalseStatementError, ProofVerificationError


@dataclass(frozen=True)
class Predicate:
    low: int | None = None
    high: int | None = None
    bits: int = 32

    def __post_init__(self) -> None:
        if self.low is None and self.high is None:
            raise ValueError("a predicate needs a lower bound, an upper bound, or both")
        if type(self.bits) is not int or self.bits not in BIT_SIZES:
            raise ValueError(f"bits must be one of {BIT_SIZES}, not {self.bits!r}")
        # Bounds are reduced mod the group order inside the proof: only bounds in [0, 2^bits)
        # keep "v − L ∈ [0, 2^bits)" and "U − v ∈ [0, 2^bits)" from wrapping around it (a
        # bound near the order would otherwise "prove" v ≥ a number v is far below).
        for name, b in (("lower", self.low), ("upper", self.high)):
            if b is not None and (type(b) is not int or not 0 <= b < 1 << self.bits):
                shown = repr(b) if type(b) is not int or abs(b) < 1 << 64 else "a larger one"
                raise ValueError(f"the {name} bound must be an integer in [0, 2^{self.bits}), "
                                 f"not {shown}")  # fmt: skip
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError("lower bound above upper bound")

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low} ≤ value ≤ {self.high}"
        return f"value ≥ {self.low}" if self.low is not None else f"0 ≤ value ≤ {self.high}"

    def holds(self, v: int) -> bool:
        low = self.low if self.low is not None else 0
        return v >= low and (self.high is None or v <= self.high)


def _parts(
    ctx: Context, c: Point, p: Predicate, value: int = 0, blinding: Scalar | None = None
) -> list[tuple[Context, Point, int, Scalar | None]]:
    """Each range statement: (its context, the derived commitment, its witness value and
    blinding — known only to the prover)."""
    parts = []
    low = p.low if p.low is not None else 0
    p = Predicate(low=low, high=p.high, bits=p.bits)
    if p.low is not None:
        sub = Context(ctx.consortium, ctx.round, ctx.member, f"{ctx.purpose}/ge/{p.low}/{p.bits}")
        parts.append((sub, c - G * Scalar.of(p.low), value - p.low, blinding))
    if p.high is not None:
        sub = Context(ctx.consortium, ctx.round, ctx.member, f"{ctx.purpose}/le/{p.high}/{p.bits}")
        neg = -blinding if blinding is not None else None
        parts.append((sub, G * Scalar.of(p.high) - c, p.high - value, neg))
    return parts


def prove_predicate(ctx: Context, c: Point, value: int, blinding: Scalar, p: Predicate) -> bytes:
    if not p.holds(value):
        raise FalseStatementError(f"the attribute does not satisfy {p.describe()}")
    return b"".join(
        prove_range(sub_ctx, sub_c, w, r, p.bits)  # type: ignore[arg-type]
        for sub_ctx, sub_c, w, r in _parts(ctx, c, p, value, blinding)
    )


def verify_predicate(ctx: Context, c: Point, p: Predicate, proof: bytes) -> None:
    parts = _parts(ctx, c, p)
    size = proof_size(p.bits)
    if len(proof) != size * len(parts):
        raise ProofVerificationError(f"proof is {len(proof)} bytes, expected {size * len(parts)}")
    for i, (sub_ctx, sub_c, _, _) in enumerate(parts):
        verify_range(sub_ctx, sub_c, proof[i * size : (i + 1) * size], p.bits)
