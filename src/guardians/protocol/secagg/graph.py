"""Neighbourhoods of a SecAgg+ round: a Harary graph over a seeded permutation of participants.

Every member derives the graph itself from the round's participant list and round number, so the
coordinator cannot hand a member a neighbourhood of its choosing (for example, all colluders).
Degree k: each member is joined to the k/2 members on either side in the permuted ring (k even;
k = n - 1 gives the complete graph of the original SecAgg).
"""

from __future__ import annotations

from collections.abc import Sequence

from guardians.crypto.hashing import tagged_hash
from guardians.errors import ConfigError


def default_degree(n: int) -> int:
    """O(log n) neighbours, as SecAgg+ prescribes, never more than n - 1."""
    if n <= 1:
        return 0
    k = 2 * max(2, (n - 1).bit_length())  # even, ~2 log2 n
    return min(k, n - 1)


def neighbourhoods(
    consortium: str, round: int, participants: Sequence[str], degree: int
) -> dict[str, tuple[str, ...]]:
    members = sorted(set(participants))
    n = len(members)
    if len(participants) != n:
        raise ConfigError("participant names must be distinct")
    if not 1 <= degree <= n - 1:
        raise ConfigError(f"degree {degree} impossible with {n} participants")
    if degree % 2 and n % 2:
        raise ConfigError(f"an odd degree ({degree}) needs an even number of participants ({n})")
    ctx = round.to_bytes(8, "big")
    order = sorted(
        members, key=lambda m: tagged_hash("secagg/graph", consortium.encode(), ctx, m.encode())
    )
    pos = {m: i for i, m in enumerate(order)}
    half = degree // 2
    out: dict[str, tuple[str, ...]] = {}
    for m in members:
        i = pos[m]
        nb = {order[(i + d) % n] for d in range(1, half + 1)}
        nb |= {order[(i - d) % n] for d in range(1, half + 1)}
        if degree % 2 and n % 2 == 0:
            nb.add(order[(i + n // 2) % n])  # odd degree: add the opposite member
        nb.discard(m)
        out[m] = tuple(sorted(nb))
    return out
