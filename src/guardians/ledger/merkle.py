"""RFC 9162 Merkle trees: hashing, roots, inclusion and consistency proofs.

Hashes (RFC 9162 §2.1.1): leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ left ‖ right);
the root of the empty tree is SHA-256 of the empty string.

:class:`MerkleTree` keeps every complete-subtree hash level by level (level 0 = leaf hashes,
level i = hashes of aligned subtrees of 2^i leaves), the layout C2SP tlog-tiles serves. Roots
and proofs for any size up to the current one then need O(log n) stored hashes and no
recomputation of full subtrees. Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 and raises
typed errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from guardians.crypto.hashing import ct_equal
from guardians.errors import GuardiansError

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(GuardiansError):
    """A proof is malformed or does not fit the claimed sizes and indices."""


class RootMismatchError(ProofError):
    """A proof computed a root different from the expected one."""

    def __init__(self, computed: bytes, expected: bytes) -> None:
        super().__init__(f"computed root {computed.hex()} != expected {expected.hex()}")
        self.computed = computed
        self.expected = expected


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only tree of leaf hashes with every complete subtree hash kept."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append_hash(h)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, data: bytes) -> int:
        """Append an entry; returns its index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, h: bytes) -> int:
        if len(h) != HASH_BYTES:
            raise ValueError("leaf hashes are 32 bytes")
        index = self.size
        self.levels[0].append(h)
        level, i = 0, index
        # Each time a subtree becomes complete, store its hash one level up.
        while i & 1:
            parent = node_hash(self.levels[level][i - 1], self.levels[level][i])
            level += 1
            if len(self.levels) == level:
                self.levels.append([])
            self.levels[level].append(parent)
            i >>= 1
        return index

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end), 0 <= start < end <= size."""
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:  # an aligned complete subtree: stored
            return self.levels[n.bit_length() - 1][start // n]
        k = _largest_power_of_two_below(n)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} outside 0..{self.size}")
        return EMPTY_ROOT if size == 0 else self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[0:size])."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ProofError(f"no leaf {index} in a tree of size {size}")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _largest_power_of_two_below(end - start)
            if index < start + k:
                proof.append(self._subtree(start + k, end))
                end = start + k
            else:
                proof.append(self._subtree(start, start + k))
                start += k
        proof.reverse()
        return proof

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(old, D[0:new])."""
        new = self.size if new is None else new
        if not 0 <= old <= new <= self.size:
            raise ProofError(f"no consistency proof from size {old} to {new}")
        if old == 0 or old == new:
            return []
        proof: list[bytes] = []
        start, end, m, complete = 0, new, old, True
        while True:
            n = end - start
            if m == n:
                if not complete:
                    proof.append(self._subtree(start, end))
                break
            k = _largest_power_of_two_below(n)
            if m <= k:
                proof.append(self._subtree(start + k, end))
                end = start + k
            else:
                proof.append(self._subtree(start, start + k))
                start += k
                m -= k
                complete = False
        proof.reverse()
        return proof


def _check_hashes(proof: Sequence[bytes], *named: tuple[str, bytes]) -> None:
    for i, p in enumerate(proof):
        if len(p) != HASH_BYTES:
            raise ProofError(f"proof node {i} is {len(p)} bytes, not {HASH_BYTES}")
    for name, h in named:
        if len(h) != HASH_BYTES:
            raise ProofError(f"{name} is {len(h)} bytes, not {HASH_BYTES}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root that ``proof`` yields for ``leaf`` at ``index``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} outside a tree of size {size}")
    _check_hashes(proof, ("leaf hash", leaf))
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof has too many nodes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof has too few nodes")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise unless ``leaf`` is at ``index`` in the tree of ``size`` with ``root``."""
    _check_hashes((), ("root", root))
    computed = root_from_inclusion(index, size, leaf, proof)
    if not ct_equal(computed, root):
        raise RootMismatchError(computed, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise unless the tree of ``new_root`` extends that of ``old_root``."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"sizes {old_size} → {new_size} do not grow")
    if old_size == 0:
        # Every tree extends the empty one: a proof from size 0 proves nothing, so a client
        # asking for one is confused (as the transparency-dev verifier also rules).
        raise ProofError("no consistency proof from an empty tree")
    if old_size == new_size:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if not ct_equal(old_root, new_root):
            raise RootMismatchError(new_root, old_root)
        return
    _check_hashes(proof, ("old root", old_root), ("new root", new_root))
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof has too many nodes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof has too few nodes")
    if not ct_equal(fr, old_root):
        raise RootMismatchError(fr, old_root)
    if not ct_equal(sr, new_root):
        raise RootMismatchError(sr, new_root)
