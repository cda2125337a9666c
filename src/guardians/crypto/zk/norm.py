"""Contribution proofs: a committed, quantized update has L2 norm at most B — exactly, not
approximately — proven in zero knowledge, with one vector commitment that also aggregates.

Statement (public: d, B², w_bits, k; private: v ∈ Z^d, n, blinding r):
    C = Σᵢ vᵢ·Gᵢ + n·G_d + r·H   and   ⟨v, v⟩ ≤ B²·n²   and   0 ≤ n < 2^w_bits.
``v`` is the weighted, fixed-point update a member feeds into secure aggregation and ``n`` its
weight, so the bound is ‖update‖ ≤ B per unit of weight and Σ C_u opens the aggregate.

Construction (one Sigma protocol over BLS12-381 G1, Fiat–Shamir; the soundness argument and
costs are in docs/zk.md):

1. **Auxiliary commitment** D to the bits of n, the bits of the slack s = B²n² − ⟨v,v⟩, and k
   masking integers yⱼ uniform in [−κM, κM], where M = ⌈√(d·B²·n_max²)⌉ bounds |⟨a, v⟩| for
   any a ∈ {0,1}^d.
2. **Projections.** The transcript (after C and D) seeds k rows aⱼ ∈ {0,1}^d; the prover reveals
   wⱼ = ⟨aⱼ, v⟩ + yⱼ and restarts from step 1 unless every |wⱼ| ≤ (κ−1)M (rejection
   sampling: the revealed wⱼ are then uniform whatever v is). If any |vᵢ| (as an integer mod r)
   exceeded 2(κ−1)M, each row would pass with probability ≤ 1/2, so all k pass with
   probability ≤ 2^−k: the revealed projections prove the entries small enough that
   ⟨v, v⟩ cannot wrap around r.
3. **Relations**, batched with powers of a transcript challenge γ: bits are bits (b² − b = 0),
   n and s are their bit sums, B²n² − ⟨v,v⟩ − s = 0, and ⟨aⱼ, v⟩ + yⱼ − wⱼ = 0. With masks μ
   and response z = μ + c·w the verifier evaluates the batched polynomial at z; its c and 1
   coefficients are committed before c (T1, T2), as in Bulletproofs' t(X).

Costs: the prover's main work is one MSM of d full-size masks; the verifier's is one MSM of d
responses, and ``verify_batch`` merges a whole round's members into one MSM. Proofs are
32·(d + 1) bytes plus a few kilobytes (the response is not compressed). The masks and their
commitment T do not depend on the update, so :func:`precompute_masks` makes them ahead (while
the member waits) and :func:`prove` then does about a seventh of the work; each set of masks
serves one proof only.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from guardians.crypto import bls, prg, scalarvec
from guardians.crypto.bls import ORDER
from guardians.crypto.errors import CryptoError
from guardians.crypto.transcript import Transcript
from guardians.crypto.zk.sigma import Context, FalseStatementError, ProofVerificationError
from guardians.errors import ConfigError, LocalProtocolError

PROJECTIONS = 128  # k: a too-large entry survives all rows with probability ≤ 2^-k
REJECTION = 1 << 16  # κ: each row restarts with probability ≈ 1/κ
_W_BYTES = 16
_BATCH_BITS = 128


class AggregateMismatchError(CryptoError):
    """The claimed aggregate does not open the product of the contributors' commitments."""


@dataclass(frozen=True)
class NormStatement:
    """⟨v, v⟩ ≤ bound_sq · n² for the committed (v ∈ Z^dim, n), with 0 ≤ n < 2^weight_bits."""

    dim: int
    bound_sq: int
    weight_bits: int
    projections: int = PROJECTIONS

    def __post_init__(self) -> None:
        if not 1 <= self.dim <= 1 << 30:
            raise ConfigError(f"a contribution has 1 to 2^30 coordinates, not {self.dim}")
        if self.bound_sq < 1:
            raise ConfigError("the norm bound must be positive")
        if not 1 <= self.weight_bits <= 62:
            raise ConfigError(f"weight_bits must be in 1..62, got {self.weight_bits}")
        if not 64 <= self.projections <= 4096 or self.projections % 8:
            raise ConfigError("projections: a multiple of 8 from 64 (soundness 2^-k) to 4096")
        # No relation may wrap around r, or "≤" over the integers would not follow.
        worst = self.dim * (2 * self.accept) ** 2 + (1 << self.slack_bits)
        if worst + self.bound_sq * self.max_weight**2 >= ORDER // 2 or self.accept >= 1 << 126:
            raise ConfigError("dimension, bound and weight range too large for the group order")

    @classmethod
    def for_update(
        cls, dim: int, norm_bound: float, scale_bits: int, max_weight: int
    ) -> NormStatement:
        """‖update‖₂ ≤ norm_bound for an update encoded as round(n · update · 2^scale_bits)."""
        if not norm_bound > 0 or not math.isfinite(norm_bound):
            raise ConfigError(f"the norm bound must be positive and finite, got {norm_bound}")
        b = math.floor(norm_bound * 2.0**scale_bits)
        return cls(dim=dim, bound_sq=b * b, weight_bits=max(1, max_weight.bit_length()))

    @property
    def max_weight(self) -> int:
        return (1 << self.weight_bits) - 1

    @property
    def slack_bits(self) -> int:
        return max(1, (self.bound_sq * self.max_weight**2).bit_length())

    @property
    def proj_bound(self) -> int:
        """M: |⟨a, v⟩| ≤ ‖v‖₁ ≤ √d·‖v‖₂ ≤ √(d·B²·n²) for every honest v and a ∈ {0,1}^d."""
        return math.isqrt(self.dim * self.bound_sq * self.max_weight**2) + 1

    @property
    def accept(self) -> int:
        return (REJECTION - 1) * self.proj_bound

    @property
    def aux_len(self) -> int:
        return self.weight_bits + self.slack_bits + self.projections

    def proof_bytes(self) -> int:
        return (bls.POINT_BYTES * 5 + _W_BYTES * self.projections
                + bls.SCALAR_BYTES * (self.dim + 1 + self.aux_len + 3))  # fmt: skip

    def bind(self, t: Transcript) -> None:
        t.append_int("dim", self.dim)
        t.append_int("bound_sq", self.bound_sq)
        t.append_int("weight_bits", self.weight_bits)
        t.append_int("projections", self.projections)
        t.append_int("rejection", REJECTION)


@dataclass(frozen=True)
class Opening:
    """The committed vector (update then weight, signed 64-bit) and its blinding."""

    values: np.ndarray
    blinding: int


def _gens(stmt: NormStatement) -> tuple[list[bls.Point], list[bls.Point], bls.Point, bls.Point]:
    return (
        bls.generators("contrib/main", stmt.dim + 1),
        bls.generators("contrib/aux", stmt.aux_len),
        bls.generator("contrib/H"),
        bls.generator("contrib/G0"),
    )


def commit(stmt: NormStatement, values: np.ndarray) -> tuple[bytes, Opening]:
    """Commit to (update, weight) as signed integers; returns (commitment bytes, opening)."""
    v = np.asarray(values)
    if v.shape != (stmt.dim + 1,) or not np.issubdtype(v.dtype, np.integer):
        raise ConfigError(f"commit expects {stmt.dim + 1} integers, got {v.dtype} {v.shape}")
    v = v.astype(np.int64)
    main, _, h, _ = _gens(stmt)
    r = bls.random_scalar()
    c = bls.msm_small(main, v) + bls.mul(h, r)
    return bls.point_bytes(c), Opening(values=v, blinding=r)


class MasksUsedError(LocalProtocolError):
    """Precomputed masks offered for a second proof (two responses would reveal the update):
    a bug of the caller's, not anything a peer sent."""


@dataclass(eq=False)
class ProverMasks:
    """The prover's masks μ for (update, weight), its blinding ρ and T = Σ μᵢ·Gᵢ + ρ·H, made
    before the update exists. Single use: two responses z = μ + c·v and z' = μ + c'·v under
    the same μ give v = (z − z')/(c − c')."""

    dim: int
    mu: bytes = field(repr=False)  # dim + 1 packed canonical scalars (scalarvec)
    rho: int = field(repr=False)
    point: bytes = field(repr=False)  # T, compressed
    mu_sq: int = field(repr=False)  # Σ μᵢ² over the update's coordinates, mod r
    _used: bool = field(default=False, repr=False)

    @property
    def used(self) -> bool:
        return self._used

    def fits(self, stmt: NormStatement) -> bool:
        """Unspent and of ``stmt``'s dimension: :meth:`take` would accept them."""
        return not self._used and self.dim == stmt.dim

    def take(self, stmt: NormStatement) -> ProverMasks:
        """Mark these masks spent for a proof of ``stmt`` (refused if spent or misfitting)."""
        if self.dim != stmt.dim:
            raise ConfigError(f"masks for {self.dim} coordinates, statement has {stmt.dim}")
        if self._used:
            raise MasksUsedError("these prover masks already served a proof")
        self._used = True
        return self


def precompute_masks(stmt: NormStatement) -> ProverMasks:
    """Fresh masks and their commitment for one future proof of ``stmt``'s dimension (the
    bulk of proving: one MSM of d full-size scalars)."""
    main, _, h, _ = _gens(stmt)
    mu = scalarvec.random(stmt.dim + 1)
    rho = bls.random_scalar()
    point = bls.point_bytes(bls.msm_packed(main, mu) + bls.mul(h, rho))
    mu_sq = scalarvec.sum_squares(mu[: bls.SCALAR_BYTES * stmt.dim])
    return ProverMasks(dim=stmt.dim, mu=mu, rho=rho, point=point, mu_sq=mu_sq)


# --- projections ------------------------------------------------------------------------------
def _rows(seed: bytes, k: int, d: int) -> np.ndarray:
    """k rows in {0,1}^d from the transcript seed (AES-CTR keystream bits)."""
    words = prg.expand(seed[:32], -(-k * d // 64), bits=64, label="contrib/projections")
    return np.unpackbits(words.view(np.uint8))[: k * d].reshape(k, d)


# --- the batched relation polynomial ------------------------------------------------------------
@dataclass(frozen=True)
class _Weights:
    gamma: int
    bits: list[int]  # β_b for the n bits then the s bits
    proj: list[int]  # ρ_j

    @classmethod
    def of(cls, stmt: NormStatement, gamma: int) -> _Weights:
        nb = stmt.weight_bits + stmt.slack_bits
        pw, out = gamma * gamma % ORDER, []
        for _ in range(nb + stmt.projections):
            out.append(pw)
            pw = pw * gamma % ORDER
        return cls(gamma, out[:nb], out[nb:])


def _split_aux(stmt: NormStatement, aux: Sequence[int]) -> tuple[Sequence[int], ...]:
    nb, sb = stmt.weight_bits, stmt.slack_bits
    return aux[:nb], aux[nb : nb + sb], aux[nb + sb :]


def _pow2_sum(bits: Sequence[int]) -> int:
    return sum(b << i for i, b in enumerate(bits))


def _quad(stmt: NormStatement, wt: _Weights, sq_x: int, u_n: int, bits: Sequence[int]) -> int:
    """Q(u) given ⟨u_x, u_x⟩ (homogeneous quadratic part)."""
    return (stmt.bound_sq * u_n * u_n - sq_x
            + sum(b_w * b * b for b_w, b in zip(wt.bits, bits, strict=True))) % ORDER  # fmt: skip


def _lin(
    stmt: NormStatement, wt: _Weights, u_n: int, aux: Sequence[int], proj_x: Sequence[int]
) -> int:
    """L(u) given A·u_x (linear part)."""
    e, s, y = _split_aux(stmt, aux)
    total = -_pow2_sum(s) + wt.gamma * (u_n - _pow2_sum(e))
    total -= sum(b_w * b for b_w, b in zip(wt.bits, [*e, *s], strict=True))
    total += sum(r * (p + yj) for r, p, yj in zip(wt.proj, proj_x, y, strict=True))
    return total % ORDER


# --- proof ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class NormProof:
    aux: bytes  # D
    projections: tuple[int, ...]  # wⱼ
    t_main: bytes
    t_aux: bytes
    t1: bytes
    t2: bytes
    z_main: bytes  # d + 1 packed canonical scalars (see scalarvec)
    z_aux: tuple[int, ...]
    sigma_main: int
    sigma_aux: int
    tau: int

    def to_bytes(self) -> bytes:
        w = b"".join(x.to_bytes(_W_BYTES, "little", signed=True) for x in self.projections)
        sc = bls.scalar_bytes
        return b"".join([
            self.aux, w, self.t_main, self.t_aux, self.t1, self.t2,
            self.z_main, *(sc(z) for z in self.z_aux),
            sc(self.sigma_main), sc(self.sigma_aux), sc(self.tau),
        ])  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes, stmt: NormStatement) -> NormProof:
        want = stmt.proof_bytes()
        if len(data) != want:
            raise ProofVerificationError(f"a norm proof for this statement is {want} bytes, "
                                         f"got {len(data)}")  # fmt: skip
        pb, sb, k = bls.POINT_BYTES, bls.SCALAR_BYTES, stmt.projections
        off = 0

        def take(n: int) -> bytes:
            nonlocal off
            off += n
            return bytes(data[off - n : off])

        aux = take(pb)
        w = tuple(int.from_bytes(take(_W_BYTES), "little", signed=True) for _ in range(k))
        pts = [take(pb) for _ in range(4)]
        try:
            zm = scalarvec.from_bytes(take(sb * (stmt.dim + 1)), stmt.dim + 1)
            za = tuple(bls.scalar_from_bytes(take(sb)) for _ in range(stmt.aux_len))
            tail = [bls.scalar_from_bytes(take(sb)) for _ in range(3)]
        except CryptoError as exc:
            raise ProofVerificationError(f"malformed norm proof: {exc}") from None
        return cls(aux, w, *pts, zm, za, *tail)


def _transcript(ctx: Context, stmt: NormStatement, commitment: bytes) -> Transcript:
    t = Transcript("contribution-norm")
    ctx.bind(t)
    stmt.bind(t)
    t.append("commitment", commitment)
    return t


def _bits(v: int, n: int) -> list[int]:
    return [(v >> i) & 1 for i in range(n)]


def prove(
    ctx: Context,
    stmt: NormStatement,
    commitment: bytes,
    opening: Opening,
    masks: ProverMasks | None = None,
) -> NormProof:
    """Prove the statement for ``commitment`` (made by :func:`commit` with ``opening``), with
    ``masks`` from :func:`precompute_masks` if given (spent by the proof; a statement refused
    here leaves them unspent, as nothing was computed with them)."""
    v = opening.values
    if v.shape != (stmt.dim + 1,):
        raise ConfigError(f"opening has {v.shape[0]} values, statement wants {stmt.dim + 1}")
    x, n = v[:-1], int(v[-1])
    if not 0 <= n <= stmt.max_weight:
        raise FalseStatementError(f"weight {n} outside [0, {stmt.max_weight}]")
    if np.abs(x).max(initial=0) >= 1 << 62:
        raise FalseStatementError("an entry is too large to have a bounded norm")
    norm_sq = sum(a * a for a in x.tolist())
    slack = stmt.bound_sq * n * n - norm_sq
    if slack < 0:
        raise FalseStatementError(f"‖v‖² = {norm_sq} exceeds the bound B²·n² = {norm_sq + slack}")
    return _prove_unchecked(ctx, stmt, commitment, opening, slack, masks)


def _prove_unchecked(
    ctx: Context,
    stmt: NormStatement,
    commitment: bytes,
    opening: Opening,
    slack: int,
    masks: ProverMasks | None = None,
) -> NormProof:
    """The protocol itself. Called directly only by tests playing a cheating prover."""
    v = opening.values
    x, n = v[:-1], int(v[-1])
    _, auxg, h, g0 = _gens(stmt)
    k, mb = stmt.projections, stmt.proj_bound
    base = _transcript(ctx, stmt, commitment)
    bits_ns = _bits(n, stmt.weight_bits) + _bits(slack, stmt.slack_bits)
    masks = (masks if masks is not None else precompute_masks(stmt)).take(stmt)
    mu, rho_m = masks.mu, masks.rho
    sb = bls.SCALAR_BYTES
    mu_x = mu[: sb * stmt.dim]
    mu_n = int.from_bytes(mu[sb * stmt.dim :], "little")
    while True:  # rejection sampling: expected 1 + k/κ ≈ 1.002 attempts
        y = [secrets.randbelow(2 * REJECTION * mb + 1) - REJECTION * mb for _ in range(k)]
        aux_vals = bits_ns + y
        r_aux = bls.random_scalar()
        d_pt = bls.point_bytes(bls.msm(auxg, aux_vals) + bls.mul(h, r_aux))
        t = base.copy()
        t.append("aux", d_pt)
        rows = _rows(t.challenge_bytes("projections"), k, stmt.dim)
        proj_mu, proj_x = scalarvec.project_with(rows, mu_x, x)
        w = [p + yj for p, yj in zip(proj_x, y, strict=True)]
        if all(abs(wj) <= stmt.accept for wj in w):
            break
    for wj in w:
        t.append_int("w", wj)
    wt = _Weights.of(stmt, t.challenge_mod("relations", ORDER))

    mu_aux = bls.random_scalars(stmt.aux_len)
    rho_a, tau1, tau2 = bls.random_scalars(3)
    t_aux = bls.msm(auxg, mu_aux) + bls.mul(h, rho_a)
    e_s = aux_vals[: stmt.weight_bits + stmt.slack_bits]
    mu_bits = mu_aux[: len(e_s)]
    # t2 = Q(μ); t1 = 2·B(μ, w) + L(μ), B the bilinear form of Q.
    t2 = _quad(stmt, wt, masks.mu_sq, mu_n, mu_bits)
    bil = (stmt.bound_sq * mu_n * n - scalarvec.dot_small(mu_x, x)
           + sum(b_w * m * b for b_w, m, b in zip(wt.bits, mu_bits, e_s, strict=True)))  # fmt: skip
    t1 = (2 * bil + _lin(stmt, wt, mu_n, mu_aux, proj_mu)) % ORDER
    t1_pt = bls.point_bytes(bls.mul(g0, t1) + bls.mul(h, tau1))
    t2_pt = bls.point_bytes(bls.mul(g0, t2) + bls.mul(h, tau2))
    tm, ta = masks.point, bls.point_bytes(t_aux)
    for label, p in (("t_main", tm), ("t_aux", ta), ("t1", t1_pt), ("t2", t2_pt)):
        t.append(label, p)
    c = t.challenge_mod("challenge", ORDER)
    vals = [*x.tolist(), n]
    z_main = scalarvec.from_ints(
        [m + c * a for m, a in zip(scalarvec.to_ints(mu), vals, strict=True)]
    )
    return NormProof(
        aux=d_pt, projections=tuple(w), t_main=tm, t_aux=ta, t1=t1_pt, t2=t2_pt,
        z_main=z_main,
        z_aux=tuple((m + c * a) % ORDER for m, a in zip(mu_aux, aux_vals, strict=True)),
        sigma_main=(rho_m + c * opening.blinding) % ORDER,
        sigma_aux=(rho_a + c * r_aux) % ORDER, tau=(tau2 + c * tau1) % ORDER,
    )  # fmt: skip


# --- verification -----------------------------------------------------------------------------
@dataclass
class _Check:
    """One proof reduced to: Σ main_i·Gᵢ + Σ aux_i·G'ᵢ + Σ sⱼ·Pⱼ must be the identity."""

    main: bytes  # packed scalars (scalarvec)
    aux: list[int]
    points: list[bls.Point]
    scalars: list[int]


def _reduce(ctx: Context, stmt: NormStatement, commitment: bytes, proof: NormProof) -> _Check:
    if (
        len(proof.projections) != stmt.projections
        or len(proof.z_main) != bls.SCALAR_BYTES * (stmt.dim + 1)
        or len(proof.z_aux) != stmt.aux_len
    ):
        raise ProofVerificationError("norm proof has the wrong shape for this statement")
    try:
        z_main = scalarvec.from_bytes(proof.z_main, stmt.dim + 1)
        c_pt, d_pt = bls.point_from_bytes(commitment), bls.point_from_bytes(proof.aux)
        tm, ta = bls.point_from_bytes(proof.t_main), bls.point_from_bytes(proof.t_aux)
        t1, t2 = bls.point_from_bytes(proof.t1), bls.point_from_bytes(proof.t2)
    except CryptoError as exc:
        raise ProofVerificationError(f"malformed norm proof: {exc}") from None
    for wj in proof.projections:
        if abs(wj) > stmt.accept:
            raise ProofVerificationError("a revealed projection exceeds the acceptance bound")
    t = _transcript(ctx, stmt, commitment)
    t.append("aux", proof.aux)
    rows = _rows(t.challenge_bytes("projections"), stmt.projections, stmt.dim)
    for wj in proof.projections:
        t.append_int("w", wj)
    wt = _Weights.of(stmt, t.challenge_mod("relations", ORDER))
    for label, p in (("t_main", proof.t_main), ("t_aux", proof.t_aux), ("t1", proof.t1),
                     ("t2", proof.t2)):  # fmt: skip
        t.append(label, p)
    c = t.challenge_mod("challenge", ORDER)
    sb = bls.SCALAR_BYTES
    z_x, z_n = (
        z_main[: sb * stmt.dim],
        int.from_bytes(z_main[sb * stmt.dim :], "little"),
    )
    nbits = stmt.weight_bits + stmt.slack_bits
    quad = _quad(stmt, wt, scalarvec.sum_squares(z_x), z_n, proof.z_aux[:nbits])
    lin = _lin(stmt, wt, z_n, proof.z_aux, scalarvec.project(rows, z_x))
    const = -sum(r * wj for r, wj in zip(wt.proj, proof.projections, strict=True))
    poly = (quad + c * lin + c * c * const) % ORDER
    # Three equations, merged with the verifier's own random weights a1, a2:
    #   ⟨z, G⟩ + σ·H = T + c·C;  ⟨z', G'⟩ + σ'·H = T' + c·D;  P(z)·G0 + τ·H = T2 + c·T1.
    a1, a2 = bls.random_scalars(2)
    _, _, h, g0 = _gens(stmt)
    return _Check(
        main=z_main,
        aux=[a1 * z % ORDER for z in proof.z_aux],
        points=[h, g0, tm, c_pt, ta, d_pt, t2, t1],
        scalars=[proof.sigma_main + a1 * proof.sigma_aux + a2 * proof.tau, a2 * poly,
                 -1, -c, -a1, -a1 * c, -a2, -a2 * c],
    )  # fmt: skip


def _holds(stmt: NormStatement, checks: Sequence[_Check]) -> bool:
    main, auxg, _, _ = _gens(stmt)
    if len(checks) == 1:
        ch = checks[0]
        main_part = bls.msm_packed(main, ch.main)
        a, pts, sc = ch.aux, ch.points, ch.scalars
    else:
        # Small-exponent batching (Bellare–Garay–Rabin): random 128-bit weights δ, so a batch
        # with any false equation passes with probability ≤ 2^-128; one MSM for the batch.
        deltas = [1, *(secrets.randbits(_BATCH_BITS) for _ in checks[1:])]
        combined = scalarvec.combine([ch.main for ch in checks], deltas, _BATCH_BITS)
        width = scalarvec.combined_width(len(checks), _BATCH_BITS)
        main_part = bls.msm_packed(main, combined, width)
        a = [sum(dl * x for dl, x in zip(deltas, col, strict=True)) % ORDER
             for col in zip(*(ch.aux for ch in checks), strict=True)]  # fmt: skip
        pts = [p for ch in checks for p in ch.points]
        sc = [dl * s for dl, ch in zip(deltas, checks, strict=True) for s in ch.scalars]
    total = main_part + bls.msm([*auxg, *pts], [*a, *sc])
    return total == bls.Point.identity()


def verify(ctx: Context, stmt: NormStatement, commitment: bytes, proof: NormProof) -> None:
    """Raises :class:`ProofVerificationError` unless ``proof`` shows ``commitment`` holds an
    update of norm ≤ B per unit weight, for exactly this context and statement."""
    if not _holds(stmt, [_reduce(ctx, stmt, commitment, proof)]):
        raise ProofVerificationError("norm proof does not verify")


def verify_batch(
    stmt: NormStatement, items: Sequence[tuple[Context, bytes, NormProof]]
) -> dict[int, str]:
    """Verify many proofs at once; returns {index: reason} for those that fail (empty: all
    good). A failing batch is re-checked one by one to name the culprits."""
    bad: dict[int, str] = {}
    checks: dict[int, _Check] = {}
    for i, (ctx, com, proof) in enumerate(items):
        try:
            checks[i] = _reduce(ctx, stmt, com, proof)
        except ProofVerificationError as exc:
            bad[i] = str(exc)
    if checks and not _holds(stmt, list(checks.values())):
        for i, ch in checks.items():
            if not _holds(stmt, [ch]):
                bad[i] = "norm proof does not verify"
    return dict(sorted(bad.items()))


# --- verifiable aggregation -------------------------------------------------------------------
def check_aggregate(
    stmt: NormStatement, commitments: Sequence[bytes], total: np.ndarray, blinding: int
) -> None:
    """Σ C_u must equal Σᵢ totalᵢ·Gᵢ + blinding·H: the claimed aggregate (update sum then
    weight sum, as signed integers) is exactly what the contributors committed to."""
    tot = np.asarray(total)
    if tot.shape != (stmt.dim + 1,):
        raise AggregateMismatchError(f"aggregate has shape {tot.shape}, not ({stmt.dim + 1},)")
    main, _, h, _ = _gens(stmt)
    lhs = bls.Point.identity()
    for c in commitments:
        lhs = lhs + bls.point_from_bytes(c)
    rhs = bls.msm_small(main, tot.astype(np.int64)) + bls.mul(h, blinding)
    if lhs != rhs:
        raise AggregateMismatchError(
            f"the aggregate does not open the product of {len(commitments)} commitments"
        )


def blinding_limbs(r: int) -> np.ndarray:
    """A blinding as eight 32-bit limbs, to be summed by secure aggregation without wrapping."""
    return np.array([(r >> (32 * i)) & 0xFFFFFFFF for i in range(8)], dtype=np.uint64)


def blinding_from_limbs(limbs: np.ndarray) -> int:
    return sum(int(x) << (32 * i) for i, x in enumerate(limbs)) % ORDER
