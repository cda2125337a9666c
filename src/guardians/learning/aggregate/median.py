"""Coordinate-wise median (Yin et al., ICML 2018): each coordinate of the result is the median
of that coordinate over the updates, so fewer than n/2 arbitrary updates cannot move it outside
the range of the honest ones."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guardians.learning.aggregate.base import Aggregate, Rule


class Median(Rule):
    name = "median"

    def _aggregate(
        self, u: np.ndarray, w: np.ndarray, members: Sequence[str], reference: np.ndarray | None
    ) -> Aggregate:
        return Aggregate(np.median(u, axis=0), tuple(range(len(u))))
