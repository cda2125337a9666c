"""Running intel protocols between the consortium's parties in one process: the secure count
of sightings behind the k-anonymity release rule. Messages are encoded, metered and decoded
exactly as a network would carry them."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from guardians.crypto.sign import SigningKey
from guardians.engine.inprocess import COORDINATOR, InProcessNetwork
from guardians.errors import ConfigError
from guardians.intel import release
from guardians.learning.train import TrainConfig
from guardians.protocol.secagg.client import SecAggMember
from guardians.protocol.secagg.messages import SecAggSetup
from guardians.protocol.secagg.quantize import FixedPoint
from guardians.protocol.secagg.server import SecureRound

COUNT_FIXED_POINT = FixedPoint(modulus_bits=64, scale_bits=0, clip=1.0, policy="reject")


def secure_count(
    consortium: str,
    round: int,
    vectors: Mapping[str, np.ndarray],
    keys: Mapping[str, SigningKey],
    network: InProcessNetwork | None = None,
) -> np.ndarray:
    """Σ of the members' 0/1 vectors through secure aggregation: the coordinator learns the
    counts, never a member's vector."""
    if len(vectors) < 3:
        raise ConfigError("a secure count needs at least 3 members")
    net = network or InProcessNetwork()
    directory = {m: keys[m].verify_key for m in vectors}
    n = len(next(iter(vectors.values())))
    server = SecureRound(
        consortium=consortium, round=round, selected=list(vectors), directory=directory,
        global_params=np.zeros(n, np.float32), train=TrainConfig(),
        fixed_point=COUNT_FIXED_POINT, max_weight=1, purpose="count",
    )  # fmt: skip
    members = {
        m: SecAggMember(
            member=m,
            consortium=consortium,
            identity=keys[m],
            directory=directory,
            vector=np.asarray(v, dtype=np.float64),
            weight=1,
            fixed_point=COUNT_FIXED_POINT,
        )
        for m, v in vectors.items()
    }
    sends = [s for s in server.start() if isinstance(s.message, SecAggSetup)]
    while sends is not None:
        for s in sends:
            msg = net.transmit(COORDINATOR, s.to, s.message)
            for r in members[s.to].receive(msg):
                server.receive(s.to, net.transmit(s.to, COORDINATOR, r))
        sends = server.advance()
    counts, _ = server.finish(())
    return np.asarray(counts)


def k_anonymous_release(
    consortium: str,
    round: int,
    pending: Mapping[str, set[str]],
    keys: Mapping[str, SigningKey],
    k: int,
    immediate: Mapping[str, set[str]] | None = None,
) -> set[str]:
    """The tags (among all members' pending ones) that may be published now: sighted by at
    least k members according to the securely summed sketches, or marked for immediate release
    by the member that holds them."""
    counts = secure_count(consortium, round,
                          {m: release.sketch(t) for m, t in pending.items()}, keys)  # fmt: skip
    out = set()
    for m, tags in pending.items():
        out |= release.releasable(tags, counts, k)
        out |= set(tags) & set((immediate or {}).get(m, set()))
    return out
