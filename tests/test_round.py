"""Tests of the sans-I/O round state machines in guardians.protocol.round."""

from __future__ import annotations

import numpy as np
import pytest

from guardians import codec
from guardians.errors import LocalProtocolError, RemoteProtocolError, RoundAbortedError
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
from guardians.protocol.round import (
    CoordinatorRound,
    GlobalModelReceived,
    MemberSession,
    Phase,
    StandardizerReceived,
    StatsCollection,
    StatsRequested,
    TrainingRequested,
)

D = 12
MEMBERS = ("alice", "bob", "carol")
CFG = TrainConfig(epochs=2, batch_size=16, learning_rate=0.01, optimizer="sgd")


def global_params():
    return np.random.default_rng(0).normal(size=D).astype(np.float32)


def new_round(round=5, selected=MEMBERS, min_updates=None, **kw):
    return CoordinatorRound(
        round=round,
        selected=list(selected),
        global_params=global_params(),
        train=CFG,
        min_updates=min_updates,
        **kw,
    )


def upd(round=5, n=10, seed=1, loss=0.5, d=D):
    delta = np.random.default_rng(seed).normal(size=d).astype(np.float32)
    return ModelUpdate(round=round, num_samples=n, loss=loss, delta=delta)


def wire(msg):
    """What the coordinator would see after the network: encoded and decoded."""
    return codec.decode(codec.encode(msg))


# --- CoordinatorRound ---------------------------------------------------------------------
def test_start_sends_one_instruction_per_selected_member():
    rnd = new_round()
    assert rnd.phase is Phase.IDLE
    sends = rnd.start()
    assert rnd.phase is Phase.COLLECTING
    assert [s.to for s in sends] == list(MEMBERS)
    for s in sends:
        m = s.message
        assert isinstance(m, TrainInstruction)
        assert m.round == 5
        assert (m.epochs, m.batch_size, m.learning_rate, m.optimizer) == (2, 16, 0.01, "sgd")
        np.testing.assert_array_equal(m.params, global_params())
    assert rnd.pending == frozenset(MEMBERS)
    assert not rnd.complete
    with pytest.raises(LocalProtocolError):
        rnd.start()


def test_global_params_are_copied():
    g = global_params()
    rnd = CoordinatorRound(round=1, selected=["a"], global_params=g, train=CFG)
    g[:] = 99
    rnd.start()
    rnd.receive("a", upd(round=1))
    result, _ = rnd.finish(["a"])
    np.testing.assert_allclose(result.params, global_params() + upd(round=1).delta, rtol=1e-6)


def test_finish_is_global_plus_weighted_mean_of_deltas():
    rnd = new_round()
    rnd.start()
    ups = {
        "alice": upd(n=10, seed=1, loss=0.2),
        "bob": upd(n=30, seed=2, loss=0.4),
        "carol": upd(n=60, seed=3, loss=0.9),
    }
    for m in ("carol", "alice", "bob"):  # arrival order does not matter
        rnd.receive(m, wire(ups[m]))
    assert rnd.complete
    assert rnd.pending == frozenset()
    result, sends = rnd.finish(["alice", "bob", "carol", "dave"])
    expected = (
        global_params().astype(np.float64)
        + (
            10 * ups["alice"].delta.astype(np.float64)
            + 30 * ups["bob"].delta.astype(np.float64)
            + 60 * ups["carol"].delta.astype(np.float64)
        )
        / 100
    )
    assert result.params.dtype == np.float32
    np.testing.assert_allclose(result.params, expected, rtol=1e-6, atol=1e-6)
    assert result.round == 5
    assert result.contributors == ("alice", "bob", "carol")
    assert result.samples == 100
    assert result.mean_loss == pytest.approx(0.5)
    assert result.dropped == {}
    assert [s.to for s in sends] == ["alice", "bob", "carol", "dave"]
    for s in sends:
        assert isinstance(s.message, GlobalModel)
        assert s.message.round == 5
        np.testing.assert_array_equal(s.message.params, result.params)
    assert rnd.phase is Phase.DONE
    with pytest.raises(LocalProtocolError):
        rnd.finish(MEMBERS)
    with pytest.raises(LocalProtocolError):
        rnd.receive("alice", upd())


def test_custom_aggregator_is_used():
    from guardians.learning.aggregate import Aggregate, Rule

    class Zero(Rule):
        name = "zero"

        def _aggregate(self, u, w, members, reference):
            return Aggregate(np.zeros(u.shape[1]), tuple(range(len(u))))

    rnd = new_round(rule=Zero())
    rnd.start()
    for i, m in enumerate(MEMBERS):
        rnd.receive(m, upd(seed=i))
    result, _ = rnd.finish(MEMBERS)
    np.testing.assert_array_equal(result.params, global_params())


def started(**kw):
    rnd = new_round(**kw)
    rnd.start()
    return rnd


def assert_rejected(rnd, sender, msg, match):
    with pytest.raises(RemoteProtocolError, match=match) as ei:
        rnd.receive(sender, msg)
    assert ei.value.peer == sender
    assert sender in str(ei.value)
    assert sender not in rnd.replies
    return ei.value


def assert_excluded(rnd, sender):
    assert sender in rnd.dropped
    assert sender not in rnd.pending
    # once excluded, even a valid update is refused
    with pytest.raises(RemoteProtocolError, match="excluded"):
        rnd.receive(sender, upd())
    assert sender not in rnd.replies


def finish_without(rnd, bad):
    """The others reply; the round completes without the bad member's contribution."""
    for m in MEMBERS:
        if m != bad and m not in rnd.replies:
            rnd.receive(m, upd(seed=MEMBERS.index(m) + 10))
    result, _ = rnd.finish(MEMBERS)
    assert bad not in result.contributors
    assert bad in result.dropped
    others = [m for m in MEMBERS if m != bad]
    expected = global_params() + np.mean(
        [upd(seed=MEMBERS.index(m) + 10).delta for m in others], axis=0
    )
    np.testing.assert_allclose(result.params, expected, rtol=1e-5, atol=1e-6)
    return result


def test_update_from_unselected_member():
    rnd = started(min_updates=3)
    assert_rejected(rnd, "mallory", upd(), "not selected")
    assert "mallory" not in rnd.replies
    assert rnd.pending == frozenset(MEMBERS)
    for i, m in enumerate(MEMBERS):
        rnd.receive(m, upd(seed=i))
    result, _ = rnd.finish(MEMBERS)
    assert "mallory" not in result.contributors
    assert result.contributors == MEMBERS


def test_duplicate_update_is_refused_and_does_not_replace_the_first():
    rnd = started(min_updates=1)
    first = upd(seed=1)
    rnd.receive("alice", first)
    with pytest.raises(RemoteProtocolError, match="second") as ei:
        rnd.receive("alice", upd(seed=99, n=10_000))
    assert ei.value.peer == "alice"
    with pytest.raises(RemoteProtocolError):
        rnd.receive("alice", first)  # an exact replay
    rnd.drop("bob", "timeout")
    rnd.drop("carol", "timeout")
    result, _ = rnd.finish(MEMBERS)
    # the replayed, different delta never reaches the aggregate
    np.testing.assert_allclose(result.params, global_params() + first.delta, rtol=1e-6)
    assert result.samples == 10


def test_duplicate_update_is_refused_but_does_not_evict_the_member():
    # A replay can come from the network, not the member: refusing it without excluding the
    # member keeps a replaying relay from evicting honest members.
    rnd = started(min_updates=1)
    first = upd(seed=1)
    rnd.receive("alice", first)
    with pytest.raises(RemoteProtocolError, match="second"):
        rnd.receive("alice", upd(seed=9))
    rnd.receive("bob", upd(seed=2))
    rnd.receive("carol", upd(seed=3))
    result, _ = rnd.finish(MEMBERS)
    assert "alice" in result.contributors
    assert "alice" not in result.dropped


@pytest.mark.parametrize("other_round", [4, 6, 0, 1000])
def test_update_for_another_round(other_round):
    # Refused, but not held against the member: a stale update may be the relay's replay.
    rnd = started(min_updates=2)
    with pytest.raises(RemoteProtocolError, match=f"round {other_round}"):
        rnd.receive("bob", upd(round=other_round))
    assert "bob" not in rnd.dropped
    rnd.receive("bob", upd(seed=5))
    assert "bob" in rnd.replies


@pytest.mark.parametrize("d", [D - 1, D + 1, 0])
def test_wrong_length_delta(d):
    rnd = started(min_updates=2)
    assert_rejected(rnd, "carol", upd(d=d), "shape")
    assert_excluded(rnd, "carol")
    finish_without(rnd, "carol")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_delta(bad):
    rnd = started(min_updates=2)
    m = upd()
    delta = m.delta.copy()
    delta[3] = bad
    assert_rejected(
        rnd, "alice", ModelUpdate(round=5, num_samples=10, loss=0.1, delta=delta), "non-finite"
    )
    assert_excluded(rnd, "alice")
    finish_without(rnd, "alice")


def test_zero_or_too_many_samples():
    rnd = started(min_updates=1, max_samples=1000)
    assert_rejected(rnd, "alice", upd(n=0), "samples")
    assert_excluded(rnd, "alice")
    assert_rejected(rnd, "bob", upd(n=1001), "samples")
    assert_excluded(rnd, "bob")
    rnd.receive("carol", upd(n=1000))
    result, _ = rnd.finish(MEMBERS)
    assert result.contributors == ("carol",)


@pytest.mark.parametrize(
    "msg",
    [
        StatsReport(round=5, count=3, sum=np.zeros(D), sumsq=np.zeros(D)),
        GlobalModel(round=5, params=np.zeros(D, np.float32)),
        StatsRequest(round=5, aggregation="plain"),
    ],
    ids=lambda m: m.KIND,
)
def test_wrong_message_type(msg):
    rnd = started(min_updates=2)
    assert_rejected(rnd, "bob", msg, "expected fl/update")
    assert_excluded(rnd, "bob")
    finish_without(rnd, "bob")


def test_too_few_updates_aborts_without_a_model():
    rnd = started(min_updates=2)
    rnd.receive("alice", upd())
    rnd.drop("bob", "timed out")
    rnd.drop("carol", "connection reset")
    assert rnd.complete
    with pytest.raises(RoundAbortedError) as ei:
        rnd.finish(MEMBERS)
    text = str(ei.value)
    assert "1 of 3" in text
    assert "2 needed" in text
    assert "bob: timed out" in text
    assert "carol: connection reset" in text
    assert rnd.phase is Phase.ABORTED
    with pytest.raises(LocalProtocolError):
        rnd.finish(MEMBERS)


def test_abort_with_excluded_members():
    rnd = started()  # everyone needed
    rnd.receive("alice", upd())
    rnd.receive("bob", upd())
    with pytest.raises(RemoteProtocolError):
        rnd.receive("carol", upd(d=D + 1))
    with pytest.raises(RoundAbortedError, match="carol"):
        rnd.finish(MEMBERS)


def test_quorum_met_despite_drops():
    rnd = started(min_updates=2)
    rnd.receive("alice", upd(seed=1, n=5))
    rnd.drop("carol", "timed out")
    assert not rnd.complete
    rnd.receive("bob", upd(seed=2, n=15))
    assert rnd.complete
    result, _ = rnd.finish(MEMBERS)
    assert result.contributors == ("alice", "bob")
    assert result.dropped == {"carol": "timed out"}
    expected = global_params() + (5 * upd(seed=1).delta + 15 * upd(seed=2).delta) / 20
    np.testing.assert_allclose(result.params, expected, rtol=1e-5, atol=1e-6)


def test_drop_after_reply_is_ignored_and_drop_of_stranger_is_local_error():
    rnd = started(min_updates=1)
    rnd.receive("alice", upd())
    rnd.drop("alice", "late")
    assert "alice" not in rnd.dropped
    assert "alice" in rnd.replies
    with pytest.raises(LocalProtocolError):
        rnd.drop("mallory", "?")
    rnd.drop("bob", "first reason")
    rnd.drop("bob", "second reason")
    assert rnd.dropped["bob"] == "first reason"


def test_receive_or_finish_before_start_is_local_error():
    rnd = new_round()
    with pytest.raises(LocalProtocolError):
        rnd.receive("alice", upd())
    with pytest.raises(LocalProtocolError):
        rnd.finish(MEMBERS)


@pytest.mark.parametrize(
    "kw",
    [{"round": -1}, {"selected": ()}, {"selected": ("a", "a")}, {"min_updates": 4}],
)
def test_constructor_validation(kw):
    with pytest.raises(LocalProtocolError):
        new_round(**kw)


# --- StatsCollection ----------------------------------------------------------------------
def member_data():
    rng = np.random.default_rng(7)
    return {
        m: (rng.normal(size=(n, 5)) * [1, 10, 100, 0.1, 3] + i).astype(np.float32)
        for i, (m, n) in enumerate(zip(MEMBERS, (40, 90, 13), strict=True))
    }


def stats_msg(X, round=0):
    s = FeatureStats.of(X)
    return StatsReport(round=round, count=s.count, sum=s.sum, sumsq=s.sumsq)


def test_stats_collection_equals_pooled_standardization():
    data = member_data()
    sc = StatsCollection(round=0, selected=MEMBERS, n_features=5)
    sends = sc.start()
    assert [s.to for s in sends] == list(MEMBERS)
    assert all(isinstance(s.message, StatsRequest) and s.message.round == 0 for s in sends)
    for m in MEMBERS:
        sc.receive(m, wire(stats_msg(data[m])))
    std, out = sc.finish(MEMBERS)
    pooled = Standardizer.fit(np.vstack(list(data.values())))
    np.testing.assert_allclose(std.mean, pooled.mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std.scale, pooled.scale, rtol=1e-6)
    # and differs from any single member's own standardization
    assert not np.allclose(std.mean, Standardizer.fit(data["alice"]).mean, rtol=1e-3)
    assert [s.to for s in out] == list(MEMBERS)
    for s in out:
        assert isinstance(s.message, StatsResult)
        np.testing.assert_array_equal(s.message.mean, std.mean)
        np.testing.assert_array_equal(s.message.scale, std.scale)


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (StatsReport(round=0, count=3, sum=np.zeros(4), sumsq=np.zeros(5)), "sum of shape"),
        (StatsReport(round=0, count=3, sum=np.zeros(5), sumsq=np.zeros(6)), "sumsq"),
        (StatsReport(round=0, count=3, sum=np.full(5, np.nan), sumsq=np.zeros(5)), "non-finite"),
        (StatsReport(round=0, count=0, sum=np.zeros(5), sumsq=np.zeros(5)), "0 records"),
        (StatsReport(round=0, count=2**50, sum=np.zeros(5), sumsq=np.zeros(5)), "records"),
        (StatsReport(round=0, count=3, sum=np.full(5, 9.0), sumsq=np.ones(5)), "no data set"),
        (StatsReport(round=0, count=3, sum=np.zeros(5), sumsq=np.full(5, -1.0)), "no data set"),
        (upd(round=0), "expected fl/stats-report"),
    ],
)
def test_stats_collection_rejects_bad_reports(msg, match):
    data = member_data()
    sc = StatsCollection(round=0, selected=MEMBERS, n_features=5, quorum=2)
    sc.start()
    with pytest.raises(RemoteProtocolError, match=match) as ei:
        sc.receive("bob", msg)
    assert ei.value.peer == "bob"
    assert "bob" in sc.dropped
    sc.receive("alice", stats_msg(data["alice"]))
    sc.receive("carol", stats_msg(data["carol"]))
    std, _ = sc.finish(MEMBERS)
    pooled = Standardizer.fit(np.vstack([data["alice"], data["carol"]]))
    np.testing.assert_allclose(std.mean, pooled.mean, rtol=1e-6, atol=1e-6)


def test_stats_collection_needs_everyone_by_default():
    sc = StatsCollection(round=0, selected=MEMBERS, n_features=5)
    sc.start()
    sc.receive("alice", stats_msg(member_data()["alice"]))
    sc.drop("bob", "gone")
    sc.drop("carol", "gone")
    with pytest.raises(RoundAbortedError):
        sc.finish(MEMBERS)


# --- MemberSession ------------------------------------------------------------------------
def instruction(round, n=D, **kw):
    args = {
        "epochs": 1, "batch_size": 8, "learning_rate": 0.1, "optimizer": "adam", "momentum": 0.9,
        "aggregation": "plain",
        "proximal": 0.0,
    }  # fmt: skip
    args.update(kw)
    return TrainInstruction(round=round, params=np.ones(n, np.float32), **args)


def session():
    return MemberSession("alice", n_features=5, n_params=D)


def test_member_training_flow():
    s = session()
    ev = s.receive(wire(instruction(3)))
    assert isinstance(ev, TrainingRequested)
    assert ev.round == 3
    assert ev.config == TrainConfig(epochs=1, batch_size=8, learning_rate=0.1, optimizer="adam")
    np.testing.assert_array_equal(ev.params, np.ones(D))
    reply = s.update(3, np.full(D, 0.5), num_samples=7, loss=0.25)
    assert isinstance(reply, ModelUpdate)
    assert (reply.round, reply.num_samples, reply.loss) == (3, 7, 0.25)
    assert reply.delta.dtype == np.float32
    # one update per instruction
    with pytest.raises(LocalProtocolError):
        s.update(3, np.zeros(D), 7, 0.1)
    gm = s.receive(wire(GlobalModel(round=3, params=np.zeros(D, np.float32))))
    assert isinstance(gm, GlobalModelReceived)
    assert gm.round == 3
    # the update the session built is accepted by a coordinator for that round
    rnd = CoordinatorRound(round=3, selected=["alice"], global_params=np.ones(D), train=CFG)
    rnd.start()
    rnd.receive("alice", wire(reply))
    result, _ = rnd.finish(["alice"])
    np.testing.assert_allclose(result.params, 1.5)


@pytest.mark.parametrize("second", [3, 2, 0])
def test_member_rejects_replayed_or_older_instruction(second):
    s = session()
    s.receive(instruction(3))
    with pytest.raises(RemoteProtocolError, match="stale or replayed") as ei:
        s.receive(instruction(second))
    assert ei.value.peer == "coordinator"
    # a newer round is fine
    assert s.receive(instruction(4)).round == 4


@pytest.mark.parametrize("gm_round", [2, 0])
def test_member_rejects_global_model_for_an_older_round(gm_round):
    s = session()
    s.receive(instruction(3))
    with pytest.raises(RemoteProtocolError, match="global model"):
        s.receive(GlobalModel(round=gm_round, params=np.zeros(D, np.float32)))


def test_member_not_selected_adopts_the_global_model_once():
    s = session()
    gm = GlobalModel(round=2, params=np.zeros(D, np.float32))
    assert s.receive(gm).round == 2  # not selected for round 2, still gets its model
    with pytest.raises(RemoteProtocolError, match="stale or replayed"):
        s.receive(gm)
    with pytest.raises(RemoteProtocolError, match="stale or replayed"):
        s.receive(instruction(2))  # round 2 is over for this member
    assert s.receive(instruction(3)).round == 3


@pytest.mark.parametrize("n", [D - 1, D + 1])
def test_member_rejects_wrong_length_params(n):
    s = session()
    with pytest.raises(RemoteProtocolError, match="shape"):
        s.receive(instruction(1, n=n))
    # a rejected instruction does not consume the round number
    assert s.receive(instruction(1)).round == 1
    with pytest.raises(RemoteProtocolError, match="shape"):
        s.receive(GlobalModel(round=1, params=np.zeros(n, np.float32)))


def test_member_rejects_non_finite_params_and_bad_config():
    s = session()
    p = np.ones(D, np.float32)
    p[0] = np.nan
    with pytest.raises(RemoteProtocolError, match="non-finite"):
        s.receive(
            TrainInstruction(
                round=1,
                epochs=1,
                batch_size=8,
                learning_rate=0.1,
                optimizer="adam",
                momentum=0.9,
                proximal=0.0,
                aggregation="plain",
                params=p,
            )
        )
    for kw in (
        {"optimizer": "lbfgs"}, {"epochs": 0}, {"batch_size": 0}, {"learning_rate": -1.0},
        {"learning_rate": float("inf")}, {"epochs": 10**6}, {"momentum": 1.5},
    ):  # fmt: skip
        with pytest.raises(RemoteProtocolError, match="configuration"):
            s.receive(instruction(1, **kw))
    assert s.receive(instruction(1)).round == 1


def test_update_without_training_request_is_local_error():
    s = session()
    with pytest.raises(LocalProtocolError):
        s.update(0, np.zeros(D), 1, 0.0)
    s.receive(instruction(2))
    with pytest.raises(LocalProtocolError):
        s.update(1, np.zeros(D), 1, 0.0)  # wrong round
    s.update(2, np.zeros(D), 1, 0.0)


def test_member_stats_flow():
    s = session()
    with pytest.raises(LocalProtocolError):
        s.stats_report(0, FeatureStats.of(np.zeros((2, 5))))
    ev = s.receive(StatsRequest(round=0, aggregation="plain"))
    assert isinstance(ev, StatsRequested)
    X = np.arange(10, dtype=np.float32).reshape(2, 5)
    rep = s.stats_report(0, FeatureStats.of(X))
    assert rep.count == 2
    np.testing.assert_array_equal(rep.sum, X.sum(axis=0))
    with pytest.raises(RemoteProtocolError, match="never requested"):
        s.receive(StatsResult(round=1, mean=np.zeros(5, np.float32), scale=np.ones(5, np.float32)))
    with pytest.raises(RemoteProtocolError, match="positive"):
        s.receive(StatsResult(round=0, mean=np.zeros(5, np.float32), scale=np.zeros(5, np.float32)))
    with pytest.raises(RemoteProtocolError, match="shape"):
        s.receive(StatsResult(round=0, mean=np.zeros(4, np.float32), scale=np.ones(5, np.float32)))
    ev = s.receive(
        StatsResult(round=0, mean=np.ones(5, np.float32), scale=np.full(5, 2, np.float32))
    )
    assert isinstance(ev, StandardizerReceived)
    np.testing.assert_allclose(ev.standardizer.transform(X), (X - 1) / 2)
    # a standardizer is accepted once
    with pytest.raises(RemoteProtocolError):
        s.receive(StatsResult(round=0, mean=np.ones(5, np.float32), scale=np.ones(5, np.float32)))


def test_member_rejects_messages_meant_for_the_coordinator():
    with pytest.raises(RemoteProtocolError, match="unexpected message"):
        session().receive(upd())


def test_an_aggregate_that_overflows_releases_no_model():
    # A server optimizer with momentum can push a huge (finite) mean update past float32.
    rnd = started(min_updates=1, server_opt=ServerMomentum(beta=0.0, lr=4.0))
    huge = upd(seed=1)
    rnd.receive(
        "alice",
        ModelUpdate(
            round=huge.round, num_samples=2**40, loss=0.1,
            delta=np.full(D, 3.4e38, np.float32),
        ),
    )  # fmt: skip
    rnd.receive("bob", upd(seed=2))
    rnd.receive("carol", upd(seed=3))
    before = rnd.global_params.copy()
    with pytest.raises(RoundAbortedError, match="not finite"):
        rnd.finish(MEMBERS)
    np.testing.assert_array_equal(rnd.global_params, before)
