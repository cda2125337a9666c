"""Local training: optimizers over flat parameter vectors and a minibatch loop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guardians.errors import ConfigError
from guardians.learning.models import Model

OPTIMIZERS = ("adam", "sgd")
MAX_EPOCHS = 10_000  # a coordinator must not be able to keep a member busy forever


@dataclass(frozen=True)
class TrainConfig:
    """How a member trains locally in one round (also sent in each round's instruction)."""

    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    # FedProx (Li et al. 2020): (μ/2)·||θ − θ_global||² keeps local training near the global
    # model, curbing client drift when members hold very different data. 0 = plain local SGD.
    proximal: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if not 0 < self.learning_rate < 10:
            raise ConfigError(f"learning_rate must be in (0, 10), got {self.learning_rate}")
        if self.epochs > MAX_EPOCHS:
            raise ConfigError(f"epochs must be at most {MAX_EPOCHS}, got {self.epochs}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0.0 <= self.proximal < 10.0:
            raise ConfigError(f"proximal must be in [0, 10), got {self.proximal}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")


class Adam:
    """Adam (Kingma & Ba) on a flat vector."""

    def __init__(self, n: int, lr: float, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.lr, self.b1, self.b2, self.eps = lr, beta1, beta2, 1e-8
        self.m = np.zeros(n, dtype=np.float32)
        self.v = np.zeros(n, dtype=np.float32)
        self.t = 0

    def step(self, theta: np.ndarray, grad: np.ndarray) -> np.ndarray:
        self.t += 1
        self.m = self.b1 * self.m + (1.0 - self.b1) * grad
        self.v = self.b2 * self.v + (1.0 - self.b2) * grad * grad
        mhat = self.m / (1.0 - self.b1**self.t)
        vhat = self.v / (1.0 - self.b2**self.t)
        return (theta - self.lr * mhat / (np.sqrt(vhat) + self.eps)).astype(np.float32)


class MomentumSGD:
    """SGD with heavy-ball momentum on a flat vector."""

    def __init__(self, n: int, lr: float, momentum: float = 0.9) -> None:
        self.lr, self.mu = lr, momentum
        self.velocity = np.zeros(n, dtype=np.float32)

    def step(self, theta: np.ndarray, grad: np.ndarray) -> np.ndarray:
        self.velocity = self.mu * self.velocity - self.lr * grad
        return (theta + self.velocity).astype(np.float32)


@dataclass(frozen=True)
class TrainResult:
    loss: float
    steps: int
    samples: int


def train_local(
    model: Model, X: np.ndarray, y: np.ndarray, config: TrainConfig, rng: np.random.Generator
) -> TrainResult:
    """Train ``model`` in place on (X, y) for ``config.epochs`` shuffled minibatch epochs."""
    n = X.shape[0]
    if n == 0:
        return TrainResult(loss=float("nan"), steps=0, samples=0)
    opt: Adam | MomentumSGD
    if config.optimizer == "adam":
        opt = Adam(model.n_params, config.learning_rate)
    else:
        opt = MomentumSGD(model.n_params, config.learning_rate, config.momentum)
    theta = model.get_params()
    anchor = theta.copy()  # the global model this round started from (FedProx)
    steps, losses = 0, []
    for _ in range(config.epochs):
        order = rng.permutation(n)
        for start in range(0, n, config.batch_size):
            batch = order[start : start + config.batch_size]
            model.set_params(theta)
            loss, grad = model.loss_and_grad(X[batch], y[batch])
            if config.proximal:
                grad = grad + config.proximal * (theta - anchor)
            theta = opt.step(theta, grad)
            losses.append(loss)
            steps += 1
    model.set_params(theta)
    return TrainResult(
        loss=float(np.mean(losses[-max(1, len(losses) // 4) :])), steps=steps, samples=n
    )
