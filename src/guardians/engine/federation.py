"""Driving a consortium's rounds over any transport.

The protocol state machines only consume and produce messages; :class:`Federation` walks them
through a stats phase and training rounds, and records what went wrong (incidents), what each
step cost, and (with an :class:`AuditTrail`) what the ledger must hold. A transport supplies
one thing: :meth:`Federation.exchange`, which delivers one stage's messages and returns the
replies that came back. The embedded engine delivers in process; the Flower engine through a
SuperLink. Nothing here knows which.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from guardians.codec import Message
from guardians.crypto.errors import CryptoError
from guardians.engine.audit import REJECTED_CONTRIBUTION, AuditTrail
from guardians.errors import RemoteProtocolError, RoundAbortedError
from guardians.ledger import attestation
from guardians.ledger.checkpoint import CheckpointError
from guardians.ledger.note import SignedNote
from guardians.node.coordinator import CoordinatorNode
from guardians.node.member import WORK_CONTRIBUTION, WORK_PROVER_MASKS
from guardians.protocol.messages import DriftReport
from guardians.protocol.round import RoundResult, Send
from guardians.protocol.witness import Cosignature, WitnessKey, WitnessKeyRequest, WitnessSize

COORDINATOR = "coordinator"
# The steps under which a member's work ahead of the next message (MemberNode.idle) is timed:
# its contribution, computed while the key exchange runs, and the prover masks for its next
# proof, computed while the coordinator verifies the round's proofs.
IDLE_PREFIX = "idle/"
IDLE_CONTRIBUTION = IDLE_PREFIX + WORK_CONTRIBUTION
IDLE_MASKS = IDLE_PREFIX + WORK_PROVER_MASKS
# How many checkpoints a member missing from the witnesses is asked again for its keys.
LATE_ASKS = 3


@dataclass
class Incident:
    """Something a party did wrong, as observed by the engine (becomes ledger evidence)."""

    round: int
    member: str
    error: str
    kind: str = "protocol-violation"
    evidence: bytes = b""  # signed by the member, when there is any (a rejected proof)


@dataclass
class FederationRun:
    rounds: list[RoundResult] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)


RoundCallback = Callable[[RoundResult], None]
# A stage as the transport sees it: (round, stage name, messages) → replies as (sender, message).
Replies = list[tuple[str, Message]]


class Federation(ABC):
    """Walks a coordinator's rounds; subclasses carry the messages."""

    def __init__(self, coordinator: CoordinatorNode, audit: AuditTrail | None = None) -> None:
        self.coordinator = coordinator
        self.audit = audit
        self.run_record = FederationRun()
        self._logged = 0  # incidents already on the audit log
        # Members whose witness key was refused (asked no more), and how often each member
        # missing from the witnesses was asked again (silence or a refusal: at most LATE_ASKS).
        self._witness_refused: set[str] = set()
        self._late_asks: defaultdict[str, int] = defaultdict(int)
        # Compute time per (round, party, step): a member's step is the message it handled
        # (e.g. "secagg/shares-relay") or its work ahead ("idle/..."); the coordinator's is
        # what it did between exchanges: "receive:<stage>" (checking replies), "close:<stage>"
        # ("close:masked" verifies every contribution proof), "finish", "adopt", "ledger",
        # "checkpoint", "drift", "start".
        self.compute: defaultdict[tuple[int, str, str], float] = defaultdict(float)

    # --- what a transport provides --------------------------------------------------------
    @abstractmethod
    def exchange(self, round: int, stage: str, sends: Sequence[Send]) -> Replies:
        """Deliver one stage's messages; return the replies that arrived, in any order.
        A member that cannot be reached or stays silent simply has no reply (a dropout);
        a member that refused a message is reported with :meth:`incident`."""

    def on_stage(self, round: int, stage: str) -> None:  # noqa: B027 - an optional hook
        """Called as each stage opens (progress reporting; nothing to do by default)."""

    # --- the walk ---------------------------------------------------------------------------
    def incident(self, inc: Incident) -> None:
        self.run_record.incidents.append(inc)

    def coordinator_work(self, round: int, step: str, seconds: float) -> None:
        """Account the coordinator's compute (a transport with a clock of its own adds to it)."""
        self.compute[(round, COORDINATOR, step)] += seconds

    @contextlib.contextmanager
    def _timed(self, round: int, step: str) -> Iterator[None]:
        """Time a stretch of the coordinator's own work (never one holding an exchange)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.coordinator_work(round, step, time.perf_counter() - t0)

    def _stage(self, rnd: Any, sends: list[Send], round: int) -> None:
        stage = rnd.stage
        self.on_stage(round, str(stage))
        for member, reply in self.exchange(round, stage, sends):
            t0 = time.perf_counter()
            try:
                rnd.receive(member, reply)
            except RemoteProtocolError as exc:
                self.incident(Incident(round, member, str(exc)))
            self.coordinator_work(round, f"receive:{stage}", time.perf_counter() - t0)

    @contextlib.contextmanager
    def _aborts_logged(self, round: int) -> Iterator[None]:
        """A round that aborts releases nothing, but the ledger still learns what happened."""
        try:
            yield
        except RoundAbortedError as exc:
            self.incident(Incident(round, COORDINATOR, str(exc), kind="round-aborted"))
            if self.audit is not None:
                self._log_incidents()
                self._checkpoint(round)
            raise

    def standardize(self) -> None:
        """Phase 0: members' feature statistics → the consortium standardizer."""
        with self._timed(0, "start"):
            stats = self.coordinator.stats_collection()
        with self._aborts_logged(0):
            with self._timed(0, "start"):
                sends: list[Send] | None = stats.start()
            while sends is not None:
                self._stage(stats, sends, 0)
                with self._timed(0, f"close:{stats.stage}"):
                    sends = stats.advance()
            with self._timed(0, "finish"):
                std, sends = stats.finish(self.coordinator.members)
        self.coordinator.standardizer = std
        self.exchange(0, "standardizer", sends)

    def run_round(self, round: int) -> RoundResult:
        with self._timed(round, "start"):
            rnd = self.coordinator.new_round(round)
        with self._aborts_logged(round):
            with self._timed(round, "start"):
                sends: list[Send] | None = rnd.start()
            while sends is not None:
                self._stage(rnd, sends, round)
                with self._timed(round, f"close:{rnd.stage}"):
                    sends = rnd.advance()  # RoundAbortedError: no model is released
            with self._timed(round, "finish"):
                result, sends = rnd.finish(self.coordinator.members)
        with self._timed(round, "adopt"):
            self.coordinator.adopt(result)
        for member, why in self.coordinator.alerts.items():
            self.incident(Incident(round, member, why, kind="anomalous-update"))
        for member, why in self.coordinator.newly_quarantined.items():
            self.incident(Incident(round, member, why, kind="quarantined"))
        for member, reason in result.rejected.items():
            self.incident(Incident(
                round, member, reason, kind=REJECTED_CONTRIBUTION,
                evidence=result.evidence.get(member, b""),
            ))  # fmt: skip
        if self.audit is not None:
            with self._timed(round, "ledger"):
                self._log_incidents()
                self.audit.record_round(result, rule=self.coordinator.rule,
                                        privacy=self.coordinator.privacy)  # fmt: skip
            self._checkpoint(round)
        self.on_stage(round, "model")
        replies = self.exchange(round, "model", sends)
        with self._timed(round, "drift"):
            for member, reply in replies:
                if isinstance(reply, DriftReport):
                    why = self.coordinator.observe_drift(member, reply)
                    if why:
                        self.incident(Incident(round, member, why, kind="drift"))
        self.run_record.rounds.append(result)
        return result

    def _enrol_witnesses(self, round: int) -> None:
        """Ask every member's witness for its keys; list those whose attestation by the
        member's identity key checks out (the trust file auditors pin)."""
        assert self.audit is not None
        req = self.audit.witness_key_request()
        self.on_stage(round, "witness-keys")
        keys: dict[str, WitnessKey] = {}
        replies = self.exchange(round, "witness-keys", [Send(m, req) for m in self.audit.members])
        with self._timed(round, "checkpoint"):
            for member, reply in replies:
                key = self._witness_key(round, member, reply, req, seen=member in keys)
                if key is not None:
                    keys[member] = key
                elif member not in keys:
                    self._witness_refused.add(member)
            self.audit.enrol(keys, self.coordinator.consortium)

    def _witness_key(
        self, round: int, member: str, reply: Message, req: WitnessKeyRequest, *, seen: bool
    ) -> WitnessKey | None:
        """``reply`` if it is ``member``'s (first) witness key for this log, attested by the
        member's identity key; None and an incident otherwise."""
        identity = self.coordinator.directory.get(member)
        if not isinstance(reply, WitnessKey) or reply.origin != req.origin or seen:
            self.incident(Incident(round, member, f"unexpected {reply.KIND} for the witness key "
                                   "request", kind="witness"))  # fmt: skip
            return None
        try:
            if identity is None:
                raise CryptoError("no identity key on record")
            attestation.check(self.coordinator.consortium, member, identity, req.origin,
                              req.log_key, reply.key, reply.attestation)  # fmt: skip
        except CryptoError as exc:
            self.incident(Incident(round, member, f"witness key not attested: {exc}",
                                   kind="witness"))  # fmt: skip
            return None
        return reply

    def _checkpoint(self, round: int) -> None:
        """Sign a checkpoint and have the members' own witnesses cosign it; it is published
        once a quorum of valid cosignatures came back."""
        assert self.audit is not None
        try:
            if not self.audit.witnesses:
                self._enrol_witnesses(round)
            with self._timed(round, "checkpoint"):
                note, reqs = self.audit.cosign_requests()
        except CheckpointError as exc:
            # Too few members reachable to witness: the entries stay on the log, but no
            # checkpoint vouches for them until a quorum of witnesses does.
            self.incident(Incident(round, COORDINATOR, f"checkpoint not published: {exc}",
                                   kind="checkpoint-unwitnessed"))  # fmt: skip
            return
        got: dict[str, Cosignature] = {}
        sends = [Send(m, r) for m, r in reqs.items()]
        # Members that were unreachable at the first enrolment are asked for their witness keys
        # alongside the cosign requests (no extra stage): they cosign from the next checkpoint.
        late = [m for m in self.audit.members
                if m not in self.audit.witnesses and m not in self._witness_refused
                and self._late_asks[m] < LATE_ASKS]  # fmt: skip
        for m in late:
            self._late_asks[m] += 1
        key_req = self.audit.witness_key_request()
        sends += [Send(m, key_req) for m in late]
        for stage in ("cosign", "cosign-again"):
            self.on_stage(round, stage)
            again: list[Send] = []
            replies = self.exchange(round, stage, sends)
            with self._timed(round, "checkpoint"):
                for member, reply in replies:
                    if member in late and stage == "cosign":
                        self._enrol_late(round, member, reply, key_req)
                    elif member in reqs:  # only witnesses asked to cosign this note
                        retry = self._cosign_reply(round, stage, member, reply, note, got)
                        again += [retry] if retry is not None else []
                    else:
                        self.incident(Incident(round, member, f"unexpected {reply.KIND}",
                                               kind="witness"))  # fmt: skip
            if not again:
                break
            sends = again
        with self._timed(round, "checkpoint"):
            published, problems = self.audit.publish(note, got)
        for member, why in problems.items():
            self.incident(Incident(round, member, why, kind="witness"))
        if published is None:
            self.incident(Incident(
                round, COORDINATOR, f"checkpoint not published: {len(got) - len(problems)} "
                f"valid cosignatures, quorum {self.audit.quorum}", kind="checkpoint-unwitnessed",
            ))  # fmt: skip

    def _cosign_reply(
        self, round: int, stage: str, member: str, reply: Message, note: SignedNote,
        got: dict[str, Cosignature],
    ) -> Send | None:  # fmt: skip
        """Keep a witness's cosignature (checked at publication) in ``got``; for a witness
        that holds another size (a reply of ours or of its was lost), the request to send once
        more, from there; an incident for anything else."""
        assert self.audit is not None
        if isinstance(reply, Cosignature) and member not in got:
            got[member] = reply
            return None
        if isinstance(reply, WitnessSize) and stage == "cosign":
            try:
                return Send(member, self.audit.cosign_request(member, note, reply.size))
            except CheckpointError as exc:
                why = str(exc)
        else:
            why = f"unexpected {reply.KIND} for a cosign request"
        self.incident(Incident(round, member, why, kind="witness"))
        return None

    def _enrol_late(self, round: int, member: str, reply: Message, req: WitnessKeyRequest) -> None:
        assert self.audit is not None
        key = self._witness_key(round, member, reply, req, seen=member in self.audit.witnesses)
        if key is None:
            self._witness_refused.add(member)
            return
        try:
            self.audit.add_witness(member, key)
        except CheckpointError as exc:
            self._witness_refused.add(member)
            self.incident(Incident(round, member, f"witness not enrolled: {exc}", kind="witness"))

    def _log_incidents(self) -> None:
        """Put every incident not yet on the audit log there (drift reports arrive after a
        round's checkpoint, so theirs go on with the next round's, under their own round)."""
        assert self.audit is not None
        for inc in self.run_record.incidents[self._logged :]:
            self.audit.record_incident(inc.round, inc.member, inc.error, inc.kind, inc.evidence)
        self._logged = len(self.run_record.incidents)

    def run(self, rounds: int, on_round: RoundCallback | None = None) -> FederationRun:
        if self.coordinator.standardize and self.coordinator.standardizer is None:
            self.standardize()
        start = len(self.run_record.rounds) + 1
        for r in range(start, start + rounds):
            result = self.run_round(r)
            if on_round is not None:
                on_round(result)
        if self.audit is not None and self._logged < len(self.run_record.incidents):
            self._log_incidents()
            self._checkpoint(start + rounds - 1)
            # What that checkpoint itself ran into (a witness that lied or stayed silent) goes
            # on the log too, after the last checkpoint: recorded, though not yet vouched for.
            self._log_incidents()
        return self.run_record
