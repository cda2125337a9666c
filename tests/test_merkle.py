"""RFC 9162 Merkle tree: the transparency-dev/merkle probes, and generated proofs."""

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardians.ledger.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    RootMismatchError,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "vectors" / "merkle"


def _b64(x):
    return base64.b64decode(x) if x is not None else b""


def _probes(kind):
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert files, f"no {kind} probes found"
    return [pytest.param(json.loads(f.read_text()), id=str(f.relative_to(VECTORS))) for f in files]


@pytest.mark.parametrize("probe", _probes("inclusion"))
def test_inclusion_probes(probe):
    proof = [_b64(p) for p in probe.get("proof") or []]
    args = (probe["leafIdx"], probe["treeSize"], _b64(probe["leafHash"]), proof,
            _b64(probe["root"]))  # fmt: skip
    if probe["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("probe", _probes("consistency"))
def test_consistency_probes(probe):
    proof = [_b64(p) for p in probe.get("proof") or []]
    args = (probe["size1"], probe["size2"], _b64(probe["root1"]), _b64(probe["root2"]), proof)
    if probe["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def reference_root(leaves):
    """MTH straight from the RFC 9162 definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def test_rfc_hashes_and_empty_root():
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert MerkleTree().root() == EMPTY_ROOT


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 70), data=st.data())
def test_generated_proofs_verify_and_roots_match_the_definition(n, data):
    leaves = [i.to_bytes(4, "big") for i in range(n)]
    tree = MerkleTree()
    for x in leaves:
        tree.append(x)
    for size in {1, n, data.draw(st.integers(1, n))}:
        root = tree.root(size)
        assert root == reference_root(leaves[:size])
        i = data.draw(st.integers(0, size - 1))
        proof = tree.inclusion_proof(i, size)
        verify_inclusion(i, size, leaf_hash(leaves[i]), proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(i, size, leaf_hash(b"other"), proof, root)
        old = data.draw(st.integers(1, size))
        cproof = tree.consistency_proof(old, size)
        verify_consistency(old, size, tree.root(old), root, cproof)
        if 0 < old < size:
            bad = bytearray(cproof[0])
            bad[0] ^= 1
            with pytest.raises(ProofError):
                verify_consistency(old, size, tree.root(old), root, [bytes(bad), *cproof[1:]])


def test_rewritten_history_is_caught():
    a, b = MerkleTree(), MerkleTree()
    for i in range(10):
        a.append(bytes([i]))
        b.append(bytes([i]) if i != 3 else b"forged")
    with pytest.raises(RootMismatchError):
        verify_consistency(5, 10, b.root(5), a.root(10), a.consistency_proof(5, 10))


def test_bad_arguments_raise_typed_errors():
    t = MerkleTree([leaf_hash(b"x")])
    with pytest.raises(ProofError):
        t.inclusion_proof(1, 1)
    with pytest.raises(ProofError):
        t.consistency_proof(2, 1)
    with pytest.raises(ProofError):
        verify_inclusion(0, 1, b"short", [], t.root())
