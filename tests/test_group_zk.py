"""ristretto255 (RFC 9496 vectors), the Fiat–Shamir transcript, Pedersen commitments and
Sigma proofs: honest proofs verify, every tampering fails, false statements are refused."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardians.crypto.commit import G, H, commit, commit_vector, vector_generator
from guardians.crypto.group import (
    BASEPOINT,
    IDENTITY,
    ORDER,
    InvalidEncodingError,
    Point,
    Scalar,
    multiscalar,
)
from guardians.crypto.transcript import Transcript
from guardians.crypto.zk.sigma import (
    Context,
    FalseStatementError,
    ProofVerificationError,
    prove_equal,
    prove_membership,
    prove_opening,
    verify_equal,
    verify_membership,
    verify_opening,
)

# RFC 9496 Appendix A.1: encodings of 0·B .. 14·B.
MULTIPLES = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76",
    "6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919",
    "94741f5d5d52755ece4f23f044ee27d5d1ea1e2bd196b462166b16152a9d0259",
    "da80862773358b466ffadfe0b3293ab3d9fd53c5ea6c955358f568322daf6a57",
    "e882b131016b52c1d3337080187cf768423efccbb517bb495ab812c4160ff44e",
    "f64746d3c92b13050ed8d80236a7f0007c3b3f962f5ba793d19a601ebb1df403",
    "44f53520926ec81fbd5a387845beb7df85a96a24ece18738bdcfa6a7822a176d",
    "903293d8f2287ebe10e2374dc1a53e0bc887e592699f02d077d5263cdd55601c",
    "02622ace8f7303a31cafc63f8fc48fdc16e1c8c8d234b2f0d6685282a9076031",
    "20706fd788b2720a1ed2a5dad4952b01f413bcf0e7564de8cdc816689e2db95f",
    "bce83f8ba5dd2fa572864c24ba1810f9522bc6004afe95877ac73241cafdab42",
    "e4549ee16b9aa03099ca208c67adafcafa4c3f3e4e5303de6026e3ca8ff84460",
    "aa52e000df2e16f55fb1032fc33bc42742dad6bd5a8fc0be0167436c5948501f",
    "46376b80f409b29dc2b5f6f0c52591990896e5716f41477cd30085ab7f10301e",
]


@pytest.mark.parametrize("k", range(len(MULTIPLES)))
def test_rfc9496_multiples_of_the_generator(k):
    assert Point.base_mul(Scalar(k)).to_bytes().hex() == MULTIPLES[k]
    p = Point.from_bytes(bytes.fromhex(MULTIPLES[k]))
    acc = IDENTITY
    for _ in range(k):
        acc = acc + BASEPOINT
    assert acc == p


def test_rfc9496_hash_to_group_vector():
    import rbcl

    digest = hashlib.sha512(b"Ristretto is traditionally a short shot of espresso coffee").digest()
    out = rbcl.crypto_core_ristretto255_from_hash(digest)
    assert out.hex() == "3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46"


@pytest.mark.parametrize(
    "bad",
    [
        "0100000000000000000000000000000000000000000000000000000000000000",  # negative
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # = p
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # > p
        "00" * 31,  # short
    ],
)
def test_invalid_encodings_are_rejected(bad):
    with pytest.raises(InvalidEncodingError):
        Point.from_bytes(bytes.fromhex(bad))


def test_scalar_encoding_is_canonical():
    assert Scalar.from_bytes(Scalar(5).to_bytes()) == Scalar(5)
    with pytest.raises(InvalidEncodingError):
        Scalar.from_bytes(ORDER.to_bytes(32, "little"))
    with pytest.raises(InvalidEncodingError):
        Scalar.from_bytes(b"\x01" * 31)


small = st.integers(0, ORDER - 1).map(Scalar)


@settings(max_examples=25, deadline=None)
@given(a=small, b=small)
def test_group_laws(a, b):
    pa, pb = Point.base_mul(a), Point.base_mul(b)
    assert pa + pb == pb + pa == Point.base_mul(a + b)
    assert pa - pa == IDENTITY and pa + IDENTITY == pa
    assert BASEPOINT * (a * b) == (BASEPOINT * a) * b
    assert -pa + pa == IDENTITY
    if a.value:
        assert (a * a.inverse()) == Scalar(1)


def test_generators_are_independent_and_documented():
    assert Point.hash_to_group("pedersen/H") == H and H not in (G, IDENTITY)
    gens = {vector_generator(i) for i in range(16)}
    assert len(gens) == 16 and H not in gens and G not in gens


def test_pedersen_is_homomorphic():
    v1, v2, r1, r2 = (Scalar.random() for _ in range(4))
    assert commit(v1, r1) + commit(v2, r2) == commit(v1 + v2, r1 + r2)
    vs = [Scalar.random() for _ in range(5)]
    r = Scalar.random()
    assert commit_vector(vs, r) == multiscalar([*vs, r], [*(vector_generator(i)
                                                              for i in range(5)), H])  # fmt: skip


def test_transcript_separates_labels_and_splits():
    def ch(*items):
        t = Transcript("test")
        for label, data in items:
            t.append(label, data)
        return t.challenge("c")

    assert ch(("a", b"xy")) != ch(("a", b"x"), ("a", b"y"))
    assert ch(("a", b"x")) != ch(("b", b"x"))
    assert ch(("a", b"x")) == ch(("a", b"x"))
    t1, t2 = Transcript("p1"), Transcript("p2")
    assert t1.challenge("c") != t2.challenge("c")


CTX = Context("consortium", 3, "member-01", "contribution")
OTHER_CONTEXTS = [
    Context("other", 3, "member-01", "contribution"),
    Context("consortium", 4, "member-01", "contribution"),
    Context("consortium", 3, "member-02", "contribution"),
    Context("consortium", 3, "member-01", "attribute"),
]


def flips(proof: bytes):
    for i in range(0, len(proof), max(1, len(proof) // 24)):
        b = bytearray(proof)
        b[i] ^= 1 << (i % 8)
        yield bytes(b)


def test_opening_proof():
    v, r = Scalar.random(), Scalar.random()
    c = commit(v, r)
    proof = prove_opening(CTX, c, v, r)
    verify_opening(CTX, c, proof)
    for bad in flips(proof):
        with pytest.raises(ProofVerificationError):
            verify_opening(CTX, c, bad)
    for ctx in OTHER_CONTEXTS:
        with pytest.raises(ProofVerificationError):
            verify_opening(ctx, c, proof)
    with pytest.raises(ProofVerificationError):
        verify_opening(CTX, c + G, proof)
    with pytest.raises(ProofVerificationError):
        verify_opening(CTX, c, proof[:-1])
    with pytest.raises(FalseStatementError):
        prove_opening(CTX, c, v + Scalar(1), r)


def test_equality_proof():
    v, r1, r2 = Scalar.random(), Scalar.random(), Scalar.random()
    c1, c2 = commit(v, r1), commit(v, r2)
    proof = prove_equal(CTX, c1, c2, v, r1, r2)
    verify_equal(CTX, c1, c2, proof)
    for bad in flips(proof):
        with pytest.raises(ProofVerificationError):
            verify_equal(CTX, c1, c2, bad)
    for ctx in OTHER_CONTEXTS:
        with pytest.raises(ProofVerificationError):
            verify_equal(ctx, c1, c2, proof)
    c3 = commit(v + Scalar(1), r2)
    with pytest.raises(ProofVerificationError):
        verify_equal(CTX, c1, c3, proof)
    with pytest.raises(FalseStatementError):
        prove_equal(CTX, c1, c3, v, r1, r2)


@settings(max_examples=10, deadline=None)
@given(values=st.lists(st.integers(-1000, 1000), min_size=1, max_size=6, unique=True),
       data=st.data())  # fmt: skip
def test_membership_proof(values, data):
    value = data.draw(st.sampled_from(values))
    r = Scalar.random()
    c = commit(Scalar.of(value), r)
    proof = prove_membership(CTX, c, values, value, r)
    verify_membership(CTX, c, values, proof)
    for bad in list(flips(proof))[:6]:
        with pytest.raises(ProofVerificationError):
            verify_membership(CTX, c, values, bad)
    with pytest.raises(ProofVerificationError):
        verify_membership(OTHER_CONTEXTS[1], c, values, proof)
    outsider = max(values) + 1
    with pytest.raises(ProofVerificationError):  # the same proof against another list
        verify_membership(CTX, c, [*values[:-1], outsider], proof)
    with pytest.raises(FalseStatementError):
        prove_membership(CTX, commit(Scalar.of(outsider), r), values, outsider, r)
