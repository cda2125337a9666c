"""Norm-bounded aggregation (Sun et al. 2019, "Can you really backdoor federated learning?"):
every update is scaled down to L2 norm ≤ B ("clip") or left out if above it ("reject"), then an
inner rule aggregates. It is the one defence that composes with secure aggregation: there,
members clip themselves and prove ‖update‖ ≤ B in zero knowledge (contribution proofs), and the
coordinator enforces the bound by verifying proofs, not by looking at updates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guardians.errors import ConfigError
from guardians.learning.aggregate.base import Aggregate, Rule
from guardians.learning.aggregate.fedavg import FedAvg

MODES = ("clip", "reject")


class NormBound(Rule):
    name = "norm-bound"

    def __init__(self, bound: float, mode: str = "clip", inner: Rule | None = None) -> None:
        if not bound > 0 or not np.isfinite(bound):
            raise ConfigError(f"norm bound must be positive and finite, got {bound}")
        if mode not in MODES:
            raise ConfigError(f"norm bound mode must be one of {MODES}, got {mode!r}")
        self.bound, self.mode = float(bound), mode
        self.inner = inner or FedAvg()
        self.individual = self.inner.individual or mode == "reject"  # type: ignore[misc]
        self.name = f"norm-bound+{self.inner.name}" if inner else "norm-bound"  # type: ignore[misc]

    def min_members(self) -> int:
        return self.inner.min_members()

    def _aggregate(
        self, u: np.ndarray, w: np.ndarray, members: Sequence[str], reference: np.ndarray | None
    ) -> Aggregate:
        norms = np.linalg.norm(u, axis=1)
        if self.mode == "reject":
            ok = np.flatnonzero(norms <= self.bound)
            rejected = {int(i): f"norm {norms[i]:.3g} above the bound {self.bound:g}"
                        for i in np.flatnonzero(norms > self.bound)}  # fmt: skip
            if len(ok) < self.inner.min_members():
                raise ConfigError(f"norm bound left {len(ok)} updates, {self.inner.name} needs "
                                  f"{self.inner.min_members()}")  # fmt: skip
            sub = self.inner(u[ok], w[ok], members=[members[i] for i in ok] if members else (),
                             reference=reference)  # fmt: skip
            used = tuple(int(ok[i]) for i in sub.used)
            rejected.update({int(ok[i]): r for i, r in sub.rejected.items()})
            return Aggregate(sub.update, used, rejected, norms)
        scale = np.minimum(1.0, self.bound / np.maximum(norms, 1e-30))
        sub = self.inner(u * scale[:, None], w, members=members, reference=reference)
        return Aggregate(sub.update, sub.used, sub.rejected, norms)
