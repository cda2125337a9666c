"""Messages of federated training, as carried between coordinator and members.

Members are named by the envelope their transport authenticates, not inside messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guardians.codec import Message, array_field, message

# How the update leaves the member: in the clear ("plain") or through secure aggregation.
AGGREGATIONS = ("plain", "secagg")


def _nonneg(**values: int) -> None:
    for name, v in values.items():
        if v < 0:
            raise ValueError(f"{name} must be non-negative, got {v}")


@message("fl/stats-request")
@dataclass(frozen=True, eq=False)
class StatsRequest(Message):
    """Coordinator → member: report feature statistics for the consortium standardizer, in the
    clear ("plain") or through secure aggregation ("secagg")."""

    round: int
    aggregation: str

    def __post_init__(self) -> None:
        _nonneg(round=self.round)
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}")


@message("fl/stats-report")
@dataclass(frozen=True, eq=False)
class StatsReport(Message):
    """Member → coordinator: record count and per-feature sum and sum of squares."""

    round: int
    count: int
    sum: np.ndarray = array_field("float64")
    sumsq: np.ndarray = array_field("float64")

    def __post_init__(self) -> None:
        _nonneg(round=self.round, count=self.count)


@message("fl/stats-result")
@dataclass(frozen=True, eq=False)
class StatsResult(Message):
    """Coordinator → member: the consortium's standardization (mean and scale per feature)."""

    round: int
    mean: np.ndarray = array_field("float32")
    scale: np.ndarray = array_field("float32")

    def __post_init__(self) -> None:
        _nonneg(round=self.round)


@message("fl/train")
@dataclass(frozen=True, eq=False)
class TrainInstruction(Message):
    """Coordinator → selected member: train from these global parameters."""

    round: int
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    momentum: float
    proximal: float
    aggregation: str
    params: np.ndarray = array_field("float32")
    # How the coordinator will step the model from the round's mean update (see GlobalModel).
    server_momentum: float = 0.0
    server_lr: float = 1.0

    def __post_init__(self) -> None:
        _nonneg(round=self.round, epochs=self.epochs, batch_size=self.batch_size)
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}")
        _server_step(self.server_momentum, self.server_lr)


@message("fl/update")
@dataclass(frozen=True, eq=False)
class ModelUpdate(Message):
    """Member → coordinator: local parameters minus global ones, and the sample count."""

    round: int
    num_samples: int
    loss: float
    delta: np.ndarray = array_field("float32")

    def __post_init__(self) -> None:
        _nonneg(round=self.round, num_samples=self.num_samples)


def _server_step(momentum: float, lr: float) -> None:
    if not (0.0 <= momentum < 1.0 and 0.0 < lr < 1e6):
        raise ValueError("server momentum must be in [0, 1) and its rate in (0, 10^6)")


@message("fl/global-model")
@dataclass(frozen=True, eq=False)
class GlobalModel(Message):
    """Coordinator → every member: the new global model after a round, and how the server
    step made it from the round's mean update Δ (FedAvgM: v ← β·v + Δ, w ← w + lr·v; plain
    FedAvg is β = 0, lr = 1 with no velocity sent), so that a member holding the round's
    opened aggregate can recompute it."""

    round: int
    params: np.ndarray = array_field("float32")
    velocity: np.ndarray = array_field("float32", empty_default=True)
    server_momentum: float = 0.0
    server_lr: float = 1.0

    def __post_init__(self) -> None:
        _nonneg(round=self.round)
        _server_step(self.server_momentum, self.server_lr)
        if self.velocity.size and self.velocity.shape != self.params.shape:
            raise ValueError("the server velocity must match the parameters")


@message("fl/drift-report")
@dataclass(frozen=True, eq=False)
class DriftReport(Message):
    """Member → coordinator, after adopting a global model: summaries computed locally, never
    records. ``feature_shift`` is the mean |z| of the member's feature means under the
    consortium standardization (how unlike the consortium its data is); ``label_rate`` its
    share of positive (attack) records; ``model_f1`` and ``flag_rate`` how the new global model
    does on its records (F1, share flagged as attacks)."""

    round: int
    records: int
    feature_shift: float
    label_rate: float
    model_f1: float
    flag_rate: float

    def __post_init__(self) -> None:
        _nonneg(round=self.round, records=self.records)
        for name in ("feature_shift", "label_rate", "model_f1", "flag_rate"):
            v = getattr(self, name)
            if not (isinstance(v, float) and v == v and v >= 0):
                raise ValueError(f"drift report: {name} must be a non-negative number")


@message("central/records")
@dataclass(frozen=True, eq=False)
class RecordsUpload(Message):
    """Member → central server: raw training records. Only the centralized baseline sends it;
    it exists so that the baseline's data movement is carried and metered like everything else."""

    features: np.ndarray = array_field("float32", ndim=2, protection="plain")
    labels: np.ndarray = array_field("int64", protection="plain")

    def __post_init__(self) -> None:
        if self.features.shape[0] != self.labels.shape[0]:
            raise ValueError("features and labels disagree on the number of records")
