"""Per-member reputation: an exponentially weighted score in [0, 1] of how each member's
contributions were received, and quarantine below a threshold.

Each round a contributor is observed as 0 if its update raised a monitoring alert or failed its
contribution proof, as the threshold itself if the aggregation rule left it out (rules such as
Multi-Krum leave some honest updates out every round), and otherwise as
(1 + cosine to the round's median update) / 2 when that is known (plaintext), else 1. A member
whose score falls below ``threshold`` is quarantined: not selected again until the consortium
readmits it. The coordinator never quarantines a majority (the honest-majority assumption every
robust rule makes). New members start at ``initial``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from guardians.errors import ConfigError


@dataclass
class Reputation:
    decay: float = 0.5  # weight of the newest observation
    threshold: float = 0.25
    initial: float = 0.75
    scores: dict[str, float] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)  # member → round of quarantine

    def __post_init__(self) -> None:
        if not 0 < self.decay <= 1 or not 0 <= self.threshold < self.initial <= 1:
            raise ConfigError("reputation: need 0 < decay ≤ 1 and 0 ≤ threshold < initial ≤ 1")

    def score(self, member: str) -> float:
        return self.scores.get(member, self.initial)

    def observe(
        self, round: int, member: str, value: float, *, may_quarantine: bool = True
    ) -> bool:
        """Record one observation in [0, 1]; True if it just put the member in quarantine."""
        v = min(1.0, max(0.0, value))
        s = (1 - self.decay) * self.score(member) + self.decay * v
        self.scores[member] = s
        if s < self.threshold and member not in self.quarantined and may_quarantine:
            self.quarantined[member] = round
            return True
        return False

    def readmit(self, member: str) -> None:
        self.quarantined.pop(member, None)
        self.scores[member] = self.initial
