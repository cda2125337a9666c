"""The coordinator's node: holds the global model and decides who takes part in each round.

It never sees records; it drives :mod:`guardians.protocol.round` state machines.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from guardians.crypto.sign import VerifyKey
from guardians.errors import ConfigError
from guardians.learning.aggregate import (
    Bulyan,
    FLTrust,
    MultiKrum,
    Rule,
    ServerMomentum,
    make_rule,
)
from guardians.learning.data import Dataset
from guardians.learning.models import Model
from guardians.learning.monitor import DriftMonitor, UpdateMonitor
from guardians.learning.preprocess import Standardizer
from guardians.learning.reputation import Reputation
from guardians.learning.train import TrainConfig, train_local
from guardians.protocol.messages import DriftReport
from guardians.protocol.round import CoordinatorRound, RoundResult, StatsCollection
from guardians.protocol.secagg.quantize import FixedPoint, stats_fixed_point
from guardians.protocol.secagg.server import SecureRound

PRIVACY_METHODS = ("none", "secagg")


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
        privacy: str = "none",
        directory: Mapping[str, VerifyKey] | None = None,
        consortium: str = "guardians",
        fixed_point: FixedPoint | None = None,
        norm_bound: float | None = None,
        rule: str = "fedavg",
        assumed_malicious: int = 0,
        root: Dataset | None = None,
        root_epochs: int = 1,
        monitor: UpdateMonitor | None = None,
        reputation: Reputation | None = None,
        quarantine: bool = True,
        standardize: bool = True,
    ) -> None:
        """``norm_bound`` (secure aggregation only) makes every member prove ‖update‖₂ ≤ it in
        zero knowledge and every aggregate checkable against the members' commitments.

        ``rule`` picks the aggregation rule (see :mod:`guardians.learning.aggregate.policy`);
        ``assumed_malicious`` is the f that Krum-style rules tolerate; ``root`` is the small
        clean dataset the coordinator trains on each round for FLTrust. With secure
        aggregation, "norm-bound" is enforced by contribution proofs (``norm_bound``)."""
        if privacy not in PRIVACY_METHODS:
            raise ConfigError(f"privacy must be one of {PRIVACY_METHODS}, got {privacy!r}")
        if privacy == "secagg":
            missing = [m for m in members if m not in (directory or {})]
            if missing:
                raise ConfigError(f"secure aggregation needs identity keys of {missing}")
            if len(members) < 3:
                raise ConfigError("secure aggregation needs at least 3 members")
        self.privacy = privacy
        if norm_bound is not None and privacy != "secagg" and "norm-bound" not in rule:
            raise ConfigError("contribution proofs need secure aggregation (privacy='secagg')")
        self.aggregator: Rule | None = None
        if privacy == "secagg":
            if rule not in ("fedavg", "norm-bound"):
                # Every other rule must see individual updates: make_rule says why it can't.
                make_rule(rule, privacy=privacy, members=len(members), f=assumed_malicious,
                          norm_bound=norm_bound, root=root is not None)  # fmt: skip
            if rule == "norm-bound" and norm_bound is None:
                raise ConfigError("norm-bound under secure aggregation is enforced by "
                                  "contribution proofs: give norm_bound")  # fmt: skip
            self.norm_bound = norm_bound
        else:
            self.norm_bound = None
            if rule != "fedavg":
                self.aggregator = make_rule(
                    rule, privacy=privacy, members=len(members), f=assumed_malicious,
                    norm_bound=norm_bound, root=root is not None,
                )  # fmt: skip
        self.root = root
        self.assumed_malicious = assumed_malicious
        self._probe: tuple[Model, np.ndarray] | None = None
        # FLTrust rescales every update to the root update's norm: the coordinator should take
        # about as many steps on its root data as a member takes on its records.
        self.root_epochs = max(1, root_epochs)
        self.rule = rule + ("+momentum" if server_momentum else "")
        self.directory = directory or {}
        self.consortium = consortium
        self.fixed_point = fixed_point or FixedPoint()
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
        # Off for a model whose inputs the members prepare themselves (a Flower app's own).
        self.standardize = standardize
        self.history: list[RoundResult] = []
        self.server_opt = ServerMomentum(server_momentum) if server_momentum else None
        self.monitor = monitor or UpdateMonitor()
        self.drift = DriftMonitor()
        self.drift_reports: dict[int, dict[str, DriftReport]] = {}
        self.reputation = reputation or Reputation()
        # Off: scores and alerts are still kept and logged, but nobody is kept out.
        self.quarantine = quarantine
        # What the last adopted round raised: member → reason (the engine logs them).
        self.alerts: dict[str, str] = {}
        self.newly_quarantined: dict[str, str] = {}

    def stats_collection(self) -> StatsCollection | SecureRound:
        """Round 0: feature statistics, summed securely when the consortium uses secagg."""
        if self.privacy == "secagg":
            return SecureRound(
                consortium=self.consortium, round=0, selected=self.members,
                directory=self.directory, global_params=np.zeros(self.n_features, np.float32),
                train=self.train, fixed_point=stats_fixed_point(), max_weight=1,
                purpose="stats",
            )  # fmt: skip
        return StatsCollection(round=0, selected=self.members, n_features=self.n_features)

    def select(self) -> list[str]:
        """A random fraction of the members in good standing (quarantined ones sit out)."""
        pool = [m for m in self.members if m not in self.reputation.quarantined]
        if not pool:
            raise ConfigError("every member is quarantined: the consortium must readmit some")
        k = max(1, min(len(pool), round(self.fraction * len(pool))))
        picked = self.rng.choice(len(pool), size=k, replace=False)
        return [pool[i] for i in sorted(picked)]

    def new_round(self, round: int) -> CoordinatorRound | SecureRound:
        selected = self.select()
        if self.privacy == "secagg":
            return SecureRound(
                consortium=self.consortium, round=round, selected=selected,
                directory=self.directory, global_params=self.params, train=self.train,
                fixed_point=self.fixed_point, norm_bound=self.norm_bound,
                server_opt=self.server_opt,
            )  # fmt: skip
        return CoordinatorRound(
            round=round,
            selected=selected,
            global_params=self.params,
            train=self.train,
            min_updates=max(1, int(np.ceil(self.min_fraction * len(selected)))),
            rule=self._rule_for(len(selected)),
            reference=self._root_update() if isinstance(self.aggregator, FLTrust) else None,
            layers=self.model.layer_slices() if hasattr(self.model, "layer_slices") else (),
            probe=self._probe_loss if self.root is not None else None,
            server_opt=self.server_opt,
        )

    def _rule_for(self, n: int) -> Rule | None:
        """The rule for a round of ``n`` updates: members already quarantined are counted out
        of the f that Krum-style rules must tolerate, so a smaller round still aggregates."""
        rule = self.aggregator
        if isinstance(rule, (MultiKrum, Bulyan)):
            per = 4 if isinstance(rule, Bulyan) else 2
            f = max(0, min(self.assumed_malicious - len(self.reputation.quarantined),
                           (n - 3) // per))  # fmt: skip
            if f != rule.f:
                rule = copy.copy(rule)
                rule.f = f
        return rule

    def _root_update(self) -> np.ndarray:
        """FLTrust's reference: the coordinator's own update on its clean root data, trained
        from the current global model exactly as members train."""
        if self.root is None or self.standardizer is None:
            raise ConfigError("FLTrust needs the root dataset and the consortium standardizer")
        model = copy.deepcopy(self.model)
        model.set_params(self.params)
        cfg = dataclasses.replace(self.train, epochs=self.train.epochs * self.root_epochs)
        train_local(model, self.standardizer.transform(self.root.X), self.root.y, cfg, self.rng)
        return model.get_params() - self.params

    def observe_drift(self, member: str, report: DriftReport) -> str | None:
        """A member's local summaries after a round; an alert string if something moved."""
        if member not in self.members:
            raise ConfigError(f"drift report from {member!r}, not a member")
        self.drift_reports.setdefault(report.round, {})[member] = report
        return self.drift.observe(member, report.model_f1, report.feature_shift)

    def _probe_loss(self, params: np.ndarray) -> float:
        """Loss of ``params`` on the coordinator's probe (root) set: the backdoor indicator."""
        assert self.root is not None and self.standardizer is not None
        if self._probe is None:  # one scratch model and the standardized probe set, reused
            self._probe = (copy.deepcopy(self.model), self.standardizer.transform(self.root.X))
        model, Z = self._probe
        model.set_params(params)
        loss, _ = model.loss_and_grad(Z, self.root.y)
        return float(loss)

    def adopt(self, result: RoundResult) -> None:
        """Take the round's model, then judge the round's contributions: monitoring alerts and
        reputation (exclusions, failed proofs and alerts count against a member)."""
        old = self.params
        self.params = result.params
        self.model.set_params(result.params)
        self.history.append(result)
        self.alerts = self.monitor.alerts(result.update_stats)
        if self.privacy == "secagg":
            why = self.monitor.aggregate_alert(float(np.linalg.norm(result.params - old)))
            if why:
                self.alerts["(aggregate)"] = why
        self.newly_quarantined = {}
        bad = {**result.rejected, **self.alerts}
        cap = (len(self.members) - 1) // 2
        for m in (*result.contributors, *result.rejected):
            if m in bad:
                value = 0.0  # a failed proof or a monitoring alert
            elif m in result.excluded:
                # Rules like Multi-Krum leave f updates out every round, honest or not: an
                # exclusion alone lowers the score towards, never below, the threshold.
                value = self.reputation.threshold
            elif m in result.update_stats:
                value = (1.0 + result.update_stats[m]["cosine"]) / 2
            else:
                value = 1.0
            room = self.quarantine and len(self.reputation.quarantined) < cap
            if self.reputation.observe(result.round, m, value, may_quarantine=room):
                self.newly_quarantined[m] = (
                    f"reputation {self.reputation.score(m):.2f} below "
                    f"{self.reputation.threshold}: quarantined from round {result.round + 1}"
                )
