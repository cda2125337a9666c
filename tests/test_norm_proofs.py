"""Contribution (L2 norm-bound) proofs over BLS12-381: completeness, soundness against
tampering and cheating provers, batch verification and verifiable aggregation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardians.crypto import bls, scalarvec
from guardians.crypto.group import InvalidEncodingError
from guardians.crypto.zk import norm
from guardians.crypto.zk.sigma import Context, FalseStatementError, ProofVerificationError
from guardians.errors import ConfigError

CTX = Context("consortium", 3, "alice", "contribution")
D = 24
STMT = norm.NormStatement.for_update(D, norm_bound=2.0, scale_bits=8, max_weight=1000)


def _vector(rng: np.random.Generator, d: int, norm_: float, weight: int, scale: int = 8):
    x = rng.normal(size=d)
    x *= norm_ / np.linalg.norm(x)
    v = np.floor(x * weight * 2**scale).astype(np.int64)  # floor keeps ‖v‖ ≤ n·B·2^f + √d
    return np.concatenate([v, [weight]])


@pytest.fixture(scope="module")
def honest():
    vals = _vector(np.random.default_rng(7), D, 1.9, 300)
    com, op = norm.commit(STMT, vals)
    return com, op, norm.prove(CTX, STMT, com, op)


def test_honest_proof_verifies_and_round_trips(honest):
    com, _, proof = honest
    data = proof.to_bytes()
    assert len(data) == STMT.proof_bytes()
    norm.verify(CTX, STMT, com, norm.NormProof.from_bytes(data, STMT))


@settings(max_examples=8, deadline=None)
@given(
    d=st.integers(1, 40),
    frac=st.floats(0.0, 0.97),
    weight=st.integers(0, 1000),
    seed=st.integers(0, 2**32 - 1),
)
def test_honest_proofs_always_verify(d, frac, weight, seed):
    stmt = norm.NormStatement.for_update(d, norm_bound=2.0, scale_bits=8, max_weight=1000)
    vals = _vector(np.random.default_rng(seed), d, 2.0 * frac, weight)
    if sum(int(a) ** 2 for a in vals[:-1]) > stmt.bound_sq * weight**2:
        vals[:-1] = 0  # rounding pushed a tiny weight over: use the zero update
    com, op = norm.commit(stmt, vals)
    norm.verify(CTX, stmt, com, norm.prove(CTX, stmt, com, op))


def test_exactly_at_the_bound_verifies():
    stmt = norm.NormStatement(dim=4, bound_sq=25, weight_bits=4)
    vals = np.array([3 * 2, 4 * 2, 0, 0, 2])  # ‖v‖ = 10 = 5·2
    com, op = norm.commit(stmt, vals)
    norm.verify(CTX, stmt, com, norm.prove(CTX, stmt, com, op))


def _flip(data: bytes, i: int, bit: int = 0) -> bytes:
    b = bytearray(data)
    b[i] ^= 1 << bit
    return bytes(b)


def _fields(stmt: norm.NormStatement) -> list[tuple[str, int, int]]:
    pb, sb, k = bls.POINT_BYTES, bls.SCALAR_BYTES, stmt.projections
    sizes = [("aux", pb), ("w", 16 * k), ("t_main", pb), ("t_aux", pb), ("t1", pb), ("t2", pb),
             ("z_main", sb * (stmt.dim + 1)), ("z_aux", sb * stmt.aux_len), ("sigma_main", sb),
             ("sigma_aux", sb), ("tau", sb)]  # fmt: skip
    out, off = [], 0
    for name, n in sizes:
        out.append((name, off, n))
        off += n
    assert off == stmt.proof_bytes()
    return out


def _rejects(stmt, ctx, com, data) -> bool:
    try:
        norm.verify(ctx, stmt, com, norm.NormProof.from_bytes(data, stmt))
    except (ProofVerificationError, InvalidEncodingError):
        return True
    return False


def test_flipping_any_field_of_the_proof_fails(honest):
    com, _, proof = honest
    data = proof.to_bytes()
    rng = np.random.default_rng(0)
    for name, off, n in _fields(STMT):
        for i in {off, off + n // 2, off + n - 1, off + int(rng.integers(n))}:
            for bit in (0, int(rng.integers(8))):
                assert _rejects(STMT, CTX, com, _flip(data, i, bit)), (name, i - off, bit)


def test_every_byte_of_the_small_fields_matters(honest):
    com, _, proof = honest
    data = proof.to_bytes()
    for name, off, n in _fields(STMT):
        if name in ("z_main", "z_aux", "w"):
            continue
        for i in range(off, off + n):
            assert _rejects(STMT, CTX, com, _flip(data, i, i % 8)), (name, i - off)


def test_wrong_context_statement_or_commitment_fails(honest):
    com, op, proof = honest
    for ctx in (Context("consortium", 4, "alice", "contribution"),
                Context("consortium", 3, "bob", "contribution"),
                Context("other", 3, "alice", "contribution"),
                Context("consortium", 3, "alice", "attribute")):  # fmt: skip
        with pytest.raises(ProofVerificationError):
            norm.verify(ctx, STMT, com, proof)
    # A looser or tighter bound is a different statement.
    for stmt in (norm.NormStatement(D, STMT.bound_sq + 1, STMT.weight_bits),
                 norm.NormStatement(D, STMT.bound_sq - 1, STMT.weight_bits)):  # fmt: skip
        with pytest.raises(ProofVerificationError):
            norm.verify(CTX, stmt, com, proof)
    other, _ = norm.commit(STMT, op.values)  # same values, fresh blinding
    with pytest.raises(ProofVerificationError):
        norm.verify(CTX, STMT, other, proof)


def test_claimed_projection_changes_fail(honest):
    com, _, proof = honest
    for j in (0, STMT.projections - 1):
        w = list(proof.projections)
        w[j] += 1
        bad = dataclasses.replace(proof, projections=tuple(w))
        with pytest.raises(ProofVerificationError):
            norm.verify(CTX, STMT, com, bad)
    w = list(proof.projections)
    w[0] = STMT.accept + 1
    big = dataclasses.replace(proof, projections=tuple(w))
    with pytest.raises(ProofVerificationError, match="acceptance bound"):
        norm.verify(CTX, STMT, com, big)


def test_truncated_or_padded_proofs_are_refused(honest):
    _, _, proof = honest
    data = proof.to_bytes()
    for bad in (data[:-1], data + b"\0", b""):
        with pytest.raises(ProofVerificationError, match="bytes"):
            norm.NormProof.from_bytes(bad, STMT)
    # A response scalar that is not below the order is non-canonical.
    _, off, _ = next(f for f in _fields(STMT) if f[0] == "tau")
    nc = data[:off] + (bls.ORDER + 1).to_bytes(32, "little")
    with pytest.raises(ProofVerificationError, match="non-canonical"):
        norm.NormProof.from_bytes(nc, STMT)


def test_prover_refuses_false_statements():
    vals = _vector(np.random.default_rng(1), D, 2.5, 300)  # norm 2.5 > bound 2.0
    com, op = norm.commit(STMT, vals)
    with pytest.raises(FalseStatementError, match="exceeds the bound"):
        norm.prove(CTX, STMT, com, op)
    vals = _vector(np.random.default_rng(1), D, 1.0, STMT.max_weight + 1)
    com, op = norm.commit(STMT, vals)
    with pytest.raises(FalseStatementError, match="weight"):
        norm.prove(CTX, STMT, com, op)
    with pytest.raises(FalseStatementError):
        norm.prove(CTX, STMT, com, norm.Opening(np.concatenate([vals[:-1], [-1]]), 0))


def test_precomputed_masks_prove_once_for_their_dimension():
    vals = _vector(np.random.default_rng(11), D, 1.5, 300)
    com, op = norm.commit(STMT, vals)
    masks = norm.precompute_masks(STMT)
    proof = norm.prove(CTX, STMT, com, op, masks)
    norm.verify(CTX, STMT, com, proof)
    assert proof.t_main == masks.point and masks.used
    # A second response under the same masks would reveal the update: refused.
    with pytest.raises(norm.MasksUsedError):
        norm.prove(CTX, STMT, com, op, masks)
    other = norm.NormStatement.for_update(D + 1, norm_bound=2.0, scale_bits=8, max_weight=1000)
    with pytest.raises(ConfigError, match="masks for 25 coordinates"):
        norm.prove(CTX, STMT, com, op, norm.precompute_masks(other))
    # A refused statement computes nothing with the masks: they stay unspent, for one proof.
    bad = _vector(np.random.default_rng(1), D, 2.5, 300)
    com_b, op_b = norm.commit(STMT, bad)
    fresh = norm.precompute_masks(STMT)
    with pytest.raises(FalseStatementError):
        norm.prove(CTX, STMT, com_b, op_b, fresh)
    assert not fresh.used
    norm.verify(CTX, STMT, com, norm.prove(CTX, STMT, com, op, fresh))
    with pytest.raises(norm.MasksUsedError):
        norm._prove_unchecked(CTX, STMT, com, op, 0, fresh)  # the protocol itself checks too
    assert "mu" not in repr(fresh) and "rho" not in repr(fresh)  # no secrets in logs
    # Fresh masks every time: two proofs of one commitment share no T.
    again = norm.prove(CTX, STMT, com, op)
    assert again.t_main != proof.t_main and again.z_main != proof.z_main


@pytest.mark.parametrize("excess", [1, 10**6])
def test_cheating_prover_over_the_bound_is_rejected(excess):
    """Run the protocol on a false statement, with the slack's low bits (what a cheater would
    have to do): verification fails."""
    vals = _vector(np.random.default_rng(2), D, 1.5, 300)
    norm_sq = sum(int(a) ** 2 for a in vals[:-1])
    stmt = norm.NormStatement(D, bound_sq=(norm_sq - excess) // 300**2, weight_bits=10)
    com, op = norm.commit(stmt, vals)
    slack = stmt.bound_sq * 300**2 - norm_sq
    assert slack < 0
    proof = norm._prove_unchecked(CTX, stmt, com, op, slack)
    with pytest.raises(ProofVerificationError):
        norm.verify(CTX, stmt, com, proof)


def test_cheating_prover_with_out_of_range_weight_is_rejected():
    vals = _vector(np.random.default_rng(3), D, 0.5, 5)
    vals[-1] = STMT.max_weight + 6  # claims a weight beyond the range; bits cannot hold it
    com, op = norm.commit(STMT, vals)
    proof = norm._prove_unchecked(CTX, STMT, com, op, 0)
    with pytest.raises(ProofVerificationError):
        norm.verify(CTX, STMT, com, proof)


def test_batch_verification_names_the_bad_proof(honest):
    com, _, proof = honest
    ctx_b = Context("consortium", 3, "bob", "contribution")
    vals_b = _vector(np.random.default_rng(5), D, 1.0, 20)
    com_b, op_b = norm.commit(STMT, vals_b)
    proof_b = norm.prove(ctx_b, STMT, com_b, op_b)
    assert norm.verify_batch(STMT, [(CTX, com, proof), (ctx_b, com_b, proof_b)]) == {}
    # bob's proof presented as alice's (a replay under another identity) and a tampered one
    bad = norm.NormProof.from_bytes(_flip(proof.to_bytes(), 60), STMT)
    res = norm.verify_batch(STMT, [(CTX, com, proof), (CTX, com_b, proof_b), (CTX, com, bad)])
    assert set(res) == {1, 2}


def test_aggregate_opens_the_product_of_commitments():
    rng = np.random.default_rng(9)
    vecs = [_vector(rng, D, 1.0, w) for w in (10, 20, 30)]
    pairs = [norm.commit(STMT, v) for v in vecs]
    total = np.sum(vecs, axis=0)
    blind = sum(op.blinding for _, op in pairs) % bls.ORDER
    coms = [c for c, _ in pairs]
    norm.check_aggregate(STMT, coms, total, blind)
    lied = total.copy()
    lied[4] += 1  # a coordinator that shifts one coordinate of the sum
    with pytest.raises(norm.AggregateMismatchError):
        norm.check_aggregate(STMT, coms, lied, blind)
    with pytest.raises(norm.AggregateMismatchError):
        norm.check_aggregate(STMT, coms[:2], total, blind)  # a contributor left out
    with pytest.raises(norm.AggregateMismatchError):
        norm.check_aggregate(STMT, coms, total, blind + 1)
    with pytest.raises(norm.AggregateMismatchError, match="shape"):
        norm.check_aggregate(STMT, coms, total[:-1], blind)
    limbs = sum(norm.blinding_limbs(op.blinding) for _, op in pairs)
    assert norm.blinding_from_limbs(limbs) == blind


def test_statement_rejects_parameters_that_could_wrap():
    with pytest.raises(ConfigError):
        norm.NormStatement(dim=2**40, bound_sq=2**100, weight_bits=60)
    with pytest.raises(ConfigError):
        norm.NormStatement(dim=4, bound_sq=0, weight_bits=4)
    with pytest.raises(ConfigError):
        norm.NormStatement(dim=4, bound_sq=4, weight_bits=4, projections=40)
    with pytest.raises(ConfigError):
        norm.NormStatement.for_update(4, float("nan"), 8, 10)


def test_point_and_scalar_encodings_are_strict():
    g = bls.generator("test/encodings")
    enc = bls.point_bytes(g)
    assert bls.point_from_bytes(enc) == g
    for bad in (enc[:-1], enc + b"\0", bytes(48), b"\xff" * 48, b"\xc0" + b"\1" * 47):
        with pytest.raises(InvalidEncodingError):
            bls.point_from_bytes(bad)
    with pytest.raises(InvalidEncodingError):
        bls.scalar_from_bytes(bls.ORDER.to_bytes(32, "little"))
    assert bls.scalar_from_bytes((bls.ORDER - 1).to_bytes(32, "little")) == bls.ORDER - 1


@pytest.mark.parametrize("workers", [1, 3, 5])
def test_msm_shares_over_any_number_of_cores_agree(monkeypatch, workers):
    from concurrent.futures import ThreadPoolExecutor

    pts = bls.generators("test/msm", 21_000)  # 5 shares of 4,200 terms with 5 workers
    rng = np.random.default_rng(5)
    scalars = [int(a) * (2**190) + int(b) for a, b in rng.integers(0, 2**60, size=(21_000, 2))]
    want = bls.msm(pts, scalars)
    with ThreadPoolExecutor(workers) as pool:
        monkeypatch.setattr(bls, "_WORKERS", workers)
        monkeypatch.setattr(bls, "_pool", pool if workers > 1 else None)
        assert bls._shares(len(pts)) == workers
        assert bls.msm(pts, scalars) == want
        # Two jobs at once, one below the split: each still sums to its own MSM.
        a, b = bls._msm_many([(pts, bls._ark(scalars)), (pts[:100], bls._ark(scalars[:100]))])
        assert a == want and b == bls.msm(pts[:100], scalars[:100])


def test_msm_matches_repeated_addition():
    pts = bls.generators("test/msm", 9000)  # above the split over cores
    rng = np.random.default_rng(4)
    small = rng.integers(-(2**40), 2**40, size=9000)
    big = [int(a) * (2**200) + 3 for a in small]
    assert bls.msm_small(pts, small) == bls.msm(pts, [int(a) for a in small])
    ref = bls.Point.identity()
    for p, k in zip(pts[:50], big[:50], strict=True):
        ref = ref + bls.mul(p, k)
    assert bls.msm(pts[:50], big[:50]) == ref


def test_generator_cache_is_checked_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("GUARDIANS_STATE_DIR", str(tmp_path))
    label = "test/cache"
    fresh = bls._derive(label, 0, 12)
    assert bls.generators(label, 12) == fresh
    path = bls._cache_file(label)
    assert path.stat().st_size == 32 + 12 * 96
    # Bit rot in one coordinate: the digest no longer matches, the cache is rebuilt.
    data = bytearray(path.read_bytes())
    data[32 + 5 * 96 + 7] ^= 1
    path.write_bytes(bytes(data))
    monkeypatch.setattr(bls, "_generators", {})
    assert bls.generators(label, 12) == fresh
    # Corrupt the file (every entry a valid but wrong point): loading rejects it.
    other = bls._derive("test/other", 0, 12)
    path.write_bytes(b"".join(bytes(p.to_xy_bytes_be()) for p in other))
    monkeypatch.setattr(bls, "_generators", {})
    assert bls.generators(label, 12) == fresh
    path.write_bytes(b"garbage")
    monkeypatch.setattr(bls, "_generators", {})
    assert bls.generators(label, 12) == fresh


def test_projections_are_exact_for_large_dimensions_and_entries():
    """The prover's projections are exact integers even where float64 sums of 32-bit halves
    would not be (d = 2^22 small negative entries: each low half is close to 2^32)."""
    rng = np.random.default_rng(12)
    d = 1 << 22
    x = rng.integers(-1000, 0, size=d, dtype=np.int64)
    rows = norm._rows(bytes(32), 2, d)
    z = bytes(32 * d)  # the scalar vector projected alongside: zeros here
    got_z, got = scalarvec.project_with(rows, z, x)
    want = [int(x[rows[j] == 1].sum()) for j in range(2)]
    assert got == want and got_z == [0, 0]
    big = np.array([2**62 - 1, -(2**62), 5, -7], dtype=np.int64)
    r = np.array([[1, 1, 1, 1], [1, 0, 1, 0]], dtype=np.uint8)
    ints = [bls.ORDER - 1, 3, 2**200, 1]
    got_z, got = scalarvec.project_with(r, scalarvec.from_ints(ints), big)
    assert got == [sum(int(v) for v in big), 2**62 - 1 + 5]
    assert got_z == [sum(ints) % bls.ORDER, (ints[0] + ints[2]) % bls.ORDER]


def test_projections_stay_exact_at_the_float32_bound():
    """Every byte limb at its maximum over a whole block of columns (and into a second block):
    the largest sums the float32 products must carry exactly."""
    n = (1 << 16) + 3
    rows = np.ones((3, n), dtype=np.uint8)
    rows[1, ::2] = 0
    raw = b"\xff" * (32 * n)  # 2^256 − 1 per entry: not canonical, the worst case for limbs
    x = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    x[::3] = np.iinfo(np.int64).max
    got_z, got_x = scalarvec.project_with(rows, raw, x)
    for j in range(3):
        sel = rows[j] == 1
        assert got_z[j] == int(sel.sum()) * (2**256 - 1) % bls.ORDER
        assert got_x[j] == sum(int(v) for v in x[sel])
    assert scalarvec.project(rows, raw) == got_z
    # Large random bytes over more than two blocks: a block of 2^17 columns would round.
    rng = np.random.default_rng(8)
    n = (1 << 17) + 5
    rows = np.ones((2, n), dtype=np.uint8)
    raw = rng.integers(128, 256, size=32 * n, dtype=np.uint8).tobytes()  # sums above 2^24
    ints = [int.from_bytes(raw[32 * i : 32 * i + 32], "little") for i in range(n)]
    assert scalarvec.project(rows, raw) == [sum(ints) % bls.ORDER] * 2
    assert 255 * scalarvec._PROJECT_BLOCK[1] < 1 << 24
    with pytest.raises(ValueError, match="uint8"):
        scalarvec.project(rows.astype(np.float32), raw)


def test_contribution_bound_must_fit_the_clip_range():
    from guardians.protocol.secagg import contrib
    from guardians.protocol.secagg.quantize import FixedPoint

    with pytest.raises(ConfigError, match="clip range"):
        contrib.statement(10, 9.0, FixedPoint(clip=8.0), 100)


# --- packed scalar vectors (the verifier's and prover's numpy arithmetic) -------------------
def _edge_scalars(rng: np.random.Generator, n: int) -> list[int]:
    """Random scalars plus the extremes a limb computation gets wrong first."""
    r = bls.ORDER
    vals = [int.from_bytes(rng.bytes(32), "little") % r for _ in range(n)]
    return [0, 1, r - 1, r - 2**16, 2**255 % r, *vals]


@pytest.mark.parametrize("chunk", [None, 7])
def test_scalar_vector_arithmetic_matches_python_integers(monkeypatch, chunk):
    if chunk:  # the chunked paths of large vectors, on a small one
        monkeypatch.setattr(scalarvec, "_CHUNK_ROWS", chunk)
    rng = np.random.default_rng(21)
    ints = _edge_scalars(rng, 60)
    raw = scalarvec.from_ints(ints)
    assert scalarvec.to_ints(raw) == ints
    assert scalarvec.sum_squares(raw) == sum(z * z for z in ints) % bls.ORDER
    rows = rng.integers(0, 2, (9, len(ints))).astype(np.uint8)
    assert scalarvec.project(rows, raw) == [
        sum(int(a) * z for a, z in zip(row, ints, strict=True)) % bls.ORDER for row in rows
    ]
    x = rng.integers(-(2**62), 2**62, len(ints))
    x[:3] = [2**63 - 1, -(2**63), -1]
    assert scalarvec.dot_small(raw, x) == sum(
        z * int(a) for z, a in zip(ints, x.tolist(), strict=True)) % bls.ORDER  # fmt: skip


def test_combined_scalars_are_exact_and_feed_the_msm():
    rng = np.random.default_rng(22)
    n = 40
    vecs = [_edge_scalars(rng, n - 5) for _ in range(4)]
    weights = [1, 2**128 - 1, 0, int.from_bytes(rng.bytes(16), "little")]
    width = scalarvec.combined_width(len(vecs))
    out = scalarvec.combine([scalarvec.from_ints(v) for v in vecs], weights)
    assert len(out) == width * n
    got = [int.from_bytes(out[width * i : width * (i + 1)], "little") for i in range(n)]
    cols = zip(*vecs, strict=True)
    assert got == [sum(w * z for w, z in zip(weights, col, strict=True)) for col in cols]
    pts = bls.generators("test/combine", n)
    assert bls.msm_packed(pts, out, width) == bls.msm(pts, got)
    with pytest.raises(ValueError):
        scalarvec.combine([scalarvec.from_ints(vecs[0])], [2**128])
    with pytest.raises(ValueError):
        bls.msm_packed(pts, out[:-1], width)
    with pytest.raises(ValueError, match="different lengths"):
        scalarvec.combine([scalarvec.from_ints([1, 2, 3]), scalarvec.from_ints([10])], [1, 1])


def test_packed_scalars_must_be_canonical():
    good = scalarvec.from_ints([5, bls.ORDER - 1])
    assert scalarvec.from_bytes(good, 2) == good
    for bad_value in (bls.ORDER, 2**256 - 1):
        raw = good + bad_value.to_bytes(32, "little")
        with pytest.raises(InvalidEncodingError, match="scalar 2 is non-canonical"):
            scalarvec.from_bytes(raw, 3)
    with pytest.raises(InvalidEncodingError, match="64 bytes"):
        scalarvec.from_bytes(good[:-1], 2)


def test_random_scalar_vectors_are_canonical_and_fresh():
    a, b = scalarvec.random(5000), scalarvec.random(5000)
    assert len(a) == 32 * 5000 and a != b
    assert scalarvec.below_order(a, 5000).all()
    top = [z >> 250 for z in scalarvec.to_ints(a)]  # the top bits are used: no truncation
    assert max(top) >= (bls.ORDER >> 250) - 1


def test_signed_small_msm_matches_the_general_one():
    pts = bls.generators("test/msm", 9000)
    rng = np.random.default_rng(23)
    v = rng.integers(-(2**30), 2**30, size=9000)
    v[:4] = [0, -(2**63), 2**63 - 1, -1]
    assert bls.msm_small(pts, v) == bls.msm(pts, [int(a) for a in v])
    pos = np.abs(v[4:])
    assert bls.msm_small(pts[4:], pos) == bls.msm(pts[4:], [int(a) for a in pos])
    assert bls.msm_small(pts[:0], v[:0]) == bls.Point.identity()


def test_a_non_canonical_response_in_a_proof_object_is_refused(honest):
    com, _, proof = honest
    z = bytearray(proof.z_main)
    z[:32] = bls.ORDER.to_bytes(32, "little")  # ≡ 0, but not its canonical encoding
    bad = dataclasses.replace(proof, z_main=bytes(z))
    with pytest.raises(ProofVerificationError, match="non-canonical"):
        norm.verify(CTX, STMT, com, bad)
    with pytest.raises(ProofVerificationError, match="wrong shape"):
        norm.verify(CTX, STMT, com, dataclasses.replace(proof, z_main=proof.z_main[:-32]))
