"""Models in numpy behind a small interface whose parameters are one flat float32 vector.

Everything the federation does to a model (send it, average it, mask it, prove things about it)
acts on that flat vector; the :class:`Model` protocol is all another implementation (a torch
model, say) has to provide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from guardians.errors import ModelError, ParameterShapeError


@runtime_checkable
class Model(Protocol):
    """What the federation needs from a model."""

    @property
    def n_params(self) -> int: ...

    @property
    def n_classes(self) -> int: ...

    def get_params(self) -> np.ndarray:
        """A copy of all parameters as one flat float32 vector."""
        ...

    def set_params(self, flat: np.ndarray) -> None:
        """Replace all parameters; raises ParameterShapeError on a wrong length or value."""
        ...

    def loss_and_grad(self, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean regularized loss on (X, y) and its gradient as a flat float32 vector."""
        ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, n_classes)."""
        ...


def check_params(flat: np.ndarray, n_params: int, *, what: str = "parameter vector") -> np.ndarray:
    """Validate a flat parameter vector (length, dtype, finiteness) and return it as float32."""
    arr = np.asarray(flat)
    if arr.ndim != 1 or arr.shape[0] != n_params:
        raise ParameterShapeError(f"{what} has shape {arr.shape}, expected ({n_params},)")
    if arr.dtype.kind != "f":
        raise ParameterShapeError(f"{what} has dtype {arr.dtype}, expected float32")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ParameterShapeError(f"{what} holds a non-finite value at index {bad}")
    return arr.astype(np.float32, copy=False)


class MLP:
    """A multilayer perceptron: ReLU hidden layers, sigmoid (2 classes) or softmax output.

    With ``hidden=()`` it is (multinomial) logistic regression. Loss: mean cross-entropy plus
    ``l2 / 2 * ||W||^2`` over weight matrices (not biases). Parameters live in one float32
    buffer; layer weights are views into it, so get/set are single copies.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden: Sequence[int] = (64,),
        *,
        l2: float = 1e-4,
        seed: int = 0,
    ) -> None:
        if n_features < 1:
            raise ModelError(f"n_features must be positive, got {n_features}")
        if n_classes < 2:
            raise ModelError(f"a classifier needs at least 2 classes, got {n_classes}")
        if any(h < 1 for h in hidden) or len(hidden) > 2:
            raise ModelError(f"hidden layers must be 0 to 2 positive widths, got {hidden}")
        self._n_classes = n_classes
        self.n_features = n_features
        self.hidden = tuple(int(h) for h in hidden)
        self.l2 = float(l2)
        out = 1 if n_classes == 2 else n_classes
        self._sizes = [n_features, *self.hidden, out]
        self._shapes: list[tuple[tuple[int, int], tuple[int]]] = [
            ((a, b), (b,)) for a, b in zip(self._sizes[:-1], self._sizes[1:], strict=True)
        ]
        total = sum(a * b + b for (a, b), _ in self._shapes)
        self._theta = np.zeros(total, dtype=np.float32)
        self._grad = np.zeros(total, dtype=np.float32)
        self._W, self._b = self._views(self._theta)
        self._gW, self._gb = self._views(self._grad)
        rng = np.random.default_rng(seed)
        for i, W in enumerate(self._W):
            fan_in, fan_out = W.shape
            last = i == len(self._W) - 1
            # He initialisation for ReLU layers, Glorot for the output layer.
            std = np.sqrt(2.0 / (fan_in + fan_out)) if last else np.sqrt(2.0 / fan_in)
            W[...] = rng.normal(0.0, std, size=W.shape).astype(np.float32)

    def __deepcopy__(self, memo: dict[int, Any]) -> MLP:
        # A plain deepcopy would turn the layer views into independent arrays: the copy's
        # weights and gradients would no longer live in its flat buffers.
        new = MLP.__new__(MLP)
        new.__dict__.update(self.__dict__)
        new._sizes, new._shapes = list(self._sizes), list(self._shapes)
        new._theta = self._theta.copy()
        new._grad = np.zeros_like(self._grad)
        new._W, new._b = new._views(new._theta)
        new._gW, new._gb = new._views(new._grad)
        return new

    def _views(self, buf: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        Ws, bs, off = [], [], 0
        for (a, b), _ in self._shapes:
            Ws.append(buf[off : off + a * b].reshape(a, b))
            off += a * b
            bs.append(buf[off : off + b])
            off += b
        return Ws, bs

    @property
    def n_params(self) -> int:
        return int(self._theta.shape[0])

    def layer_slices(self) -> list[tuple[str, slice]]:
        """Where each layer's weights and biases sit in the flat parameter vector."""
        out, off = [], 0
        for i, ((a, b), _) in enumerate(self._shapes, start=1):
            out.append((f"W{i}", slice(off, off + a * b)))
            off += a * b
            out.append((f"b{i}", slice(off, off + b)))
            off += b
        return out

    @property
    def n_classes(self) -> int:
        return self._n_classes

    def describe(self) -> str:
        kind = "logistic regression" if not self.hidden else f"MLP {self.hidden}"
        return (
            f"{kind}, {self.n_features} inputs, {self._n_classes} classes, {self.n_params} params"
        )

    def get_params(self) -> np.ndarray:
        return self._theta.copy()

    def set_params(self, flat: np.ndarray) -> None:
        self._theta[...] = check_params(flat, self.n_params)

    def _check_input(self, X: np.ndarray) -> np.ndarray:
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ModelError(f"input has shape {X.shape}, expected (n, {self.n_features})")
        return np.asarray(X, dtype=np.float32)

    def _forward(self, X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        acts = [X]
        h = X
        for W, b in zip(self._W[:-1], self._b[:-1], strict=True):
            h = np.maximum(h @ W + b, 0.0)
            acts.append(h)
        logits = h @ self._W[-1] + self._b[-1]
        return acts, logits

    @staticmethod
    def _sigmoid(z: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = self._check_input(X)
        _, logits = self._forward(X)
        if self._n_classes == 2:
            p = self._sigmoid(logits[:, 0])
            return np.stack([1.0 - p, p], axis=1)
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def loss_and_grad(self, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        X = self._check_input(X)
        n = X.shape[0]
        if y.shape != (n,):
            raise ModelError(f"labels have shape {y.shape}, expected ({n},)")
        acts, logits = self._forward(X)
        if self._n_classes == 2:
            z = logits[:, 0]
            t = y.astype(np.float32)
            # log(1 + e^z) - t z, computed stably.
            loss = float(np.mean(np.logaddexp(0.0, z) - t * z))
            delta = ((self._sigmoid(z) - t) / n)[:, None].astype(np.float32)
        else:
            zs = logits - logits.max(axis=1, keepdims=True)
            logsum = np.log(np.exp(zs).sum(axis=1))
            loss = float(np.mean(logsum - zs[np.arange(n), y]))
            p = np.exp(zs - logsum[:, None])
            p[np.arange(n), y] -= 1.0
            delta = (p / n).astype(np.float32)
        loss += 0.5 * self.l2 * float(sum(np.sum(W * W) for W in self._W))
        for i in range(len(self._W) - 1, -1, -1):
            self._gW[i][...] = acts[i].T @ delta + self.l2 * self._W[i]
            self._gb[i][...] = delta.sum(axis=0)
            if i:
                delta = (delta @ self._W[i].T) * (acts[i] > 0)
        return loss, self._grad.copy()


def LogisticRegression(  # noqa: N802 - a constructor, named like one
    n_features: int, n_classes: int, *, l2: float = 1e-4, seed: int = 0
) -> MLP:
    """Logistic (softmax) regression: an MLP without hidden layers."""
    return MLP(n_features, n_classes, hidden=(), l2=l2, seed=seed)


MODEL_KINDS = ("mlp", "logreg")


def build_model(
    kind: str,
    n_features: int,
    n_classes: int,
    *,
    hidden: Sequence[int] = (64,),
    l2: float = 1e-4,
    seed: int = 0,
) -> MLP:
    if kind == "mlp":
        return MLP(n_features, n_classes, hidden, l2=l2, seed=seed)
    if kind == "logreg":
        return LogisticRegression(n_features, n_classes, l2=l2, seed=seed)
    raise ModelError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
