"""Malicious members for the simulator: one :class:`Adversary` controls several member nodes
(colluders, or Sybil identities) and decides what each sends.

Data-poisoning attacks (label flipping, backdoor) change the members' records once; their
updates then come from ordinary training. Crafted-update attacks (sign flip, Gaussian, ALIE,
IPM, min-max, min-sum) train every colluder honestly first — the adversary's partial knowledge —
and send one crafted update from all of them. A backdoor update is boosted (model replacement)
by ``n_total / n_malicious``. Sybil identities send near-clones of one poisoned update.
Malformed members send NaN, inf or a truncated update, bypassing the honest session's checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from guardians.codec import Message
from guardians.errors import ConfigError
from guardians.learning import attacks
from guardians.learning.data import Dataset
from guardians.node.member import MemberNode
from guardians.protocol.messages import ModelUpdate
from guardians.protocol.round import TrainingRequested

CRAFTED = ("sign-flip", "gaussian", "alie", "ipm", "min-max", "min-sum")


class Adversary:
    def __init__(
        self,
        attack: str,
        *,
        n_total: int,
        rng: np.random.Generator,
        trigger: attacks.Trigger | None = None,
        boost: float | None = None,
        scale: float = 10.0,
        malformed: str = "nan",
    ) -> None:
        if attack not in attacks.ATTACKS or attack == "none":
            raise ConfigError(f"unknown attack {attack!r}; choose one of {attacks.ATTACKS[1:]}")
        if attack in ("backdoor", "sybil") and trigger is None:
            raise ConfigError(f"the {attack} attack needs a trigger")
        self.attack = attack
        self.n_total = n_total
        self.rng = rng
        self.trigger = trigger
        self.boost = boost
        self.scale = scale
        self.malformed = malformed
        self.members: dict[str, MaliciousMember] = {}
        self._round = -1
        self._crafted: np.ndarray | None = None

    def poison(self, data: Dataset) -> Dataset:
        if self.attack == "label-flip":
            return attacks.label_flip(data)
        if self.attack in ("backdoor", "sybil"):
            assert self.trigger is not None
            return attacks.backdoor(data, self.trigger, self.rng)
        return data

    def _shared(self, event: TrainingRequested) -> np.ndarray:
        """One update for every colluder this round, computed at the first one's turn."""
        if self._round != event.round or self._crafted is None:
            self._round = event.round
            if self.attack == "sybil":
                first = next(iter(self.members.values()))
                self._crafted = first.honest_update(event)[0]
            else:
                benign = np.stack([m.honest_update(event)[0] for m in self.members.values()])
                self._crafted = attacks.craft(
                    self.attack, benign, n_total=self.n_total, n_malicious=len(self.members),
                    rng=self.rng, scale=self.scale,
                ).astype(np.float32)  # fmt: skip
        return self._crafted

    def update_for(
        self, member: MaliciousMember, event: TrainingRequested
    ) -> tuple[np.ndarray, int, float]:
        delta, samples, loss = member.honest_update(event)
        if self.attack in CRAFTED:
            return self._shared(event).copy(), samples, loss
        if self.attack == "sybil":
            base = self._shared(event)
            jitter = self.rng.normal(0, 1e-4 * float(np.linalg.norm(base)) / np.sqrt(base.size),
                                     base.shape)  # fmt: skip
            return (base + jitter).astype(np.float32), samples, loss
        if self.attack == "backdoor":
            boost = self.boost or self.n_total / max(1, len(self.members))
            return (delta * boost).astype(np.float32), samples, loss
        return delta, samples, loss  # label flip, malformed (mangled later)


class MaliciousMember(MemberNode):
    """A member node run by an adversary."""

    def __init__(self, member_id: str, data: Dataset, *args: Any, adversary: Adversary,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(member_id, adversary.poison(data), *args, **kwargs)
        self.adversary = adversary
        adversary.members[member_id] = self

    def honest_update(self, event: TrainingRequested) -> tuple[np.ndarray, int, float]:
        return super().local_update(event)

    def local_update(self, event: TrainingRequested) -> tuple[np.ndarray, int, float]:
        return self.adversary.update_for(self, event)

    def handle(self, msg: Message) -> list[Message]:
        replies = super().handle(msg)
        if self.adversary.attack != "malformed":
            return replies
        # The adversary does not run our honest session's checks: mangle what it sends.
        return [
            ModelUpdate(round=r.round, num_samples=r.num_samples, loss=r.loss,
                        delta=attacks.malformed(r.delta, self.adversary.malformed))
            if isinstance(r, ModelUpdate) else r
            for r in replies
        ]  # fmt: skip
