"""Server-side optimizers applied to the aggregated update."""

from __future__ import annotations

import numpy as np


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

    @property
    def velocity(self) -> np.ndarray | None:
        """v after the last step (None before the first)."""
        return None if self._v is None else self._v.copy()

    def step(self, params: np.ndarray, delta: np.ndarray) -> np.ndarray:
        if self._v is None or self._v.shape != delta.shape:
            self._v = np.zeros_like(delta, dtype=np.float32)
        self._v = (self.beta * self._v + delta).astype(np.float32)
        return (params + self.lr * self._v).astype(np.float32)
