"""The coordinator's node: holds the global model and decides who takes part in each round.

It never sees records; it drives :mod:`guardians.protocol.round` state machines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guardians.errors import ConfigError
from guardians.learning.aggregate import ServerMomentum
from guardians.learning.models import Model
from guardians.learning.preprocess import Standardizer
from guardians.learning.train import TrainConfig
from guardians.protocol.round import CoordinatorRound, RoundResult, StatsCollection


class CoordinatorNode:
    def __init__(
        self,
        members: Sequence[str],
        model: Model,
        train: TrainConfig,
        rng: np.random.Generator,
        *,
        fraction: float = 1.0,
        min_fraction: float = 0.5,
        n_features: int,
        server_momentum: float = 0.0,
    ) -> None:
        if not members:
            raise ConfigError("a consortium needs at least one member")
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"fraction of members per round must be in (0, 1], got {fraction}")
        if not 0.0 < min_fraction <= 1.0:
            raise ConfigError(f"min_fraction must be in (0, 1], got {min_fraction}")
        self.members = tuple(members)
        self.model = model
        self.train = train
        self.rng = rng
        self.fraction = fraction
        self.min_fraction = min_fraction
        self.n_features = n_features
        self.params = model.get_params()
        self.standardizer: Standardizer | None = None
        self.history: list[RoundResult] = []
        self.server_opt = ServerMomentum(server_momentum) if server_momentum else None

    def stats_collection(self) -> StatsCollection:
        return StatsCollection(round=0, selected=self.members, n_features=self.n_features)

    def select(self) -> list[str]:
        k = max(1, round(self.fraction * len(self.members)))
        picked = self.rng.choice(len(self.members), size=k, replace=False)
        return [self.members[i] for i in sorted(picked)]

    def new_round(self, round: int) -> CoordinatorRound:
        selected = self.select()
        return CoordinatorRound(
            round=round,
            selected=selected,
            global_params=self.params,
            train=self.train,
            min_updates=max(1, int(np.ceil(self.min_fraction * len(selected)))),
            **({"server_step": self.server_opt.step} if self.server_opt else {}),
        )

    def adopt(self, result: RoundResult) -> None:
        self.params = result.params
        self.model.set_params(result.params)
        self.history.append(result)
