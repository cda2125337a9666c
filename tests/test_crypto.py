"""The crypto layer: published test vectors for the primitives we build on, and properties of what
Guardians composes from them (composite signatures, hybrid secrets, AEAD, Shamir, mask PRG)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa, x25519
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from guardians.crypto import aead, prg, shamir
from guardians.crypto.errors import (
    CryptoError,
    DecryptionError,
    KeyFormatError,
    ShareError,
    SignatureError,
)
from guardians.crypto.hashing import PREFIX, ct_equal, frame_all, tagged_hash
from guardians.crypto.hybrid import MLKEM768_CT, HybridKeyPair, HybridPublic
from guardians.crypto.kdf import derive, hkdf
from guardians.crypto.sign import (
    ED25519_SIG,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    SigningKey,
    VerifyKey,
)


def h(text: str) -> bytes:
    """Hex as printed in the RFCs (spaces, colons and newlines allowed)."""
    return bytes.fromhex("".join(c for c in text if c not in " :\n"))


def flip(data: bytes, i: int, bit: int = 1) -> bytes:
    b = bytearray(data)
    b[i] ^= bit
    return bytes(b)


# --- HKDF: RFC 5869, appendix A, test cases 1-3 (SHA-256) ---------------------------------------
RFC5869 = [
    pytest.param(
        h("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
        h("000102030405060708090a0b0c"),
        h("f0f1f2f3f4f5f6f7f8f9"),
        42,
        h("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
        id="case1-basic",
    ),
    pytest.param(
        bytes(range(0x00, 0x50)),
        bytes(range(0x60, 0xB0)),
        bytes(range(0xB0, 0x100)),
        82,
        h(
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
            "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
            "cc30c58179ec3e87c14c01d5c1f3434f1d87"
        ),
        id="case2-long-inputs",
    ),
    pytest.param(
        h("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
        b"",
        b"",
        42,
        h("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
        id="case3-empty-salt-and-info",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), RFC5869)
def test_hkdf_rfc5869_vectors(ikm, salt, info, length, okm):
    assert len(ikm) in (22, 80)
    assert hkdf(ikm, salt=salt, info=info, length=length) == okm


def test_hkdf_no_salt_equals_zero_salt():
    # RFC 5869 §2.2: an absent salt is HashLen zero bytes (derive() relies on this).
    ikm = h("0b" * 22)
    assert hkdf(ikm, salt=None, info=b"x") == hkdf(ikm, salt=bytes(32), info=b"x")


def test_derive_is_bound_to_label_and_context():
    ikm = bytes(range(32))
    base = derive(ikm, "label", b"a", b"bc")
    assert len(base) == 32
    assert derive(ikm, "label", b"a", b"bc") == base
    assert derive(ikm, "label2", b"a", b"bc") != base
    assert derive(ikm, "label", b"ab", b"c") != base  # framing: no ambiguity in the split
    assert len(derive(ikm, "label", length=64)) == 64
    assert derive(bytes(32), "label", b"a", b"bc") != base


# --- ChaCha20-Poly1305: RFC 8439 §2.8.2 ---------------------------------------------------------
RFC8439_KEY = bytes(range(0x80, 0xA0))
RFC8439_NONCE = h("07 00 00 00") + h("40 41 42 43 44 45 46 47")
RFC8439_AD = h("50 51 52 53 c0 c1 c2 c3 c4 c5 c6 c7")
RFC8439_PT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
    b"future, sunscreen would be it."
)
RFC8439_CT = h(
    """
    d3 1a 8d 34 64 8e 60 db 7b 86 af bc 53 ef 7e c2
    a4 ad ed 51 29 6e 08 fe a9 e2 b5 a7 36 ee 62 d6
    3d be a4 5e 8c a9 67 12 82 fa fb 69 da 92 72 8b
    1a 71 de 0a 9e 06 0b 29 05 d6 a5 b6 7e cd 3b 36
    92 dd bd 7f 2d 77 8b 8c 98 03 ae e3 28 09 1b 58
    fa b3 24 e4 fa d6 75 94 55 85 80 8b 48 31 d7 bc
    3f f4 de f0 8e 4b 7a 9d e5 76 d2 65 86 ce c6 4b
    61 16
    """
)
RFC8439_TAG = h("1a:e1:0b:59:4f:09:e2:6a:7e:90:2e:cb:d0:60:06:91")
RFC8439_SEALED = RFC8439_NONCE + RFC8439_CT + RFC8439_TAG


def test_aead_rfc8439_vector_opens():
    assert len(RFC8439_PT) == len(RFC8439_CT) == 114
    assert aead.open_(RFC8439_KEY, RFC8439_SEALED, RFC8439_AD) == RFC8439_PT


def test_aead_rfc8439_vector_tampered_is_rejected():
    for i in range(len(RFC8439_SEALED)):
        with pytest.raises(DecryptionError):
            aead.open_(RFC8439_KEY, flip(RFC8439_SEALED, i), RFC8439_AD)
    with pytest.raises(DecryptionError):
        aead.open_(RFC8439_KEY, RFC8439_SEALED, RFC8439_AD[:-1])


AEAD_KEY = bytes(range(32))


@settings(deadline=None, max_examples=50)
@given(pt=st.binary(max_size=200), ad=st.binary(max_size=64))
def test_aead_round_trip(pt, ad):
    sealed = aead.seal(AEAD_KEY, pt, ad)
    assert len(sealed) == aead.NONCE_BYTES + len(pt) + aead.TAG_BYTES
    assert aead.open_(AEAD_KEY, sealed, ad) == pt


def test_aead_nonces_are_fresh():
    a = aead.seal(AEAD_KEY, b"same message", b"ad")
    b = aead.seal(AEAD_KEY, b"same message", b"ad")
    assert a[: aead.NONCE_BYTES] != b[: aead.NONCE_BYTES]
    assert a != b


def test_aead_rejects_every_flipped_byte():
    sealed = aead.seal(AEAD_KEY, b"shares of a seed", b"ad")
    for i, bit in itertools.product(range(len(sealed)), (0x01, 0x80)):
        with pytest.raises(DecryptionError):
            aead.open_(AEAD_KEY, flip(sealed, i, bit), b"ad")


def test_aead_rejects_wrong_ad_wrong_key_and_truncation():
    sealed = aead.seal(AEAD_KEY, b"shares of a seed", b"ad")
    assert aead.open_(AEAD_KEY, sealed, b"ad") == b"shares of a seed"
    for ad in (b"", b"ae", b"ad\x00", b"a"):
        with pytest.raises(DecryptionError):
            aead.open_(AEAD_KEY, sealed, ad)
    with pytest.raises(DecryptionError):
        aead.open_(flip(AEAD_KEY, 0), sealed, b"ad")
    for n in range(len(sealed)):
        with pytest.raises(DecryptionError):
            aead.open_(AEAD_KEY, sealed[:n], b"ad")
    with pytest.raises(DecryptionError):
        aead.open_(AEAD_KEY, sealed + b"\x00", b"ad")


# --- the library layer: X25519 (RFC 7748 §6.1) and Ed25519 (RFC 8032 §7.1) ---------------------
def test_x25519_rfc7748_section_6_1():
    a = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    a_pub = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    b = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    b_pub = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    k = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    alice = x25519.X25519PrivateKey.from_private_bytes(a)
    bob = x25519.X25519PrivateKey.from_private_bytes(b)
    assert alice.public_key().public_bytes_raw() == a_pub
    assert bob.public_key().public_bytes_raw() == b_pub
    assert alice.exchange(x25519.X25519PublicKey.from_public_bytes(b_pub)) == k
    assert bob.exchange(x25519.X25519PublicKey.from_public_bytes(a_pub)) == k


RFC8032 = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="TEST1",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="TEST2",
    ),
]


@pytest.mark.parametrize(("sk", "pk", "msg", "sig"), RFC8032)
def test_ed25519_rfc8032_section_7_1(sk, pk, msg, sig):
    key = ed25519.Ed25519PrivateKey.from_private_bytes(h(sk))
    assert key.public_key().public_bytes_raw() == h(pk)
    assert key.sign(h(msg)) == h(sig)  # Ed25519 is deterministic
    pub = ed25519.Ed25519PublicKey.from_public_bytes(h(pk))
    pub.verify(h(sig), h(msg))
    with pytest.raises(InvalidSignature):
        pub.verify(flip(h(sig), 0), h(msg))


# --- composite signatures ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def alice() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def bob() -> SigningKey:
    return SigningKey.generate()


def test_sign_verify_round_trip(alice):
    sig = alice.sign(b"message", b"ctx")
    assert len(sig) == SIGNATURE_BYTES
    assert len(alice.verify_key.raw) == PUBLIC_KEY_BYTES
    alice.verify_key.verify(sig, b"message", b"ctx")
    VerifyKey(bytes(alice.verify_key.raw)).verify(sig, b"message", b"ctx")


def test_signature_components_are_standard(alice):
    """The halves are a plain Ed25519 signature over the framed (label, context, message) and a
    plain ML-DSA-65 signature with FIPS 204 context "guardians:" + context."""
    sig = alice.sign(b"message", b"ctx")
    raw = alice.verify_key.raw
    ed25519.Ed25519PublicKey.from_public_bytes(raw[:32]).verify(
        sig[:ED25519_SIG], frame_all(PREFIX + b"composite-sig/ed25519+mldsa65", b"ctx", b"message")
    )
    mldsa.MLDSA65PublicKey.from_public_bytes(raw[32:]).verify(
        sig[ED25519_SIG:], b"message", b"guardians:ctx"
    )


@pytest.mark.parametrize("where", [0, 17, ED25519_SIG - 1, ED25519_SIG, 1000, SIGNATURE_BYTES - 1])
def test_flipped_signature_byte_is_rejected(alice, where):
    sig = alice.sign(b"message", b"ctx")
    with pytest.raises(SignatureError):
        alice.verify_key.verify(flip(sig, where), b"message", b"ctx")


def test_signature_rejects_wrong_message_context_and_key(alice, bob):
    sig = alice.sign(b"message", b"ctx")
    with pytest.raises(SignatureError):
        alice.verify_key.verify(sig, b"messagE", b"ctx")
    with pytest.raises(SignatureError):
        alice.verify_key.verify(sig, b"message", b"ctx2")
    with pytest.raises(SignatureError):
        alice.verify_key.verify(sig, b"message", b"")
    with pytest.raises(SignatureError):
        bob.verify_key.verify(sig, b"message", b"ctx")
    with pytest.raises(SignatureError):
        alice.verify_key.verify(sig[:-1], b"message", b"ctx")
    with pytest.raises(SignatureError):
        alice.verify_key.verify(sig + b"\x00", b"message", b"ctx")
    with pytest.raises(SignatureError):
        alice.verify_key.verify(bytes(SIGNATURE_BYTES), b"message", b"ctx")


def test_context_and_message_are_not_confusable(alice):
    # (context, message) framing: moving bytes across the boundary is a different statement.
    sig = alice.sign(b"bc", b"a")
    with pytest.raises(SignatureError):
        alice.verify_key.verify(sig, b"c", b"ab")


def test_both_halves_must_verify(alice):
    good = alice.sign(b"message", b"ctx")
    other = alice.sign(b"another message", b"ctx")
    ed_only = good[:ED25519_SIG] + other[ED25519_SIG:]  # Ed25519 half valid, ML-DSA half not
    ml_only = other[:ED25519_SIG] + good[ED25519_SIG:]  # ML-DSA half valid, Ed25519 half not
    with pytest.raises(SignatureError):
        alice.verify_key.verify(ed_only, b"message", b"ctx")
    with pytest.raises(SignatureError):
        alice.verify_key.verify(ml_only, b"message", b"ctx")
    with pytest.raises(SignatureError):  # nor for the message the other half was made over
        alice.verify_key.verify(ed_only, b"another message", b"ctx")
    with pytest.raises(SignatureError):
        alice.verify_key.verify(ml_only, b"another message", b"ctx")


def test_key_formats(alice):
    raw = alice.verify_key.raw
    for bad in (b"", raw[:-1], raw + b"\x00", raw[:32]):
        with pytest.raises(KeyFormatError):
            VerifyKey(bad)
    for bad in (b"", bytes(32), bytes(63), bytes(65)):
        with pytest.raises(KeyFormatError):
            SigningKey.from_seed(bad)


def test_from_seed_is_deterministic():
    seed = bytes(range(64))
    a, b = SigningKey.from_seed(seed), SigningKey.from_seed(seed)
    assert a.verify_key == b.verify_key
    b.verify_key.verify(a.sign(b"m", b"c"), b"m", b"c")
    c = SigningKey.from_seed(flip(seed, 0))  # Ed25519 half changes
    d = SigningKey.from_seed(flip(seed, 40))  # ML-DSA half changes
    assert c.verify_key.raw[:32] != a.verify_key.raw[:32]
    assert c.verify_key.raw[32:] == a.verify_key.raw[32:]
    assert d.verify_key.raw[:32] == a.verify_key.raw[:32]
    assert d.verify_key.raw[32:] != a.verify_key.raw[32:]
    with pytest.raises(SignatureError):
        c.verify_key.verify(a.sign(b"m", b"c"), b"m", b"c")
    assert a.verify_key.fingerprint() == b.verify_key.fingerprint()
    assert a.verify_key.fingerprint() != c.verify_key.fingerprint()


# --- hybrid X25519 + ML-KEM-768 pair secrets ----------------------------------------------------
@pytest.fixture(scope="module")
def pair() -> tuple[HybridKeyPair, HybridKeyPair]:
    return HybridKeyPair(), HybridKeyPair()


def test_hybrid_agreement(pair):
    lo, hi = pair
    ct, secret = lo.encapsulate_to(hi.public, "secagg/pair", b"ctx")
    assert len(ct) == MLKEM768_CT
    assert len(secret) == 32
    assert hi.decapsulate_from(lo.public, ct, "secagg/pair", b"ctx") == secret
    ct2, secret2 = lo.encapsulate_to(hi.public, "secagg/pair", b"ctx")
    assert ct2 != ct
    assert secret2 != secret  # fresh encapsulation, fresh secret
    assert hi.decapsulate_from(lo.public, ct2, "secagg/pair", b"ctx") == secret2


def test_hybrid_secret_is_bound_to_label_context_and_keys(pair):
    lo, hi = pair
    ct, secret = lo.encapsulate_to(hi.public, "secagg/pair", b"ctx")
    assert hi.decapsulate_from(lo.public, ct, "secagg/pair", b"ctx2") != secret
    assert hi.decapsulate_from(lo.public, ct, "secagg/pair2", b"ctx") != secret
    third = HybridKeyPair()
    assert hi.decapsulate_from(third.public, ct, "secagg/pair", b"ctx") != secret
    # a third party holding the ciphertext but the wrong keys gets something else
    assert third.decapsulate_from(lo.public, ct, "secagg/pair", b"ctx") != secret


@pytest.mark.parametrize("where", [0, 500, MLKEM768_CT - 1])
def test_hybrid_tampered_ciphertext_gives_another_secret(pair, where):
    lo, hi = pair
    ct, secret = lo.encapsulate_to(hi.public, "secagg/pair", b"ctx")
    other = hi.decapsulate_from(lo.public, flip(ct, where), "secagg/pair", b"ctx")  # no exception
    assert len(other) == 32
    assert other != secret


def test_hybrid_key_formats(pair):
    lo, hi = pair
    pub = hi.public
    for x, k in ((pub.x25519[:-1], pub.mlkem), (pub.x25519, pub.mlkem[:-1]), (b"", b"")):
        with pytest.raises(KeyFormatError):
            HybridPublic(x, k)
    ct, _ = lo.encapsulate_to(pub, "l", b"c")
    for bad in (ct[:-1], ct + b"\x00", b""):
        with pytest.raises(KeyFormatError):
            hi.decapsulate_from(lo.public, bad, "l", b"c")
    low_order = HybridPublic(bytes(32), pub.mlkem)  # X25519 gives the all-zero secret
    with pytest.raises(KeyFormatError):
        lo.encapsulate_to(low_order, "l", b"c")


# --- Shamir sharing over GF(2^521 - 1) ----------------------------------------------------------
def lagrange_at(points: list[tuple[int, int]], x: int) -> int:
    """Value at x of the polynomial of degree < len(points) through the points, mod P."""
    p = shamir.P
    acc = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * (x - xj) % p
                den = den * (xi - xj) % p
        acc = (acc + yi * num * pow(den, -1, p)) % p
    return acc


@st.composite
def sharings(draw):
    n = draw(st.integers(1, 10))
    t = draw(st.integers(1, n))
    xs = draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n, unique=True))
    subset = draw(st.permutations(range(n)))[: draw(st.integers(t, n))]
    secret = draw(st.binary(min_size=32, max_size=32))
    return secret, t, xs, subset


@settings(deadline=None, max_examples=100)
@given(sharings())
def test_shamir_any_t_shares_reconstruct(case):
    secret, t, xs, subset = case
    shares = shamir.split(secret, t, xs)
    assert len(shares) == len(xs)
    assert all(len(s) == shamir.SHARE_BYTES for s in shares)
    points = [(xs[i], shares[i]) for i in subset]
    assert shamir.combine(points, t) == secret


def combine_or_none(points, threshold):
    try:
        return shamir.combine(points, threshold)
    except ShareError:
        return None  # "inconsistent": the interpolated value is not a 256-bit secret


@settings(deadline=None, max_examples=60)
@given(sharings(), st.binary(min_size=32, max_size=32))
def test_shamir_fewer_than_t_shares_reveal_nothing(case, other_secret):
    secret, t, xs, subset = case
    assume(t >= 2)
    shares = shamir.split(secret, t, xs)
    few = [(xs[i], int.from_bytes(shares[i], "big")) for i in subset[: t - 1]]
    # Interpolating t - 1 shares as if they were all: not the secret.
    assert combine_or_none([(x, y.to_bytes(66, "big")) for x, y in few], t - 1) != secret
    # Perfect secrecy: every candidate secret is consistent with the same t - 1 shares — the
    # degree-(t - 1) polynomial through (0, candidate) and them gives a full valid sharing.
    for candidate in (secret, other_secret):
        base = [(0, int.from_bytes(candidate, "big")), *few]
        fresh_x = max(xs) + 1
        extra = (fresh_x, lagrange_at(base, fresh_x).to_bytes(shamir.SHARE_BYTES, "big"))
        pts = [(x, y.to_bytes(shamir.SHARE_BYTES, "big")) for x, y in few] + [extra]
        assert shamir.combine(pts, t) == candidate


def test_shamir_errors():
    s = bytes(range(32))
    shares = shamir.split(s, 3, [1, 2, 3, 4])
    with pytest.raises(ShareError):
        shamir.combine([(1, shares[0]), (2, shares[1])], 3)  # too few
    with pytest.raises(ShareError):
        shamir.combine([(1, shares[0]), (1, shares[0]), (2, shares[1])], 3)  # duplicate point
    with pytest.raises(ShareError):
        shamir.combine([(1, shares[0]), (2, shares[1]), (3, shares[2][:-1])], 3)  # bad length
    with pytest.raises(ShareError):
        shamir.combine([(1, shares[0]), (2, shares[1]), (3, shares[2] + b"\0")], 3)
    with pytest.raises(ShareError):
        shamir.combine([(1, shares[0]), (2, shares[1]), (3, b"\xff" * 66)], 3)  # >= P
    # a corrupted share gives an out-of-range value here (never silently a 256-bit secret)
    assert combine_or_none([(1, shares[0]), (2, shares[1]), (3, flip(shares[2], 65))], 3) != s
    assert shamir.combine([(4, shares[3]), (2, shares[1]), (3, shares[2])], 3) == s
    for bad_secret in (b"", s[:-1], s + b"\0"):
        with pytest.raises(ShareError):
            shamir.split(bad_secret, 2, [1, 2])
    with pytest.raises(ShareError):
        shamir.split(s, 0, [1, 2])
    with pytest.raises(ShareError):
        shamir.split(s, 3, [1, 2])
    with pytest.raises(ShareError):
        shamir.split(s, 2, [1, 1, 2])
    with pytest.raises(ShareError):
        shamir.split(s, 2, [0, 1, 2])
    with pytest.raises(ShareError):
        shamir.split(s, 2, [1, shamir.P])


def test_shamir_shares_are_randomised():
    s = bytes(32)
    a, b = shamir.split(s, 2, [1, 2]), shamir.split(s, 2, [1, 2])
    assert a != b
    assert shamir.combine(list(zip([1, 2], a, strict=True)), 2) == s
    assert shamir.split(s, 1, [5, 6]) == [bytes(66), bytes(66)]  # t = 1: shares are the secret


# --- mask PRG -----------------------------------------------------------------------------------
SEED = bytes(range(32))


@pytest.mark.parametrize(("bits", "dtype"), [(32, np.uint32), (64, np.uint64)])
def test_prg_shape_dtype_and_determinism(bits, dtype):
    a = prg.expand(SEED, 1000, bits=bits)
    assert a.dtype == np.dtype(dtype)
    assert a.shape == (1000,)
    assert np.array_equal(a, prg.expand(SEED, 1000, bits=bits))
    assert not np.array_equal(a, prg.expand(flip(SEED, 31), 1000, bits=bits))
    assert not np.array_equal(a, prg.expand(SEED, 1000, bits=bits, label="other"))
    assert prg.expand(SEED, 0, bits=bits).shape == (0,)
    assert prg.expand(SEED, 1, bits=bits).shape == (1,)


def test_prg_differs_per_seed_everywhere():
    a = prg.expand(SEED, 4096)
    b = prg.expand(flip(SEED, 0), 4096)
    assert np.count_nonzero(a == b) <= 1  # equal 64-bit words have chance 2^-64 each


def test_prg_rejects_bad_arguments():
    for seed in (b"", bytes(31), bytes(33)):
        with pytest.raises(CryptoError):
            prg.expand(seed, 10)
    for bits in (8, 16, 63, 128):
        with pytest.raises(CryptoError):
            prg.expand(SEED, 10, bits=bits)


def uniformity_pvalue(words: np.ndarray) -> float:
    """Chi-square p-value of the byte histogram of ``words`` against uniform."""
    counts = np.bincount(words.view(np.uint8), minlength=256)
    expected = counts.sum() / 256
    stat = float(((counts - expected) ** 2 / expected).sum())
    return float(chi2.sf(stat, 255))


@pytest.mark.parametrize("bits", [32, 64])
def test_prg_output_looks_uniform(bits):
    words = prg.expand(SEED, 100_000, bits=bits)
    bit_matrix = np.unpackbits(words.view(np.uint8)).reshape(len(words), bits)
    assert abs(bit_matrix.mean() - 0.5) < 0.005
    assert np.all(np.abs(bit_matrix.mean(axis=0) - 0.5) < 0.01)  # every bit position
    assert uniformity_pvalue(words) > 1e-6
    # the same checks catch something that is not uniform
    biased = words & words >> np.array(1, dtype=words.dtype)
    assert abs(np.unpackbits(biased.view(np.uint8)).mean() - 0.5) > 0.1
    assert uniformity_pvalue(biased) < 1e-6


# --- hashing ----------------------------------------------------------------------------------
def test_tagged_hash_domain_separation():
    d = tagged_hash("t", b"ab", b"c")
    assert len(d) == 32
    assert tagged_hash("t", b"ab", b"c") == d
    assert tagged_hash("t", b"a", b"bc") != d
    assert tagged_hash("t", b"abc") != d
    assert tagged_hash("t", b"ab", b"c", b"") != d
    assert tagged_hash("u", b"ab", b"c") != d
    assert tagged_hash("tab", b"c") != tagged_hash("t", b"ab", b"c")
    assert tagged_hash("t") != tagged_hash("t", b"")
    assert frame_all(b"ab", b"c") != frame_all(b"a", b"bc")


def test_ct_equal():
    assert ct_equal(b"abc", b"abc")
    assert not ct_equal(b"abc", b"abd")
    assert not ct_equal(b"abc", b"ab")
    assert ct_equal(b"", b"")
