"""FoolsGold (Fung, Yoon, Beschastnikh, RAID 2020): Sybil clones pursue the same goal, so their
update histories are unusually similar. Each member's learning rate is lowered by its largest
cosine similarity to another member's history (with "pardoning" of honest members that merely
resemble a suspicious one), then passed through a logit. Keeps per-member history across rounds:
one instance per consortium."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guardians.errors import ConfigError
from guardians.learning.aggregate.base import Aggregate, Rule


class FoolsGold(Rule):
    name = "foolsgold"

    def __init__(self, kappa: float = 1.0) -> None:
        if not kappa > 0:
            raise ConfigError(f"FoolsGold: kappa must be positive, got {kappa}")
        self.kappa = kappa
        self.history: dict[str, np.ndarray] = {}

    def min_members(self) -> int:
        return 2

    def _aggregate(
        self, u: np.ndarray, w: np.ndarray, members: Sequence[str], reference: np.ndarray | None
    ) -> Aggregate:
        if not members:
            raise ConfigError("FoolsGold needs the members' names to keep their histories")
        for m, x in zip(members, u, strict=True):
            self.history[m] = self.history.get(m, np.zeros_like(x)) + x
        h = np.stack([self.history[m] for m in members])
        n = len(h)
        unit = h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-30)
        cs = unit @ unit.T
        np.fill_diagonal(cs, -np.inf)
        v = cs.max(axis=1)
        np.fill_diagonal(cs, 0.0)
        # Pardoning: i's similarity to j is scaled down when j is the more suspicious one.
        ratio = np.where(v[None, :] > v[:, None], v[:, None] / np.where(v == 0, 1, v)[None, :], 1)
        cs = cs * ratio
        np.fill_diagonal(cs, -np.inf)
        alpha = np.clip(1.0 - cs.max(axis=1), 0.0, 1.0)
        if alpha.max() > 0:
            alpha = alpha / alpha.max()
        alpha[alpha == 1.0] = 0.99
        with np.errstate(divide="ignore"):
            alpha = self.kappa * (np.log(alpha / (1 - alpha)) + 0.5)
        alpha = np.clip(np.nan_to_num(alpha, nan=0.0, neginf=0.0, posinf=1.0), 0.0, 1.0)
        rejected = {int(i): f"history too similar to another member's (weight {alpha[i]:.2f})"
                    for i in np.flatnonzero(alpha == 0)}  # fmt: skip
        if alpha.sum() == 0:
            return Aggregate(np.zeros(u.shape[1]), (), rejected, alpha)
        agg = (alpha[:, None] * u).sum(axis=0) / alpha.sum()
        used = tuple(int(i) for i in np.flatnonzero(alpha > 0))
        del n
        return Aggregate(agg, used, rejected, alpha)
