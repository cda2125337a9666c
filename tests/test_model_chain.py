"""Members adopt a proven round's model only as the server step applied to the aggregate whose
opening they verified, and train only from the model they accepted."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from guardians import codec
from guardians.crypto.sign import SigningKey
from guardians.errors import RemoteProtocolError, RoundAbortedError
from guardians.learning.aggregate.momentum import ServerMomentum
from guardians.learning.data import Dataset
from guardians.learning.models import build_model
from guardians.learning.train import TrainConfig
from guardians.node.member import MemberNode
from guardians.protocol.messages import GlobalModel, TrainInstruction
from guardians.protocol.round import Send
from guardians.protocol.secagg.messages import AggregateOpening
from guardians.protocol.secagg.quantize import FixedPoint
from guardians.protocol.secagg.server import SecureRound

IDS = ("m1", "m2", "m3", "m4")
NF = 5


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {m: SigningKey.generate() for m in IDS}


def wire(msg: codec.Message) -> codec.Message:
    return codec.decode(codec.encode(msg))


def _data() -> Dataset:
    X = np.zeros((4, NF), np.float32)
    g = np.array(["a"] * 4)
    return Dataset("t", X, np.array([0, 1, 0, 1]), ("a", "b"), tuple(f"f{i}" for i in range(NF)),
                   g, g)  # fmt: skip


class Consortium:
    """Four members (updates supplied from outside) and a coordinator with FedAvgM."""

    def __init__(self, keys: dict[str, SigningKey], momentum: float | None = 0.9) -> None:
        self.directory = {m: k.verify_key for m, k in keys.items()}
        self.nodes = {
            m: MemberNode(m, _data(), build_model("logreg", NF, 2), np.random.default_rng(i),
                          identity=keys[m], directory=self.directory, consortium="chain",
                          external_training=True)
            for i, m in enumerate(IDS)
        }  # fmt: skip
        self.n = self.nodes["m1"].model.n_params
        self.params = np.zeros(self.n, np.float32)
        self.opt = ServerMomentum(momentum) if momentum is not None else None
        self.rng = np.random.default_rng(7)
        self.tolerate = False  # refusals raise, unless a test lets members sit rounds out
        self.refused: dict[str, str] = {}

    def deliver(self, srv: SecureRound, sends: list[Send], rnd: int) -> None:
        for s in sends:
            if s.to in self.refused:
                continue
            try:
                out = self.nodes[s.to].handle(wire(s.message))
            except RemoteProtocolError as exc:
                if not self.tolerate:
                    raise
                self.refused[s.to] = str(exc)  # sits the round out
                continue
            if isinstance(s.message, TrainInstruction):
                step = self.rng.normal(0, 0.01, self.n).astype(np.float32)
                out = self.nodes[s.to].take_external_update(rnd, s.message.params + step, 10, 0.1)
            for r in out:
                srv.receive(s.to, wire(r))

    def round(self, rnd: int, selected: tuple[str, ...] = IDS) -> list[Send]:
        """Run a proven round up to its final sends (openings, then models), undelivered."""
        self.refused = {}
        srv = SecureRound(consortium="chain", round=rnd, selected=selected,
                          directory=self.directory, global_params=self.params,
                          train=TrainConfig(), fixed_point=FixedPoint(scale_bits=16),
                          max_weight=1000, norm_bound=1.0, server_opt=self.opt)  # fmt: skip
        self.deliver(srv, srv.start(), rnd)
        while (sends := srv.advance()) is not None:
            self.deliver(srv, sends, rnd)
        result, sends = srv.finish(IDS)
        assert result.verified
        self.params = result.params
        return sends

    def hand(self, sends: list[Send], members: tuple[str, ...] = IDS) -> None:
        for s in sends:
            if s.to in members:
                self.nodes[s.to].handle(wire(s.message))


def _model(sends: list[Send]) -> GlobalModel:
    return next(s.message for s in sends if isinstance(s.message, GlobalModel))


def _swap_model(sends: list[Send], gm: GlobalModel) -> list[Send]:
    return [Send(s.to, gm) if isinstance(s.message, GlobalModel) else s for s in sends]


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_honest_rounds_are_adopted_by_every_member(keys, momentum):
    c = Consortium(keys, momentum)
    for rnd in (1, 2, 3):
        sends = c.round(rnd)
        c.hand(sends)
        for node in c.nodes.values():
            assert node.global_round == rnd
            assert np.array_equal(node.model.get_params(), c.params)
    gm = _model(sends)
    assert (gm.velocity.size > 0) == (momentum is not None)


def test_a_model_that_is_not_the_step_from_the_opened_aggregate_is_refused(keys):
    c = Consortium(keys)
    sends = c.round(1)
    gm = _model(sends)
    lie = dataclasses.replace(gm, params=gm.params + np.float32(0.5))
    c.hand([s for s in sends if isinstance(s.message, AggregateOpening)])
    node = c.nodes["m2"]
    with pytest.raises(RemoteProtocolError, match="not the server step"):
        node.handle(wire(lie))
    assert node.global_round == -1 and node.distrusted_round == 1
    # ... and it will not train from that model in the next round either.
    with pytest.raises(RemoteProtocolError, match=r"cannot trace.*refused round 1"):
        c.round(2)


def test_a_velocity_that_is_not_the_momentum_step_is_refused(keys):
    c = Consortium(keys)
    c.hand(c.round(1))
    sends = c.round(2)
    gm = _model(sends)
    # A consistent-looking lie: another velocity, and the parameters it would give.
    v = gm.velocity + np.float32(0.25)
    prev = c.nodes["m1"].model.get_params()
    lie = dataclasses.replace(gm, velocity=v, params=(prev + gm.server_lr * v).astype(np.float32))
    with pytest.raises(RemoteProtocolError, match="server velocity"):
        c.hand(_swap_model(sends, lie), ("m1",))
    c.hand(sends, ("m2",))  # the honest model is still taken
    assert c.nodes["m2"].global_round == 2


def test_a_withheld_opening_is_reported_and_the_member_sits_one_round_out(keys):
    c = Consortium(keys)
    c.tolerate = True
    sends = c.round(1)
    c.hand([s for s in sends if s.to != "m1" or isinstance(s.message, GlobalModel)])
    assert c.nodes["m1"].global_round == -1  # its model waits for the opening that never came
    c.hand(c.round(2))
    assert set(c.refused) == {"m1"} and "cannot trace" in c.refused["m1"]
    assert c.nodes["m1"].global_round == 2  # not a contributor: the model is taken as sent
    c.hand(c.round(3))
    assert c.refused == {}
    assert all(n.global_round == 3 for n in c.nodes.values())


def test_a_withheld_model_is_computed_from_the_opening_and_checked(keys):
    c = Consortium(keys)
    c.tolerate = True
    c.hand(c.round(1))
    sends = c.round(2)
    c.hand([s for s in sends if not isinstance(s.message, GlobalModel)])  # openings only
    c.hand(c.round(3))  # the honest coordinator trains from the model it made: accepted
    assert c.refused == {} and all(n.global_round == 3 for n in c.nodes.values())
    sends = c.round(4)
    c.hand([s for s in sends if not isinstance(s.message, GlobalModel)])
    c.params = c.params + np.float32(0.25)  # ... a lying one from another model: refused
    with pytest.raises(RoundAbortedError):
        c.round(5)
    assert set(c.refused) == set(IDS)
    assert all("server step on round 4" in why for why in c.refused.values())


def test_an_opening_arriving_after_the_model_completes_the_adoption(keys):
    c = Consortium(keys)
    sends = c.round(1)
    models = [s for s in sends if isinstance(s.message, GlobalModel)]
    openings = [s for s in sends if isinstance(s.message, AggregateOpening)]
    c.hand(models + openings)  # reordered in transit
    for node in c.nodes.values():
        assert node.global_round == 1
        assert np.array_equal(node.model.get_params(), c.params)


def test_a_changed_server_step_is_refused(keys):
    c = Consortium(keys)
    c.hand(c.round(1))
    sends = c.round(2)
    lie = dataclasses.replace(_model(sends), server_momentum=0.5)
    with pytest.raises(RemoteProtocolError, match="changes the server step"):
        c.hand(_swap_model(sends, lie), ("m3",))


def test_training_from_another_model_than_the_one_published_is_refused(keys):
    c = Consortium(keys)
    c.hand(c.round(1))
    c.params = c.params + np.float32(1.0)  # the coordinator trains from something else
    with pytest.raises(RemoteProtocolError, match="cannot trace"):
        c.round(2)


def test_a_member_that_did_not_contribute_takes_the_model_unchecked(keys):
    c = Consortium(keys)
    sends = c.round(1, selected=("m1", "m2", "m3"))
    gm = _model(sends)
    lie = dataclasses.replace(gm, params=gm.params + np.float32(0.5))
    c.hand([Send("m4", lie)])  # it holds no opening to check against
    assert c.nodes["m4"].global_round == 1
    c.hand([s for s in sends if s.to != "m4"])
    assert all(c.nodes[m].global_round == 1 for m in ("m1", "m2", "m3"))


def test_a_model_sent_after_the_masked_input_waits_for_the_opening(keys):
    """A forged model for round 2 slipped in mid-round, once m1's masked input is out: it is
    held back, the round's opening then shows it is not the step, and it is refused."""
    c = Consortium(keys)
    c.hand(c.round(1))
    junk = np.full(c.n, 7.0, np.float32)
    forged = GlobalModel(round=2, params=junk, velocity=junk, server_momentum=0.9, server_lr=1.0)
    original = c.deliver

    def deliver(srv, sends, rnd):
        original(srv, sends, rnd)
        if srv.stage == "masked" and not hasattr(c, "slipped"):
            c.slipped = c.nodes["m1"].handle(wire(forged))

    c.deliver = deliver  # type: ignore[method-assign]
    sends = c.round(2)
    assert c.slipped == [] and c.nodes["m1"].global_round == 1  # held back
    with pytest.raises(RemoteProtocolError, match=r"is not the (server )?step"):
        c.hand([s for s in sends if isinstance(s.message, AggregateOpening)], ("m1",))


def test_a_skipped_round_cannot_carry_another_model_in(keys):
    c = Consortium(keys)
    c.tolerate = True
    c.hand(c.round(1))
    c.params = np.full(c.n, -6.0, np.float32)  # "round 2" happened elsewhere
    with pytest.raises(RoundAbortedError):
        c.round(3)
    assert set(c.refused) == set(IDS) and all("cannot trace" in w for w in c.refused.values())


def test_an_aborted_round_changes_nothing_and_blames_no_one(keys):
    """Round 1 aborts after unmasking (no opening, no model): round 2 trains from the same
    model, which every member accepts without an incident."""
    c = Consortium(keys)
    c.hand(c.round(1)[:0])  # nothing of round 1 reaches anyone: as if it aborted
    c.params = np.zeros(c.n, np.float32)
    c.hand(c.round(2))
    assert all(n.global_round == 2 for n in c.nodes.values())


def test_statistics_are_requested_only_before_training(keys):
    from guardians.protocol.messages import StatsRequest

    c = Consortium(keys)
    c.hand(c.round(1))
    with pytest.raises(RemoteProtocolError, match="after training began"):
        c.nodes["m1"].handle(wire(StatsRequest(round=0, aggregation="secagg")))


def test_a_member_that_dropped_after_masking_still_checks_and_adopts(keys):
    """m4's masked input went out, then it missed the consistency and unmask stages: its update
    is in the aggregate, so it checks the opening like any contributor and takes the model."""
    c = Consortium(keys)
    original = c.deliver

    def deliver(srv, sends, rnd):
        kinds = ("secagg/consistency-check", "secagg/unmask-request")
        original(srv, [s for s in sends if not (s.to == "m4" and s.message.KIND in kinds)], rnd)

    c.deliver = deliver  # type: ignore[method-assign]
    sends = c.round(1)
    assert c.nodes["m4"].secagg.masked_sent and c.nodes["m4"].secagg.stage.value != "done"
    c.hand(sends)
    assert all(n.global_round == 1 for n in c.nodes.values())
    assert c.nodes["m4"].secagg.verified_total is not None
