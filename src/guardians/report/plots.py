"""Plots for the report, rendered by matplotlib to inline SVG (no files, no network)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

# Stable SVG element ids: the same metrics give the same file.
matplotlib.rcParams["svg.hashsalt"] = "guardians"

COLORS = {"federated": "#1f6feb", "centralized": "#8250df", "local_only": "#d4a72c"}
LABELS = {"federated": "federated", "centralized": "centralized (pooled data)",
          "local_only": "local-only"}  # fmt: skip


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog so it can sit inside HTML


def f1_per_round(metrics: dict[str, Any]) -> str:
    rounds = metrics["federated"]["per_round"]
    fig = Figure(figsize=(7, 3.4))
    ax = fig.subplots()
    x = [r["round"] for r in rounds]
    ax.plot(
        x,
        [r["f1"] for r in rounds],
        marker="o",
        ms=3,
        color=COLORS["federated"],
        label=LABELS["federated"],
    )
    ax.axhline(
        metrics["centralized"]["f1"],
        ls="--",
        color=COLORS["centralized"],
        label=LABELS["centralized"],
    )
    ax.axhline(
        metrics["local_only"]["f1"],
        ls=":",
        color=COLORS["local_only"],
        label="local-only (mean over members)",
    )
    ax.set_xlabel("round")
    ax.set_ylabel("F1 on the test set")
    ax.set_title("Federated model, round by round")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def _alone_vs_federated(
    ax: Any, ids: list[str], alone: list[float], fed: list[float], ylabel: str, title: str
) -> None:
    x = np.arange(len(ids))
    w = 0.38
    ax.bar(x - w / 2, alone, w, color=COLORS["local_only"], label="member alone")
    ax.bar(x + w / 2, fed, w, color=COLORS["federated"], label="federated model")
    ax.set_xticks(x, [m.replace("member-", "m") for m in ids])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", ncols=2)
    ax.grid(axis="y", alpha=0.3)


def per_member(metrics: dict[str, Any]) -> str:
    local = metrics["local_only"]["per_member"]
    ids = list(local)
    unseen = metrics.get("unseen_families", {}).get("per_member", {})
    panels = 2 if unseen else 1
    fig = Figure(figsize=(7 if panels == 1 else 11, 3.4))
    axes = fig.subplots(1, panels, squeeze=False)
    _alone_vs_federated(
        axes[0][0], ids, [local[m]["f1"] for m in ids], [metrics["federated"]["f1"]] * len(ids),
        "F1 on the test set", "Each member: alone vs in the consortium",
    )  # fmt: skip
    if unseen:
        um = [m for m in ids if m in unseen]
        _alone_vs_federated(
            axes[0][1], um, [unseen[m]["local_only"] for m in um],
            [unseen[m]["federated"] for m in um],
            "detection rate", "Attack families the member never saw",
        )  # fmt: skip
    fig.tight_layout()
    return _svg(fig)


def per_family(metrics: dict[str, Any]) -> str:
    fams = list(metrics["federated"]["per_family"])
    local = metrics["local_only"]["per_member"]
    series = {
        "local_only": [
            float(np.mean([local[m]["per_family"][f]["detection_rate"] for m in local]))
            for f in fams
        ],
        "federated": [metrics["federated"]["per_family"][f]["detection_rate"] for f in fams],
        "centralized": [metrics["centralized"]["per_family"][f]["detection_rate"] for f in fams],
    }
    labels = list(fams)
    if "novel_attacks" in metrics["federated"]:
        labels.append("novel types")
        series["local_only"].append(
            float(np.mean([local[m]["novel_attacks"]["detection_rate"] for m in local]))
        )
        for k in ("federated", "centralized"):
            series[k].append(metrics[k]["novel_attacks"]["detection_rate"])
    fig = Figure(figsize=(7, 3.4))
    ax = fig.subplots()
    x = np.arange(len(labels))
    w = 0.27
    for i, k in enumerate(("local_only", "federated", "centralized")):
        name = "local-only (mean)" if k == "local_only" else LABELS[k]
        ax.bar(x + (i - 1) * w, series[k], w, color=COLORS[k], label=name)
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("detection rate")
    ax.set_title("Detection by attack family (test set)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig)


def robustness_heatmap(result: dict[str, Any]) -> str:
    """Defences × (attack, malicious fraction): F1 drop from each defence's clean run, and
    backdoor success, side by side."""
    cells = [c for c in result["cells"] if c["attack"] != "none"]
    defences = list(dict.fromkeys(c["defence"] for c in result["cells"]))
    cols = list(dict.fromkeys((c["attack"], c["malicious_fraction"]) for c in cells))
    drop = np.full((len(defences), len(cols)), np.nan)
    bd = np.full_like(drop, np.nan)
    for c in cells:
        i, j = defences.index(c["defence"]), cols.index((c["attack"], c["malicious_fraction"]))
        drop[i, j], bd[i, j] = c["f1_drop_points"], 100 * c["backdoor_success"]
    fig = Figure(figsize=(max(7.0, 0.42 * len(cols) * 2 + 3), 0.45 * len(defences) + 2.2))
    axes = fig.subplots(1, 2)
    labels = [f"{a} {f:.0%}" for a, f in cols]
    for ax, data, title, vmax in (
        (axes[0], drop, "F1 drop from the clean run (points)", 20.0),
        (axes[1], bd, "backdoor success (%)", 100.0),
    ):
        im = ax.imshow(np.clip(data, 0, vmax), cmap="Reds", vmin=0, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(cols)), labels, rotation=70, fontsize=7)
        ax.set_yticks(range(len(defences)), defences, fontsize=8)
        ax.set_title(title, fontsize=9)
        for i in range(len(defences)):
            for j in range(len(cols)):
                if np.isfinite(data[i, j]):
                    ax.text(j, i, f"{data[i, j]:.0f}", ha="center", va="center", fontsize=6)
        fig.colorbar(im, ax=ax, shrink=0.7)
    return _svg(fig)
