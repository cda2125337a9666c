"""Aggregation of member updates into one global update: one rule per module, chosen and
checked by :func:`make_rule` (see ``policy`` for what each rule must see)."""

from guardians.learning.aggregate.base import Aggregate, Rule
from guardians.learning.aggregate.bulyan import Bulyan
from guardians.learning.aggregate.fedavg import FedAvg, fedavg
from guardians.learning.aggregate.fltrust import FLTrust
from guardians.learning.aggregate.foolsgold import FoolsGold
from guardians.learning.aggregate.krum import Krum, MultiKrum
from guardians.learning.aggregate.median import Median
from guardians.learning.aggregate.momentum import ServerMomentum
from guardians.learning.aggregate.norm_bound import NormBound
from guardians.learning.aggregate.policy import RULES, make_rule
from guardians.learning.aggregate.trimmed_mean import TrimmedMean

__all__ = [
    "RULES", "Aggregate", "Bulyan", "FLTrust", "FedAvg", "FoolsGold", "Krum", "Median",
    "MultiKrum", "NormBound", "Rule", "ServerMomentum", "TrimmedMean", "fedavg", "make_rule",
]  # fmt: skip
