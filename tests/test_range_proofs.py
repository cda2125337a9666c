"""Bulletproofs range proofs and attribute predicates: completeness, soundness against
tampering, binding to context, bound and commitment, refusal of false statements."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardians.crypto.commit import G, commit
from guardians.crypto.group import Scalar
from guardians.crypto.zk.bulletproofs import proof_size, prove_range, verify_range
from guardians.crypto.zk.predicates import Predicate, prove_predicate, verify_predicate
from guardians.crypto.zk.sigma import Context, FalseStatementError, ProofVerificationError

CTX = Context("consortium", 7, "hospital-3", "attribute/records")


def committed(v):
    r = Scalar.random()
    return commit(Scalar.of(v), r), r


@settings(max_examples=12, deadline=None)
@given(n=st.sampled_from([8, 16, 32]), data=st.data())
def test_honest_range_proofs_verify(n, data):
    v = data.draw(st.integers(0, 2**n - 1))
    c, r = committed(v)
    proof = prove_range(CTX, c, v, r, n)
    assert len(proof) == proof_size(n)
    verify_range(CTX, c, proof, n)


def test_64_bit_extremes():
    for v in (0, 1, 2**64 - 1):
        c, r = committed(v)
        verify_range(CTX, c, prove_range(CTX, c, v, r, 64), 64)


def test_prover_refuses_false_statements():
    for v in (-1, 256, 2**20):
        c, r = committed(v)
        with pytest.raises(FalseStatementError):
            prove_range(CTX, c, v, r, 8)
    c, r = committed(5)
    with pytest.raises(FalseStatementError):
        prove_range(CTX, c, 6, r, 8)


def test_every_byte_of_a_range_proof_matters():
    c, r = committed(200)
    proof = prove_range(CTX, c, 200, r, 8)
    for i in range(len(proof)):
        bad = bytearray(proof)
        bad[i] ^= 1 << (i % 8)
        with pytest.raises(ProofVerificationError):
            verify_range(CTX, c, bytes(bad), 8)


def test_range_proof_is_bound_to_commitment_context_and_size():
    c, r = committed(42)
    proof = prove_range(CTX, c, 42, r, 16)
    with pytest.raises(ProofVerificationError):
        verify_range(CTX, c + G, proof, 16)
    for other in (Context("consortium", 8, "hospital-3", "attribute/records"),
                  Context("consortium", 7, "hospital-4", "attribute/records"),
                  Context("consortium", 7, "hospital-3", "attribute/age")):  # fmt: skip
        with pytest.raises(ProofVerificationError):
            verify_range(other, c, proof, 16)
    with pytest.raises(ProofVerificationError):
        verify_range(CTX, c, proof, 8)  # another bit size: another statement
    with pytest.raises(ProofVerificationError):
        verify_range(CTX, c, proof + b"\x00", 16)


@pytest.mark.parametrize(
    ("value", "pred"),
    [
        (25_000, Predicate(low=10_000)),  # dataset has >= 10,000 records
        (19_500, Predicate(high=20_000)),  # certified before day 20,000
        (18, Predicate(low=18, bits=8)),  # age >= 18 (exactly)
        (750, Predicate(low=0, high=1_000)),  # privacy budget spent <= 1.000 (x1000)
    ],
)
def test_predicates(value, pred):
    c, r = committed(value)
    proof = prove_predicate(CTX, c, value, r, pred)
    verify_predicate(CTX, c, pred, proof)
    # Changing the bound changes the statement.
    shifted = Predicate(
        low=None if pred.low is None else pred.low + 1,
        high=None if pred.high is None else pred.high - 1,
        bits=pred.bits,
    )
    with pytest.raises(ProofVerificationError):
        verify_predicate(CTX, c, shifted, proof)
    with pytest.raises(ProofVerificationError):
        verify_predicate(Context("consortium", 7, "hospital-3", "other"), c, pred, proof)
    other_c, _ = committed(value)
    with pytest.raises(ProofVerificationError):
        verify_predicate(CTX, other_c, pred, proof)


@pytest.mark.parametrize(
    ("value", "pred"),
    [(17, Predicate(low=18, bits=8)), (21_000, Predicate(high=20_000)),
     (1_001, Predicate(low=0, high=1_000))],
)  # fmt: skip
def test_false_predicates_are_refused(value, pred):
    c, r = committed(value)
    with pytest.raises(FalseStatementError):
        prove_predicate(CTX, c, value, r, pred)


def test_a_cheating_prover_cannot_pass_an_out_of_range_value():
    # Bypass the prover's own check: prove 300 in 8 bits by committing to 300 but running the
    # protocol on its low 8 bits. The verifier must reject.
    v = 300
    c, r = committed(v)
    import guardians.crypto.zk.bulletproofs as bp

    low = v & 0xFF
    fake = bp.prove_range(CTX, commit(Scalar.of(low), r), low, r, 8)
    with pytest.raises(ProofVerificationError):
        verify_range(CTX, c, fake, 8)


@pytest.mark.parametrize("m", [2, 4, 8])
def test_aggregated_range_proofs(m):
    from guardians.crypto.zk.bulletproofs import prove_ranges, verify_ranges

    n = 16
    values = [(i * 7919) % 2**n for i in range(m)]
    pairs = [committed(v) for v in values]
    commits = [c for c, _ in pairs]
    proof = prove_ranges(CTX, commits, values, [r for _, r in pairs], n)
    # One proof for m values, logarithmic in n·m.
    assert len(proof) == proof_size(n, m) < m * proof_size(n)
    verify_ranges(CTX, commits, proof, n)
    with pytest.raises(ProofVerificationError):
        verify_ranges(CTX, commits[::-1], proof, n)  # order is part of the statement
    with pytest.raises(ProofVerificationError):
        verify_ranges(CTX, [*commits[:-1], commits[0]], proof, n)
    bad = bytearray(proof)
    bad[40] ^= 4
    with pytest.raises(ProofVerificationError):
        verify_ranges(CTX, commits, bytes(bad), n)
    with pytest.raises(FalseStatementError):
        prove_ranges(CTX, [*commits[:-1], commit(Scalar.of(2 ** n), pairs[-1][1])],
                     [*values[:-1], 2 ** n], [r for _, r in pairs], n)  # fmt: skip
    with pytest.raises(ValueError):
        three = (pairs * 3)[:3]  # m = 3 is not a power of two
        prove_ranges(CTX, [c for c, _ in three], [values[0]] * 3, [r for _, r in three], n)


def test_an_upper_bound_also_proves_non_negativity():
    # Without the implicit lower bound, U − v "small" would hold for v near the group order.
    from guardians.crypto.group import ORDER
    from guardians.crypto.zk.bulletproofs import prove_range as pr

    pred = Predicate(high=100, bits=16)
    assert pred.describe() == "0 ≤ value ≤ 100"
    v = -1_000
    r = Scalar.random()
    c = commit(Scalar.of(v), r)
    with pytest.raises(FalseStatementError):
        prove_predicate(CTX, c, v, r, pred)
    # A cheater who proves only the upper part is rejected (two parts are required).
    le_ctx = Context(CTX.consortium, CTX.round, CTX.member, f"{CTX.purpose}/le/100/16")
    only_le = pr(le_ctx, G * Scalar.of(100) - c, 100 - v, -r, 16)  # a valid proof of U − v
    with pytest.raises(ProofVerificationError):
        verify_predicate(CTX, c, pred, only_le)
    assert Scalar.of(v).value == ORDER - 1000
