"""Monitoring of updates: per-round anomaly statistics and the alerts they raise.

With plaintext updates the coordinator sees, per member: the update's L2 norm (overall and per
layer), its cosine to the round's coordinate-wise median update, and its influence on a small
probe set held by the coordinator (how much applying that update alone raises the probe loss:
a boosted backdoor or a sign-flipped update raises it, an honest one lowers it). Under secure
aggregation only the aggregate is visible, so only its norm is tracked from round to round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from guardians.errors import ConfigError


@dataclass
class UpdateMonitor:
    """Alerts on updates far from the round's crowd. Thresholds are relative to the round's
    median, so they follow the natural shrinking of updates as training converges."""

    norm_factor: float = 3.0  # alert above this × the median norm
    min_cosine: float = -0.2  # alert below this cosine to the aggregate
    probe_factor: float = 3.0  # alert when probe-loss increase exceeds this × the median |Δ|
    probe_min: float = 0.05  # ... and this much in absolute terms (small late-round wobbles)
    aggregate_factor: float = 4.0  # secure aggregation: aggregate norm vs the running median
    _aggregate_norms: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (self.norm_factor > 1 and self.probe_factor > 0 and self.aggregate_factor > 1):
            raise ConfigError("monitor factors must exceed 1 (norms) and 0 (probe)")

    def alerts(self, stats: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
        if not stats:
            return {}
        out: dict[str, str] = {}
        med = float(np.median([s["norm"] for s in stats.values()]))
        probe = [s["probe_loss_increase"] for s in stats.values() if "probe_loss_increase" in s]
        pmed = float(np.median(np.abs(probe))) if probe else 0.0
        for m, s in stats.items():
            why = []
            if med > 0 and s["norm"] > self.norm_factor * med:
                why.append(f"norm {s['norm']:.3g} is {s['norm'] / med:.1f}× the round's median")
            if s.get("cosine", 1.0) < self.min_cosine:
                why.append(f"cosine {s['cosine']:.2f} to the round's median update")
            inc = s.get("probe_loss_increase")
            if inc is not None and inc > max(self.probe_min, self.probe_factor * pmed):
                why.append(f"alone it raises the probe loss by {inc:.3g}")
            if why:
                out[m] = "; ".join(why)
        return out

    def aggregate_alert(self, norm: float) -> str | None:
        hist = self._aggregate_norms
        alert = None
        if len(hist) >= 3:
            med = float(np.median(hist[-10:]))
            if med > 0 and norm > self.aggregate_factor * med:
                alert = f"aggregate norm {norm:.3g} is {norm / med:.1f}× the recent median"
        hist.append(norm)
        return alert


@dataclass
class DriftMonitor:
    """Alerts from members' local summaries: a new global model that does much worse on a
    member's own records than the recent ones did (a regression, e.g. from poisoning), or a
    member whose data moved away from the consortium's."""

    f1_drop: float = 0.15  # alert when model F1 on a member's records falls by more than this
    shift_jump: float = 1.0  # alert when feature_shift grows by more than this (in z units)
    history: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def observe(self, member: str, model_f1: float, feature_shift: float) -> str | None:
        past = self.history.setdefault(member, [])
        alert = None
        if len(past) >= 2:
            best = max(f for f, _ in past[-3:])
            if best - model_f1 > self.f1_drop:
                alert = (f"the new global model's F1 on this member's records fell from "
                         f"{best:.3f} to {model_f1:.3f}")  # fmt: skip
            base = float(np.median([s for _, s in past]))
            if feature_shift - base > self.shift_jump:
                alert = (alert + "; " if alert else "") + (
                    f"its data moved from the consortium's (shift {base:.2f} → {feature_shift:.2f})"
                )
        past.append((model_f1, feature_shift))
        return alert
