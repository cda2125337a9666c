"""Coordinate-wise trimmed mean (Yin et al., ICML 2018): per coordinate, drop the k largest
and k smallest values and average the rest; k = ⌊β·n⌋ must leave at least one value."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guardians.errors import ConfigError
from guardians.learning.aggregate.base import Aggregate, Rule


class TrimmedMean(Rule):
    name = "trimmed-mean"

    def __init__(self, beta: float = 0.2) -> None:
        if not 0.0 <= beta < 0.5:
            raise ConfigError(f"trimmed mean: beta must be in [0, 0.5), got {beta}")
        self.beta = beta

    def _aggregate(
        self, u: np.ndarray, w: np.ndarray, members: Sequence[str], reference: np.ndarray | None
    ) -> Aggregate:
        n = len(u)
        k = int(np.floor(self.beta * n))
        s = np.sort(u, axis=0)
        return Aggregate(s[k : n - k].mean(axis=0), tuple(range(n)))
