"""Linkable one-of-many membership proofs: anonymous within the ring, one tag per member per
epoch, bound to context and message."""

from __future__ import annotations

import pytest

from guardians.crypto.group import Point, Scalar
from guardians.crypto.zk import ring
from guardians.crypto.zk.sigma import Context, FalseStatementError, ProofVerificationError

CTX = Context("consortium", 0, "anonymous", "intel/share")
SECRETS = [Scalar.random() for _ in range(5)]
RING = [Point.base_mul(x) for x in SECRETS]
MSG = b"digest of the shared indicator"


def test_every_member_can_prove_and_the_proof_verifies():
    for x in SECRETS:
        tag, proof = ring.prove(CTX, MSG, RING, 7, x)
        ring.verify(CTX, MSG, RING, 7, tag, proof)
        assert tag == ring.tag_for(x, CTX.consortium, 7)


def test_tags_link_within_an_epoch_and_not_across():
    t1, _ = ring.prove(CTX, b"one", RING, 7, SECRETS[2])
    t2, _ = ring.prove(CTX, b"two", RING, 7, SECRETS[2])
    t3, _ = ring.prove(CTX, b"one", RING, 8, SECRETS[2])
    assert t1 == t2 and t1 != t3
    assert len({ring.tag_for(x, "consortium", 7).to_bytes() for x in SECRETS}) == len(SECRETS)
    assert ring.tag_for(SECRETS[0], "consortium", 7) != ring.tag_for(SECRETS[0], "other", 7)


def test_tampering_fails():
    tag, proof = ring.prove(CTX, MSG, RING, 7, SECRETS[1])
    with pytest.raises(ProofVerificationError):
        ring.verify(CTX, b"other message", RING, 7, tag, proof)
    with pytest.raises(ProofVerificationError):
        ring.verify(Context("consortium", 1, "anonymous", "intel/share"), MSG, RING, 7, tag, proof)
    with pytest.raises(ProofVerificationError):
        ring.verify(CTX, MSG, RING, 8, tag, proof)
    with pytest.raises(ProofVerificationError):
        ring.verify(
            CTX, MSG, RING, 7, ring.tag_for(SECRETS[0], "consortium", 7), proof
        )  # someone else's tag
    with pytest.raises(ProofVerificationError):
        ring.verify(CTX, MSG, RING[::-1], 7, tag, proof)
    for i in (0, len(proof) // 2, len(proof) - 1):
        bad = bytearray(proof)
        bad[i] ^= 1
        with pytest.raises(ProofVerificationError):
            ring.verify(CTX, MSG, RING, 7, tag, bytes(bad))
    with pytest.raises(ProofVerificationError, match="bytes"):
        ring.verify(CTX, MSG, RING, 7, tag, proof[:-1])
    with pytest.raises(ProofVerificationError, match="empty"):
        ring.verify(CTX, MSG, [], 7, tag, b"")


def test_a_fresh_tag_for_the_same_epoch_cannot_be_proven():
    """A member trying to look like a second source in one epoch (a different tag) fails."""
    x = SECRETS[3]
    fake_tag = ring.tag_for(x + Scalar.of(1), "consortium", 7)
    _, proof = ring.prove(CTX, MSG, RING, 7, x)
    with pytest.raises(ProofVerificationError):
        ring.verify(CTX, MSG, RING, 7, fake_tag, proof)


def test_outsiders_cannot_prove():
    with pytest.raises(FalseStatementError):
        ring.prove(CTX, MSG, RING, 7, Scalar.random())
