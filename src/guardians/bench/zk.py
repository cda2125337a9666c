"""`guardians bench zk`: contribution (L2 norm-bound) proofs, against RoFL's published figures,
and a whole verifiable round against a plaintext round with the same members and D.

Part 1 times one member's commit + prove and one verification for each D, in this process, and
reports µs per parameter next to RoFL's L2 proof (IEEE S&P 2023: 15.8 s to prove and 10.7 s to
verify at 262,144 parameters on 16 vCPUs). RoFL's figures are published, not re-run here: the
ratio compares our 2 cores with their 16.

Part 2 runs real federated rounds on NSL-KDD with an MLP of about D parameters through the
in-process engine (messages encoded, metered and decoded): plaintext FedAvg, secure aggregation,
and secure aggregation with contribution proofs and checked openings. Each party's compute is
timed separately; a round's time is its critical path — the slowest member's total plus the
coordinator's — as if every member had its own machine (the same convention as
`guardians bench secagg`).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from guardians.crypto import bls, scalarvec
from guardians.crypto.sign import SigningKey
from guardians.crypto.zk import norm
from guardians.crypto.zk.sigma import Context
from guardians.engine.federation import IDLE_PREFIX
from guardians.engine.inprocess import COORDINATOR, InProcessFederation
from guardians.errors import ConfigError
from guardians.learning.data import load_dataset
from guardians.learning.models import build_model
from guardians.learning.partition import partition
from guardians.learning.train import TrainConfig
from guardians.node.coordinator import CoordinatorNode
from guardians.node.member import MemberNode
from guardians.protocol.secagg.quantize import FixedPoint

ROFL = {
    "source": "RoFL (Lycklama et al., IEEE S&P 2023), optimized L2 proof, 16 vCPUs",
    "params": 262_144,
    "prove_s": 15.8,
    "verify_s": 10.7,
    "prove_us_per_param": 15.8e6 / 262_144,
    "verify_us_per_param": 10.7e6 / 262_144,
    "round_overhead_vs_plaintext": 4.74,
}
DEFAULT_PARAMS = tuple(1 << k for k in range(10, 17))
NORM_BOUND = 2.0
Progress = Callable[[str], None]


def _update(d: int, weight: int, rng: np.random.Generator, fp: FixedPoint) -> np.ndarray:
    x = rng.normal(size=d)
    x *= 0.9 * NORM_BOUND / np.linalg.norm(x)
    v = np.floor(x * weight * 2.0**fp.scale_bits).astype(np.int64)
    return np.concatenate([v, [weight]])


def bench_proofs(
    dims: Sequence[int], *, batch: int = 8, seed: int = 0, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Commit + prove, verify (alone and in a batch of ``batch``) and proof size for each D.
    The prover's masks are made and timed apart (as a member makes them ahead), so the rows
    give both the prover's whole cost and what remains once the update exists."""
    fp = FixedPoint()
    rng = np.random.default_rng(seed)
    rows = []
    for d in dims:
        stmt = norm.NormStatement.for_update(d, NORM_BOUND, fp.scale_bits, 1 << 24)
        t0 = time.perf_counter()
        bls.generators("contrib/main", d + 1)
        bls.generators("contrib/aux", stmt.aux_len)
        setup_s = time.perf_counter() - t0
        items = []
        commit_s, masks_s, prove_s = [], [], []
        for i in range(batch):
            vals = _update(d, 3000 + i, rng, fp)
            ctx = Context("bench", 1, f"m{i}", "secagg/contribution")
            t0 = time.perf_counter()
            masks = norm.precompute_masks(stmt)
            t1 = time.perf_counter()
            com, opening = norm.commit(stmt, vals)
            t2 = time.perf_counter()
            proof = norm.prove(ctx, stmt, com, opening, masks).to_bytes()
            t3 = time.perf_counter()
            masks_s.append(t1 - t0)
            commit_s.append(t2 - t1)
            prove_s.append(t3 - t2)
            items.append((ctx, com, proof))
        ctx, com, proof = items[0]
        t0 = time.perf_counter()
        norm.verify(ctx, stmt, com, norm.NormProof.from_bytes(proof, stmt))
        verify_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        parsed = [(c, m, norm.NormProof.from_bytes(p, stmt)) for c, m, p in items]
        bad = norm.verify_batch(stmt, parsed)
        batch_s = time.perf_counter() - t0
        if bad:
            raise AssertionError(f"honest proofs failed verification: {bad}")
        online = statistics.median(commit_s) + statistics.median(prove_s)
        total_prove = online + statistics.median(masks_s)
        rows.append({
            "params": d,
            "generators_setup_s": setup_s,
            "commit_s": statistics.median(commit_s),
            "prove_s": total_prove,
            "masks_s": statistics.median(masks_s),
            "prove_once_update_s": online,
            "verify_s": verify_s,
            "verify_batched_s_per_proof": batch_s / batch,
            "batch": batch,
            "prove_us_per_param": total_prove / d * 1e6,
            "verify_us_per_param": verify_s / d * 1e6,
            "verify_batched_us_per_param": batch_s / batch / d * 1e6,
            "proof_bytes": len(proof),
            "rofl_prove_ratio": ROFL["prove_us_per_param"] / (total_prove / d * 1e6),
            "rofl_verify_ratio": ROFL["verify_us_per_param"] / (verify_s / d * 1e6),
        })  # fmt: skip
        if progress:
            progress(f"D = {d}: prove {total_prove:.3f} s, verify {verify_s:.3f} s")
    return rows


# --- a whole round --------------------------------------------------------------------------
def _critical_paths(fed: InProcessFederation, rounds: Sequence[int]) -> list[dict[str, float]]:
    """Per round: the slowest member's total plus the coordinator's, with every step counted
    serially (``round_s``), and with the work a member does ahead (idle/...: its contribution
    while its key-exchange replies travel, its next prover masks while the coordinator
    verifies) left out (``round_ahead_s``), and the engine's timeline (``latency_s``: every
    party on its own machine, messages instant, work ahead delaying a member's next step
    when it has not finished)."""
    out = []
    for r in rounds:
        member: defaultdict[str, float] = defaultdict(float)
        online: defaultdict[str, float] = defaultdict(float)
        steps: defaultdict[str, float] = defaultdict(float)
        coord = 0.0
        for (rnd, party, step), sec in fed.compute.items():
            if rnd != r:
                continue
            if party == COORDINATOR:
                coord += sec
            else:
                member[party] += sec
                if not step.startswith(IDLE_PREFIX):
                    online[party] += sec
                steps[step] = max(steps[step], sec)
        slowest = max(member.values())
        row = {"round_s": slowest + coord, "round_ahead_s": max(online.values()) + coord,
               "latency_s": fed.latency[r], "member_max_s": slowest,
               "coordinator_s": coord}  # fmt: skip
        row.update({f"max:{k}": v for k, v in steps.items()})
        out.append(row)
    return out


def check_round_params(params: int, *, seed: int = 0) -> None:
    """Refuse a round size below the smallest MLP on NSL-KDD (one hidden unit)."""
    split = load_dataset("nsl-kdd", seed=seed)
    smallest = build_model("mlp", split.train.n_features, split.train.n_classes, hidden=(1,),
                           seed=seed).n_params  # fmt: skip
    if params < smallest:
        raise ConfigError(f"the smallest MLP on NSL-KDD has {smallest} parameters, not {params}")


def bench_round(
    *,
    params: int = 1 << 16,
    members: int = 8,
    epochs: int = 1,
    batch_size: int = 64,
    rounds: int = 3,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Plaintext vs secure vs verifiable rounds on NSL-KDD; the first round is a warm-up."""
    split = load_dataset("nsl-kdd", seed=seed)
    train = split.train
    n_in, n_out = train.n_features, train.n_classes

    def size(h: int) -> int:
        return build_model("mlp", n_in, n_out, hidden=(h,), seed=seed).n_params

    check_round_params(params, seed=seed)
    per_unit = size(2) - size(1)  # parameters per hidden unit
    hidden = max(1, round((params - size(1)) / per_unit) + 1)
    rng = np.random.default_rng(seed)
    part = partition("family", train.y, train.groups, members, rng, negative_group="normal")
    ids = [f"member-{i + 1:02d}" for i in range(members)]
    shares = {m: train.subset(ix) for m, ix in zip(ids, part.indices, strict=True)}
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=1e-3, optimizer="adam")
    keys = {m: SigningKey.generate() for m in ids}
    directory = {m: k.verify_key for m, k in keys.items()}
    d = 0
    results: dict[str, Any] = {}
    for mode in ("plaintext", "secagg", "verifiable"):
        secure = mode != "plaintext"

        def model() -> Any:
            return build_model("mlp", n_in, n_out, hidden=(hidden,), seed=seed)

        nodes = {
            m: MemberNode(m, shares[m], model(), np.random.default_rng([seed, k]),
                          identity=keys[m], directory=directory, consortium="bench")
            for k, m in enumerate(ids)
        }  # fmt: skip
        coord = CoordinatorNode(
            ids, model(), cfg, np.random.default_rng([seed, 99]), n_features=n_in,
            privacy="secagg" if secure else "none", directory=directory, consortium="bench",
            norm_bound=NORM_BOUND if mode == "verifiable" else None,
        )  # fmt: skip
        d = int(coord.params.shape[0])
        if mode == "verifiable":
            stmt = norm.NormStatement.for_update(d, NORM_BOUND, coord.fixed_point.scale_bits,
                                                 1 << 24)  # fmt: skip
            bls.generators("contrib/main", d + 1)  # one-time setup, as in part 1
            bls.generators("contrib/aux", stmt.aux_len)
        fed = InProcessFederation(coord, nodes)
        fed.standardize()
        for r in range(1, rounds + 1):
            result = fed.run_round(r)
            if mode == "verifiable" and not result.verified:
                raise AssertionError("a verifiable bench round was not verified")
        paths = _critical_paths(fed, range(2, rounds + 1) if rounds > 1 else [1])
        results[mode] = {
            "round_s": statistics.median(p["round_s"] for p in paths),
            "round_ahead_s": statistics.median(p["round_ahead_s"] for p in paths),
            "latency_s": statistics.median(p["latency_s"] for p in paths),
            "member_max_s": statistics.median(p["member_max_s"] for p in paths),
            "coordinator_s": statistics.median(p["coordinator_s"] for p in paths),
            "steps_max_s": {
                k[4:]: statistics.median(p.get(k, 0.0) for p in paths)
                for k in paths[0]
                if k.startswith("max:")
            },
        }
        if progress:
            progress(f"{mode} round: {results[mode]['round_s']:.3f} s")
    plain = results["plaintext"]["round_s"]
    return {
        "params": d,
        "members": members,
        # As the coordinator sent them in every training request (not merely as asked).
        "epochs": coord.train.epochs,
        "batch_size": coord.train.batch_size,
        "records_per_member": int(np.mean([len(shares[m].y) for m in ids])),
        "measured_rounds": max(1, rounds - 1),
        **results,
        "round_overhead_vs_plaintext": results["verifiable"]["round_s"] / plain,
        # The same with each contribution computed during the key exchange (off the critical
        # path): a latency figure for deployments whose key exchange outlasts that work.
        "round_overhead_contribution_ahead": results["verifiable"]["round_ahead_s"] / plain,
        # Latency on the engine's timeline (parties in parallel, work ahead where it fits).
        "round_overhead_latency": results["verifiable"]["latency_s"]
        / results["plaintext"]["latency_s"],
        "proof_added_latency_s": results["verifiable"]["latency_s"]
        - results["plaintext"]["latency_s"],
        "break_even_plaintext_latency_s": (
            results["verifiable"]["latency_s"] - results["plaintext"]["latency_s"]
        )
        / 2,
        # What proofs add to a round, and the plaintext round (i.e. local training) at which
        # the verifiable round would be exactly 3× it: (P + added) / P = 3.
        "proof_added_s": results["verifiable"]["round_s"] - plain,
        "break_even_plaintext_round_s": (results["verifiable"]["round_s"] - plain) / 2,
        "secagg_overhead_vs_plaintext": results["secagg"]["round_s"] / plain,
        "proof_overhead_vs_secagg": results["verifiable"]["round_s"] / results["secagg"]["round_s"],
    }


def msm_floor(
    d: int, members: int, weight: int, *, seed: int = 0, repeat: int = 3
) -> dict[str, float]:
    """The three MSMs over d + 1 generators that any round of this design has on its critical
    path, whatever else is optimized: a member commits to its update (small scalars), the
    coordinator verifies the batch before aggregating (one MSM of full-size scalars, the
    responses hide the update), and each member checks that the aggregate opens the product
    of the commitments (small scalars). Medians of ``repeat`` runs."""
    fp = FixedPoint()
    rng = np.random.default_rng(seed)
    main = bls.generators("contrib/main", d + 1)
    updates = [_update(d, weight, rng, fp) for _ in range(members)]
    total = np.sum(updates, axis=0)
    responses = scalarvec.random(d + 1)

    def timed(fn: Callable[[], Any]) -> float:
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        return statistics.median(runs)

    out = {
        "commit_s": timed(lambda: bls.msm_small(main, updates[0])),
        "verify_s": timed(lambda: bls.msm_packed(main, responses)),
        "opening_s": timed(lambda: bls.msm_small(main, total)),
    }
    out["total_s"] = out["commit_s"] + out["verify_s"] + out["opening_s"]
    return out


def bench_zk(
    dims: Sequence[int] = DEFAULT_PARAMS,
    *,
    round_params: int | None = None,
    members: int = 8,
    epochs: int = 1,
    batch_size: int = 64,
    rounds: int = 3,
    run_round: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    if run_round:  # before part 1's minutes, not after them
        check_round_params(round_params or max(dims), seed=seed)
    rows = bench_proofs(dims, seed=seed, progress=progress)
    head = max(rows, key=lambda r: r["params"])
    out: dict[str, Any] = {
        "params": head["params"],
        "prove_us_per_param": head["prove_us_per_param"],
        "verify_us_per_param": head["verify_us_per_param"],
        "verify_batched_us_per_param": head["verify_batched_us_per_param"],
        "proof_bytes": head["proof_bytes"],
        "vs_rofl": {
            "prove": head["rofl_prove_ratio"],
            "verify": head["rofl_verify_ratio"],
        },
        "sizes": rows,
        "anchor": ROFL,
        "round_overhead_vs_plaintext": None,
    }
    if run_round:
        rnd = bench_round(params=round_params or head["params"], members=members, epochs=epochs,
                          batch_size=batch_size, rounds=rounds, seed=seed,
                          progress=progress)  # fmt: skip
        out["round"] = rnd
        out["round_overhead_vs_plaintext"] = rnd["round_overhead_vs_plaintext"]
        # A floor for any design that commits to each coordinate in a prime-order group: one
        # member's commitment alone (small scalars, the cheapest MSM), scaled from part 1's D
        # to the round's, against the whole plaintext round.
        commit_s = head["commit_s"] * rnd["params"] / head["params"]
        out["commitment_vs_plaintext_round"] = commit_s / rnd["plaintext"]["round_s"]
        # The round with nothing on its path but training, messages and these three MSMs: no
        # implementation of this design (verify before aggregating, commit to every
        # coordinate in G1) can do better on this machine.
        floor = msm_floor(rnd["params"], members, rnd["records_per_member"], seed=seed)
        plain = rnd["plaintext"]["latency_s"]
        rnd["msm_floor"] = floor
        rnd["floor_overhead_latency"] = (plain + floor["total_s"]) / plain
        out["floor_overhead_vs_plaintext"] = rnd["floor_overhead_latency"]
    return out
