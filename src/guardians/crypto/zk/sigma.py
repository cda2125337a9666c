"""Sigma protocols on Pedersen commitments, non-interactive and bound to a context.

- :func:`prove_opening`: knowledge of (v, r) with C = v·G + r·H.
- :func:`prove_equal`: two commitments hide the same value (knowledge of log_H(C₁ − C₂)).
- :func:`prove_membership`: C hides one of a public list of values (a one-of-many OR proof,
  Cramer–Damgård–Schoenmakers composition), without saying which.

Every proof absorbs a :class:`Context` (consortium, round, member, purpose) and every public
input into its transcript, so it verifies only for exactly that statement in exactly that place:
no proof can be replayed for another round, member, purpose or commitment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from guardians.crypto.commit import G, H, commit
from guardians.crypto.errors import CryptoError
from guardians.crypto.group import POINT_BYTES, SCALAR_BYTES, Point, Scalar
from guardians.crypto.transcript import Transcript


class ProofVerificationError(CryptoError):
    """A proof is malformed or does not verify for the given statement and context."""


class FalseStatementError(CryptoError):
    """The prover was asked to prove something that is not true; it refuses."""


@dataclass(frozen=True)
class Context:
    consortium: str
    round: int
    member: str
    purpose: str

    def bind(self, t: Transcript) -> None:
        t.append("consortium", self.consortium.encode())
        t.append_int("round", self.round)
        t.append("member", self.member.encode())
        t.append("purpose", self.purpose.encode())


def _points(data: bytes, offset: int, n: int) -> list[Point]:
    return [Point.from_bytes(data[offset + i * POINT_BYTES : offset + (i + 1) * POINT_BYTES])
            for i in range(n)]  # fmt: skip


def _scalars(data: bytes, offset: int, n: int) -> list[Scalar]:
    return [Scalar.from_bytes(data[offset + i * SCALAR_BYTES : offset + (i + 1) * SCALAR_BYTES])
            for i in range(n)]  # fmt: skip


def _parse(data: bytes, n_points: int, n_scalars: int) -> tuple[list[Point], list[Scalar]]:
    want = n_points * POINT_BYTES + n_scalars * SCALAR_BYTES
    if len(data) != want:
        raise ProofVerificationError(f"proof is {len(data)} bytes, expected {want}")
    try:
        return _points(data, 0, n_points), _scalars(data, n_points * POINT_BYTES, n_scalars)
    except CryptoError as exc:
        raise ProofVerificationError(f"malformed proof: {exc}") from None


# --- knowledge of an opening ------------------------------------------------------------------
def prove_opening(ctx: Context, c: Point, value: Scalar, blinding: Scalar) -> bytes:
    if commit(value, blinding) != c:
        raise FalseStatementError("the commitment does not open to this value and blinding")
    t = Transcript("sigma/opening")
    ctx.bind(t)
    t.append_point("C", c)
    a, b = Scalar.random(), Scalar.random()
    big_a = G * a + H * b
    t.append_point("A", big_a)
    e = t.challenge("e")
    return big_a.to_bytes() + (a + e * value).to_bytes() + (b + e * blinding).to_bytes()


def verify_opening(ctx: Context, c: Point, proof: bytes) -> None:
    (big_a,), (z1, z2) = _parse(proof, 1, 2)
    t = Transcript("sigma/opening")
    ctx.bind(t)
    t.append_point("C", c)
    t.append_point("A", big_a)
    e = t.challenge("e")
    if G * z1 + H * z2 != big_a + c * e:
        raise ProofVerificationError("opening proof does not verify")


# --- equality of committed values ------------------------------------------------------------
def prove_equal(ctx: Context, c1: Point, c2: Point, value: Scalar, r1: Scalar, r2: Scalar) -> bytes:
    if commit(value, r1) != c1 or commit(value, r2) != c2:
        raise FalseStatementError("the commitments do not both open to this value")
    w = r1 - r2
    t = Transcript("sigma/equal")
    ctx.bind(t)
    t.append_point("C1", c1)
    t.append_point("C2", c2)
    k = Scalar.random()
    big_a = H * k
    t.append_point("A", big_a)
    e = t.challenge("e")
    return big_a.to_bytes() + (k + e * w).to_bytes()


def verify_equal(ctx: Context, c1: Point, c2: Point, proof: bytes) -> None:
    (big_a,), (z,) = _parse(proof, 1, 1)
    t = Transcript("sigma/equal")
    ctx.bind(t)
    t.append_point("C1", c1)
    t.append_point("C2", c2)
    t.append_point("A", big_a)
    e = t.challenge("e")
    if H * z != big_a + (c1 - c2) * e:
        raise ProofVerificationError("equality proof does not verify")


# --- one-of-many membership ---------------------------------------------------------------------
def _membership_transcript(ctx: Context, c: Point, values: Sequence[int]) -> Transcript:
    t = Transcript("sigma/membership")
    ctx.bind(t)
    t.append_point("C", c)
    t.append_int("n", len(values))
    for v in values:
        t.append_int("value", v)
    return t


def prove_membership(
    ctx: Context, c: Point, values: Sequence[int], value: int, blinding: Scalar
) -> bytes:
    """Prove C commits to one of ``values`` (the prover's is ``value``) without saying which."""
    if value not in values or commit(Scalar.of(value), blinding) != c:
        raise FalseStatementError("the commitment does not hide a value from the list")
    if len(set(values)) != len(values):
        raise ValueError("the public list must not repeat values")
    i = list(values).index(value)
    n = len(values)
    ds = [c - G * Scalar.of(v) for v in values]  # C − vⱼ·G = r·H exactly for j = i
    cs: list[Scalar] = [Scalar(0)] * n
    zs: list[Scalar] = [Scalar(0)] * n
    commitments: list[Point] = [Point(bytes(POINT_BYTES))] * n
    for j in range(n):
        if j != i:  # simulate the branches the prover cannot answer
            cs[j], zs[j] = Scalar.random(), Scalar.random()
            commitments[j] = H * zs[j] - ds[j] * cs[j]
    k = Scalar.random()
    commitments[i] = H * k
    t = _membership_transcript(ctx, c, values)
    for a in commitments:
        t.append_point("A", a)
    e = t.challenge("e")
    cs[i] = e - sum((cs[j] for j in range(n) if j != i), Scalar(0))
    zs[i] = k + cs[i] * blinding
    return b"".join(x.to_bytes() for x in cs) + b"".join(z.to_bytes() for z in zs)


def verify_membership(ctx: Context, c: Point, values: Sequence[int], proof: bytes) -> None:
    n = len(values)
    if n == 0 or len(set(values)) != n:
        raise ProofVerificationError("the public list must be non-empty without repeats")
    _, scal = _parse(proof, 0, 2 * n)
    cs, zs = scal[:n], scal[n:]
    ds = [c - G * Scalar.of(v) for v in values]
    t = _membership_transcript(ctx, c, values)
    for cj, zj, dj in zip(cs, zs, ds, strict=True):
        t.append_point("A", H * zj - dj * cj)
    e = t.challenge("e")
    if sum(cs, Scalar(0)) != e:
        raise ProofVerificationError("membership proof does not verify")
