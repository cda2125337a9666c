"""Tests of metrics (against scikit-learn), federated standardization and FedAvg."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn import metrics as skm

from guardians.errors import EmptyDatasetError, FeatureMismatchError, ParameterShapeError
from guardians.learning.aggregate import fedavg
from guardians.learning.metrics import binary_metrics, macro_f1, roc_auc
from guardians.learning.preprocess import FeatureStats, Standardizer


# --- metrics ------------------------------------------------------------------------------
@st.composite
def labels_and_scores(draw, min_size=2, max_size=200):
    n = draw(st.integers(min_size, max_size))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int64)
    # A coarse grid makes ties frequent; sometimes continuous scores instead.
    if draw(st.booleans()):
        levels = draw(st.integers(1, 6))
        s = np.array(draw(st.lists(st.integers(0, levels), min_size=n, max_size=n))) / levels
    else:
        s = np.array(
            draw(st.lists(st.floats(0, 1, allow_nan=False), min_size=n, max_size=n)), dtype=float
        )
    return y, s


@settings(max_examples=200, deadline=None)
@given(labels_and_scores())
def test_roc_auc_matches_sklearn(data):
    y, s = data
    got = roc_auc(y, s)
    if y.min() == y.max():
        assert math.isnan(got)
        return
    assert got == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(labels_and_scores(), st.sampled_from([np.float32, np.float64]))
def test_roc_auc_invariant_under_row_order_and_monotone_maps(data, dtype):
    y, s = data
    assume(0 < y.sum() < len(y))
    s = s.astype(dtype)
    base = roc_auc(y, s)
    perm = np.random.default_rng(len(y)).permutation(len(y))
    assert roc_auc(y[perm], s[perm]) == pytest.approx(base, abs=1e-12)
    assert roc_auc(y, 2 * s) == pytest.approx(base, abs=1e-12)  # exact in floating point
    assert roc_auc(y, -s) == pytest.approx(1 - base, abs=1e-12)
    assert roc_auc(y.astype(bool), s) == pytest.approx(base, abs=1e-12)


def test_roc_auc_known_values():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.5)) == 0.5
    # one tie between a positive and a negative counts half
    assert roc_auc(np.array([0, 1, 1]), np.array([0.5, 0.5, 0.9])) == 0.75
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))
    assert math.isnan(roc_auc(np.array([0, 0]), np.array([0.2, 0.3])))


@settings(max_examples=200, deadline=None)
@given(labels_and_scores(min_size=1), st.sampled_from([0.0, 0.25, 0.5, 0.5000001, 1.0]))
def test_binary_metrics_match_sklearn(data, threshold):
    y, s = data
    m = binary_metrics(y, s, threshold=threshold)
    pred = (s >= threshold).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, zero_division=0))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (tp, fp, fn, tn)
    assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == len(y)
    assert m["fpr"] == pytest.approx(fp / (fp + tn) if fp + tn else 0.0)
    if 0 < y.sum() < len(y):
        assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    else:
        assert math.isnan(m["roc_auc"])


def test_binary_metrics_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    s = np.array([0.9, 0.6, 0.4, 0.7, 0.2, 0.1, 0.5, 0.5])
    m = binary_metrics(y, s)
    # predictions (>= 0.5): 1 1 0 1 0 0 1 1 -> tp=3 fp=2 fn=1 tn=2
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 2, 1, 2)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert m["fpr"] == pytest.approx(2 / 4)
    assert m["accuracy"] == pytest.approx(5 / 8)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(2, 6).flatmap(
        lambda c: st.tuples(
            st.just(c),
            st.lists(
                st.tuples(st.integers(0, c - 1), st.integers(0, c - 1)), min_size=1, max_size=80
            ),
        )
    )
)
def test_macro_f1_matches_sklearn(args):
    c, pairs = args
    yt = np.array([a for a, _ in pairs])
    yp = np.array([b for _, b in pairs])
    present = sorted(set(yt.tolist()) | set(yp.tolist()))
    expected = skm.f1_score(yt, yp, average="macro", labels=present, zero_division=0)
    assert macro_f1(yt, yp, c) == pytest.approx(expected)


# --- federated standardization ------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(
    X=hnp.arrays(
        np.float32,
        st.tuples(st.integers(2, 60), st.integers(1, 6)),
        elements=st.floats(-1e3, 1e3, width=32),
    ),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_combined_member_stats_equal_pooled_standardization(X, cuts):
    n = X.shape[0]
    bounds = sorted({0, n, *(min(c, n) for c in cuts)})
    parts = [X[a:b] for a, b in itertools.pairwise(bounds)]
    combined = FeatureStats.combine(FeatureStats.of(p) for p in parts)
    assert combined.count == n
    fed = Standardizer.from_stats(combined)
    pooled = Standardizer.fit(X)
    np.testing.assert_allclose(fed.mean, pooled.mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fed.scale, pooled.scale, rtol=1e-4, atol=1e-4)
    # and pooled standardization is the ordinary mean / population std
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(pooled.mean, X64.mean(axis=0), rtol=1e-5, atol=1e-5)
    std = X64.std(axis=0)
    varies = std > 1e-3 * (np.abs(X64).max(axis=0) + 1)
    np.testing.assert_allclose(pooled.scale[varies], std[varies], rtol=1e-3)


def test_federated_standardization_on_real_shares():
    rng = np.random.default_rng(0)
    X = (rng.lognormal(size=(3000, 8)) * np.array([1, 10, 100, 1e3, 1, 1, 1, 1])).astype(np.float32)
    X[:, 5] = 4.0  # constant feature
    shares = np.array_split(rng.permutation(3000), 7)
    fed = Standardizer.from_stats(FeatureStats.combine(FeatureStats.of(X[ix]) for ix in shares))
    pooled = Standardizer.fit(X)
    np.testing.assert_allclose(fed.mean, pooled.mean, rtol=1e-6)
    np.testing.assert_allclose(fed.scale, pooled.scale, rtol=1e-6)
    Z = fed.transform(X)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-3)
    varying = [0, 1, 2, 3, 4, 6, 7]
    np.testing.assert_allclose(Z[:, varying].std(axis=0), 1, atol=1e-3)
    assert fed.scale[5] == 1.0
    np.testing.assert_array_equal(Z[:, 5], 0.0)
    # a member's own standardizer differs from the consortium's (the point of combining)
    own = Standardizer.fit(X[shares[0]])
    assert not np.allclose(own.mean, fed.mean, rtol=1e-6)


def test_standardizer_transform_clips_and_checks_width():
    s = Standardizer(mean=np.zeros(2, np.float32), scale=np.array([1e-3, 1.0], np.float32))
    Z = s.transform(np.array([[1.0, -3.0], [-1.0, 200.0]], np.float32))
    np.testing.assert_array_equal(Z, [[50.0, -3.0], [-50.0, 50.0]])
    with pytest.raises(FeatureMismatchError):
        s.transform(np.zeros((1, 3), np.float32))


def test_feature_stats_errors():
    with pytest.raises(EmptyDatasetError):
        FeatureStats.combine([])
    with pytest.raises(FeatureMismatchError):
        FeatureStats.combine([FeatureStats.of(np.zeros((2, 3))), FeatureStats.of(np.zeros((2, 4)))])
    with pytest.raises(EmptyDatasetError):
        Standardizer.from_stats(FeatureStats.of(np.zeros((0, 3))))


# --- FedAvg -------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(
    k=st.integers(1, 6),
    d=st.integers(1, 50),
    seed=st.integers(0, 2**32 - 1),
    weights=st.lists(st.integers(0, 10_000), min_size=6, max_size=6),
)
def test_fedavg_is_the_sample_weighted_mean(k, d, seed, weights):
    w = weights[:k]
    assume(sum(w) > 0)
    rng = np.random.default_rng(seed)
    ups = [rng.normal(size=d).astype(np.float32) for _ in range(k)]
    got = fedavg(ups, w)
    assert got.dtype == np.float32
    assert got.shape == (d,)
    expected = sum(wi * u.astype(np.float64) for wi, u in zip(w, ups, strict=True)) / sum(w)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        got, np.average(np.stack(ups), axis=0, weights=w), rtol=1e-5, atol=1e-6
    )
    # order of members does not matter
    order = rng.permutation(k)
    np.testing.assert_array_equal(fedavg([ups[i] for i in order], [w[i] for i in order]), got)


def test_fedavg_by_hand():
    a = np.array([1.0, 0.0], np.float32)
    b = np.array([0.0, 4.0], np.float32)
    np.testing.assert_allclose(fedavg([a, b], [3, 1]), [0.75, 1.0])
    np.testing.assert_allclose(fedavg([a, b], [1, 0]), a)


def test_fedavg_rejects_bad_input():
    a = np.zeros(3, np.float32)
    with pytest.raises(ParameterShapeError):
        fedavg([], [])
    with pytest.raises(ParameterShapeError):
        fedavg([a, np.zeros(4, np.float32)], [1, 1])
    with pytest.raises(ParameterShapeError):
        fedavg([a, np.zeros((3, 1), np.float32)], [1, 1])
    with pytest.raises(ParameterShapeError):
        fedavg([a, a], [0, 0])
    with pytest.raises(ParameterShapeError):
        fedavg([a, a], [2, -1])
    with pytest.raises(ParameterShapeError):
        fedavg([a, a], [1])


def test_near_constant_feature_with_large_mean_is_not_blown_up():
    # Σx²/n − mean² leaves rounding noise here; it must not become a tiny scale.
    X = np.full((37, 2), 987.654, dtype=np.float32)
    X[:, 1] = np.linspace(-1, 1, 37)
    parts = [X[:5], X[5:20], X[20:]]
    fed = Standardizer.from_stats(FeatureStats.combine(FeatureStats.of(p) for p in parts))
    for std in (fed, Standardizer.fit(X)):
        assert std.scale[0] == 1.0
        assert np.all(np.abs(std.transform(X)[:, 0]) < 1e-3)
        assert std.scale[1] == pytest.approx(X[:, 1].astype(np.float64).std(), rel=1e-5)
