"""The consortium's choice of aggregation rule, checked for coherence before any round runs.

What each rule must see decides how it composes with secure aggregation, where the coordinator
learns only the sum of the updates:

- fedavg sees only the sum: runs under secure aggregation.
- norm-bound (clip) sees each update's norm: under secure aggregation members clip and prove
  the bound in zero knowledge (contribution proofs), so it runs there too.
- norm-bound (reject), median, trimmed-mean, krum, multi-krum, bulyan, fltrust and foolsgold see
  each plaintext update: they run only with privacy "none".

A rule name may be prefixed with ``norm-bound+`` to clip every update before the inner rule.
"""

from __future__ import annotations

from guardians.errors import ConfigError
from guardians.learning.aggregate.base import Rule
from guardians.learning.aggregate.bulyan import Bulyan
from guardians.learning.aggregate.fedavg import FedAvg
from guardians.learning.aggregate.fltrust import FLTrust
from guardians.learning.aggregate.foolsgold import FoolsGold
from guardians.learning.aggregate.krum import Krum, MultiKrum
from guardians.learning.aggregate.median import Median
from guardians.learning.aggregate.norm_bound import NormBound
from guardians.learning.aggregate.trimmed_mean import TrimmedMean

RULES = ("fedavg", "median", "trimmed-mean", "krum", "multi-krum", "bulyan", "norm-bound",
         "fltrust", "foolsgold")  # fmt: skip


def make_rule(
    spec: str,
    *,
    privacy: str,
    members: int,
    f: int = 0,
    norm_bound: float | None = None,
    trim: float = 0.2,
    root: bool = False,
) -> Rule:
    """Build the rule ``spec`` for a consortium of ``members`` of which up to ``f`` may be
    malicious; refuse combinations that cannot work, naming why."""
    name = spec.strip().lower()
    clip = False
    if name.startswith("norm-bound+"):
        clip, name = True, name.removeprefix("norm-bound+")
    if name not in RULES:
        raise ConfigError(f"unknown aggregation rule {spec!r}; choose one of {', '.join(RULES)} "
                          "(optionally norm-bound+RULE)")  # fmt: skip
    if (clip or name == "norm-bound") and not norm_bound:
        raise ConfigError(f"{spec}: a norm bound is needed (--norm-bound)")
    if f < 0 or f >= members:
        raise ConfigError(f"the number of malicious members f = {f} must be in [0, {members})")
    inner: Rule
    if name == "fedavg":
        inner = FedAvg()
    elif name == "median":
        inner = Median()
    elif name == "trimmed-mean":
        inner = TrimmedMean(trim)
    elif name in ("krum", "multi-krum"):
        inner = Krum(f) if name == "krum" else MultiKrum(f)
        if members < 2 * f + 3:
            raise ConfigError(f"{name} tolerates f = {f} only with at least {2 * f + 3} members "
                              f"(n > 2f + 2), not {members}")  # fmt: skip
    elif name == "bulyan":
        inner = Bulyan(f)
        if members < 4 * f + 3:
            raise ConfigError(f"bulyan tolerates f = {f} only with at least {4 * f + 3} members "
                              f"(n ≥ 4f + 3), not {members}")  # fmt: skip
    elif name == "fltrust":
        if not root:
            raise ConfigError("fltrust needs a root dataset held by the coordinator (--root-size)")
        inner = FLTrust()
    elif name == "foolsgold":
        inner = FoolsGold()
    else:  # norm-bound alone
        assert norm_bound is not None
        inner = NormBound(norm_bound)
    rule = NormBound(norm_bound, inner=inner) if clip and norm_bound else inner  # type: ignore[arg-type]
    if privacy == "secagg" and rule.individual:
        raise ConfigError(
            f"{rule.name} must see each member's update, but under secure aggregation the "
            "coordinator sees only their sum: use fedavg or norm-bound (enforced there by "
            "contribution proofs), or privacy 'none'"
        )
    return rule
