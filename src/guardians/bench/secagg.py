"""`guardians bench secagg`: one secure-aggregation round, ours vs Flower's SecAgg+ vs plaintext.

All three run in this process on the same N, D, dropout set, neighbour count and threshold. We
time each party's compute per round (members are timed one by one, as if each had its own
machine): ``*_s`` is the round's critical path, the slowest member's total plus the
coordinator's. Flower (``flwr`` 1.41) is driven through its own client-stage functions
(``secaggplus_mod._setup/_share_keys/_collect_masked_vectors/_unmask``) and its own server-side
primitives (Shamir ``combine_shares``, ``pseudo_rand_gen``, ``generate_shared_key``, the
quantization helpers), with its workflow's defaults; only its message transport is left out,
and ours runs without a transport too.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from guardians.crypto.sign import SigningKey
from guardians.learning.aggregate import fedavg
from guardians.learning.train import TrainConfig
from guardians.protocol.secagg.client import SecAggMember
from guardians.protocol.secagg.graph import default_degree
from guardians.protocol.secagg.quantize import FixedPoint
from guardians.protocol.secagg.server import SecureRound, default_threshold


@dataclass
class Timing:
    client_total: dict[str, float]
    coordinator: float

    def summary(self) -> dict[str, float]:
        vals = list(self.client_total.values())
        return {
            "client_mean_s": float(np.mean(vals)),
            "client_max_s": float(np.max(vals)),
            "coordinator_s": self.coordinator,
            "round_s": float(np.max(vals)) + self.coordinator,
        }


def _inputs(n: int, d: int, seed: int) -> tuple[list[str], dict[str, np.ndarray], dict[str, int]]:
    rng = np.random.default_rng(seed)
    ids = [f"m{i:03d}" for i in range(n)]
    xs = {m: rng.normal(0, 0.05, d).astype(np.float32) for m in ids}
    ws = {m: int(rng.integers(50, 500)) for m in ids}
    return ids, xs, ws


def run_ours(
    n: int, d: int, dropped: set[str], degree: int, threshold: int, seed: int,
    fixed_point: FixedPoint,
) -> tuple[Timing, np.ndarray, list[str]]:  # fmt: skip
    ids, xs, ws = _inputs(n, d, seed)
    keys = {m: SigningKey.generate() for m in ids}  # long-term identities: not per round
    directory = {m: k.verify_key for m, k in keys.items()}
    clients = {
        m: SecAggMember(member=m, consortium="bench", identity=keys[m], directory=directory,
                        vector=xs[m], weight=ws[m], fixed_point=fixed_point)
        for m in ids
    }  # fmt: skip
    ctime: dict[str, float] = defaultdict(float)
    t = time.perf_counter()
    rnd = SecureRound(
        consortium="bench", round=1, selected=ids, directory=directory,
        global_params=np.zeros(d, np.float32), train=TrainConfig(), fixed_point=fixed_point,
        degree=degree, threshold=threshold,
    )  # fmt: skip
    sends = [s for s in rnd.start() if s.message.KIND == "secagg/setup"]
    coord = time.perf_counter() - t
    while sends is not None:
        replies = []
        for s in sends:
            # Members in `dropped` leave after sharing keys: the costly case to recover.
            if s.to in dropped and rnd.stage in ("masked", "unmask"):
                continue
            t = time.perf_counter()
            out = clients[s.to].receive(s.message)
            ctime[s.to] += time.perf_counter() - t
            replies.extend((s.to, r) for r in out)
        t = time.perf_counter()
        for who, r in replies:
            rnd.receive(who, r)
        sends = rnd.advance()
        coord += time.perf_counter() - t
    t = time.perf_counter()
    result, _ = rnd.finish([])
    coord += time.perf_counter() - t
    return Timing(dict(ctime), coord), result.params, list(result.contributors)


def run_flower(
    n: int, d: int, dropped: set[str], degree: int, threshold: int, seed: int
) -> tuple[Timing, np.ndarray, list[str]]:
    """Flower SecAgg+ (flwr 1.41): its client stages and server primitives, same round."""
    import importlib

    # The package re-exports a function of the same name: import the module itself.
    fm = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")
    from flwr.common import ndarrays_to_parameters
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import (
        generate_shared_key,
    )
    from flwr.common.secure_aggregation.ndarrays_arithmetic import (
        factor_extract,
        get_parameters_shape,
        parameters_addition,
        parameters_mod,
        parameters_subtraction,
    )
    from flwr.common.secure_aggregation.quantization import dequantize
    from flwr.common.secure_aggregation.secaggplus_constants import Key
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
    from flwr.supercore.primitives.asymmetric import bytes_to_private_key, bytes_to_public_key

    ids, xs, ws = _inputs(n, d, seed)
    nid = {m: i + 1 for i, m in enumerate(ids)}
    by_nid = {v: k for k, v in nid.items()}
    # Flower's neighbourhoods include the node itself: num_shares = degree + 1.
    num_shares = degree + 1
    clipping, qrange, mod, max_weight = 8.0, 4194304, 4294967296, 1000.0
    ctime: dict[str, float] = defaultdict(float)
    states = {m: fm.SecAggPlusState(nid=nid[m]) for m in ids}
    coord = 0.0

    def client(m: str, fn: Any, *args: Any) -> Any:
        t = time.perf_counter()
        out = fn(states[m], *args)
        ctime[m] += time.perf_counter() - t
        return out

    t = time.perf_counter()
    order = list(nid.values())
    np.random.default_rng(seed).shuffle(order)
    half = num_shares >> 1
    neighbours = {
        v: {order[(i + o) % n] for o in range(-half, half + 1)} for i, v in enumerate(order)
    }
    setup = {
        Key.SAMPLE_NUMBER: n, Key.SHARE_NUMBER: num_shares, Key.THRESHOLD: threshold,
        Key.CLIPPING_RANGE: clipping, Key.TARGET_RANGE: qrange, Key.MOD_RANGE: mod,
        Key.MAX_WEIGHT: max_weight,
    }  # fmt: skip
    coord += time.perf_counter() - t
    pks = {nid[m]: client(m, fm._setup, setup) for m in ids}
    t = time.perf_counter()
    pub = {v: (r[Key.PUBLIC_KEY_1], r[Key.PUBLIC_KEY_2]) for v, r in pks.items()}
    key_cfg = {v: {str(u): pub[u] for u in neighbours[v]} for v in pub}
    coord += time.perf_counter() - t
    share_out = {nid[m]: client(m, fm._share_keys, key_cfg[nid[m]]) for m in ids}
    t = time.perf_counter()
    inbox: dict[int, tuple[list[int], list[bytes]]] = {v: ([], []) for v in share_out}
    for src, r in share_out.items():
        for dst, ct in zip(r[Key.DESTINATION_LIST], r[Key.CIPHERTEXT_LIST], strict=True):
            inbox[dst][0].append(src)
            inbox[dst][1].append(ct)
    coord += time.perf_counter() - t
    masked: dict[int, list[np.ndarray]] = {}
    for m in ids:
        if m in dropped:
            continue
        srcs, cts = inbox[nid[m]]
        params = ndarrays_to_parameters([xs[m]])
        r = client(m, fm._collect_masked_vectors,
                   {Key.CIPHERTEXT_LIST: cts, Key.SOURCE_LIST: srcs}, ws[m], params)  # fmt: skip
        masked[nid[m]] = [np.frombuffer(b, dtype=np.uint8) for b in r[Key.MASKED_PARAMETERS]]
    from flwr.common import bytes_to_ndarray

    t = time.perf_counter()
    vecs = {v: [bytes_to_ndarray(b.tobytes()) for b in arrs] for v, arrs in masked.items()}
    total = None
    for vec in vecs.values():
        total = vec if total is None else parameters_addition(total, vec)
    assert total is not None
    total = parameters_mod(total, mod)
    active = sorted(masked)
    dead = sorted(set(nid.values()) - set(masked))
    coord += time.perf_counter() - t
    collected: dict[int, list[bytes]] = defaultdict(list)
    for v in active:
        m = by_nid[v]
        act = [u for u in active if u in neighbours[v]]
        dd = [u for u in dead if u in neighbours[v]]
        r = client(m, fm._unmask, {Key.ACTIVE_NODE_ID_LIST: act, Key.DEAD_NODE_ID_LIST: dd})
        for owner, share in zip(r[Key.NODE_ID_LIST], r[Key.SHARE_LIST], strict=True):
            collected[owner].append(share)
    t = time.perf_counter()
    for owner, shares in collected.items():
        if len(shares) < threshold:
            raise RuntimeError("Flower round could not be unmasked")
        secret = combine_shares(shares)
        if owner in active:
            total = parameters_subtraction(
                total, pseudo_rand_gen(secret, mod, get_parameters_shape(total))
            )
        else:
            for nb in neighbours[owner] - {owner}:
                sk = generate_shared_key(
                    bytes_to_private_key(secret), bytes_to_public_key(pub[nb][0])
                )
                mask = pseudo_rand_gen(sk, mod, get_parameters_shape(total))
                total = (
                    parameters_addition(total, mask)
                    if owner > nb
                    else parameters_subtraction(total, mask)
                )
    recon = parameters_mod(total, mod)
    q_total, recon = factor_extract(recon)
    agg = dequantize(recon, clipping, qrange)
    offset = -(len(active) - 1) * clipping
    out = [(v + offset) * (qrange / q_total) for v in agg]
    coord += time.perf_counter() - t
    return (
        Timing(dict(ctime), coord),
        np.asarray(out[0], dtype=np.float32),
        [by_nid[v] for v in active],
    )


def run_plaintext(
    n: int, d: int, dropped: set[str], seed: int
) -> tuple[Timing, np.ndarray, list[str]]:
    ids, xs, ws = _inputs(n, d, seed)
    alive = [m for m in ids if m not in dropped]
    t = time.perf_counter()
    mean = fedavg([xs[m] for m in alive], [ws[m] for m in alive])
    coord = time.perf_counter() - t
    return Timing(dict.fromkeys(alive, 0.0), coord), mean, alive


def bench_secagg(
    clients: int = 100,
    params: int = 1_000_000,
    dropout: float = 0.1,
    *,
    vs_flower: bool = False,
    degree: int | None = None,
    seed: int = 0,
    modulus_bits: int = 64,
) -> dict[str, Any]:
    k = degree or default_degree(clients)
    t = default_threshold(k)
    rng = np.random.default_rng(seed + 1)
    n_drop = round(dropout * clients)
    ids = [f"m{i:03d}" for i in range(clients)]
    dropped = {ids[i] for i in rng.choice(clients, size=n_drop, replace=False)}
    fp = FixedPoint(modulus_bits=modulus_bits, scale_bits=20 if modulus_bits == 64 else 8,
                    clip=8.0)  # fmt: skip
    plain_t, plain_mean, alive = run_plaintext(clients, params, dropped, seed)
    ours_t, ours_mean, ours_alive = run_ours(clients, params, dropped, k, t, seed, fp)
    assert sorted(ours_alive) == sorted(alive)
    out: dict[str, Any] = {
        "clients": clients,
        "params": params,
        "dropout": dropout,
        "dropped": n_drop,
        "degree": k,
        "threshold": t,
        "modulus_bits": modulus_bits,
        "ours": ours_t.summary(),
        "plaintext": plain_t.summary(),
        "ours_max_abs_error": float(np.max(np.abs(ours_mean - plain_mean))),
    }
    out["ours_s"] = out["ours"]["round_s"]
    out["plaintext_s"] = out["plaintext"]["round_s"]
    out["overhead_vs_plaintext"] = out["ours_s"] / out["plaintext_s"]
    if vs_flower:
        fl_t, fl_mean, fl_alive = run_flower(clients, params, dropped, k, t, seed)
        assert sorted(fl_alive) == sorted(alive)
        out["flower"] = fl_t.summary()
        out["flower_s"] = out["flower"]["round_s"]
        out["speedup_vs_flower"] = out["flower_s"] / out["ours_s"]
        out["flower_max_abs_error"] = float(np.max(np.abs(fl_mean - plain_mean)))
    return out
