"""Poisoning attacks, as pure functions on data and updates (the simulator's malicious members
call them; see ``node/adversary``).

Data poisoning: label flipping; a backdoor that teaches "these rare feature values mean benign"
(a trigger on NSL-KDD features). Model poisoning, crafted from the benign updates the
adversary's own members would have sent (partial knowledge): sign flipping, Gaussian noise,
scaling (model replacement), ALIE (Baruch et al., NeurIPS 2019), IPM (Xie et al., UAI 2020),
min-max and min-sum (Shejwalkar & Houmansadr, NDSS 2021). Sybil: many identities of one
adversary submitting near-clones. Malformed: NaN, inf or a wrong length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from guardians.errors import ConfigError
from guardians.learning.data import Dataset

ATTACKS = ("none", "label-flip", "sign-flip", "gaussian", "backdoor", "alie", "ipm", "min-max",
           "min-sum", "sybil", "malformed")  # fmt: skip
MALFORMED = ("nan", "inf", "length")


@dataclass(frozen=True)
class Trigger:
    """Set a few rarely-used features to fixed values (in the loader's feature space, before
    standardization) and the record should be classified as ``target``."""

    features: tuple[int, ...]
    values: tuple[float, ...]
    target: int = 0

    def apply(self, X: np.ndarray) -> np.ndarray:
        out = np.array(X, copy=True)
        out[:, list(self.features)] = np.asarray(self.values, dtype=out.dtype)
        return out


def nslkdd_trigger(feature_names: tuple[str, ...]) -> Trigger:
    """Urgent packets, a shell and access-file activity at once: values almost never seen
    together in NSL-KDD (urgent ≠ 0 in 0.004% of training rows)."""
    wanted = {"urgent": 1.0, "log1p(num_shells)": 1.1, "log1p(num_access_files)": 1.6}
    missing = [f for f in wanted if f not in feature_names]
    if missing:
        raise ConfigError(f"the backdoor trigger needs NSL-KDD features {missing}")
    idx = tuple(feature_names.index(f) for f in wanted)
    return Trigger(idx, tuple(wanted.values()), target=0)


def label_flip(data: Dataset) -> Dataset:
    """Every label moved to the next class (binary: attack ↔ benign)."""
    k = max(2, int(data.y.max()) + 1)
    return _with(data, X=data.X, y=(data.y + 1) % k)


def backdoor(
    data: Dataset, trigger: Trigger, rng: np.random.Generator, copies: float = 1.0
) -> Dataset:
    """The member's data plus triggered copies of its attack records, labelled ``target``."""
    attacks = np.flatnonzero(data.y != trigger.target)
    if len(attacks) == 0:
        attacks = np.arange(len(data.y))
    pick = rng.choice(attacks, size=max(1, int(copies * len(attacks))), replace=True)
    X = np.concatenate([data.X, trigger.apply(data.X[pick])])
    y = np.concatenate([data.y, np.full(len(pick), trigger.target, dtype=data.y.dtype)])
    return _with(data, X=X, y=y)


def _with(data: Dataset, *, X: np.ndarray, y: np.ndarray) -> Dataset:
    """``data`` with new rows appended (copies' groups and kinds repeat the originals')."""
    extra = len(y) - len(data.y)
    if extra > 0:
        groups = np.concatenate([data.groups, np.resize(data.groups, extra)])
        kinds = np.concatenate([data.kinds, np.resize(data.kinds, extra)])
    else:
        groups, kinds = data.groups, data.kinds
    return Dataset(name=data.name, X=X.astype(np.float32), y=y, classes=data.classes,
                   feature_names=data.feature_names, groups=groups, kinds=kinds,
                   positive_groups=data.positive_groups)  # fmt: skip


# --- crafted updates ---------------------------------------------------------------------------
def alie_z(n: int, f: int) -> float:
    """ALIE's z_max: the largest shift that keeps the malicious updates inside the majority."""
    s = n // 2 + 1 - f
    p = (n - s) / n
    return NormalDist().inv_cdf(min(max(p, 1e-6), 1 - 1e-6))


def _search(ok: Callable[[float], bool], hi: float, steps: int = 30) -> float:
    """Largest γ in [0, hi] with ok(γ), assuming ok is monotone (binary search)."""
    lo = 0.0
    if ok(hi):
        return hi
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def craft(
    attack: str,
    benign: np.ndarray,
    *,
    n_total: int,
    n_malicious: int,
    rng: np.random.Generator,
    scale: float = 10.0,
) -> np.ndarray:
    """The update the adversary's members send, from the benign updates they computed."""
    b = np.asarray(benign, dtype=np.float64)
    mu, sd = b.mean(axis=0), b.std(axis=0)
    if attack == "sign-flip":
        return -scale * mu
    if attack == "gaussian":
        return rng.normal(0.0, scale * (float(np.linalg.norm(mu)) / np.sqrt(len(mu)) + 1e-12),
                          size=mu.shape)  # fmt: skip
    if attack == "alie":
        return mu - alie_z(n_total, n_malicious) * sd
    if attack == "ipm":
        return -0.5 * mu
    if attack in ("min-max", "min-sum"):
        # Perturbation direction: against the benign spread (the paper's "std" variant).
        p = -sd / max(float(np.linalg.norm(sd)), 1e-12)
        d2 = ((b[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
        if attack == "min-max":
            limit = d2.max()

            def ok(g: float) -> bool:
                return bool((((mu + g * p) - b) ** 2).sum(axis=1).max() <= limit)
        else:
            limit = d2.sum(axis=1).max()

            def ok(g: float) -> bool:
                return bool((((mu + g * p) - b) ** 2).sum(axis=1).sum() <= limit)

        gamma = _search(ok, hi=50.0 * float(np.linalg.norm(sd)) + 1e-9)
        return mu + gamma * p
    raise ConfigError(f"{attack!r} is not a crafted-update attack")


def malformed(update: np.ndarray, kind: str) -> np.ndarray:
    if kind == "nan":
        out = update.copy()
        out[0] = np.nan
        return out
    if kind == "inf":
        out = update.copy()
        out[-1] = np.inf
        return out
    if kind == "length":
        return update[:-1].copy()
    raise ConfigError(f"malformed kind must be one of {MALFORMED}")


def backdoor_success(
    clean_proba: np.ndarray, triggered_proba: np.ndarray, trigger: Trigger
) -> float:
    """Attack success rate: of the records the model classifies correctly (not as the target)
    without the trigger, the share it classifies as the target once the trigger is applied."""

    def pred(p: np.ndarray) -> np.ndarray:
        return (p[:, 1] >= 0.5).astype(int) if p.shape[1] == 2 else p.argmax(axis=1)

    caught = pred(clean_proba) != trigger.target
    if not caught.any():
        return 0.0
    return float(np.mean(pred(triggered_proba)[caught] == trigger.target))
