"""Fixed-point encoding of weighted updates into Z_{2^b}, and back.

A member encodes ``weight * clip(x)`` as round(· 2^f) with stochastic rounding (unbiased), in
two's complement mod 2^b, and appends its weight as one more word. Summing the words mod 2^b
and dividing by the summed weight gives the weighted mean. Out-of-range coordinates are clipped
and counted, or refused, as the policy says — never distorted silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guardians.errors import ConfigError, GuardiansError

CLIP_POLICIES = ("clip", "reject")


def stats_fixed_point() -> FixedPoint:
    """For feature statistics (count, Σx, Σx²) of one member: large range, refuse overflow."""
    return FixedPoint(modulus_bits=64, scale_bits=10, clip=float(1 << 40), policy="reject")


class ClippingError(GuardiansError):
    """An update had out-of-range values and the policy is to refuse, not clip."""


@dataclass(frozen=True)
class FixedPoint:
    modulus_bits: int = 64
    scale_bits: int = 20
    clip: float = 8.0
    policy: str = "clip"

    def __post_init__(self) -> None:
        if self.modulus_bits not in (32, 64):
            raise ConfigError(f"modulus_bits must be 32 or 64, got {self.modulus_bits}")
        if not 0 <= self.scale_bits < self.modulus_bits - 2:
            raise ConfigError(f"scale_bits {self.scale_bits} too large for 2^{self.modulus_bits}")
        if not self.clip > 0:
            raise ConfigError("clip must be positive")
        if self.policy not in CLIP_POLICIES:
            raise ConfigError(f"clip policy must be one of {CLIP_POLICIES}")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint64 if self.modulus_bits == 64 else np.uint32)

    def check_capacity(self, total_weight: int) -> None:
        """The summed encoding must not wrap: total_weight * clip * 2^f < 2^(b-1)."""
        if total_weight * self.clip * 2.0**self.scale_bits >= 2.0 ** (self.modulus_bits - 1):
            raise ConfigError(
                f"a total weight of {total_weight} overflows 2^{self.modulus_bits} at scale "
                f"2^{self.scale_bits} and clip {self.clip}: raise modulus_bits or lower scale_bits"
            )

    def encode(
        self, x: np.ndarray, weight: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, int]:
        """(words of length len(x) + 1, number of clipped coordinates)."""
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ClippingError("the update holds non-finite values; nothing is sent")
        over = np.abs(x) > self.clip
        clipped = int(over.sum())
        if clipped and self.policy == "reject":
            raise ClippingError(f"{clipped} coordinates exceed the clipping range ±{self.clip}")
        v = np.clip(x, -self.clip, self.clip) * (weight * 2.0**self.scale_bits)
        low = np.floor(v)
        v = low + (rng.random(v.shape) < (v - low))  # stochastic rounding: unbiased
        ints = np.empty(len(x) + 1, dtype=np.int64)
        ints[:-1] = v.astype(np.int64)
        ints[-1] = weight
        return ints.astype(self.dtype), clipped  # two's complement, reduced mod 2^b

    def decode_sum(self, words: np.ndarray) -> tuple[np.ndarray, int]:
        """(weighted mean in float64, total weight) from the sum of members' words."""
        signed = words.astype(self.dtype).view(np.int64 if self.modulus_bits == 64 else np.int32)
        total = int(words[-1])
        if total <= 0:
            raise ConfigError("the aggregate carries no weight")
        mean = signed[:-1].astype(np.float64) / (total * 2.0**self.scale_bits)
        return mean, total
