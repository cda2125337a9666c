"""Scan a feed for what must not be in it: any member's name or identity id, and any raw
observable value a member saw. The share of objects carrying none of them is the measured
"anonymized share"."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScanResult:
    objects: int
    leaking: dict[str, list[str]]  # object id → what it leaked

    @property
    def anonymized_share(self) -> float:
        return 1.0 - len(self.leaking) / self.objects if self.objects else 1.0


def scan_feed(objects: Sequence[Any], *, secrets: Iterable[str]) -> ScanResult:
    """``secrets``: member names, member identity ids, raw observable values."""
    needles = sorted({s.lower() for s in secrets if s})
    leaking: dict[str, list[str]] = {}
    for o in objects:
        text = (o.serialize() if hasattr(o, "serialize") else str(o)).lower()
        found = [s for s in needles if s in text]
        if found:
            leaking[str(o["id"])] = found
    return ScanResult(len(objects), leaking)
