"""The embedded engine: a consortium in one process.

Messages really are encoded to bytes, metered at each member boundary, and decoded on the other
side, exactly as a network transport would; only the wire is missing. The same protocol state
machines run unchanged over Flower or HTTP.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from guardians import codec
from guardians.codec import Message
from guardians.engine.audit import AuditTrail
from guardians.engine.egress import EgressMeter
from guardians.errors import RemoteProtocolError
from guardians.node.coordinator import CoordinatorNode
from guardians.node.member import MemberNode
from guardians.protocol.messages import DriftReport
from guardians.protocol.round import RoundResult, Send

COORDINATOR = "coordinator"
# Stages at which a simulated member can drop: "collect" is the plaintext round's only stage.
DROPOUT_STAGES = ("collect", "advertise", "encaps", "shares", "masked", "consistency", "unmask")


class InProcessNetwork:
    """Carries messages between named parties through their wire encoding, metering each."""

    def __init__(self, meter: EgressMeter | None = None) -> None:
        self.meter = meter or EgressMeter()

    def transmit(self, sender: str, recipient: str, msg: Message) -> Message:
        payload = codec.encode(msg)
        self.meter.record(
            sender, recipient, msg.KIND, payload, classes=codec.classify(msg, len(payload))
        )
        return codec.decode(payload)


@dataclass
class Incident:
    """Something a party did wrong, as observed by the engine (becomes ledger evidence later)."""

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


class InProcessFederation:
    """Drives a coordinator and its members through a stats phase and training rounds."""

    def __init__(
        self,
        coordinator: CoordinatorNode,
        members: Mapping[str, MemberNode],
        network: InProcessNetwork | None = None,
        dropouts: Mapping[int, Mapping[str, str]] | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.audit = audit
        # {round: {member: stage}}: the member goes silent from that stage of that round on.
        self.dropouts = dropouts or {}
        self.members = dict(members)
        self.network = network or InProcessNetwork()
        for m, node in self.members.items():
            self.network.meter.register_boundary(m, node.records)
        self.run_record = FederationRun()
        self._logged = 0  # incidents already on the audit log
        # Compute time per (round, party, step): a member's step is the message it handled
        # (e.g. "secagg/shares-relay": encode, commit, prove, mask), the coordinator's is the
        # stage it closed ("close:masked" includes verifying every contribution proof).
        self.compute: defaultdict[tuple[int, str, str], float] = defaultdict(float)

    def _gone(self, member: str, round: int, stage: str) -> bool:
        """Whether ``member`` has dropped out by ``stage`` of ``round`` (simulated failures)."""
        at = self.dropouts.get(round, {}).get(member)
        if at is None:
            return False
        order = DROPOUT_STAGES
        return stage not in order or order.index(stage) >= order.index(at)

    def _deliver(self, send: Send, round: int) -> list[Message]:
        """Deliver one coordinator message; return the member's (already transmitted) replies."""
        node = self.members[send.to]
        msg = self.network.transmit(COORDINATOR, send.to, send.message)
        t0 = time.perf_counter()
        try:
            replies = node.handle(msg)
        except RemoteProtocolError as exc:
            self.compute[(round, send.to, msg.KIND)] += time.perf_counter() - t0
            self.run_record.incidents.append(Incident(round, COORDINATOR, str(exc)))
            return []
        self.compute[(round, send.to, msg.KIND)] += time.perf_counter() - t0
        return [self.network.transmit(send.to, COORDINATOR, r) for r in replies]

    def _stage(self, rnd: Any, sends: list[Send], round: int) -> None:
        """Deliver one stage's messages and hand every reply to the round."""
        stage = rnd.stage
        for send in sends:
            if self._gone(send.to, round, stage):
                continue
            for reply in self._deliver(send, round):
                try:
                    rnd.receive(send.to, reply)
                except RemoteProtocolError as exc:
                    self.run_record.incidents.append(Incident(round, send.to, str(exc)))

    def standardize(self) -> None:
        """Phase 0: members' feature statistics → the consortium standardizer."""
        stats = self.coordinator.stats_collection()
        sends: list[Send] | None = stats.start()
        while sends is not None:
            self._stage(stats, sends, 0)
            sends = stats.advance()
        std, sends = stats.finish(self.members)
        self.coordinator.standardizer = std
        for s in sends:
            self._deliver(s, 0)

    def run_round(self, round: int) -> RoundResult:
        rnd = self.coordinator.new_round(round)
        sends: list[Send] | None = rnd.start()
        while sends is not None:
            self._stage(rnd, sends, round)
            stage = rnd.stage
            t0 = time.perf_counter()
            sends = rnd.advance()  # RoundAbortedError: no model is released
            self.compute[(round, COORDINATOR, f"close:{stage}")] += time.perf_counter() - t0
        t0 = time.perf_counter()
        result, sends = rnd.finish(self.members)
        self.compute[(round, COORDINATOR, "finish")] += time.perf_counter() - t0
        self.coordinator.adopt(result)
        for member, why in self.coordinator.alerts.items():
            self.run_record.incidents.append(Incident(round, member, why, kind="anomalous-update"))
        for member, why in self.coordinator.newly_quarantined.items():
            self.run_record.incidents.append(Incident(round, member, why, kind="quarantined"))
        for member, reason in result.rejected.items():
            self.run_record.incidents.append(Incident(
                round, member, reason, kind="invalid-contribution-proof",
                evidence=result.evidence.get(member, b""),
            ))  # fmt: skip
        if self.audit is not None:
            self._log_incidents()
            self.audit.record_round(result, rule=self.coordinator.rule,
                                    privacy=self.coordinator.privacy)  # fmt: skip
            self.audit.checkpoint()
        for s in sends:
            for reply in self._deliver(s, round):
                if isinstance(reply, DriftReport):
                    why = self.coordinator.observe_drift(s.to, reply)
                    if why:
                        self.run_record.incidents.append(Incident(round, s.to, why, kind="drift"))
        self.run_record.rounds.append(result)
        return result

    def _log_incidents(self) -> None:
        """Put every incident not yet on the audit log there (drift reports arrive after a
        round's checkpoint, so theirs go on with the next round's, under their own round)."""
        assert self.audit is not None
        for inc in self.run_record.incidents[self._logged :]:
            self.audit.record_incident(inc.round, inc.member, inc.error, inc.kind, inc.evidence)
        self._logged = len(self.run_record.incidents)

    def run(self, rounds: int, on_round: RoundCallback | None = None) -> FederationRun:
        if self.coordinator.standardizer is None:
            self.standardize()
        start = len(self.run_record.rounds) + 1
        for r in range(start, start + rounds):
            result = self.run_round(r)
            if on_round is not None:
                on_round(result)
        if self.audit is not None and self._logged < len(self.run_record.incidents):
            self._log_incidents()
            self.audit.checkpoint()
        return self.run_record
