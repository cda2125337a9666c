"""The federated round as sans-I/O state machines.

Coordinator side::

    rnd = CoordinatorRound(round=3, selected=[...], global_params=w, train=cfg, min_updates=2)
    sends = rnd.start()                 # TrainInstruction to each selected member
    rnd.receive(member, ModelUpdate)    # for each arriving message; raises on a bad one
    rnd.drop(member, "timed out")       # the transport decides who is gone, not the protocol
    result, sends = rnd.finish()        # FedAvg; GlobalModel to every member

Member side: :class:`MemberSession` turns incoming messages into events for the node to act on
and builds the replies. Neither side does I/O, reads a clock or draws randomness.

A peer that breaks the protocol raises :class:`RemoteProtocolError` naming it; the coordinator
also excludes that member from the round, so one bad member cannot stall or poison the rest.
Exceptions: a second copy of an accepted reply, or a reply for another round, is refused without
excluding the member, since such a replay may come from the relay rather than the member.
Misuse by our own caller raises :class:`LocalProtocolError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from guardians.codec import Message
from guardians.errors import LocalProtocolError, RemoteProtocolError, RoundAbortedError
from guardians.learning.aggregate import FedAvg, Rule
from guardians.learning.aggregate.momentum import ServerMomentum
from guardians.learning.preprocess import FeatureStats, Standardizer
from guardians.learning.train import TrainConfig
from guardians.protocol.messages import (
    GlobalModel,
    ModelUpdate,
    StatsReport,
    StatsRequest,
    StatsResult,
    TrainInstruction,
)


@dataclass(frozen=True)
class Send:
    """An outgoing message for the transport to deliver."""

    to: str
    message: Message


class Phase(Enum):
    IDLE = "idle"
    COLLECTING = "collecting"
    DONE = "done"
    ABORTED = "aborted"


class _Collector:
    """Shared machinery: ask each selected member once, track replies, drops and exclusions."""

    expects: type[Message]

    def __init__(self, *, round: int, selected: Sequence[str], quorum: int) -> None:
        if round < 0:
            raise LocalProtocolError(f"round must be non-negative, got {round}")
        if len(set(selected)) != len(selected):
            raise LocalProtocolError("a member was selected twice")
        if not selected:
            raise LocalProtocolError("no members selected")
        if not 1 <= quorum <= len(selected):
            raise LocalProtocolError(f"quorum {quorum} impossible with {len(selected)} members")
        self.round = round
        self.selected = tuple(selected)
        self.quorum = quorum
        self.phase = Phase.IDLE
        self.replies: dict[str, Message] = {}
        self.dropped: dict[str, str] = {}

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(self.selected) - set(self.replies) - set(self.dropped)

    @property
    def complete(self) -> bool:
        return self.phase is Phase.COLLECTING and not self.pending

    def _begin(self) -> None:
        if self.phase is not Phase.IDLE:
            raise LocalProtocolError(f"round {self.round} already started")
        self.phase = Phase.COLLECTING

    def receive(self, sender: str, msg: Message) -> None:
        """Accept one member's reply; raise RemoteProtocolError (and exclude it) if invalid."""
        if self.phase is not Phase.COLLECTING:
            raise LocalProtocolError(f"round {self.round} is {self.phase.value}, not collecting")
        if sender not in self.selected:
            raise RemoteProtocolError(
                f"{sender!r} sent {msg.KIND} but was not selected for round {self.round}",
                peer=sender,
            )
        if sender in self.replies:
            raise RemoteProtocolError(
                f"{sender!r} sent a second {msg.KIND} in round {self.round} (replay?)", peer=sender
            )
        if sender in self.dropped:
            raise RemoteProtocolError(
                f"{sender!r} was excluded from round {self.round} ({self.dropped[sender]})",
                peer=sender,
            )
        msg_round = getattr(msg, "round", None)
        if isinstance(msg, self.expects) and msg_round != self.round:
            # Like a duplicate, a stale message may be a relay's replay: refuse it, keep the member.
            raise RemoteProtocolError(
                f"{sender!r} sent {msg.KIND} for round {msg_round} during round "
                f"{self.round} (stale or replayed)",
                peer=sender,
            )
        try:
            if not isinstance(msg, self.expects):
                raise RemoteProtocolError(
                    f"{sender!r} sent {msg.KIND}, expected {self.expects.KIND}", peer=sender
                )
            self._validate(sender, msg)
        except RemoteProtocolError as exc:
            self.dropped[sender] = str(exc)
            raise
        self.replies[sender] = msg

    def _validate(self, sender: str, msg: Message) -> None:
        raise NotImplementedError

    def drop(self, member: str, reason: str) -> None:
        """Record that ``member`` left (or was excluded from) this round."""
        if member not in self.selected:
            raise LocalProtocolError(f"{member!r} is not part of round {self.round}")
        if member not in self.replies:
            self.dropped.setdefault(member, reason)

    stage = "collect"

    def advance(self) -> None:
        """Close the (only) stage: whoever has not replied has dropped. No further stage."""
        if self.phase is not Phase.COLLECTING:
            raise LocalProtocolError(f"round {self.round} is {self.phase.value}, not collecting")
        for m in self.pending:
            self.drop(m, "no reply")

    def _close(self) -> None:
        if self.phase is not Phase.COLLECTING:
            raise LocalProtocolError(f"round {self.round} is {self.phase.value}, cannot finish")
        if len(self.replies) < self.quorum:
            self.phase = Phase.ABORTED
            reasons = "; ".join(f"{m}: {r}" for m, r in sorted(self.dropped.items()))
            raise RoundAbortedError(
                f"round {self.round}: {len(self.replies)} of {len(self.selected)} members "
                f"replied, {self.quorum} needed" + (f" ({reasons})" if reasons else "")
            )
        self.phase = Phase.DONE


# --- feature statistics ---------------------------------------------------------------------
class StatsCollection(_Collector):
    """Combine members' feature statistics into the consortium standardizer."""

    expects = StatsReport

    def __init__(
        self,
        *,
        round: int,
        selected: Sequence[str],
        n_features: int,
        quorum: int | None = None,
        max_count: int = 1 << 40,
    ) -> None:
        super().__init__(round=round, selected=selected, quorum=quorum or len(selected))
        self.n_features = n_features
        self.max_count = max_count

    def start(self) -> list[Send]:
        self._begin()
        return [Send(m, StatsRequest(round=self.round, aggregation="plain")) for m in self.selected]

    def _validate(self, sender: str, msg: Message) -> None:
        assert isinstance(msg, StatsReport)
        for name in ("sum", "sumsq"):
            arr = getattr(msg, name)
            if arr.shape != (self.n_features,):
                raise RemoteProtocolError(
                    f"{sender!r} sent {name} of shape {arr.shape}, expected ({self.n_features},)",
                    peer=sender,
                )
            if not np.all(np.isfinite(arr)):
                raise RemoteProtocolError(f"{sender!r} sent non-finite {name}", peer=sender)
        if not 1 <= msg.count <= self.max_count:
            raise RemoteProtocolError(
                f"{sender!r} reported {msg.count} records (allowed 1..{self.max_count})",
                peer=sender,
            )
        # Cauchy–Schwarz: (Σx)² ≤ n·Σx², and Σx² ≥ 0; anything else is not real data.
        if np.any(msg.sumsq < 0) or np.any(msg.sum**2 > msg.count * msg.sumsq * (1 + 1e-9) + 1e-9):
            raise RemoteProtocolError(
                f"{sender!r} sent statistics no data set can have", peer=sender
            )

    def finish(self, recipients: Iterable[str]) -> tuple[Standardizer, list[Send]]:
        self._close()
        stats = FeatureStats.combine(
            FeatureStats(count=r.count, sum=r.sum, sumsq=r.sumsq)  # type: ignore[attr-defined]
            for r in self.replies.values()
        )
        std = Standardizer.from_stats(stats)
        if not (np.all(np.isfinite(std.mean)) and np.all(np.isfinite(std.scale))):
            self.phase = Phase.ABORTED
            raise RoundAbortedError(
                f"round {self.round}: combined feature statistics are not finite; "
                "no standardizer released"
            )
        result = StatsResult(round=self.round, mean=std.mean, scale=std.scale)
        return std, [Send(m, result) for m in recipients]


# --- a training round -----------------------------------------------------------------------
def _apply_delta(params: np.ndarray, delta: np.ndarray) -> np.ndarray:
    return (params + delta).astype(np.float32)


def server_step_fields(server_opt: ServerMomentum | None) -> dict[str, float]:
    """The server step as messages carry it (plain FedAvg: momentum 0, rate 1)."""
    if server_opt is None:
        return {"server_momentum": 0.0, "server_lr": 1.0}
    return {"server_momentum": float(server_opt.beta), "server_lr": float(server_opt.lr)}


def global_model(round: int, params: np.ndarray, server_opt: ServerMomentum | None) -> GlobalModel:
    """The round's model with the server step that made it (see :class:`GlobalModel`)."""
    if server_opt is None:
        return GlobalModel(round=round, params=params)
    v = server_opt.velocity
    return GlobalModel(round=round, params=params,
                       velocity=v if v is not None else np.zeros_like(params),
                       **server_step_fields(server_opt))  # fmt: skip


@dataclass(frozen=True, eq=False)
class RoundResult:
    round: int
    params: np.ndarray
    contributors: tuple[str, ...]
    samples: int
    mean_loss: float
    dropped: dict[str, str] = field(default_factory=dict)
    # Coordinates clipped to the fixed-point range by members (secure aggregation reports it).
    clipped: int = 0
    # Members excluded because their contribution proof failed, with the evidence.
    rejected: dict[str, str] = field(default_factory=dict)
    # For each rejected member: its signed commitment and proof (encoded ContributionEvidence).
    evidence: dict[str, bytes] = field(default_factory=dict)
    # Whether the aggregate was checked against the contributors' commitments, and the digest
    # of that opening (aggregate and signed commitments) for the ledger.
    verified: bool = False
    aggregate_digest: bytes = b""
    # Updates a robust aggregation rule left out (and why), and the rule's per-member scores.
    excluded: dict[str, str] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    # Plaintext rounds: per member, the update's norm (overall, per layer), cosine to the
    # round's median update and probe-loss increase (monitoring reads these).
    update_stats: dict[str, dict[str, float]] = field(default_factory=dict)


class CoordinatorRound(_Collector):
    """One FedAvg round: instruct the selected members, collect updates, aggregate."""

    expects = ModelUpdate

    def __init__(
        self,
        *,
        round: int,
        selected: Sequence[str],
        global_params: np.ndarray,
        train: TrainConfig,
        min_updates: int | None = None,
        server_opt: ServerMomentum | None = None,
        max_samples: int = 1 << 40,
        rule: Rule | None = None,
        reference: np.ndarray | None = None,
        layers: Sequence[tuple[str, slice]] = (),
        probe: Callable[[np.ndarray], float] | None = None,
    ) -> None:
        """``rule`` aggregates the updates (FedAvg by sample count unless another is given); a
        robust rule may leave members out, which the result reports. ``reference`` is the
        coordinator's own update on its root data, for rules that need one (FLTrust). For
        monitoring, the result carries each update's norm (overall and per ``layers``), its
        cosine to the round's coordinate-wise median update and, with ``probe`` (the loss of a
        parameter vector on the coordinator's probe set), how much it alone raises that loss."""
        super().__init__(round=round, selected=selected, quorum=min_updates or len(selected))
        self.global_params = np.asarray(global_params, dtype=np.float32).copy()
        self.train = train
        self.rule = rule or FedAvg()
        self.reference = reference
        self.layers = tuple(layers)
        self.probe = probe
        self.server_opt = server_opt
        self.server_step = server_opt.step if server_opt is not None else _apply_delta
        self.max_samples = max_samples

    def start(self) -> list[Send]:
        self._begin()
        t = self.train
        instr = TrainInstruction(
            round=self.round,
            epochs=t.epochs,
            batch_size=t.batch_size,
            learning_rate=t.learning_rate,
            optimizer=t.optimizer,
            momentum=t.momentum,
            proximal=t.proximal,
            aggregation="plain",
            params=self.global_params,
            **server_step_fields(self.server_opt),
        )
        return [Send(m, instr) for m in self.selected]

    def _validate(self, sender: str, msg: Message) -> None:
        assert isinstance(msg, ModelUpdate)
        d = self.global_params.shape[0]
        if msg.delta.shape != (d,):
            raise RemoteProtocolError(
                f"{sender!r} sent an update of shape {msg.delta.shape}, expected ({d},)",
                peer=sender,
            )
        if not np.all(np.isfinite(msg.delta)):
            raise RemoteProtocolError(
                f"{sender!r} sent an update with non-finite values", peer=sender
            )
        if not np.isfinite(msg.loss):
            raise RemoteProtocolError(f"{sender!r} sent a non-finite loss", peer=sender)
        if not 1 <= msg.num_samples <= self.max_samples:
            raise RemoteProtocolError(
                f"{sender!r} claimed {msg.num_samples} samples (allowed 1..{self.max_samples})",
                peer=sender,
            )

    def _update_stats(
        self, members: list[str], deltas: list[np.ndarray]
    ) -> dict[str, dict[str, float]]:
        # Cosines are taken to the coordinate-wise median update, not to the (possibly
        # poisoned) aggregate: a minority cannot drag the reference towards itself.
        a = np.median(np.stack(deltas).astype(np.float64), axis=0)
        an = float(np.linalg.norm(a))
        base = self.probe(self.global_params) if self.probe else 0.0
        out: dict[str, dict[str, float]] = {}
        for m, d in zip(members, deltas, strict=True):
            u = np.asarray(d, dtype=np.float64)
            n = float(np.linalg.norm(u))
            s = {"norm": n, "cosine": float(u @ a) / (n * an) if n > 0 and an > 0 else 0.0}
            for name, sl in self.layers:
                s[f"norm:{name}"] = float(np.linalg.norm(u[sl]))
            if self.probe is not None:
                with np.errstate(over="ignore", invalid="ignore"):
                    inc = self.probe((self.global_params + d).astype(np.float32)) - base
                s["probe_loss_increase"] = float(inc) if np.isfinite(inc) else float("inf")
            out[m] = s
        return out

    def finish(self, recipients: Iterable[str]) -> tuple[RoundResult, list[Send]]:
        """Aggregate (FedAvg by sample count), apply the server step (plain addition, or a
        server optimizer such as FedAvgM) and broadcast the new global model."""
        self._close()
        members = sorted(self.replies)
        ups = [self.replies[m] for m in members]
        agg = self.rule(
            np.stack([u.delta for u in ups]),  # type: ignore[attr-defined]
            np.array([u.num_samples for u in ups], dtype=np.float64),  # type: ignore[attr-defined]
            members=members, reference=self.reference,
        )  # fmt: skip
        delta = agg.update
        excluded = {members[i]: f"{self.rule.name}: {why}" for i, why in agg.rejected.items()}
        scores: dict[str, float] = {}
        if agg.scores is not None:
            scores = {m: float(x) for m, x in zip(members, agg.scores, strict=True)}
        stats = self._update_stats(members, [u.delta for u in ups])  # type: ignore[attr-defined]
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            params = self.server_step(self.global_params, delta)
        if not np.all(np.isfinite(params)):
            self.phase = Phase.ABORTED
            raise RoundAbortedError(
                f"round {self.round}: the aggregate is not finite (an update too large?); "
                "no model released"
            )
        samples = sum(u.num_samples for u in ups)  # type: ignore[attr-defined]
        losses = [u.loss for u in ups]  # type: ignore[attr-defined]
        result = RoundResult(
            round=self.round,
            params=params,
            contributors=tuple(members),
            samples=samples,
            mean_loss=float(np.mean(losses)),
            dropped=dict(self.dropped),
            excluded=excluded,
            scores=scores,
            update_stats=stats,
        )
        gm = global_model(self.round, params, self.server_opt)
        return result, [Send(m, gm) for m in recipients]


# --- member side ----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class StatsRequested:
    round: int
    aggregation: str = "plain"


@dataclass(frozen=True, eq=False)
class StandardizerReceived:
    round: int
    standardizer: Standardizer


@dataclass(frozen=True, eq=False)
class TrainingRequested:
    round: int
    params: np.ndarray
    config: TrainConfig
    aggregation: str = "plain"
    server_step: tuple[float, float] = (0.0, 1.0)  # (momentum, rate)


@dataclass(frozen=True, eq=False)
class GlobalModelReceived:
    round: int
    params: np.ndarray
    velocity: np.ndarray  # empty: plain FedAvg
    server_momentum: float = 0.0
    server_lr: float = 1.0


MemberEvent = StatsRequested | StandardizerReceived | TrainingRequested | GlobalModelReceived


class MemberSession:
    """A member's side of the protocol: validates what the coordinator sends, refuses replays
    (every round number is used once, increasing), and builds replies."""

    def __init__(self, member: str, *, n_features: int, n_params: int) -> None:
        self.member = member
        self.n_features = n_features
        self.n_params = n_params
        self._last_round = -1
        self._last_global = -1
        self._aggregation = "plain"
        self._training_round: int | None = None
        self._stats_round: int | None = None

    def _remote(self, text: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"coordinator → {self.member}: {text}", peer="coordinator")

    def _check_vector(self, arr: np.ndarray, n: int, what: str) -> None:
        if arr.shape != (n,):
            raise self._remote(f"{what} has shape {arr.shape}, expected ({n},)")
        if not np.all(np.isfinite(arr)):
            raise self._remote(f"{what} holds non-finite values")

    def receive(self, msg: Message) -> MemberEvent:
        if isinstance(msg, StatsRequest):
            # Statistics open the run (round 0), before any training.
            if msg.round != 0 or self._last_round >= 0 or self._last_global >= 0:
                raise self._remote(f"statistics requested for round {msg.round}, after "
                                   "training began (stale or replayed)")  # fmt: skip
            self._stats_round = msg.round
            return StatsRequested(msg.round, msg.aggregation)
        if isinstance(msg, StatsResult):
            if msg.round != self._stats_round:
                raise self._remote(f"standardizer for round {msg.round} was never requested")
            self._check_vector(msg.mean, self.n_features, "mean")
            self._check_vector(msg.scale, self.n_features, "scale")
            if np.any(msg.scale <= 0):
                raise self._remote("scale must be positive")
            self._stats_round = None
            return StandardizerReceived(msg.round, Standardizer(msg.mean, msg.scale))
        if isinstance(msg, TrainInstruction):
            if msg.round <= self._last_round:
                raise self._remote(
                    f"instruction for round {msg.round} after round {self._last_round} "
                    "(stale or replayed)"
                )
            self._check_vector(msg.params, self.n_params, "global parameters")
            try:
                cfg = TrainConfig(
                    epochs=msg.epochs,
                    batch_size=msg.batch_size,
                    learning_rate=msg.learning_rate,
                    optimizer=msg.optimizer,
                    momentum=msg.momentum,
                    proximal=msg.proximal,
                )
            except Exception as exc:
                raise self._remote(f"bad training configuration: {exc}") from None
            self._last_round = msg.round
            self._training_round = msg.round
            self._aggregation = msg.aggregation
            return TrainingRequested(msg.round, msg.params, cfg, msg.aggregation,
                                     (msg.server_momentum, msg.server_lr))  # fmt: skip
        if isinstance(msg, GlobalModel):
            # Members not selected for a round still adopt its model; round numbers only grow.
            if msg.round <= self._last_global or msg.round < self._last_round:
                raise self._remote(
                    f"global model for round {msg.round} after round "
                    f"{max(self._last_global, self._last_round)} (stale or replayed)"
                )
            self._check_vector(msg.params, self.n_params, "global model")
            if msg.velocity.size:
                self._check_vector(msg.velocity, self.n_params, "server velocity")
            self._last_global = msg.round
            self._last_round = max(self._last_round, msg.round)
            return GlobalModelReceived(msg.round, msg.params, msg.velocity, msg.server_momentum,
                                       msg.server_lr)  # fmt: skip
        raise self._remote(f"unexpected message {msg.KIND}")

    def stats_report(self, round: int, stats: FeatureStats) -> StatsReport:
        if self._stats_round != round:
            raise LocalProtocolError(f"no statistics were requested for round {round}")
        return StatsReport(round=round, count=stats.count, sum=stats.sum, sumsq=stats.sumsq)

    def update(self, round: int, delta: np.ndarray, num_samples: int, loss: float) -> ModelUpdate:
        """The plaintext reply to a training request (secure rounds send nothing here)."""
        if self._training_round != round:
            raise LocalProtocolError(f"no training was requested for round {round}")
        delta = np.asarray(delta, dtype=np.float32)
        if not np.all(np.isfinite(delta)) or not np.isfinite(loss):
            raise LocalProtocolError(f"round {round}: local training diverged (non-finite update)")
        self._training_round = None
        if self._aggregation != "plain":
            raise LocalProtocolError(f"round {round} uses {self._aggregation}, not plain updates")
        return ModelUpdate(
            round=round,
            num_samples=num_samples,
            loss=float(loss),
            delta=np.asarray(delta, dtype=np.float32),
        )
