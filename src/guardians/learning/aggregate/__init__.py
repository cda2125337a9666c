"""Aggregation of member updates into one global update: one rule per module."""

from guardians.learning.aggregate.fedavg import fedavg
from guardians.learning.aggregate.momentum import ServerMomentum

__all__ = ["ServerMomentum", "fedavg"]
