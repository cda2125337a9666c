"""Aggregation rules: each rule's defining property, and the policy that refuses incoherent
combinations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardians.errors import ConfigError, ParameterShapeError
from guardians.learning.aggregate import (
    Bulyan,
    FedAvg,
    FLTrust,
    FoolsGold,
    Krum,
    Median,
    MultiKrum,
    NormBound,
    TrimmedMean,
    fedavg,
    make_rule,
)


def honest_and_byzantine(rng, n_honest, n_byz, d, *, scale=1e6, clustered=False):
    honest = rng.normal(0.0, 1.0, (n_honest, d)) + 3.0
    if clustered:  # colluders agree on one far point (the hardest case for distance rules)
        byz = np.tile(rng.normal(0.0, 1.0, d) * scale, (n_byz, 1))
    else:
        byz = rng.normal(0.0, scale, (n_byz, d))
    return honest, byz


@st.composite
def byzantine_cases(draw, ratio: str):
    n = draw(st.integers(5, 15))
    if ratio == "half":
        f = draw(st.integers(1, (n - 1) // 2))
    elif ratio == "krum":
        f = draw(st.integers(1, max(1, (n - 3) // 2)))
    else:
        f = draw(st.integers(0, max(0, (n - 3) // 4)))
    d = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    clustered = draw(st.booleans())
    scale = draw(st.sampled_from([10.0, 1e3, 1e8]))
    return n, f, d, seed, clustered, scale


def _within_honest_range(out, honest):
    assert np.all(out >= honest.min(axis=0) - 1e-9) and np.all(out <= honest.max(axis=0) + 1e-9)


@settings(max_examples=40, deadline=None)
@given(byzantine_cases("half"))
def test_median_stays_within_the_honest_range(case):
    n, f, d, seed, clustered, scale = case
    honest, byz = honest_and_byzantine(np.random.default_rng(seed), n - f, f, d,
                                       scale=scale, clustered=clustered)  # fmt: skip
    out = Median()(np.vstack([honest, byz]), np.ones(n)).update
    _within_honest_range(out, honest.astype(np.float32))


@settings(max_examples=40, deadline=None)
@given(byzantine_cases("half"))
def test_trimmed_mean_with_enough_trimming_stays_within_the_honest_range(case):
    n, f, d, seed, clustered, scale = case
    if 2 * f >= n:
        return
    beta = (f + 0.5) / n  # trims k = f from each side
    if beta >= 0.5:
        return
    honest, byz = honest_and_byzantine(np.random.default_rng(seed), n - f, f, d,
                                       scale=scale, clustered=clustered)  # fmt: skip
    out = TrimmedMean(beta)(np.vstack([byz, honest]), np.ones(n)).update
    _within_honest_range(out, honest.astype(np.float32))


@settings(max_examples=40, deadline=None)
@given(byzantine_cases("krum"))
def test_krum_selects_an_honest_update(case):
    n, f, d, seed, clustered, scale = case
    if n < 2 * f + 3:
        return
    honest, byz = honest_and_byzantine(np.random.default_rng(seed), n - f, f, d,
                                       scale=scale, clustered=clustered)  # fmt: skip
    res = Krum(f)(np.vstack([byz, honest]), np.ones(n))
    (chosen,) = res.used
    assert chosen >= f  # the first f rows are Byzantine
    assert set(res.rejected) == set(range(n)) - {chosen}


def test_multi_krum_leaves_out_far_updates():
    rng = np.random.default_rng(0)
    honest, byz = honest_and_byzantine(rng, 8, 2, 20, scale=50)
    res = MultiKrum(2)(np.vstack([honest, byz]), np.ones(10))
    assert set(res.used) == set(range(8)) and set(res.rejected) == {8, 9}
    np.testing.assert_allclose(res.update, honest.mean(axis=0), rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(byzantine_cases("bulyan"))
def test_bulyan_stays_within_the_honest_range(case):
    n, f, d, seed, clustered, scale = case
    if n < 4 * f + 3:
        return
    honest, byz = honest_and_byzantine(np.random.default_rng(seed), n - f, f, d,
                                       scale=scale, clustered=clustered)  # fmt: skip
    out = Bulyan(f)(np.vstack([byz, honest]), np.ones(n)).update
    _within_honest_range(out, honest.astype(np.float32))


def test_norm_bound_clip_and_reject():
    rng = np.random.default_rng(1)
    u = rng.normal(size=(6, 30))
    u[2] *= 100
    clip = NormBound(2.0)(u, np.ones(6))
    assert np.linalg.norm(clip.update) <= 2.0 + 1e-6 and clip.rejected == {}
    rej = NormBound(np.linalg.norm(u[0]) * 3, mode="reject")(u, np.ones(6))
    assert 2 in rej.rejected and "above the bound" in rej.rejected[2]
    assert 2 not in rej.used
    inner = NormBound(2.0, inner=Median())
    assert inner.name == "norm-bound+median" and inner.individual


def test_fltrust_gives_no_trust_to_opposing_updates_and_bounds_the_norm():
    rng = np.random.default_rng(2)
    g0 = rng.normal(size=40)
    honest = g0 + rng.normal(0, 0.3, (5, 40))
    evil = -50 * g0[None, :].repeat(2, axis=0)
    res = FLTrust()(np.vstack([honest, evil]), np.ones(7), reference=g0)
    assert set(res.rejected) == {5, 6} and res.scores[5] == 0
    assert np.linalg.norm(res.update) <= np.linalg.norm(g0) * (1 + 1e-6)
    assert float(res.update @ g0) > 0
    with pytest.raises(ConfigError, match="root"):
        FLTrust()(honest, np.ones(5))


def test_foolsgold_silences_sybil_clones():
    rng = np.random.default_rng(3)
    fg = FoolsGold()
    names = [f"h{i}" for i in range(6)] + ["s1", "s2", "s3"]
    target = rng.normal(size=50)
    for _ in range(3):
        honest = rng.normal(0, 1.0, (6, 50))
        sybils = target + rng.normal(0, 0.01, (3, 50))  # one adversary, three identities
        res = fg(np.vstack([honest, sybils]), np.ones(9), members=names)
    assert res.scores is not None
    assert res.scores[6:].max() < 0.05 < res.scores[:6].min()
    assert {6, 7, 8} <= set(res.rejected)


def test_fedavg_rule_matches_the_function():
    rng = np.random.default_rng(4)
    u = rng.normal(size=(4, 10)).astype(np.float32)
    w = [3, 1, 4, 1]
    np.testing.assert_allclose(FedAvg()(u, w).update, fedavg(list(u), w), rtol=1e-6)


def test_rules_refuse_malformed_input():
    for bad in (np.full((3, 4), np.nan), np.array([[1.0, np.inf]])):
        with pytest.raises(ParameterShapeError, match="non-finite"):
            Median()(bad, np.ones(len(bad)))
    with pytest.raises(ParameterShapeError, match="weights"):
        Median()(np.ones((3, 4)), np.ones(2))
    with pytest.raises(ParameterShapeError):
        Median()(np.zeros((0, 4)), np.ones(0))
    with pytest.raises(ConfigError, match="at least 7"):
        Krum(2)(np.ones((5, 3)), np.ones(5))


def test_policy_builds_coherent_rules():
    assert make_rule("fedavg", privacy="secagg", members=8).name == "fedavg"
    assert make_rule("norm-bound", privacy="secagg", members=8, norm_bound=2.0).name == (
        "norm-bound"
    )
    r = make_rule("norm-bound+multi-krum", privacy="none", members=10, f=2, norm_bound=2.0)
    assert r.name == "norm-bound+multi-krum" and r.min_members() == 7
    assert make_rule("fltrust", privacy="none", members=5, root=True).name == "fltrust"


@pytest.mark.parametrize(
    "spec, kw, match",
    [
        ("krum", {"privacy": "secagg", "members": 10, "f": 2}, "only their sum"),
        ("median", {"privacy": "secagg", "members": 10}, "only their sum"),
        ("norm-bound+median", {"privacy": "secagg", "members": 10, "norm_bound": 1.0},
         "only their sum"),
        ("krum", {"privacy": "none", "members": 6, "f": 2}, "at least 7"),
        ("bulyan", {"privacy": "none", "members": 10, "f": 2}, "at least 11"),
        ("fltrust", {"privacy": "none", "members": 10}, "root dataset"),
        ("norm-bound", {"privacy": "none", "members": 10}, "norm bound is needed"),
        ("geomed", {"privacy": "none", "members": 10}, "unknown aggregation rule"),
        ("median", {"privacy": "none", "members": 4, "f": 4}, "malicious members"),
        ("trimmed-mean", {"privacy": "none", "members": 3, "trim": 0.5}, "beta must be"),
    ],
)  # fmt: skip
def test_policy_refuses_incoherent_combinations(spec, kw, match):
    with pytest.raises(ConfigError, match=match):
        make_rule(spec, **kw)


# --- monitoring and reputation ---------------------------------------------------------------
def test_monitor_flags_outliers_and_not_the_crowd():
    from guardians.learning.monitor import UpdateMonitor

    stats = {f"h{i}": {"norm": 1.0 + 0.05 * i, "cosine": 0.8, "probe_loss_increase": -0.01}
             for i in range(6)}  # fmt: skip
    stats["big"] = {"norm": 9.0, "cosine": 0.7, "probe_loss_increase": -0.01}
    stats["flip"] = {"norm": 1.1, "cosine": -0.9, "probe_loss_increase": -0.01}
    stats["door"] = {"norm": 1.2, "cosine": 0.5, "probe_loss_increase": 0.5}
    alerts = UpdateMonitor().alerts(stats)
    assert set(alerts) == {"big", "flip", "door"}
    assert "median" in alerts["big"] and "cosine" in alerts["flip"] and "probe" in alerts["door"]
    mon = UpdateMonitor()
    assert [mon.aggregate_alert(x) for x in (1.0, 1.1, 0.9, 1.0)] == [None] * 4
    assert "median" in (mon.aggregate_alert(9.0) or "")
    with pytest.raises(ConfigError):
        UpdateMonitor(norm_factor=0.5)


def test_reputation_quarantines_repeat_offenders_only():
    from guardians.learning.reputation import Reputation

    rep = Reputation()
    assert rep.observe(1, "bad", 0.0) is False  # one strike: 0.375
    assert rep.observe(2, "bad", 0.0) is True and rep.quarantined == {"bad": 2}
    for r in range(1, 30):  # left out by the rule every round: approaches, never crosses
        assert rep.observe(r, "outlier", rep.threshold) is False
    assert rep.score("outlier") >= rep.threshold
    for r in (1, 2, 3):
        rep.observe(r, "capped", 0.0, may_quarantine=False)
    assert "capped" not in rep.quarantined
    rep.readmit("bad")
    assert "bad" not in rep.quarantined and rep.score("bad") == rep.initial
    with pytest.raises(ConfigError):
        Reputation(threshold=0.9, initial=0.5)


def test_drift_monitor_alerts_on_regressions_and_moved_data():
    from guardians.learning.monitor import DriftMonitor

    mon = DriftMonitor()
    assert mon.observe("m", 0.80, 0.3) is None
    assert mon.observe("m", 0.82, 0.3) is None
    assert "fell from 0.820 to 0.500" in (mon.observe("m", 0.50, 0.3) or "")
    assert "moved" in (mon.observe("m", 0.81, 2.0) or "")
    assert mon.observe("other", 0.1, 0.1) is None  # each member against its own history


def test_drift_report_rejects_nonsense():
    from guardians.protocol.messages import DriftReport

    with pytest.raises(ValueError, match="model_f1"):
        DriftReport(round=1, records=10, feature_shift=0.1, label_rate=0.5,
                    model_f1=float("nan"), flag_rate=0.1)  # fmt: skip
    with pytest.raises(ValueError):
        DriftReport(round=1, records=-1, feature_shift=0.1, label_rate=0.5, model_f1=0.5,
                    flag_rate=0.1)  # fmt: skip
