"""A member's node: holds the member's records and model; its data never leaves it.

The node reacts to protocol events from its :class:`MemberSession`: it reports feature
statistics, standardizes its own records with the consortium's standardizer, trains locally, and
adopts each new global model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from guardians.codec import Message
from guardians.crypto.sign import SigningKey, VerifyKey
from guardians.crypto.zk import norm
from guardians.errors import LocalProtocolError, RemoteProtocolError
from guardians.learning.data import Dataset
from guardians.learning.models import Model
from guardians.learning.preprocess import FeatureStats, Standardizer
from guardians.learning.train import train_local
from guardians.protocol.messages import DriftReport, RecordsUpload
from guardians.protocol.round import (
    GlobalModelReceived,
    MemberSession,
    StandardizerReceived,
    StatsRequested,
    TrainingRequested,
)
from guardians.protocol.secagg.client import SecAggMember, Stage
from guardians.protocol.secagg.messages import (
    AggregateOpening,
    ConsistencyCheck,
    EncapsRelay,
    Keys,
    SecAggSetup,
    SharesRelay,
    UnmaskRequest,
)
from guardians.protocol.secagg.quantize import FixedPoint, stats_fixed_point
from guardians.protocol.witness import CosignRequest, MemberWitness, WitnessKeyRequest

# What MemberNode.idle() did, for the engines that time it.
WORK_CONTRIBUTION = "contribution"
WORK_PROVER_MASKS = "prover-masks"

SECAGG_MESSAGES = (SecAggSetup, Keys, EncapsRelay, SharesRelay, ConsistencyCheck, UnmaskRequest,
                   AggregateOpening)  # fmt: skip


class MemberNode:
    def __init__(
        self,
        member_id: str,
        data: Dataset,
        model: Model,
        rng: np.random.Generator,
        *,
        identity: SigningKey | None = None,
        directory: Mapping[str, VerifyKey] | None = None,
        consortium: str = "guardians",
        require_secure: bool = False,
        external_training: bool = False,
    ) -> None:
        """``external_training``: the update comes from outside this node (a Flower app's own
        train function, see :meth:`take_external_update`); the node then needs no
        standardizer and sends no drift summaries."""
        self.id = member_id
        self.external_training = external_training
        self.awaiting: TrainingRequested | None = None
        self.identity = identity
        self.directory = directory or {}
        self.consortium = consortium
        # Member policy, enforced here rather than trusted to the coordinator.
        self.require_secure = require_secure
        self._pending: tuple[int, np.ndarray, int, FixedPoint] | None = None
        self.secagg: SecAggMember | None = None
        # Prover masks for the next contribution proof, made while the member waits.
        self._masks: norm.ProverMasks | None = None
        self.data = data
        self.model = model
        self.rng = rng
        self.session = MemberSession(member_id, n_features=data.n_features, n_params=model.n_params)
        self.standardizer: Standardizer | None = None
        self._Z: np.ndarray | None = None
        self.global_round = -1
        self.last_loss = float("nan")
        # A round whose aggregate or model failed this member's check: its model is refused.
        self.distrusted_round = -1
        # What the model chain is checked against: the parameters this member trained from
        # (per round), and the last global model it accepted with its server velocity.
        self._trained_from: tuple[int, np.ndarray, str] | None = None
        self._accepted: tuple[int, np.ndarray, np.ndarray] | None = None
        self._server_step: tuple[float, float] | None = None  # (momentum, rate), first seen
        # A proven round's model that arrived before its opening (transports may reorder).
        self._model_waiting: GlobalModelReceived | None = None
        # This member's witness of the consortium's log: its keys never leave this node.
        self.witness = MemberWitness(member_id, consortium, identity) if identity else None

    @property
    def records(self) -> np.ndarray:
        """The member's raw records (what must never cross its boundary)."""
        return self.data.X

    def handle(self, msg: Message) -> list[Message]:
        """Process one message from the coordinator; return the replies to send back."""
        if isinstance(msg, SECAGG_MESSAGES):
            return self._secure(msg)
        if isinstance(msg, WitnessKeyRequest | CosignRequest):
            if self.witness is None:
                raise RemoteProtocolError(f"{self.id} has no identity key to witness with",
                                          peer="coordinator")  # fmt: skip
            return self.witness.receive(msg, int(time.time()))
        event = self.session.receive(msg)
        if isinstance(event, StatsRequested):
            stats = FeatureStats.of(self.data.X)
            if event.aggregation == "secagg":
                vector = np.concatenate([[stats.count], stats.sum, stats.sumsq])
                self._pending = (event.round, vector, 1, stats_fixed_point())
                return []  # the statistics leave only masked, summed with everyone else's
            self._refuse_plain(event.round, "feature statistics")
            return [self.session.stats_report(event.round, stats)]
        if isinstance(event, StandardizerReceived):
            self.standardizer = event.standardizer
            self._Z = self.standardizer.transform(self.data.X)
            return []
        if isinstance(event, TrainingRequested):
            if event.aggregation == "plain":
                self._refuse_plain(event.round, "model update")
            self._check_training_params(event)
            self._trained_from = (event.round, event.params.copy(), event.aggregation)
            if self.external_training:
                self.awaiting = event  # the transport trains and calls take_external_update
                return []
            if self._Z is None:
                raise RemoteProtocolError(
                    f"coordinator → {self.id}: training requested before standardization",
                    peer="coordinator",
                )
            delta, samples, loss = self.local_update(event)
            return self._submit(event, delta, samples, loss)
        if isinstance(event, GlobalModelReceived):
            return self._adopt(event)
        raise AssertionError(f"unhandled event {event!r}")  # pragma: no cover

    def _adopt(self, event: GlobalModelReceived) -> list[Message]:
        """Take the round's model. If this member trained for it under secure aggregation and
        its masked input went out, the model must wait for the round's opening and then be the
        server step on it (:meth:`_check_global_model`); if its masked input never went out,
        its part in the round is over and the model is taken as sent, as by any member that
        did not contribute."""
        if self._model_waiting is not None and self._model_waiting.round < event.round:
            self._model_waiting = None  # its opening never came: never adopted
        if event.round == self.distrusted_round:
            raise self._remote(f"refusing the global model of round {event.round}: its aggregate "
                               "or its opening failed this member's check")  # fmt: skip
        self._pin_step((event.server_momentum, event.server_lr), event.round)
        trained = self._trained_from
        if trained is not None and trained[0] == event.round and trained[2] == "secagg":
            sa = self._own_round(event.round)
            if sa is not None and sa.masked_sent and sa.statement is not None:
                if sa.verified_total is None:
                    self._model_waiting = event
                    return []
                try:
                    self._check_global_model(event, sa)
                except RemoteProtocolError:
                    self.distrusted_round = event.round
                    raise
            elif sa is not None and not sa.masked_sent:
                self.secagg = None  # the round finished without this member's update
        self.model.set_params(event.params)
        self.global_round = event.round
        self._accepted = (event.round, event.params.copy(), event.velocity.copy())
        return [self.drift_report(event.round)] if self._Z is not None else []

    def _submit(
        self, event: TrainingRequested, delta: np.ndarray, samples: int, loss: float
    ) -> list[Message]:
        self.last_loss = loss
        if event.aggregation == "secagg":
            self._pending = (event.round, delta, samples, FixedPoint())
            return []  # the update leaves only masked, in the secure-aggregation stages
        return [self.session.update(event.round, delta, samples, loss)]

    def take_external_update(
        self, round: int, params: np.ndarray, samples: int, loss: float
    ) -> list[Message]:
        """The parameters an outside trainer reached from the awaited instruction's: the
        update (their difference) then goes out exactly as a local one would."""
        event = self.awaiting
        if event is None or event.round != round:
            raise LocalProtocolError(f"{self.id}: no training of round {round} is awaited")
        params = np.asarray(params, dtype=np.float32)
        if params.shape != event.params.shape or not np.all(np.isfinite(params)):
            raise LocalProtocolError(
                f"{self.id}: trained parameters must be {event.params.shape[0]} finite values"
            )
        if not 0 < samples <= 2**31:
            raise LocalProtocolError(f"{self.id}: sample count {samples} out of range")
        self.awaiting = None
        self.model.set_params(params)
        return self._submit(event, params - event.params, int(samples), float(loss))

    def local_update(self, event: TrainingRequested) -> tuple[np.ndarray, int, float]:
        """Train from the global parameters on this member's records: (Δ, samples, loss)."""
        assert self._Z is not None
        self.model.set_params(event.params)
        result = train_local(self.model, self._Z, self.data.y, event.config, self.rng)
        return self.model.get_params() - event.params, result.samples, result.loss

    def drift_report(self, round: int) -> DriftReport:
        """Summaries of this member's data and of the global model on it (only these leave)."""
        assert self._Z is not None
        z_means = np.abs(self._Z.mean(axis=0)) if len(self._Z) else np.zeros(1)
        y = self.data.y
        positive = y != 0
        pred = self.model.predict_proba(self._Z).argmax(axis=1) != 0 if len(y) else positive
        tp = float(np.sum(pred & positive))
        denom = float(np.sum(pred) + np.sum(positive))
        return DriftReport(
            round=round, records=len(y), feature_shift=float(np.mean(z_means)),
            label_rate=float(np.mean(positive)) if len(y) else 0.0,
            model_f1=2 * tp / denom if denom else 0.0,
            flag_rate=float(np.mean(pred)) if len(y) else 0.0,
        )  # fmt: skip

    # --- the model chain: what the coordinator publishes must follow from what was verified ---
    def _remote(self, text: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"coordinator → {self.id}: {text}", peer="coordinator")

    def _pin_step(self, step: tuple[float, float], round: int) -> None:
        """The server step (momentum, rate) is the consortium's: pinned at first sight."""
        if self._server_step is None:
            self._server_step = step
        elif step != self._server_step:
            raise self._remote(f"round {round} changes the server step to {step}, "
                               f"from {self._server_step}")  # fmt: skip

    def _own_round(self, round: int) -> SecAggMember | None:
        sa = self.secagg
        return sa if sa is not None and sa.round == round else None

    def _expected(self, sa: SecAggMember) -> tuple[np.ndarray, np.ndarray] | None:
        """(model, velocity) the server step gives from the parameters this member trained
        from and the opened mean it verified; None when the previous velocity is unknown (a
        round with momentum whose previous model this member did not see)."""
        assert sa.verified_total is not None and self._server_step is not None
        trained = self._trained_from
        if trained is None or trained[0] != sa.round:
            raise self._remote(f"round {sa.round}'s opening for a round this member did not "
                               "train in")  # fmt: skip
        mean, _ = sa.fixed_point.decode_sum(sa.verified_total)
        delta = mean.astype(np.float32)
        beta, lr = self._server_step
        acc = self._accepted
        if beta == 0.0 or (acc is None and sa.round == 1):
            v_prev = np.zeros_like(delta)  # no memory, or the server velocity starts at zero
        elif acc is not None and acc[0] == sa.round - 1 and acc[2].size:
            v_prev = acc[2]
        else:
            return None
        # The coordinator's own float32 arithmetic (ServerMomentum.step; plain FedAvg is the
        # same with β = 0, lr = 1), so honest results are bit-identical.
        v = (beta * v_prev + delta).astype(np.float32)
        return (trained[1] + lr * v).astype(np.float32), v

    def _check_training_params(self, event: TrainingRequested) -> None:
        """Train only from a model this member can account for: the last one it accepted
        (rounds that aborted in between change nothing), or the server step it computes from
        the verified opening of the round it last trained in when that model never came. From
        anything else it sits the round out, saying so: the coordinator moved the model in a
        way this member could not check (a model or an opening withheld, a round skipped)."""
        self._pin_step(event.server_step, event.round)
        if self._model_waiting is not None and self._model_waiting.round < event.round:
            self._model_waiting = None  # its opening never came: never adopted
        acc = self._accepted
        last = acc[0] if acc is not None else -1
        trained = self._trained_from
        if trained is not None and trained[0] > last and trained[0] != self.distrusted_round:
            sa = self._own_round(trained[0])
            if sa is not None and sa.statement is not None and sa.verified_total is not None:
                expected = self._expected(sa) if event.round == trained[0] + 1 else None
                if expected is not None:
                    if not np.array_equal(event.params, expected[0]):
                        self.distrusted_round = trained[0]
                        raise self._remote(
                            f"round {event.round} trains from other parameters than the server "
                            f"step on round {trained[0]}'s opened aggregate"
                        )
                    self._accepted = (trained[0], expected[0], expected[1])
                    return
        if acc is None and trained is None:
            # The first model this member sees: nothing yet to hold it to, so it becomes the
            # base (with the server velocity's known start before round 1).
            v0 = np.zeros_like(event.params) if event.round == 1 else np.zeros(0, np.float32)
            self._accepted = (event.round - 1, event.params.copy(), v0)
            return
        if acc is not None and np.array_equal(event.params, acc[1]):
            return
        why = (f"it refused round {self.distrusted_round}'s model"
               if self.distrusted_round > last else "no verified model leads there")  # fmt: skip
        raise self._remote(f"round {event.round} trains from parameters this member cannot "
                           f"trace to the last model it accepted (round {last}): {why}; it sits "
                           "the round out")  # fmt: skip

    def _check_global_model(self, event: GlobalModelReceived, sa: SecAggMember) -> None:
        """The model (and velocity) of a proven round this member's update is in must be the
        server step applied to the opened aggregate it verified."""
        step = (event.server_momentum, event.server_lr)
        if event.velocity.size == 0 and step != (0.0, 1.0):
            raise self._remote("a server step with momentum or a rate but no velocity")
        expected = self._expected(sa)
        if expected is not None:
            want, v = expected
            if event.velocity.size and not np.array_equal(event.velocity, v):
                raise self._remote(f"the server velocity of round {event.round} is not the "
                                   "step from the opened aggregate")  # fmt: skip
        else:  # the previous velocity is unknown here: the model must at least follow from it
            trained = self._trained_from
            assert trained is not None
            want = (trained[1] + step[1] * event.velocity).astype(np.float32)
        if not np.array_equal(event.params, want):
            raise self._remote(f"the global model of round {event.round} is not the server step "
                               "applied to the opened aggregate")  # fmt: skip

    def _refuse_plain(self, round: int, what: str) -> None:
        if self.require_secure:
            raise RemoteProtocolError(
                f"coordinator → {self.id}: round {round} asks for a plaintext {what}; "
                "this member's policy requires secure aggregation",
                peer="coordinator",
            )

    def _secure(self, msg: Message) -> list[Message]:
        if isinstance(msg, SecAggSetup):
            if self.awaiting is not None and self.awaiting.round == msg.round:
                # Our own trainer never delivered: nothing to protect, and not the
                # coordinator's fault.
                raise LocalProtocolError(f"{self.id}: no update for round {msg.round}: "
                                         "local training did not complete")  # fmt: skip
            if self._pending is None or self._pending[0] != msg.round:
                raise RemoteProtocolError(
                    f"coordinator → {self.id}: secure-aggregation setup for round {msg.round} "
                    "without a training request for it",
                    peer="coordinator",
                )
            if self.identity is None:
                raise RemoteProtocolError(
                    f"{self.id} has no identity key for secure aggregation", peer="coordinator"
                )
            _, vector, weight, fp = self._pending
            self._pending = None
            # Stochastic rounding draws from SecAggMember's own os.urandom-seeded generator.
            self.secagg = SecAggMember(
                member=self.id,
                consortium=self.consortium,
                identity=self.identity,
                directory=self.directory,
                vector=vector,
                weight=weight,
                fixed_point=fp,
                masks=self._masks,
            )  # fmt: skip
            self._masks = None
        if self.secagg is None:
            raise RemoteProtocolError(
                f"coordinator → {self.id}: {msg.KIND} outside a secure round", peer="coordinator"
            )
        try:
            replies = self.secagg.receive(msg)
        except RemoteProtocolError:
            if isinstance(msg, AggregateOpening):
                self.distrusted_round = msg.round
                self._model_waiting = None
            raise
        waiting = self._model_waiting
        if isinstance(msg, AggregateOpening) and waiting is not None and waiting.round == msg.round:
            self._model_waiting = None
            replies = [*replies, *self._adopt(waiting)]
        return replies

    def idle(self) -> str | None:
        """Work ahead of the next message, for a transport with idle time (its replies in
        flight): computes the round's contribution (encoding, commitment and proof) during the
        key exchange and, once its masked input is out (the coordinator then verifies every
        member's proof), the prover masks for the next round's proof. Returns what it did
        (WORK_CONTRIBUTION or WORK_PROVER_MASKS), or None."""
        if self.secagg is None:
            return None
        if self.secagg.prepare():
            return WORK_CONTRIBUTION
        stmt = self.secagg.statement
        if stmt is None or self.secagg.stage not in (Stage.CONSISTENCY, Stage.UNMASK, Stage.DONE):
            return None
        if self._masks is not None and self._masks.fits(stmt):
            return None
        self._masks = norm.precompute_masks(stmt)
        return WORK_PROVER_MASKS

    def records_upload(self) -> RecordsUpload:
        """What the member would send a central server in the centralized baseline."""
        return RecordsUpload(features=self.data.X, labels=self.data.y)
