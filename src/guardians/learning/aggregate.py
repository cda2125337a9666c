"""Aggregation of member updates into one global update."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guardians.errors import ParameterShapeError


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


class ServerMomentum:
    """FedAvgM (Hsu, Qi, Brown 2019): the coordinator applies the averaged update through
    heavy-ball momentum, ``v <- beta v + mean_delta; w <- w + lr v``. It damps the round-to-round
    swings that members with very different data (non-IID) cause in plain FedAvg.
    ``beta = 0`` and ``lr = 1`` is plain FedAvg."""

    def __init__(self, beta: float = 0.9, lr: float = 1.0) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"server momentum must be in [0, 1), got {beta}")
        if not lr > 0:
            raise ValueError(f"server learning rate must be positive, got {lr}")
        self.beta = beta
        self.lr = lr
        self._v: np.ndarray | None = None

    def step(self, params: np.ndarray, delta: np.ndarray) -> np.ndarray:
        if self._v is None or self._v.shape != delta.shape:
            self._v = np.zeros_like(delta, dtype=np.float32)
        self._v = (self.beta * self._v + delta).astype(np.float32)
        return (params + self.lr * self._v).astype(np.float32)
