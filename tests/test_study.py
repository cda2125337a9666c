"""End-to-end: a short federated run on real NSL-KDD through the in-process engine."""

import numpy as np
import pytest

from guardians.engine.inprocess import InProcessFederation
from guardians.errors import RoundAbortedError
from guardians.learning.data import load_nslkdd
from guardians.learning.models import build_model
from guardians.learning.partition import family_skew
from guardians.learning.train import TrainConfig
from guardians.node.coordinator import CoordinatorNode
from guardians.node.member import MemberNode
from guardians.protocol.messages import ModelUpdate
from guardians.study import config_for, run_study


@pytest.fixture(scope="module")
def split():
    return load_nslkdd("binary")


@pytest.fixture(scope="module")
def short_run(split):
    cfg = config_for("nsl-kdd", members=6, rounds=8, seed=0)
    return run_study(cfg, split=split).metrics


def test_federated_beats_local_only_on_families_members_never_saw(short_run):
    unseen = short_run["unseen_families"]
    assert unseen["per_member"], "family skew must leave every member some unseen family"
    mean = unseen["mean"]
    # Each member alone barely detects families it never saw; the consortium model does.
    assert mean["federated"] > mean["local_only"] + 0.15
    # And overall, the federated model beats the average member working alone.
    assert short_run["federated"]["f1"] > short_run["local_only"]["f1"]


def test_no_raw_record_crossed_a_boundary_in_federated_training(short_run, split):
    eg = short_run["egress"]
    assert eg["federated"]["raw_records"] == 0
    assert all(p["raw_records_out"] == 0 for p in eg["federated"]["per_member"].values())
    # Federated members did send things: statistics and updates, metered in bytes.
    kinds = set()
    for p in eg["federated"]["per_member"].values():
        assert p["bytes_out"] > 0
        kinds |= set(p["out_by_kind"])
    # Secure aggregation is the default: no plaintext update ever left a member.
    assert "fl/update" not in kinds and "fl/stats-report" not in kinds
    assert {"secagg/advertise", "secagg/masked-input", "secagg/unmask-reply"} <= kinds
    assert eg["federated"]["plaintext_updates_out"] == 0
    assert eg["federated"]["protected_share_of_data_bytes"] > 0.95
    # The centralized baseline uploaded every training record, and the meter saw each one.
    assert eg["centralized"]["raw_records"] == len(split.train)
    assert eg["local_only"]["raw_records"] == 0
    assert eg["local_only"]["bytes_out"] == 0


def test_metrics_have_the_documented_shape(short_run):
    for setting in ("federated", "centralized", "local_only"):
        assert 0.0 <= short_run[setting]["accuracy"] <= 1.0
        assert 0.0 <= short_run[setting]["f1"] <= 1.0
    assert len(short_run["local_only"]["per_member"]) == 6
    assert [r["round"] for r in short_run["federated"]["per_round"]] == list(range(1, 9))
    assert set(short_run["federated"]["per_family"]) == {"DoS", "Probe", "R2L", "U2R"}
    novel = short_run["federated"]["novel_attacks"]
    assert novel["records"] > 0 and "mscan" in novel["types"]


def test_same_seed_same_numbers(split):
    # Plaintext federated training and the baselines are exactly reproducible from the seed.
    # (Secure aggregation draws its stochastic-rounding randomness from os.urandom, so its
    # figures vary slightly from run to run by design.)
    cfg = config_for("nsl-kdd", members=3, rounds=2, seed=7, privacy="none")
    a = run_study(cfg, split=split).metrics
    b = run_study(cfg, split=split).metrics
    assert a["federated"]["f1"] == b["federated"]["f1"]
    assert a["centralized"]["f1"] == b["centralized"]["f1"]
    assert a["local_only"]["f1"] == b["local_only"]["f1"]


class WrongLengthMember(MemberNode):
    """A member whose updates have the wrong length."""

    def handle(self, msg):
        replies = super().handle(msg)
        return [
            ModelUpdate(round=r.round, num_samples=r.num_samples, loss=r.loss, delta=r.delta[:-1])
            if isinstance(r, ModelUpdate)
            else r
            for r in replies
        ]


def _federation(split, bad: set[int], members: int = 4, min_fraction: float = 0.5):
    train = split.train
    part = family_skew(train.groups, members, np.random.default_rng(0), negative_group="normal")
    nodes = {}
    for k, ix in enumerate(part.indices):
        cls = WrongLengthMember if k in bad else MemberNode
        mid = f"m{k}"
        model = build_model("mlp", train.n_features, 2, hidden=(8,), seed=0)
        nodes[mid] = cls(mid, train.subset(ix), model, np.random.default_rng(k))
    coord = CoordinatorNode(
        list(nodes),
        build_model("mlp", train.n_features, 2, hidden=(8,), seed=0),
        TrainConfig(),
        np.random.default_rng(1),
        n_features=train.n_features,
        min_fraction=min_fraction,
    )
    return InProcessFederation(coord, nodes)


def test_a_malformed_member_is_excluded_and_the_round_completes(split):
    fed = _federation(split, bad={1})
    run = fed.run(2)
    assert len(run.rounds) == 2
    for result in run.rounds:
        assert "m1" not in result.contributors
        assert set(result.contributors) == {"m0", "m2", "m3"}
        assert "shape" in result.dropped["m1"]
    assert [i.member for i in run.incidents] == ["m1", "m1"]


def test_round_aborts_without_quorum_and_releases_no_model(split):
    fed = _federation(split, bad={0, 1, 2}, min_fraction=0.5)
    before = fed.coordinator.params.copy()
    with pytest.raises(RoundAbortedError, match="1 of 4 members replied, 2 needed"):
        fed.run(1)
    assert np.array_equal(fed.coordinator.params, before)
    assert fed.run_record.rounds == []
    # No member adopted a new global model.
    assert all(node.global_round == -1 for node in fed.members.values())


def test_members_left_out_of_a_round_still_follow_the_global_model(split):
    fed = _federation(split, bad=set())
    fed.coordinator.fraction = 0.5
    run = fed.run(3)
    assert run.incidents == []
    assert all(len(r.contributors) == 2 for r in run.rounds)
    # Every member, selected or not, ends on the latest global model.
    for node in fed.members.values():
        assert node.global_round == 3
        assert np.array_equal(node.model.get_params(), fed.coordinator.params)


def _secure_federation(split, members, dropouts=None, norm_bound=None):
    """A secure-aggregation consortium of logistic-regression members with identity keys."""
    from guardians.crypto.sign import SigningKey

    train = split.train
    part = family_skew(train.groups, members, np.random.default_rng(0), negative_group="normal")
    ids = [f"m{k}" for k in range(members)]
    keys = {m: SigningKey.generate() for m in ids}
    directory = {m: k.verify_key for m, k in keys.items()}
    nodes = {
        m: MemberNode(
            m, train.subset(ix), build_model("logreg", train.n_features, 2),
            np.random.default_rng(k), identity=keys[m], directory=directory, require_secure=True,
        )
        for k, (m, ix) in enumerate(zip(ids, part.indices, strict=True))
    }  # fmt: skip
    coord = CoordinatorNode(
        ids, build_model("logreg", train.n_features, 2), TrainConfig(), np.random.default_rng(1),
        n_features=train.n_features, privacy="secagg", directory=directory,
        norm_bound=norm_bound,
    )  # fmt: skip
    return InProcessFederation(coord, nodes, dropouts=dropouts)


def test_secure_statistics_give_the_pooled_standardizer(split):
    from guardians.learning.preprocess import Standardizer

    fed = _secure_federation(split, 4)
    nodes, coord, ids = fed.members, fed.coordinator, list(fed.members)
    fed.standardize()
    kinds = {
        k for p in fed.network.meter.summary()["per_member"].values() for k in p["out_by_kind"]
    }
    assert "fl/stats-report" not in kinds  # no member's statistics left it in the clear
    pooled = Standardizer.fit(np.concatenate([nodes[m].data.X for m in ids]))
    std = coord.standardizer
    np.testing.assert_allclose(std.mean, pooled.mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(std.scale, pooled.scale, rtol=1e-3, atol=1e-4)
    # Every member adopted it.
    for node in nodes.values():
        np.testing.assert_array_equal(node.standardizer.mean, std.mean)


def test_members_make_next_round_prover_masks_while_the_coordinator_verifies(split):
    from guardians.engine.federation import IDLE_CONTRIBUTION, IDLE_MASKS

    fed = _secure_federation(split, 4, norm_bound=2.0)
    fed.standardize()
    assert fed.run_round(1).verified
    d = fed.coordinator.params.shape[0]
    ready = {m: node._masks for m, node in fed.members.items()}
    assert all(k is not None and k.dim == d and not k.used for k in ready.values())
    assert fed.run_round(2).verified
    # Round 2's proofs were made with the masks computed during round 1, and fresh ones wait.
    for m, node in fed.members.items():
        assert ready[m].used and node._masks is not ready[m] and not node._masks.used
        for r in (1, 2):
            assert fed.compute[(r, m, IDLE_CONTRIBUTION)] > 0
            assert fed.compute[(r, m, IDLE_MASKS)] > 0
    # The timeline: the coordinator's own work lies within each round, and no round takes
    # longer than every party's work done one after the other.
    for r in (1, 2):
        spent = _spent(fed, r)
        assert spent["coordinator"] <= fed.latency[r] <= sum(spent.values())


def _spent(fed, r: int) -> dict[str, float]:
    out = {p: 0.0 for p in ("coordinator", *fed.members)}
    for (rnd, party, _), sec in fed.compute.items():
        if rnd == r:
            out[party] += sec
    return out


def test_an_aborted_round_adds_nothing_to_the_next_rounds_latency(split):
    import time

    fed = _secure_federation(split, 4, dropouts={2: {"m0": "advertise", "m1": "advertise"}})
    fed.standardize()
    fed.run_round(1)
    slow = fed.members["m2"]
    handle = slow.handle

    def sluggish(msg):  # round 2's work takes a while before the round aborts
        if getattr(msg, "round", None) == 2:
            time.sleep(0.5)
        return handle(msg)

    slow.handle = sluggish
    with pytest.raises(RoundAbortedError):
        fed.run_round(2)
    assert 2 not in fed.latency and _spent(fed, 2)["m2"] >= 0.5
    fed.dropouts = {}
    fed.run_round(3)
    spent = _spent(fed, 3)
    # Round 3 is charged its own work only, not the aborted round's half second.
    assert spent["coordinator"] <= fed.latency[3] <= sum(spent.values())


def test_member_policy_refuses_plaintext_rounds(split):
    from guardians.crypto.sign import SigningKey

    fed = _federation(split, bad=set())
    node = next(iter(fed.members.values()))
    node.require_secure = True
    node.identity = SigningKey.generate()
    # The plaintext statistics request is refused by that member, so the round cannot complete.
    with pytest.raises(RoundAbortedError, match="3 of 4 members replied"):
        fed.standardize()
    assert any("requires secure aggregation" in i.error for i in fed.run_record.incidents)
    assert fed.coordinator.standardizer is None


@pytest.mark.parametrize(
    "stage", ["advertise", "encaps", "shares", "masked", "consistency", "unmask"]
)
def test_secure_round_survives_a_dropout_at_any_stage(split, stage):
    fed = _secure_federation(split, 6, dropouts={1: {"m3": stage}})
    nodes = fed.members
    (result,) = fed.run(1).rounds
    if stage in ("consistency", "unmask"):  # its masked input is in; others unmask it
        assert "m3" in result.contributors
    else:
        assert "m3" not in result.contributors
        assert "m3" in result.dropped
    assert np.all(np.isfinite(result.params))
    assert all(node.global_round == 1 for node in nodes.values())


def test_plaintext_study_with_a_robust_rule_reports_exclusions():
    from guardians.study import config_for, run_study

    cfg = config_for("wdbc", privacy="none", rule="multi-krum", assumed_malicious=1, rounds=3,
                     seed=1)  # fmt: skip
    m = run_study(cfg).metrics
    assert m["config"]["rule"] == "multi-krum"
    assert m["federated"]["accuracy"] > 0.5
    assert len(m["federated"]["per_round"]) == 3
