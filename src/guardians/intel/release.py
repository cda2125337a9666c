"""The k-anonymity release rule: an indicator is published to the consortium only once at
least k distinct members have sighted it, unless its member marks it for immediate release.

Members never say what they sighted: each encodes its pending indicators' keyed tags into a
0/1 count sketch (2 rows of 2^14 bins, bin = domain-separated SHA-256 of the tag), the sketches
are summed through secure aggregation, and a tag is releasable when the smallest of its bins'
counts reaches k. Collisions can only raise a count (a rare early release, never a missed one);
the coordinator learns per-bin counts of distinct sighting members and nothing about who
sighted what (with the epoch key — which members hold, not the relay — per-bin counts tell
how many members saw a guessed observable).

This assumes members send 0/1 sketches: secure aggregation cannot see inside, so a malicious
member could send −1 to hold a release back or all ones to force one. Proving each sketch
well-formed (entries in {0, 1}) is not built yet.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from guardians.crypto.hashing import tagged_hash
from guardians.errors import ConfigError

ROWS = 2
BINS = 1 << 14


def bins(tag: str) -> list[int]:
    """Where ``tag`` lands in each row of the sketch (flat indices)."""
    return [
        r * BINS
        + int.from_bytes(tagged_hash("intel/release-bin", bytes([r]), tag.encode())[:8], "big")
        % BINS
        for r in range(ROWS)
    ]


def sketch(tags: Iterable[str]) -> np.ndarray:
    """One member's 0/1 sketch of the indicators it sighted (a member counts once per bin)."""
    v = np.zeros(ROWS * BINS, dtype=np.float64)
    for t in tags:
        v[bins(t)] = 1.0
    return v


def releasable(tags: Iterable[str], counts: np.ndarray, k: int) -> set[str]:
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    c = np.asarray(counts)
    if c.shape != (ROWS * BINS,):
        raise ConfigError(f"counts of shape {c.shape}, expected ({ROWS * BINS},)")
    return {t for t in tags if int(c[bins(t)].min()) >= k}
