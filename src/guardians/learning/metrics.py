"""Detection metrics: accuracy, precision, recall, F1, ROC-AUC, false-positive rate, and
detection rates per attack family, on novel attack types, and on families a member never saw.

Class index 0 is the negative class (normal traffic, benign tumour); every other class is a
detection. Multi-class models are also scored as detectors: P(attack) = 1 - P(class 0).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from guardians.learning.data import Dataset


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U, ties counted half); NaN with one class."""
    y = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # Average ranks over runs of tied scores.
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _safe_div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def binary_metrics(
    y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Detector metrics with positive = attack; ``score`` is P(attack)."""
    y = np.asarray(y_true).astype(bool)
    pred = np.asarray(score) >= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    tn = int(np.sum(~pred & ~y))
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    return {
        "accuracy": _safe_div(tp + tn, len(y)),
        "precision": precision,
        "recall": recall,
        "f1": _safe_div(2 * precision * recall, precision + recall),
        "roc_auc": roc_auc(y, score),
        "fpr": _safe_div(fp, fp + tn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    f1s = []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn == 0:
            continue
        f1s.append(_safe_div(2 * tp, 2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


@dataclass(frozen=True, eq=False)
class Predictions:
    """A model's output on a test set, kept so that sub-populations can be scored later."""

    proba: np.ndarray
    test: Dataset

    @property
    def attack_score(self) -> np.ndarray:
        return 1.0 - self.proba[:, 0]

    @property
    def flagged(self) -> np.ndarray:
        return self.attack_score >= 0.5

    def detection_rate(self, groups: Iterable[str]) -> tuple[float, int]:
        """Fraction of test records in ``groups`` flagged as attacks, and how many there are."""
        mask = np.isin(self.test.groups, list(groups))
        n = int(mask.sum())
        return (float(self.flagged[mask].mean()) if n else float("nan")), n


def evaluate(pred: Predictions, train_kinds: Iterable[str] = ()) -> dict[str, Any]:
    """All metrics of one model on its test set, as plain JSON-ready values.

    ``accuracy``/``f1`` are the task's own (binary, or multi-class accuracy and macro-F1);
    ``detection`` scores the model as an attack detector whatever the task.
    """
    test = pred.test
    y_attack = test.y != 0
    det = binary_metrics(y_attack, pred.attack_score)
    out: dict[str, Any] = {}
    if test.n_classes == 2:
        out.update({k: det[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "fpr")})
    else:
        y_hat = pred.proba.argmax(axis=1)
        out["accuracy"] = float(np.mean(y_hat == test.y))
        out["f1"] = macro_f1(test.y, y_hat, test.n_classes)
    out["detection"] = det
    per_group: dict[str, dict[str, float | int]] = {}
    for g in test.positive_groups:
        rate, n = pred.detection_rate([g])
        if n:
            per_group[g] = {"detection_rate": rate, "records": n}
    out["per_family"] = per_group
    known = set(train_kinds)
    novel_kinds = sorted({str(k) for k, a in zip(test.kinds, y_attack, strict=True) if a} - known)
    if known and novel_kinds:
        mask = np.isin(test.kinds, novel_kinds)
        out["novel_attacks"] = {
            "detection_rate": float(pred.flagged[mask].mean()),
            "records": int(mask.sum()),
            "types": novel_kinds,
        }
    return out
