"""FLTrust (Cao et al., NDSS 2021): the coordinator trains on a small clean root dataset to get
a reference update g₀ each round; member i's trust is ReLU(cos(gᵢ, g₀)), its update is rescaled
to ‖g₀‖, and the result is the trust-weighted mean. Updates pointing away from the reference
get no weight; none can be larger than the reference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guardians.errors import ConfigError
from guardians.learning.aggregate.base import Aggregate, Rule


class FLTrust(Rule):
    name = "fltrust"

    def _aggregate(
        self, u: np.ndarray, w: np.ndarray, members: Sequence[str], reference: np.ndarray | None
    ) -> Aggregate:
        if reference is None:
            raise ConfigError("FLTrust needs the coordinator's root-data update each round")
        g0 = np.asarray(reference, dtype=np.float64)
        n0 = float(np.linalg.norm(g0))
        norms = np.linalg.norm(u, axis=1)
        cos = (u @ g0) / np.maximum(norms * n0, 1e-30)
        trust = np.maximum(cos, 0.0)
        rejected = {int(i): f"cosine {cos[i]:.3f} to the root update: no trust"
                    for i in np.flatnonzero(trust == 0)}  # fmt: skip
        if trust.sum() == 0:
            return Aggregate(np.zeros_like(g0), (), rejected, trust)
        scaled = u * (n0 / np.maximum(norms, 1e-30))[:, None]
        agg = (trust[:, None] * scaled).sum(axis=0) / trust.sum()
        return Aggregate(agg, tuple(int(i) for i in np.flatnonzero(trust > 0)), rejected, trust)
