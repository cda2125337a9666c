"""Bulletproofs range proofs (Bünz, Bootle, Boneh, Poelstra, Wuille, Maxwell; IEEE S&P 2018).

Proves that a Pedersen commitment V = v·G + γ·H hides v ∈ [0, 2^n) with a proof of
2·log2(n) + 4 group elements and 5 scalars (n = 8, 16, 32 or 64), transparent (no trusted
setup: the generators come from hash-to-group), bound to a :class:`Context`.

Notation follows the paper's §4.2 (range proof) and §3 (inner-product argument, Protocol 2,
made non-interactive with the transcript). The verifier folds all generator arithmetic into one
vector of scalars per generator (§3.1 "multi-exponentiation"), so verification costs about 2n
scalar multiplications plus 2·log2(n).
"""

from __future__ import annotations

from functools import cache

from guardians.crypto.commit import G, H
from guardians.crypto.group import ORDER, POINT_BYTES, SCALAR_BYTES, Point, Scalar, multiscalar
from guardians.crypto.transcript import Transcript
from guardians.crypto.zk.sigma import (
    Context,
    FalseStatementError,
    ProofVerificationError,
    _parse,
)

BIT_SIZES = (8, 16, 32, 64)


@cache
def generators(n: int) -> tuple[tuple[Point, ...], tuple[Point, ...], Point]:
    """(g₁..gₙ, h₁..hₙ, U): independent generators from documented hash-to-group labels."""
    g = tuple(Point.hash_to_group("bulletproofs/g", i.to_bytes(4, "big")) for i in range(n))
    h = tuple(Point.hash_to_group("bulletproofs/h", i.to_bytes(4, "big")) for i in range(n))
    return g, h, Point.hash_to_group("bulletproofs/u")


def _ip(a: list[Scalar], b: list[Scalar]) -> Scalar:
    return Scalar.of(sum(x.value * y.value for x, y in zip(a, b, strict=True)))


def _powers(x: Scalar, n: int) -> list[Scalar]:
    out, acc = [], 1
    for _ in range(n):
        out.append(Scalar(acc))
        acc = acc * x.value % ORDER
    return out


def _start(ctx: Context, commits: list[Point], n: int) -> Transcript:
    t = Transcript("bulletproofs/range")
    ctx.bind(t)
    t.append_int("n", n)
    t.append_int("m", len(commits))
    for v in commits:
        t.append_point("V", v)
    return t


def _check_shape(n: int, m: int) -> None:
    if n not in BIT_SIZES:
        raise ValueError(f"bit size must be one of {BIT_SIZES}")
    if m < 1 or m & (m - 1) or m > 64:
        raise ValueError("an aggregated proof covers 1, 2, 4, ... or 64 values")


def _z_blocks(z: Scalar, n: int, m: int) -> list[Scalar]:
    """The vector Σⱼ z^(1+j) · (0..0 ‖ 2ⁿ ‖ 0..0), j = 1..m (block j holds the powers of two)."""
    out = []
    zj = z
    for _ in range(m):
        zj = zj * z
        out.extend(zj * Scalar(1 << i) for i in range(n))
    return out


def prove_range(ctx: Context, v_commit: Point, value: int, blinding: Scalar, n: int = 64) -> bytes:
    """A proof that ``v_commit`` = value·G + blinding·H with 0 ≤ value < 2^n."""
    return prove_ranges(ctx, [v_commit], [value], [blinding], n)


def verify_range(ctx: Context, v_commit: Point, proof: bytes, n: int = 64) -> None:
    """Raise ProofVerificationError unless ``proof`` shows ``v_commit`` hides a value in
    [0, 2^n) for exactly this context."""
    verify_ranges(ctx, [v_commit], proof, n)


def proof_size(n: int, m: int = 1) -> int:
    rounds = (n * m).bit_length() - 1
    return (4 + 2 * rounds) * POINT_BYTES + 5 * SCALAR_BYTES


def prove_ranges(
    ctx: Context, commits: list[Point], values: list[int], blindings: list[Scalar], n: int = 64
) -> bytes:
    """One aggregated proof (§4.3) that every commitment hides a value in [0, 2^n); its size
    grows with log2(n·m), not with m."""
    m = len(commits)
    _check_shape(n, m)
    if not len(values) == len(blindings) == m:
        raise ValueError("as many values and blindings as commitments")
    for c, v, r in zip(commits, values, blindings, strict=True):
        if not 0 <= v < 2**n:
            raise FalseStatementError(f"a committed value is not in [0, 2^{n})")
        if G * Scalar.of(v) + H * r != c:
            raise FalseStatementError("a commitment does not open to its value and blinding")
    nm = n * m
    g, h, u = generators(nm)
    t = _start(ctx, commits, n)
    a_l = [Scalar((v >> i) & 1) for v in values for i in range(n)]
    a_r = [x - Scalar(1) for x in a_l]
    alpha, rho = Scalar.random(), Scalar.random()
    s_l = [Scalar.random() for _ in range(nm)]
    s_r = [Scalar.random() for _ in range(nm)]
    big_a = multiscalar([alpha, *a_l, *a_r], [H, *g, *h])
    big_s = multiscalar([rho, *s_l, *s_r], [H, *g, *h])
    t.append_point("A", big_a)
    t.append_point("S", big_s)
    y, z = t.challenge("y"), t.challenge("z")
    yn = _powers(y, nm)
    zb = _z_blocks(z, n, m)
    l0 = [x - z for x in a_l]
    r0 = [yi * (x + z) + zbi for yi, x, zbi in zip(yn, a_r, zb, strict=True)]
    r1 = [yi * sv for yi, sv in zip(yn, s_r, strict=True)]
    t1 = _ip(l0, r1) + _ip(s_l, r0)
    t2 = _ip(s_l, r1)
    tau1, tau2 = Scalar.random(), Scalar.random()
    big_t1 = G * t1 + H * tau1
    big_t2 = G * t2 + H * tau2
    t.append_point("T1", big_t1)
    t.append_point("T2", big_t2)
    x = t.challenge("x")
    lv = [a + b * x for a, b in zip(l0, s_l, strict=True)]
    rv = [a + b * x for a, b in zip(r0, r1, strict=True)]
    t_hat = _ip(lv, rv)
    tau_x = tau2 * x * x + tau1 * x
    zj = z
    for r in blindings:
        zj = zj * z
        tau_x = tau_x + zj * r
    mu = alpha + rho * x
    t.append_scalar("tau_x", tau_x)
    t.append_scalar("mu", mu)
    t.append_scalar("t_hat", t_hat)
    w = t.challenge("w")
    q = u * w
    # Inner-product argument for <l, r> = t̂ over generators g and h' = y^-i · h.
    hp = [hi * yi for hi, yi in zip(h, _powers(y.inverse(), nm), strict=True)]
    gs, hs, a, b = list(g), hp, lv, rv
    ls, rs = [], []
    while len(a) > 1:
        k = len(a) // 2
        c_l, c_r = _ip(a[:k], b[k:]), _ip(a[k:], b[:k])
        big_l = multiscalar([*a[:k], *b[k:], c_l], [*gs[k:], *hs[:k], q])
        big_r = multiscalar([*a[k:], *b[:k], c_r], [*gs[:k], *hs[k:], q])
        t.append_point("L", big_l)
        t.append_point("R", big_r)
        ls.append(big_l)
        rs.append(big_r)
        e = t.challenge("u")
        e_inv = e.inverse()
        gs = [gl * e_inv + gr * e for gl, gr in zip(gs[:k], gs[k:], strict=True)]
        hs = [hl * e + hr * e_inv for hl, hr in zip(hs[:k], hs[k:], strict=True)]
        a = [al * e + ar * e_inv for al, ar in zip(a[:k], a[k:], strict=True)]
        b = [bl * e_inv + br * e for bl, br in zip(b[:k], b[k:], strict=True)]
    points = [big_a, big_s, big_t1, big_t2, *ls, *rs]
    scalars = [tau_x, mu, t_hat, a[0], b[0]]
    return b"".join(p.to_bytes() for p in points) + b"".join(s.to_bytes() for s in scalars)


def verify_ranges(ctx: Context, commits: list[Point], proof: bytes, n: int = 64) -> None:
    """Raise ProofVerificationError unless ``proof`` shows every commitment hides a value in
    [0, 2^n), for exactly this context and this list of commitments."""
    m = len(commits)
    try:
        _check_shape(n, m)
    except ValueError as exc:
        raise ProofVerificationError(str(exc)) from None
    nm = n * m
    rounds = nm.bit_length() - 1
    pts, sc = _parse(proof, 4 + 2 * rounds, 5)
    big_a, big_s, big_t1, big_t2 = pts[:4]
    ls, rs = pts[4 : 4 + rounds], pts[4 + rounds :]
    tau_x, mu, t_hat, a, b = sc
    g, h, u = generators(nm)
    t = _start(ctx, commits, n)
    t.append_point("A", big_a)
    t.append_point("S", big_s)
    y, z = t.challenge("y"), t.challenge("z")
    t.append_point("T1", big_t1)
    t.append_point("T2", big_t2)
    x = t.challenge("x")
    t.append_scalar("tau_x", tau_x)
    t.append_scalar("mu", mu)
    t.append_scalar("t_hat", t_hat)
    w = t.challenge("w")
    us = []
    for big_l, big_r in zip(ls, rs, strict=True):
        t.append_point("L", big_l)
        t.append_point("R", big_r)
        us.append(t.challenge("u"))
    yn = _powers(y, nm)
    zb = _z_blocks(z, n, m)
    z2 = z * z
    # (1) t̂ = t(x): t̂·G + τₓ·H = Σⱼ z^(1+j)·Vⱼ + δ(y, z)·G + x·T1 + x²·T2, with
    # δ(y, z) = (z − z²)·<1, yⁿᵐ> − Σⱼ z^(2+j)·(2ⁿ − 1).
    sum_y = Scalar.of(sum(s.value for s in yn))
    delta = (z - z2) * sum_y
    zj = z
    v_coefs = []
    for _ in range(m):
        zj = zj * z
        v_coefs.append(zj)
        delta = delta - zj * z * Scalar.of(2**n - 1)
    lhs = G * (t_hat - delta) + H * tau_x
    rhs = multiscalar([*v_coefs, x, x * x], [*commits, big_t1, big_t2])
    if lhs != rhs:
        raise ProofVerificationError("range proof does not verify (polynomial check)")
    # (2) the inner-product argument, all in one multi-scalar check:
    # A + x·S − μ·H − z·<1, g> + <z·yⁿᵐ + zb, h'> + t̂·wU + Σ(u²L + u⁻²R)
    #   = a·<s, g> + b·<s⁻¹, h'> + a·b·wU
    u_inv = [e.inverse() for e in us]
    s_vec = []
    for i in range(nm):
        acc = Scalar(1)
        for j, (e, ei) in enumerate(zip(us, u_inv, strict=True)):
            acc = acc * (e if (i >> (rounds - 1 - j)) & 1 else ei)
        s_vec.append(acc)
    y_inv_n = _powers(y.inverse(), nm)
    g_coef = [a * si + z for si in s_vec]
    h_coef = [(b * s_vec[nm - 1 - i] - (z * yn[i] + zb[i])) * y_inv_n[i] for i in range(nm)]
    u_coef = w * (a * b - t_hat)
    check = multiscalar(
        [*g_coef, *h_coef, u_coef, mu, -Scalar(1), -x,
         *(-(e * e) for e in us), *(-(e * e) for e in u_inv)],
        [*g, *h, u, H, big_a, big_s, *ls, *rs],
    )  # fmt: skip
    if check.to_bytes() != bytes(POINT_BYTES):
        raise ProofVerificationError("range proof does not verify (inner-product argument)")
