"""Standardization whose statistics come from members' own data, never from pooled records.

Each member computes :class:`FeatureStats` (count, per-feature sum and sum of squares) on its
own rows. Those summaries — not records — can be combined across members into the consortium's
:class:`Standardizer` (exactly the pooled mean and standard deviation), or used alone for a
member training by itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from guardians.errors import EmptyDatasetError, FeatureMismatchError


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Sufficient statistics of one member's features (float64 to keep sums exact enough)."""

    count: int
    sum: np.ndarray
    sumsq: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray) -> FeatureStats:
        X64 = np.asarray(X, dtype=np.float64)
        return cls(count=int(X64.shape[0]), sum=X64.sum(axis=0), sumsq=(X64 * X64).sum(axis=0))

    @staticmethod
    def combine(parts: Iterable[FeatureStats]) -> FeatureStats:
        parts = list(parts)
        if not parts:
            raise EmptyDatasetError("no feature statistics to combine")
        d = parts[0].sum.shape
        for p in parts:
            if p.sum.shape != d or p.sumsq.shape != d:
                raise FeatureMismatchError(
                    f"feature statistics of width {p.sum.shape} and {d} cannot be combined"
                )
        return FeatureStats(
            count=sum(p.count for p in parts),
            sum=np.sum([p.sum for p in parts], axis=0),
            sumsq=np.sum([p.sumsq for p in parts], axis=0),
        )


@dataclass(frozen=True, eq=False)
class Standardizer:
    """x -> (x - mean) / scale, with scale 1 for features constant in the data seen."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_stats(cls, stats: FeatureStats) -> Standardizer:
        if stats.count < 1:
            raise EmptyDatasetError("standardization needs at least one record")
        mean = stats.sum / stats.count
        var = np.maximum(stats.sumsq / stats.count - mean * mean, 0.0)
        std = np.sqrt(var)
        # Σx²/n − mean² cancels catastrophically for near-constant features with a large mean:
        # a deviation below 1e-6 of the feature's magnitude is rounding noise, not spread.
        constant = std <= 1e-6 * np.maximum(np.abs(mean), 1e-2)
        scale = np.where(constant, 1.0, std)
        return cls(mean=mean.astype(np.float32), scale=scale.astype(np.float32))

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        return cls.from_stats(FeatureStats.of(X))

    def transform(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != self.mean.shape[0]:
            raise FeatureMismatchError(
                f"data has {X.shape[1]} features, the standardizer expects {self.mean.shape[0]}"
            )
        # Clip: a feature nearly constant in training can be huge in new traffic.
        Z = (X - self.mean) / self.scale
        return np.clip(Z, -50.0, 50.0).astype(np.float32, copy=False)
