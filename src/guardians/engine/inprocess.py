"""The embedded engine: a consortium in one process.

Messages really are encoded to bytes, metered at each member boundary, and decoded on the other
side, exactly as a network transport would; only the wire is missing. The same protocol state
machines run unchanged over Flower or HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from guardians import codec
from guardians.codec import Message
from guardians.engine.audit import AuditTrail
from guardians.engine.egress import EgressMeter
from guardians.engine.federation import (
    COORDINATOR,
    IDLE_PREFIX,
    Federation,
    FederationRun,
    Incident,
    Replies,
    RoundCallback,
)
from guardians.errors import RemoteProtocolError
from guardians.node.coordinator import CoordinatorNode
from guardians.node.member import MemberNode
from guardians.protocol.round import RoundResult, Send

__all__ = ["COORDINATOR", "FederationRun", "InProcessFederation", "InProcessNetwork",
           "Incident", "RoundCallback"]  # fmt: skip
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


class InProcessFederation(Federation):
    """A coordinator and its members in one process (simulated dropouts by stage)."""

    def __init__(
        self,
        coordinator: CoordinatorNode,
        members: Mapping[str, MemberNode],
        network: InProcessNetwork | None = None,
        dropouts: Mapping[int, Mapping[str, str]] | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        super().__init__(coordinator, audit)
        # {round: {member: stage}}: the member goes silent from that stage of that round on.
        self.dropouts = dropouts or {}
        self.members = dict(members)
        self.network = network or InProcessNetwork()
        for m, node in self.members.items():
            self.network.meter.register_boundary(m, node.records)
        # A clock for the round's latency as if every party had a machine of its own and
        # messages were instant: each party's measured compute placed on a shared timeline.
        # A member starts a message once it arrives and the member is free (work ahead can
        # delay it); the coordinator goes on once the last answer (reply or refusal) is in.
        self._now = 0.0  # the coordinator's time
        self._free: dict[str, float] = {}  # when each member's own work (ahead too) is done
        # When each member finished the last message it handled in a round.
        self._done: dict[tuple[int, str], float] = {}
        self._reply_at = 0.0
        # Round → seconds from the coordinator starting it until every party is done with it
        # (rounds that abort have none). A member's tail (checking the opening) may overlap
        # the next round's start; that round then waits for it and counts it too.
        self.latency: dict[int, float] = {}

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
        start = max(self._now, self._free.get(send.to, 0.0))
        t0 = time.perf_counter()
        try:
            replies = node.handle(msg)
        except RemoteProtocolError as exc:
            self.incident(Incident(round, COORDINATOR, str(exc)))
            replies = None
        spent = time.perf_counter() - t0
        self.compute[(round, send.to, msg.KIND)] += spent
        self._free[send.to] = self._done[(round, send.to)] = done = start + spent
        if replies is None or replies:  # a refusal reaches the coordinator as an answer would
            self._reply_at = max(self._reply_at, done)
        if replies is None:
            return []
        out = [self.network.transmit(send.to, COORDINATOR, r) for r in replies]
        # With its replies on their way the member would be waiting: work ahead, timed apart
        # (idle/...) so a round's time can be read with or without it.
        t0 = time.perf_counter()
        what = node.idle()
        if what:
            spent = time.perf_counter() - t0
            self.compute[(round, send.to, IDLE_PREFIX + what)] += spent
            self._free[send.to] = done + spent
        return out

    def coordinator_work(self, round: int, step: str, seconds: float) -> None:
        super().coordinator_work(round, step, seconds)
        self._now += seconds

    def run_round(self, round: int) -> RoundResult:
        begin = self._now
        result = super().run_round(round)
        ends = [t for (r, _), t in self._done.items() if r == round]
        self.latency[round] = max([self._now, *ends]) - begin
        return result

    def exchange(self, round: int, stage: str, sends: Sequence[Send]) -> Replies:
        self._reply_at = self._now
        out = [
            (send.to, reply)
            for send in sends
            # The model itself still reaches a member that dropped out of the round.
            if stage in ("standardizer", "model") or not self._gone(send.to, round, stage)
            for reply in self._deliver(send, round)
        ]
        self._now = self._reply_at
        return out
