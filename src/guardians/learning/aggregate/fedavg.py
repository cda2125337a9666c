"""FedAvg: the sample-weighted mean of the members' updates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guardians.errors import ParameterShapeError
from guardians.learning.aggregate.base import Aggregate, Rule, weighted_mean


def fedavg(updates: Sequence[np.ndarray], weights: Sequence[int]) -> np.ndarray:
    """FedAvg (McMahan et al. 2017): the average of updates weighted by sample counts.

    Accumulates in float64 so the result does not depend on float32 summation order.
    """
    if not updates:
        raise ParameterShapeError("FedAvg needs at least one update")
    if len(updates) != len(weights):
        raise ParameterShapeError(f"{len(updates)} updates but {len(weights)} weights")
    d = updates[0].shape
    w = np.asarray(weights, dtype=np.float64)
    if np.any(w < 0) or w.sum() <= 0:
        raise ParameterShapeError("FedAvg weights must be non-negative with a positive sum")
    acc = np.zeros(d, dtype=np.float64)
    for u, wi in zip(updates, w, strict=True):
        if u.shape != d:
            raise ParameterShapeError(f"update of shape {u.shape} among updates of shape {d}")
        acc += wi * u
    return (acc / w.sum()).astype(np.float32)


class FedAvg(Rule):
    """The weighted mean: no defence, and it needs only the sum (runs under secure
    aggregation)."""

    name = "fedavg"
    individual = False

    def _aggregate(
        self, u: np.ndarray, w: np.ndarray, members: Sequence[str], reference: np.ndarray | None
    ) -> Aggregate:
        return Aggregate(weighted_mean(u, w), tuple(range(len(u))))
