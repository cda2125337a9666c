"""What every aggregation rule takes and gives.

A rule sees the round's updates as one (n, d) array, the members' sample counts, and optionally
the members' names (for rules that keep per-member history) and a reference update computed by
the coordinator itself (FLTrust's root-data update). It returns the aggregated update and which
updates it used or left out, and why — the evidence a reputation system and the ledger need.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from guardians.errors import ConfigError, ParameterShapeError


@dataclass(frozen=True)
class Aggregate:
    update: np.ndarray  # float32 (d,)
    used: tuple[int, ...]  # indices of the updates that entered the result
    rejected: dict[int, str] = field(default_factory=dict)  # index → why it was left out
    scores: np.ndarray | None = None  # the rule's per-update score, when it computes one


class Rule(ABC):
    """An aggregation rule. ``individual`` says whether it must see each member's plaintext
    update — true for every robust rule except a norm bound, which contribution proofs enforce
    under secure aggregation, where the coordinator only ever sees the sum."""

    name: ClassVar[str]
    individual: ClassVar[bool] = True

    def min_members(self) -> int:
        return 1

    @abstractmethod
    def _aggregate(
        self,
        updates: np.ndarray,
        weights: np.ndarray,
        members: Sequence[str],
        reference: np.ndarray | None,
    ) -> Aggregate: ...

    def __call__(
        self,
        updates: Sequence[np.ndarray] | np.ndarray,
        weights: Sequence[float] | np.ndarray,
        *,
        members: Sequence[str] = (),
        reference: np.ndarray | None = None,
    ) -> Aggregate:
        u = np.asarray(updates, dtype=np.float64) if len(updates) else np.zeros((0, 0))
        if u.ndim != 2 or u.shape[0] == 0:
            raise ParameterShapeError(f"{self.name}: needs a non-empty (n, d) array of updates")
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (u.shape[0],):
            raise ParameterShapeError(f"{self.name}: {u.shape[0]} updates but {w.size} weights")
        if np.any(w < 0) or w.sum() <= 0:
            raise ParameterShapeError(f"{self.name}: weights must be non-negative, sum positive")
        if not np.all(np.isfinite(u)):
            raise ParameterShapeError(f"{self.name}: updates hold non-finite values")
        if members and len(members) != u.shape[0]:
            raise ParameterShapeError(f"{self.name}: {u.shape[0]} updates, {len(members)} names")
        if u.shape[0] < self.min_members():
            raise ConfigError(
                f"{self.name} needs at least {self.min_members()} updates, got {u.shape[0]}"
            )
        if reference is not None and np.asarray(reference).shape != (u.shape[1],):
            raise ParameterShapeError(f"{self.name}: reference update has the wrong shape")
        out = self._aggregate(u, w, members, reference)
        return Aggregate(out.update.astype(np.float32), out.used, out.rejected, out.scores)


def weighted_mean(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w[:, None] * u).sum(axis=0) / w.sum()


def pairwise_sq_dists(u: np.ndarray) -> np.ndarray:
    """‖uᵢ − uⱼ‖² for all pairs, through the Gram matrix (no Python loop over members)."""
    sq = np.einsum("ij,ij->i", u, u)
    d = sq[:, None] + sq[None, :] - 2.0 * (u @ u.T)
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d
