"""Krum and Multi-Krum (Blanchard et al., NeurIPS 2017).

Each update's score is the sum of squared distances to its n − f − 2 nearest other updates;
Krum returns the update with the lowest score, Multi-Krum the mean of the m lowest. With
n > 2f + 2 the selected update is, in the paper's sense, close to the honest ones whatever the f
Byzantine updates are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guardians.errors import ConfigError
from guardians.learning.aggregate.base import Aggregate, Rule, pairwise_sq_dists


def krum_scores(u: np.ndarray, f: int) -> np.ndarray:
    n = len(u)
    k = n - f - 2
    d = pairwise_sq_dists(u)
    np.fill_diagonal(d, np.inf)  # a point is not its own neighbour
    return np.sort(d, axis=1)[:, :k].sum(axis=1)


class MultiKrum(Rule):
    """``m = 1`` is Krum; the default m = n − f averages every update Krum would not flag."""

    name = "multi-krum"

    def __init__(self, f: int, m: int | None = None) -> None:
        if f < 0:
            raise ConfigError(f"Krum: f must be non-negative, got {f}")
        if m is not None and m < 1:
            raise ConfigError(f"Multi-Krum: m must be at least 1, got {m}")
        self.f, self.m = f, m

    def min_members(self) -> int:
        return 2 * self.f + 3

    def _aggregate(
        self, u: np.ndarray, w: np.ndarray, members: Sequence[str], reference: np.ndarray | None
    ) -> Aggregate:
        n = len(u)
        scores = krum_scores(u, self.f)
        m = min(self.m or n - self.f, n)
        chosen = np.argsort(scores, kind="stable")[:m]
        keep = set(chosen.tolist())
        rejected = {i: f"Krum score {scores[i]:.3g} not among the {m} lowest"
                    for i in range(n) if i not in keep}  # fmt: skip
        return Aggregate(u[chosen].mean(axis=0), tuple(sorted(keep)), rejected, scores)


class Krum(MultiKrum):
    name = "krum"

    def __init__(self, f: int) -> None:
        super().__init__(f, 1)
