"""Poisoning attacks: what each crafts, its effect on FedAvg, and the defences' effect, on real
NSL-KDD federations (short runs)."""

from __future__ import annotations

import numpy as np
import pytest

from guardians.bench.robustness import Setting, run_cell
from guardians.errors import ConfigError
from guardians.learning import attacks
from guardians.learning.data import load_dataset
from guardians.node.adversary import Adversary


@pytest.fixture(scope="module")
def split():
    return load_dataset("nsl-kdd")


@pytest.fixture(scope="module")
def clean(split):
    return run_cell(split, "fedavg", "none", 0.0, Setting(rounds=6))


def cell(split, defence, attack, fraction=0.2, rounds=6):
    return run_cell(split, defence, attack, fraction, Setting(rounds=rounds))


def test_trigger_and_data_poisoning(split):
    trig = attacks.nslkdd_trigger(split.train.feature_names)
    X = trig.apply(split.train.X[:5])
    assert np.all(X[:, list(trig.features)] == np.asarray(trig.values, np.float32))
    assert not np.shares_memory(X, split.train.X)
    part = split.train.subset(np.arange(400))
    flipped = attacks.label_flip(part)
    assert np.array_equal(flipped.y, 1 - part.y)
    bd = attacks.backdoor(part, trig, np.random.default_rng(0))
    extra = len(bd.y) - len(part.y)
    assert extra == int(np.sum(part.y != 0)) and np.all(bd.y[len(part.y) :] == trig.target)
    assert np.all(bd.X[len(part.y) :, list(trig.features)] == np.asarray(trig.values, np.float32))
    with pytest.raises(ConfigError):
        attacks.nslkdd_trigger(("a", "b"))


def test_crafted_updates_keep_their_defining_constraints():
    rng = np.random.default_rng(1)
    benign = rng.normal(0.5, 1.0, (4, 200))
    mu, sd = benign.mean(axis=0), benign.std(axis=0)
    kw = {"n_total": 10, "n_malicious": 2, "rng": rng}
    np.testing.assert_allclose(attacks.craft("sign-flip", benign, **kw), -10 * mu)
    alie = attacks.craft("alie", benign, **kw)
    z = attacks.alie_z(10, 2)
    np.testing.assert_allclose(alie, mu - z * sd)
    assert 0 < z < 3
    assert attacks.craft("ipm", benign, **kw) @ mu < 0
    d2 = ((benign[:, None] - benign[None]) ** 2).sum(axis=2)
    mm = attacks.craft("min-max", benign, **kw)
    assert ((mm - benign) ** 2).sum(axis=1).max() <= d2.max() * (1 + 1e-9)
    assert np.linalg.norm(mm - mu) > 0.1  # it does move away from the mean
    ms = attacks.craft("min-sum", benign, **kw)
    assert ((ms - benign) ** 2).sum() <= d2.sum(axis=1).max() * (1 + 1e-9)
    with pytest.raises(ConfigError):
        attacks.craft("backdoor", benign, **kw)


def test_malformed_updates_are_malformed():
    u = np.ones(5, np.float32)
    assert np.isnan(attacks.malformed(u, "nan")).any()
    assert np.isinf(attacks.malformed(u, "inf")).any()
    assert attacks.malformed(u, "length").shape == (4,)
    with pytest.raises(ConfigError):
        attacks.malformed(u, "zero")


def test_adversary_configuration_errors():
    with pytest.raises(ConfigError, match="unknown attack"):
        Adversary("teleport", n_total=10, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="trigger"):
        Adversary("backdoor", n_total=10, rng=np.random.default_rng(0))


def test_sign_flip_collapses_fedavg_and_multi_krum_excludes_it(split, clean):
    hit = cell(split, "fedavg", "sign-flip")
    assert hit["f1"] < clean["f1"] - 0.2
    defended = cell(split, "multi-krum", "sign-flip")
    assert defended["malicious_excluded"] == 1.0
    assert defended["f1"] > clean["f1"] - 0.03


def test_backdoor_succeeds_against_fedavg_and_not_against_fltrust(split, clean):
    assert clean["backdoor_success"] < 0.2
    hit = cell(split, "fedavg", "backdoor")
    assert hit["backdoor_success"] > 0.8
    defended = cell(split, "fltrust", "backdoor")
    assert defended["backdoor_success"] < hit["backdoor_success"] - 0.5


def test_sybil_clones_are_silenced_by_foolsgold(split):
    hit = cell(split, "fedavg", "sybil", 0.3)
    assert hit["backdoor_success"] > 0.5
    defended = cell(split, "foolsgold", "sybil", 0.3)
    assert defended["malicious_excluded"] > 0.8
    assert defended["backdoor_success"] < hit["backdoor_success"]


def test_malformed_updates_are_rejected_with_typed_errors(split, clean):
    res = cell(split, "fedavg", "malformed", 0.2, rounds=3)
    assert res["incidents"] == 2 * 3  # two members, three rounds, each rejected
    assert res["f1"] > 0.5


def test_default_pipeline_quarantines_the_attackers_and_keeps_accuracy(split):
    base = cell(split, "default", "none", 0.0, rounds=8)
    res = cell(split, "default", "backdoor", rounds=8)
    assert res["quarantined_malicious"] == 2 and set(res["quarantined"]) == set(res["malicious"])
    assert res["backdoor_success"] < 0.05
    assert res["f1"] > base["f1"] - 0.02
    assert res["honest_excluded"] < 0.3  # Multi-Krum leaves f = 2 of 8 honest out each round


def test_round_reports_per_layer_update_statistics(split):
    from guardians.learning.models import build_model

    m = build_model("mlp", 122, 2, hidden=(64, 32))
    names = [n for n, _ in m.layer_slices()]
    assert names == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert sum(sl.stop - sl.start for _, sl in m.layer_slices()) == m.n_params


def test_label_flipping_at_30_percent_degrades_fedavg(split, clean):
    hit = cell(split, "fedavg", "label-flip", 0.3)
    assert hit["f1"] < clean["f1"] - 0.1


@pytest.mark.parametrize("attack", ["sign-flip", "gaussian", "alie", "ipm", "min-max", "min-sum"])
def test_each_crafted_update_moves_the_fedavg_aggregate(attack):
    """Two crafted updates among eight honest ones pull FedAvg away from the honest mean; the
    coordinate-wise median moves less."""
    from guardians.learning.aggregate import FedAvg, Median

    rng = np.random.default_rng(5)
    honest = rng.normal(0.3, 1.0, (8, 300))
    bad = attacks.craft(attack, honest[:2], n_total=10, n_malicious=2, rng=rng)
    u = np.vstack([honest, bad, bad])
    target = honest.mean(axis=0)
    moved = np.linalg.norm(FedAvg()(u, np.ones(10)).update - target)
    assert moved > 0.01 * np.linalg.norm(target)
    if attack in ("sign-flip", "gaussian"):
        assert np.linalg.norm(Median()(u, np.ones(10)).update - target) < moved
