"""Bulyan (El Mhamdi et al., ICML 2018): select θ = n − 2f updates by repeated Krum, then per
coordinate average the θ − 2f values closest to the median. Needs n ≥ 4f + 3."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guardians.errors import ConfigError
from guardians.learning.aggregate.base import Aggregate, Rule
from guardians.learning.aggregate.krum import krum_scores


class Bulyan(Rule):
    name = "bulyan"

    def __init__(self, f: int) -> None:
        if f < 0:
            raise ConfigError(f"Bulyan: f must be non-negative, got {f}")
        self.f = f

    def min_members(self) -> int:
        return 4 * self.f + 3

    def _aggregate(
        self, u: np.ndarray, w: np.ndarray, members: Sequence[str], reference: np.ndarray | None
    ) -> Aggregate:
        n, f = len(u), self.f
        remaining = list(range(n))
        selected: list[int] = []
        while len(selected) < n - 2 * f:
            scores = krum_scores(u[remaining], min(f, len(remaining) - 3))
            best = remaining[int(np.argmin(scores))]
            selected.append(best)
            remaining.remove(best)
        s = u[selected]
        beta = len(selected) - 2 * f
        med = np.median(s, axis=0)
        # Per coordinate, the beta values nearest the median.
        idx = np.argsort(np.abs(s - med), axis=0, kind="stable")[:beta]
        agg = np.take_along_axis(s, idx, axis=0).mean(axis=0)
        rejected = {i: "not selected by repeated Krum" for i in remaining}
        return Aggregate(agg, tuple(sorted(selected)), rejected)
