"""Tests of guardians.learning.models (MLP / logistic regression) and local training."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardians.errors import ConfigError, ModelError, ParameterShapeError
from guardians.learning.models import MLP, LogisticRegression, Model, build_model
from guardians.learning.train import TrainConfig, train_local


def problem(n, d, classes, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, classes, n)
    return X, y


def relu_pattern(model, theta, X):
    """Which hidden units are active on which rows, from an independent unpacking of theta
    (layout: W then b per layer)."""
    sizes = [model.n_features, *model.hidden]
    h, off, masks = X.astype(np.float64), 0, []
    for a, b in itertools.pairwise(sizes):
        W = theta[off : off + a * b].reshape(a, b).astype(np.float64)
        off += a * b
        pre = h @ W + theta[off : off + b]
        off += b
        masks.append(pre > 0)
        h = np.maximum(pre, 0.0)
    return np.concatenate([m.ravel() for m in masks]) if masks else np.zeros(0, bool)


def numeric_grad(model, X, y, coords, eps):
    """Central differences on the float32 parameter buffer, dividing by the perturbation that
    was actually stored (float32 rounding of theta +- eps). Also says, per coordinate, whether
    the perturbation stayed on one linear piece of every ReLU (the loss is smooth there)."""
    theta = model.get_params()
    base = relu_pattern(model, theta, X)
    out = np.empty(len(coords))
    smooth = np.empty(len(coords), dtype=bool)
    for j, i in enumerate(coords):
        plus, minus = theta.copy(), theta.copy()
        plus[i] += eps
        minus[i] -= eps
        model.set_params(plus)
        lp, _ = model.loss_and_grad(X, y)
        model.set_params(minus)
        lm, _ = model.loss_and_grad(X, y)
        out[j] = (lp - lm) / (float(plus[i]) - float(minus[i]))
        smooth[j] = np.array_equal(relu_pattern(model, plus, X), base) and np.array_equal(
            relu_pattern(model, minus, X), base
        )
    model.set_params(theta)
    return out, smooth


def rel_err(a, b):
    return np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-3)


CASES = [
    # (n_classes, hidden, l2)
    (2, (), 0.0),
    (2, (), 0.1),
    (5, (), 0.05),
    (2, (6,), 0.01),
    (5, (6,), 0.01),
    (2, (5, 4), 0.02),
    (5, (5, 4), 0.02),
    (3, (7, 3), 0.0),
]


@pytest.mark.parametrize(("n_classes", "hidden", "l2"), CASES)
def test_gradient_matches_finite_differences(n_classes, hidden, l2):
    d = 4
    X, y = problem(16, d, n_classes, seed=len(hidden) * 10 + n_classes)
    model = MLP(d, n_classes, hidden, l2=l2, seed=3)
    # Non-zero biases so that bias gradients are exercised away from the init point.
    theta = model.get_params() + np.random.default_rng(1).normal(0, 0.1, model.n_params).astype(
        np.float32
    )
    model.set_params(theta)
    loss, grad = model.loss_and_grad(X, y)
    assert grad.dtype == np.float32
    assert grad.shape == (model.n_params,)
    assert np.isfinite(loss)
    coords = np.random.default_rng(2).choice(model.n_params, min(40, model.n_params), replace=False)
    num, smooth = numeric_grad(model, X, y, coords, eps=1e-2 if not hidden else 2e-3)
    # Differences across a ReLU kink say nothing about the gradient; most must be smooth.
    assert smooth.mean() >= 0.75
    if not hidden:
        assert smooth.all()
    coords, num = coords[smooth], num[smooth]
    # float32 loss: absolute noise ~1e-5 on the differences, so a small absolute floor.
    np.testing.assert_allclose(grad[coords], num, rtol=1e-2, atol=2e-4)
    assert np.median(rel_err(grad[coords], num)) < 1e-3
    # The checker has power: a gradient off by 5%, or one coordinate's sign, fails it.
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(1.05 * grad[coords], num, rtol=1e-2, atol=2e-4)
    flipped = grad[coords].copy()
    k = int(np.argmax(np.abs(flipped)))
    flipped[k] = -flipped[k]
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(flipped, num, rtol=1e-2, atol=2e-4)
    # The analytic gradient call must not change the parameters.
    np.testing.assert_array_equal(model.get_params(), theta)


def test_loss_matches_independent_computation():
    d, c = 3, 4
    X, y = problem(10, d, c, seed=9)
    model = MLP(d, c, (5,), l2=0.3, seed=1)
    theta = model.get_params().astype(np.float64)
    W1 = theta[: d * 5].reshape(d, 5)
    b1 = theta[d * 5 : d * 5 + 5]
    off = d * 5 + 5
    W2 = theta[off : off + 5 * c].reshape(5, c)
    b2 = theta[off + 5 * c :]
    assert len(b2) == c
    h = np.maximum(X.astype(np.float64) @ W1 + b1, 0)
    z = h @ W2 + b2
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    ce = -logp[np.arange(10), y].mean()
    expected = ce + 0.5 * 0.3 * ((W1**2).sum() + (W2**2).sum())
    loss, _ = model.loss_and_grad(X, y)
    assert loss == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(model.predict_proba(X), np.exp(logp), rtol=1e-4, atol=1e-6)


def test_binary_loss_matches_independent_computation():
    X, y = problem(12, 3, 2, seed=4)
    model = LogisticRegression(3, 2, l2=0.5, seed=2)
    theta = model.get_params().astype(np.float64)
    w, b = theta[:3], theta[3]
    z = X.astype(np.float64) @ w + b
    p = 1 / (1 + np.exp(-z))
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)) + 0.25 * (w @ w)
    loss, _ = model.loss_and_grad(X, y)
    assert loss == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], p, rtol=1e-5)


@pytest.mark.parametrize(
    ("d", "c", "hidden", "n_params"),
    [(4, 2, (), 5), (4, 3, (), 15), (4, 2, (8,), 4 * 8 + 8 + 8 + 1), (3, 5, (4, 2), 16 + 10 + 15)],
)
def test_param_count(d, c, hidden, n_params):
    model = MLP(d, c, hidden)
    assert model.n_params == n_params
    assert model.get_params().shape == (n_params,)
    assert model.n_classes == c
    assert isinstance(model, Model)


def test_get_set_round_trip():
    model = MLP(6, 3, (5, 4), seed=0)
    theta = np.random.default_rng(0).normal(size=model.n_params).astype(np.float32)
    model.set_params(theta)
    got = model.get_params()
    np.testing.assert_array_equal(got, theta)
    # get returns a copy: mutating it does not touch the model
    got[:] = 0
    np.testing.assert_array_equal(model.get_params(), theta)
    # set copies too: mutating the source later does not touch the model
    theta2 = theta.copy()
    model.set_params(theta2)
    theta2[:] = 7
    np.testing.assert_array_equal(model.get_params(), theta)
    # float64 input is accepted and stored as float32
    model.set_params(theta.astype(np.float64) * 2)
    np.testing.assert_array_equal(model.get_params(), theta * 2)
    assert model.get_params().dtype == np.float32


def test_set_params_changes_predictions():
    X, _ = problem(5, 4, 2, 0)
    model = MLP(4, 2, (3,), seed=0)
    before = model.predict_proba(X)
    model.set_params(model.get_params() + 0.5)
    assert not np.allclose(before, model.predict_proba(X))


def test_set_params_rejects_bad_vectors():
    model = MLP(4, 3, (5,), seed=0)
    n = model.n_params
    good = model.get_params()
    bad_inputs = [
        np.zeros(n - 1, np.float32),
        np.zeros(n + 1, np.float32),
        np.zeros((1, n), np.float32),
        np.zeros((n, 1), np.float32),
        np.zeros(n, np.int64),
        np.zeros(n, bool),
        np.zeros(n, np.complex64),
        np.array(np.float32(0)),
    ]
    for i, nan_value in enumerate((np.nan, np.inf, -np.inf)):
        v = good.copy()
        v[i * 3] = nan_value
        bad_inputs.append(v)
    for bad in bad_inputs:
        with pytest.raises(ParameterShapeError):
            model.set_params(bad)
        np.testing.assert_array_equal(model.get_params(), good)  # unchanged after a refusal
    with pytest.raises(ParameterShapeError, match="index 6"):
        v = good.copy()
        v[6] = np.nan
        model.set_params(v)


def test_determinism_under_seed():
    a = MLP(10, 4, (8, 6), seed=42)
    b = MLP(10, 4, (8, 6), seed=42)
    c = MLP(10, 4, (8, 6), seed=43)
    np.testing.assert_array_equal(a.get_params(), b.get_params())
    assert not np.array_equal(a.get_params(), c.get_params())
    X, y = problem(50, 10, 4, 0)
    la, ga = a.loss_and_grad(X, y)
    lb, gb = b.loss_and_grad(X, y)
    assert la == lb
    np.testing.assert_array_equal(ga, gb)
    # biases start at zero, weights do not
    theta = a.get_params()
    assert np.count_nonzero(theta) == 10 * 8 + 8 * 6 + 6 * 4
    # training is deterministic given the rng seed
    cfg = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2)
    train_local(a, X, y, cfg, np.random.default_rng(5))
    train_local(b, X, y, cfg, np.random.default_rng(5))
    np.testing.assert_array_equal(a.get_params(), b.get_params())


@settings(max_examples=25, deadline=None)
@given(
    c=st.integers(2, 6),
    hidden=st.sampled_from([(), (3,), (4, 2)]),
    seed=st.integers(0, 1000),
    scale=st.sampled_from([1.0, 100.0, 1e4]),
)
def test_predict_proba_is_a_distribution(c, hidden, seed, scale):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(20, 5)) * scale).astype(np.float32)
    model = MLP(5, c, hidden, seed=seed)
    p = model.predict_proba(X)
    assert p.shape == (20, c)
    assert np.all(np.isfinite(p))
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    loss, grad = model.loss_and_grad(X, rng.integers(0, c, 20))
    assert np.isfinite(loss)
    assert np.all(np.isfinite(grad))


def test_input_validation():
    model = MLP(4, 2, (3,))
    with pytest.raises(ModelError):
        model.predict_proba(np.zeros((2, 5), np.float32))
    with pytest.raises(ModelError):
        model.predict_proba(np.zeros(4, np.float32))
    with pytest.raises(ModelError):
        model.loss_and_grad(np.zeros((3, 4), np.float32), np.zeros(2, int))
    for args, kw in [
        ((0, 2), {}),
        ((3, 1), {}),
        ((3, 2), {"hidden": (0,)}),
        ((3, 2), {"hidden": (2, 2, 2)}),
    ]:
        with pytest.raises(ModelError):
            MLP(*args, **kw)


def separable(n=400, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 0] += np.where(y == 1, 3.0, -3.0)
    return X, y


@pytest.mark.parametrize(("optimizer", "lr"), [("adam", 1e-2), ("sgd", 5e-2)])
@pytest.mark.parametrize("hidden", [(), (8,)])
def test_training_reduces_loss(optimizer, lr, hidden):
    X, y = separable()
    model = MLP(6, 2, hidden, l2=1e-4, seed=0)
    before, _ = model.loss_and_grad(X, y)
    acc_before = float(np.mean(model.predict_proba(X).argmax(1) == y))
    res = train_local(
        model,
        X,
        y,
        TrainConfig(epochs=5, batch_size=32, learning_rate=lr, optimizer=optimizer),
        np.random.default_rng(0),
    )
    after, _ = model.loss_and_grad(X, y)
    assert res.samples == 400
    assert res.steps == 5 * 13  # ceil(400 / 32) batches per epoch
    assert np.isfinite(res.loss)
    assert after < 0.3 * before
    assert after < 0.2
    acc = float(np.mean(model.predict_proba(X).argmax(1) == y))
    assert acc > 0.97
    assert acc > acc_before


def test_training_multiclass():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(4, 5)) * 4
    y = rng.integers(0, 4, 300)
    X = (centers[y] + rng.normal(size=(300, 5))).astype(np.float32)
    model = build_model("mlp", 5, 4, hidden=(16,), seed=0)
    before, _ = model.loss_and_grad(X, y)
    train_local(
        model,
        X,
        y,
        TrainConfig(epochs=10, batch_size=16, learning_rate=1e-2),
        np.random.default_rng(0),
    )
    after, _ = model.loss_and_grad(X, y)
    assert after < 0.3 * before
    assert np.mean(model.predict_proba(X).argmax(1) == y) > 0.95


def test_train_on_empty_data_is_a_no_op():
    model = MLP(3, 2, ())
    theta = model.get_params()
    res = train_local(
        model,
        np.zeros((0, 3), np.float32),
        np.zeros(0, int),
        TrainConfig(),
        np.random.default_rng(0),
    )
    assert res.steps == 0
    assert res.samples == 0
    np.testing.assert_array_equal(model.get_params(), theta)


@pytest.mark.parametrize(
    "kw",
    [
        {"epochs": 0},
        {"batch_size": 0},
        {"learning_rate": 0.0},
        {"learning_rate": float("nan")},
        {"optimizer": "rmsprop"},
    ],
)
def test_train_config_validation(kw):
    with pytest.raises(ConfigError):
        TrainConfig(**kw)


def test_build_model():
    m = build_model("logreg", 7, 3, seed=1)
    assert m.hidden == ()
    assert m.n_params == 7 * 3 + 3
    m2 = build_model("mlp", 7, 2, hidden=(4,), seed=1)
    assert m2.hidden == (4,)
    assert m2.n_params == 7 * 4 + 4 + 4 + 1
    assert "logistic regression" in m.describe()
    with pytest.raises(ModelError, match="unknown model"):
        build_model("transformer", 7, 2)


def test_fedprox_keeps_local_training_near_the_starting_model():
    from guardians.learning.train import TrainConfig, train_local

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    drift = {}
    for mu in (0.0, 5.0):
        m = MLP(6, 2, hidden=(8,), seed=1)
        start = m.get_params()
        train_local(m, X, y, TrainConfig(epochs=5, batch_size=16, learning_rate=1e-2,
                                         proximal=mu), np.random.default_rng(2))  # fmt: skip
        drift[mu] = float(np.linalg.norm(m.get_params() - start))
    assert drift[5.0] < 0.5 * drift[0.0]


def test_a_deep_copy_trains_independently():
    import copy

    from guardians.learning.train import TrainConfig, train_local

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    m = MLP(5, 2, hidden=(8,), seed=1)
    before = m.get_params()
    c = copy.deepcopy(m)
    train_local(c, X, y, TrainConfig(epochs=2, batch_size=16), np.random.default_rng(1))
    assert np.linalg.norm(c.get_params() - before) > 0  # the copy learned
    np.testing.assert_array_equal(m.get_params(), before)  # the original did not move
