"""A study: one dataset, one partition across members, three ways of training, one test set.

- **local-only**: each member trains alone on its own records (its own standardization);
- **centralized**: every member uploads its records to one server that trains on the pool —
  the "centralized AI" baseline; the uploads go through the engine and are metered;
- **federated**: the in-process consortium (stats phase, then FedAvg rounds).

Each trains the same model with the same local optimizer (Adam) and the same number of passes over
every record, and is scored on the same held-out test set. Differences that remain: the federated
coordinator applies FedAvgM server momentum (``server_momentum``, 0 = plain FedAvg) and members
restart Adam every round. Everything is seeded; the same config gives the same numbers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from guardians.crypto.sign import SigningKey
from guardians.engine.audit import audit_log_dir, found_trail
from guardians.engine.egress import EgressMeter, summarize
from guardians.engine.federation import IDLE_CONTRIBUTION, IDLE_MASKS
from guardians.engine.inprocess import COORDINATOR, InProcessFederation, InProcessNetwork
from guardians.errors import ConfigError
from guardians.learning import attacks
from guardians.learning.aggregate import make_rule
from guardians.learning.data import Dataset, DataSplit, load_dataset
from guardians.learning.metrics import Predictions, evaluate
from guardians.learning.models import MLP, build_model
from guardians.learning.partition import SCHEMES, Partition, partition
from guardians.learning.preprocess import Standardizer
from guardians.learning.train import TrainConfig, train_local
from guardians.node.adversary import Adversary, MaliciousMember
from guardians.node.coordinator import PRIVACY_METHODS, CoordinatorNode
from guardians.node.member import MemberNode
from guardians.protocol.messages import RecordsUpload

Progress = Callable[[str, int, int], None]
CONSORTIUM = "guardians-demo"
ENGINES = ("inprocess", "flower")


@dataclass(frozen=True)
class StudyConfig:
    dataset: str = "nsl-kdd"
    task: str = "binary"
    label: str | None = None
    test_path: str | None = None
    members: int = 8
    partition: str = "family"
    alpha: float = 0.5
    families_per_member: int = 2
    model: str = "mlp"
    hidden: tuple[int, ...] = (64, 32)
    l2: float = 1e-4
    rounds: int = 30
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    # FedProx proximal weight μ for federated local training (0 = plain FedAvg local steps).
    proximal: float = 0.0
    # FedAvgM: damps the round-to-round swings of members with very different data.
    server_momentum: float = 0.9
    # Secure aggregation by default; the other method also runs when compare_privacy is set.
    privacy: str = "secagg"
    compare_privacy: bool = False
    # With secure aggregation: every member proves ‖update‖₂ ≤ norm_bound in zero knowledge
    # and every aggregate is checked against the members' commitments.
    proofs: bool = True
    norm_bound: float = 2.0
    # NSL-KDD: also run the consortium with a backdoor attacker and a Sybil cluster, undefended
    # (FedAvg) and defended (Multi-Krum, monitoring, quarantine).
    attacks: bool = False
    # Aggregation rule of the main federated run (see learning.aggregate.policy) and the number
    # of malicious members Krum-style rules tolerate. Under secure aggregation only fedavg and
    # norm-bound are possible; the privacy comparison run uses fedavg.
    rule: str = "fedavg"
    assumed_malicious: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ConfigError(f"--members must be at least 1, got {self.members}")
        if self.rounds < 1:
            raise ConfigError(f"--rounds must be at least 1, got {self.rounds}")
        if self.privacy not in PRIVACY_METHODS:
            raise ConfigError(f"unknown privacy {self.privacy!r}; choose one of {PRIVACY_METHODS}")
        if not self.norm_bound > 0:
            raise ConfigError(f"--norm-bound must be positive, got {self.norm_bound}")
        if self.rule != "fedavg":  # refuse an incoherent policy before any training starts
            make_rule(self.rule, privacy=self.privacy, members=self.members,
                      f=self.assumed_malicious, norm_bound=self.norm_bound, root=False)  # fmt: skip
        if self.partition not in SCHEMES:
            raise ConfigError(f"unknown partition {self.partition!r}; choose one of {SCHEMES}")

    @property
    def train(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            optimizer=self.optimizer,
            proximal=self.proximal,
        )


# Training defaults per dataset. They were picked among a handful of settings by comparing
# seeds 0-4; docs/benchmarks.md lists the alternatives tried and the resulting spread.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # Members hold disjoint attack families: FedProx curbs their drift (see docs/benchmarks.md).
    "nsl-kdd": {"partition": "family", "hidden": (64, 32), "rounds": 40, "epochs": 1,
                "batch_size": 64, "proximal": 0.01},
    # 400 patients over 8 hospitals: ~50 records each, so smaller batches and more local epochs.
    "wdbc": {"partition": "dirichlet", "alpha": 1.0, "hidden": (16,), "rounds": 20, "epochs": 5,
             "batch_size": 16},
    "csv": {"partition": "dirichlet", "hidden": (64,), "rounds": 30, "epochs": 2,
            "batch_size": 32},
}  # fmt: skip


def config_for(dataset: str, **overrides: Any) -> StudyConfig:
    """A StudyConfig with ``dataset``'s defaults, then ``overrides`` (None values ignored)."""
    key = "csv" if dataset.startswith("csv:") else dataset
    values = {**DATASET_DEFAULTS.get(key, {}), "dataset": dataset}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return StudyConfig(**values)


def member_ids(n: int) -> list[str]:
    return [f"member-{i + 1:02d}" for i in range(n)]


def _new_model(cfg: StudyConfig, data: Dataset) -> MLP:
    return build_model(
        cfg.model, data.n_features, data.n_classes, hidden=cfg.hidden, l2=cfg.l2, seed=cfg.seed
    )


def _predict(model: MLP, std: Standardizer, test: Dataset) -> Predictions:
    return Predictions(proba=model.predict_proba(std.transform(test.X)), test=test)


def _run_federated(
    cfg: StudyConfig,
    privacy: str,
    ids: list[str],
    shares: dict[str, Dataset],
    train: Dataset,
    test: Dataset,
    train_kinds: set[str],
    tick: Progress,
    label: str = "federated",
    audit_dir: str | None = None,
    eth_rpc: str | None = None,
    rule: str = "fedavg",
) -> tuple[Predictions, dict[str, Any], dict[str, Any]]:
    """One federated training run; returns test predictions, metrics and the egress summary.
    With ``audit_dir``, every round and model version goes on a witnessed transparency log."""
    identities = {m: SigningKey.generate() for m in ids} if privacy == "secagg" else {}
    directory = {m: k.verify_key for m, k in identities.items()}
    nodes = {
        m: MemberNode(
            m, shares[m], _new_model(cfg, train), np.random.default_rng([cfg.seed, k, 3]),
            identity=identities.get(m), directory=directory, consortium=CONSORTIUM,
            require_secure=privacy == "secagg",
        )
        for k, m in enumerate(ids)
    }  # fmt: skip
    coord = CoordinatorNode(
        ids,
        _new_model(cfg, train),
        cfg.train,
        np.random.default_rng([cfg.seed, 4]),
        n_features=train.n_features,
        server_momentum=cfg.server_momentum,
        privacy=privacy,
        directory=directory,
        consortium=CONSORTIUM,
        norm_bound=cfg.norm_bound
        if (cfg.proofs and privacy == "secagg") or "norm-bound" in rule
        else None,
        rule=rule,
        assumed_malicious=cfg.assumed_malicious,
    )
    audit = None
    if audit_dir is not None:
        audit, anchor = found_trail(
            audit_dir, CONSORTIUM,
            {m: k.verify_key.raw for m, k in identities.items()} or dict.fromkeys(ids, b""),
            eth_rpc=eth_rpc,
        )  # fmt: skip
    fed = InProcessFederation(coord, nodes, audit=audit)
    per_round: list[dict[str, Any]] = []

    def on_round(result: Any) -> None:
        assert coord.standardizer is not None
        ev = evaluate(_predict(coord.model, coord.standardizer, test))
        per_round.append(
            {
                "round": result.round,
                "accuracy": ev["accuracy"],
                "f1": ev["f1"],
                "mean_local_loss": result.mean_loss,
                "contributors": len(result.contributors),
                "clipped": result.clipped,
                "verified": result.verified,
                "rejected": sorted(result.rejected),
            }
        )
        tick(label, result.round, cfg.rounds)

    run = fed.run(cfg.rounds, on_round=on_round)
    assert coord.standardizer is not None
    pred = _predict(coord.model, coord.standardizer, test)
    metrics = evaluate(pred, train_kinds)
    metrics["privacy"] = privacy
    metrics["per_round"] = per_round
    metrics["incidents"] = [_incident_json(i) for i in run.incidents]
    metrics["compute"] = _compute_costs(fed, coord)
    metrics["reputation"] = {
        "scores": {m: coord.reputation.score(m) for m in ids},
        "threshold": coord.reputation.threshold,
        "quarantined": dict(coord.reputation.quarantined),
    }
    if audit is not None:
        audit.close()
        # The study founded this consortium, so it holds the genesis trust file; the anchor
        # is read from the chain itself.
        report = audit_log_dir(audit_dir, trust=Path(audit_dir) / "trust.json", anchor=anchor)
        metrics["ledger"] = report.as_dict() | {
            "path": str(audit_dir), "anchors": len(audit.anchored), "contract": anchor.address,
        }  # fmt: skip
    return pred, metrics, fed.network.meter.summary()


def _run_federated_flower(
    cfg: StudyConfig,
    shares: dict[str, Dataset],
    test: Dataset,
    train_kinds: set[str],
    tick: Progress,
    audit_dir: Path,
    workdir: Path,
) -> tuple[Predictions, dict[str, Any], dict[str, Any]]:
    """The main federated run over a real local Flower deployment: a SuperLink (TLS, SuperNode
    authentication) and, per member, an authenticated SuperNode and the member's own node.
    The coordinator (the ServerApp) writes each round's model and the ledger; they are read
    back here and scored exactly like the in-process run."""
    from guardians.engine.flower.deploy import DeploymentError, LocalDeployment, read_result
    from guardians.node.deployment import found_consortium

    if workdir.exists():  # each run founds a new consortium
        shutil.rmtree(workdir)
    found_consortium(
        workdir, CONSORTIUM, shares, model=cfg.model, hidden=tuple(cfg.hidden), l2=cfg.l2,
        seed=cfg.seed, train=asdict(cfg.train), privacy=cfg.privacy,
        norm_bound=cfg.norm_bound
        if (cfg.proofs and cfg.privacy == "secagg") or "norm-bound" in cfg.rule else None,
        rule=cfg.rule, assumed_malicious=cfg.assumed_malicious,
        server_momentum=cfg.server_momentum,
    )  # fmt: skip
    out = workdir / "run"
    label = "federated (Flower)"
    t0 = time.perf_counter()
    with LocalDeployment(workdir) as dep:
        up = time.perf_counter() - t0
        cli = dep.submit(out, cfg.rounds)
        done = 0
        # Each of a round's seven stages waits at most the stage timeout (120 s by default).
        deadline = time.monotonic() + 600 + (cfg.rounds + 1) * 7 * 130
        while cli.poll() is None:
            if time.monotonic() > deadline:
                raise DeploymentError(f"the Flower run did not finish; see {out}/flwr-run.log")
            rounds_file = out / "rounds.jsonl"
            n = len(rounds_file.read_text().splitlines()) if rounds_file.exists() else 0
            if n != done:
                done = n
                tick(label, done, cfg.rounds)
            time.sleep(0.5)
    seconds = time.perf_counter() - t0
    result = read_result(out)
    rounds = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines()]
    tick(label, len(rounds), cfg.rounds)
    with np.load(out / "standardizer.npz") as std_file:
        std = Standardizer(mean=std_file["mean"], scale=std_file["scale"])
    model = build_model(cfg.model, test.n_features, len(test.classes), hidden=cfg.hidden,
                        l2=cfg.l2, seed=cfg.seed)  # fmt: skip
    per_round = []
    for r in rounds:
        model.set_params(np.load(out / "params" / f"round-{r['round']:03d}.npy"))
        ev = evaluate(_predict(model, std, test))
        per_round.append({
            "round": r["round"], "accuracy": ev["accuracy"], "f1": ev["f1"],
            "mean_local_loss": r["mean_local_loss"], "contributors": len(r["contributors"]),
            "clipped": r["clipped"], "verified": r["verified"], "rejected": r["rejected"],
        })  # fmt: skip
    pred = _predict(model, std, test)
    metrics = evaluate(pred, train_kinds)
    metrics["privacy"] = cfg.privacy
    metrics["per_round"] = per_round
    metrics["incidents"] = result["incidents"]
    metrics["reputation"] = {"scores": result["reputation"],
                             "threshold": result["reputation_threshold"],
                             "quarantined": result["quarantined"]}  # fmt: skip
    metrics["engine"] = {
        "name": "flower", "flwr": _flwr_version(), "members": len(shares),
        "superlink": f"127.0.0.1:{dep.port} (TLS, SuperNode authentication)",
        "startup_s": up, "seconds": seconds, "workdir": str(workdir),
        **_stage_times(out / "progress.jsonl"),
    }  # fmt: skip
    # The coordinator's log is the consortium's ledger: it goes where the demo keeps it.
    if audit_dir.exists():
        shutil.rmtree(audit_dir)
    shutil.move(str(out / "ledger"), str(audit_dir))
    report = audit_log_dir(audit_dir, trust=audit_dir / "trust.json")
    anchors = json.loads((audit_dir / "anchor.json").read_text())
    metrics["ledger"] = report.as_dict() | {
        "path": str(audit_dir), "anchors": len(anchors.get("anchored", [])),
        "contract": anchors.get("contract"),
    }  # fmt: skip
    egress = json.loads((out / "egress.json").read_text())
    merged = summarize({m: s["per_member"][m] for m, s in egress.items()})
    return pred, metrics, merged


def _stage_times(progress: Path) -> dict[str, float | None]:
    """Median seconds per training round and per protocol stage, from the coordinator's
    progress log (a stage: from its opening to the next one's)."""
    events = [json.loads(x) for x in progress.read_text().splitlines()]
    marks = [e for e in events if e["event"] in ("stage", "round", "done")]
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(marks) if a["event"] == "stage"]
    start: dict[int, float] = {}
    per_round = []
    for e in events:
        if e["event"] == "stage" and e["round"] > 0:
            start.setdefault(e["round"], e["t"])
        elif e["event"] == "round" and e["round"] in start:
            per_round.append(e["t"] - start[e["round"]])
    return {
        "seconds_per_round": float(np.median(per_round)) if per_round else None,
        "seconds_per_stage": float(np.median(gaps)) if gaps else None,
    }


def _flwr_version() -> str:
    from importlib.metadata import version

    return version("flwr")


def _incident_json(inc: Any) -> dict[str, Any]:
    out = {"round": inc.round, "member": inc.member, "kind": inc.kind, "error": inc.error}
    if inc.evidence:
        out["evidence_sha256"] = hashlib.sha256(inc.evidence).hexdigest()
    return out


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _compute_costs(fed: InProcessFederation, coord: CoordinatorNode) -> dict[str, Any]:
    """Seconds per member per round for local training, the contribution (encode, commit,
    prove: computed ahead, while the keys are exchanged), the prover masks for the next proof
    (made while the coordinator verifies) and the masked-input step (mask), and
    per round for the coordinator's proof and opening checks."""
    by: dict[str, list[float]] = {}
    for (rnd, party, step), sec in fed.compute.items():
        if rnd > 0:
            by.setdefault(step if party == "coordinator" else f"member:{step}", []).append(sec)
    masked = fed.network.meter
    proof_bytes = [
        b for m in fed.members for b in [masked.egress[m].by_kind.get("secagg/masked-input")] if b
    ]
    out = {
        "proofs": coord.norm_bound is not None,
        "norm_bound": coord.norm_bound,
        "params": int(coord.params.shape[0]),
        "train_s_per_member_round": _mean(by.get("member:fl/train", [])),
        "contribution_s_per_member_round": _mean(by.get(f"member:{IDLE_CONTRIBUTION}", [])),
        "prover_masks_s_per_member_round": _mean(by.get(f"member:{IDLE_MASKS}", [])),
        "masked_input_s_per_member_round": _mean(by.get("member:secagg/shares-relay", [])),
        "verify_s_per_round": _mean(by.get("close:masked", [])),
        "finish_s_per_round": _mean(by.get("finish", [])),
        "opening_check_s_per_member_round": _mean(by.get("member:secagg/aggregate-opening", [])),
    }
    if proof_bytes:
        msgs = sum(b["messages"] for b in proof_bytes)
        out["masked_input_bytes_per_member_round"] = sum(b["bytes"] for b in proof_bytes) / msgs
    return out


def _json_partition(split: DataSplit, part: Partition, ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for mid, idx, seen in zip(ids, part.indices, part.seen_groups, strict=True):
        y = split.train.y[idx]
        out.append(
            {
                "id": mid,
                "records": len(idx),
                "positives": int(np.sum(y != 0)),
                "groups_seen": sorted(seen),
            }
        )
    return out


@dataclass
class StudyResult:
    config: StudyConfig
    metrics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def run_study(
    cfg: StudyConfig,
    split: DataSplit | None = None,
    progress: Progress | None = None,
    audit_dir: str | None = None,
    eth_rpc: str | None = None,
    engine: str = "inprocess",
    workdir: str | None = None,
) -> StudyResult:
    """Run the three settings and return every metric, JSON-ready. With ``audit_dir`` the main
    federated run is recorded on a transparency log there, witnessed by every member. With
    ``engine="flower"`` the main federated run goes over a local Flower deployment laid out in
    ``workdir`` (one SuperNode and one member node per member); the rest stays in process."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    if engine == "flower" and (audit_dir is None or workdir is None or eth_rpc):
        raise ConfigError("the Flower engine needs a ledger directory and a work directory, "
                          "and anchors on its embedded EVM")  # fmt: skip

    def tick(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if split is None:
        split = load_dataset(
            cfg.dataset, task=cfg.task, label=cfg.label, test_path=cfg.test_path, seed=cfg.seed
        )
    timings["load_s"] = time.perf_counter() - t0
    train, test = split.train, split.test
    rng = np.random.default_rng(cfg.seed)
    part = partition(
        cfg.partition,
        train.y,
        train.groups,
        cfg.members,
        rng,
        alpha=cfg.alpha,
        negative_group=train.classes[0] if train.name != "nsl-kdd" else "normal",
        families_per_member=cfg.families_per_member,
    )
    ids = member_ids(cfg.members)
    shares = {m: train.subset(ix) for m, ix in zip(ids, part.indices, strict=True)}
    train_kinds = set(np.unique(train.kinds).tolist())
    epochs_total = cfg.rounds * cfg.epochs
    # Same passes over each record in every setting.
    solo_cfg = TrainConfig(
        epochs=epochs_total,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        optimizer=cfg.optimizer,
    )

    # --- local-only -----------------------------------------------------------------------
    t0 = time.perf_counter()
    local_meter = EgressMeter()
    local: dict[str, dict[str, Any]] = {}
    local_preds: dict[str, Predictions] = {}
    for k, m in enumerate(ids):
        data = shares[m]
        local_meter.register_boundary(m, data.X)
        std = Standardizer.fit(data.X)
        model = _new_model(cfg, data)
        train_local(
            model, std.transform(data.X), data.y, solo_cfg, np.random.default_rng([cfg.seed, k, 1])
        )
        local_preds[m] = _predict(model, std, test)
        local[m] = evaluate(local_preds[m], train_kinds)
        tick("local-only", k + 1, len(ids))
    timings["local_only_s"] = time.perf_counter() - t0

    # --- centralized ----------------------------------------------------------------------
    t0 = time.perf_counter()
    central_net = InProcessNetwork(EgressMeter())
    pooled_X, pooled_y = [], []
    for m in ids:
        central_net.meter.register_boundary(m, shares[m].X)
        upload = central_net.transmit(
            m, COORDINATOR, RecordsUpload(features=shares[m].X, labels=shares[m].y)
        )
        assert isinstance(upload, RecordsUpload)
        pooled_X.append(upload.features)
        pooled_y.append(upload.labels)
    X_pool = np.concatenate(pooled_X)
    y_pool = np.concatenate(pooled_y)
    central_std = Standardizer.fit(X_pool)
    central_model = _new_model(cfg, train)
    Z_pool = central_std.transform(X_pool)
    crng = np.random.default_rng([cfg.seed, 2])
    train_local(central_model, Z_pool, y_pool, solo_cfg, crng)
    central_pred = _predict(central_model, central_std, test)
    centralized = evaluate(central_pred, train_kinds)
    tick("centralized", 1, 1)
    timings["centralized_s"] = time.perf_counter() - t0

    # --- federated ------------------------------------------------------------------------
    t0 = time.perf_counter()
    if engine == "flower":
        assert audit_dir is not None and workdir is not None
        fed_pred, federated, fed_egress = _run_federated_flower(
            cfg, shares, test, train_kinds, tick, Path(audit_dir), Path(workdir)
        )
    else:
        fed_pred, federated, fed_egress = _run_federated(
            cfg, cfg.privacy, ids, shares, train, test, train_kinds, tick, audit_dir=audit_dir,
            eth_rpc=eth_rpc, rule=cfg.rule,
        )  # fmt: skip
    timings["federated_s"] = time.perf_counter() - t0
    comparison: dict[str, Any] = {}
    if cfg.compare_privacy:
        other = "none" if cfg.privacy == "secagg" else "secagg"
        t0 = time.perf_counter()
        _, alt, alt_egress = _run_federated(
            cfg, other, ids, shares, train, test, train_kinds, tick, label=f"federated ({other})"
        )
        timings[f"federated_{other}_s"] = time.perf_counter() - t0
        for name, ev, eg, secs in (
            (cfg.privacy, federated, fed_egress, timings["federated_s"]),
            (other, alt, alt_egress, timings[f"federated_{other}_s"]),
        ):
            comparison[name] = {
                "accuracy": ev["accuracy"],
                "f1": ev["f1"],
                "seconds": secs,
                "protected_share_of_data_bytes": eg["protected_share_of_data_bytes"],
                "plaintext_updates_out": eg["plaintext_updates_out"],
                "bytes_out": eg["bytes_out"],
            }

    # --- families a member never saw --------------------------------------------------------
    unseen: dict[str, Any] = {}
    all_groups = set(test.positive_groups)
    for m, seen in zip(ids, part.seen_groups, strict=True):
        missing = sorted(all_groups - seen)
        lr, n = local_preds[m].detection_rate(missing)
        if not n:
            continue
        unseen[m] = {
            "families": missing,
            "records": n,
            "local_only": lr,
            "federated": fed_pred.detection_rate(missing)[0],
            "centralized": central_pred.detection_rate(missing)[0],
        }
        local[m]["unseen_families"] = unseen[m]
    if unseen:
        w = np.array([u["records"] for u in unseen.values()], dtype=float)
        unseen_mean = {
            key: float(np.average([u[key] for u in unseen.values()], weights=w))
            for key in ("local_only", "federated", "centralized")
        }
    else:
        unseen_mean = {}

    local_mean = {key: float(np.mean([local[m][key] for m in ids])) for key in ("accuracy", "f1")}
    for key in ("precision", "recall", "roc_auc", "fpr"):
        if key in local[ids[0]]:
            local_mean[key] = float(np.nanmean([local[m][key] for m in ids]))
    local_mean["detection_accuracy"] = float(
        np.mean([local[m]["detection"]["accuracy"] for m in ids])
    )

    metrics: dict[str, Any] = {
        "dataset": {
            "name": train.name,
            "source": split.source,
            "task": cfg.task
            if train.name == "nsl-kdd"
            else "binary"
            if train.n_classes == 2
            else "multiclass",
            "classes": list(train.classes),
            "features": train.n_features,
            "train_records": len(train),
            "test_records": len(test),
        },
        "config": {**asdict(cfg), "hidden": list(cfg.hidden)},
        "model": _new_model(cfg, train).describe(),
        "partition": {
            "scheme": part.scheme,
            "members": _json_partition(split, part, ids),
        },
        "federated": federated,
        "privacy_comparison": comparison,
        "centralized": centralized,
        "local_only": {
            **local_mean,
            "per_member": local,
        },
        "unseen_families": {"per_member": unseen, "mean": unseen_mean},
        "egress": {
            "federated": fed_egress,
            "centralized": central_net.meter.summary(),
            "local_only": local_meter.summary(),
        },
    }
    if cfg.attacks and train.name == "nsl-kdd":
        t0 = time.perf_counter()
        metrics["under_attack"] = run_attack_study(cfg, split, tick)
        timings["under_attack_s"] = time.perf_counter() - t0
    timings["total_s"] = sum(timings.values())
    metrics["timings"] = timings
    return StudyResult(config=cfg, metrics=metrics, timings=timings)


ATTACK_SCENARIO = (
    "one backdoor attacker (boosted updates from records carrying a trigger relabelled normal) "
    "and one adversary running two Sybil identities that send near-clones of a backdoored update"
)


def run_attack_study(cfg: StudyConfig, split: DataSplit, tick: Progress) -> dict[str, Any]:
    """The consortium's honest members (at least 8) plus three malicious identities: FedAvg
    without them (clean), FedAvg with them (undefended), and the default robust pipeline with
    them. Updates
    are plaintext here: Multi-Krum and monitoring must see each one (secure aggregation allows
    only the proven norm bound)."""
    train, test = split.train, split.test
    # Multi-Krum tolerating the 3 malicious identities needs n ≥ 2·3 + 3 = 9: at least 8 honest.
    m = max(cfg.members, 8)
    rng = np.random.default_rng([cfg.seed, 11])
    part = partition("family", train.y, train.groups, m + 2, rng, negative_group="normal",
                     families_per_member=cfg.families_per_member)  # fmt: skip
    ids = member_ids(m + 3)
    honest, backdoor_id, sybil_ids = ids[:m], ids[m], ids[m + 1 :]
    trigger = attacks.nslkdd_trigger(train.feature_names)
    syb = part.indices[m + 1]
    data = {i: train.subset(part.indices[k]) for k, i in enumerate(honest)}
    data[backdoor_id] = train.subset(part.indices[m])
    data[sybil_ids[0]], data[sybil_ids[1]] = train.subset(syb[::2]), train.subset(syb[1::2])
    root = train.subset(np.random.default_rng([cfg.seed, 12]).choice(len(train), 100,
                                                                      replace=False))  # fmt: skip
    runs: dict[str, Any] = {}
    for name, present, defended in (("clean", False, False), ("fedavg", True, False),
                                    ("defended", True, True)):  # fmt: skip
        members = ids if present else honest
        advs = {
            "backdoor": Adversary("backdoor", n_total=len(members), trigger=trigger,
                                  rng=np.random.default_rng([cfg.seed, 13])),
            "sybil": Adversary("sybil", n_total=len(members), trigger=trigger,
                               rng=np.random.default_rng([cfg.seed, 14])),
        }  # fmt: skip
        nodes: dict[str, MemberNode] = {}
        for k, i in enumerate(members):
            rng = np.random.default_rng([cfg.seed, k, 15])
            model = _new_model(cfg, train)
            if i == backdoor_id:
                nodes[i] = MaliciousMember(i, data[i], model, rng, adversary=advs["backdoor"])
            elif i in sybil_ids:
                nodes[i] = MaliciousMember(i, data[i], model, rng, adversary=advs["sybil"])
            else:
                nodes[i] = MemberNode(i, data[i], model, rng)
        coord = CoordinatorNode(
            members, _new_model(cfg, train), cfg.train, np.random.default_rng([cfg.seed, 16]),
            n_features=train.n_features, server_momentum=cfg.server_momentum, privacy="none",
            rule="multi-krum" if defended else "fedavg",
            assumed_malicious=3 if defended else 0, quarantine=defended,
            root=root if defended else None,
        )  # fmt: skip
        fed = InProcessFederation(coord, nodes)
        run = fed.run(cfg.rounds, on_round=lambda r, n=name: tick(f"under attack: {n}", r.round,
                                                                   cfg.rounds))  # fmt: skip
        assert coord.standardizer is not None
        std = coord.standardizer
        ev = evaluate(_predict(coord.model, std, test))
        atk = test.X[test.y != trigger.target]
        bd = attacks.backdoor_success(coord.model.predict_proba(std.transform(atk)),
                                      coord.model.predict_proba(std.transform(trigger.apply(atk))),
                                      trigger)  # fmt: skip
        bad = {backdoor_id, *sybil_ids} if present else set()
        kept_out = {i: sum(1 for r in run.rounds if i in r.excluded or i not in r.contributors)
                    for i in members}  # fmt: skip
        kinds: dict[str, int] = {}
        for inc in run.incidents:
            kinds[inc.kind] = kinds.get(inc.kind, 0) + 1
        runs[name] = {
            "members": len(members),
            "f1": ev["f1"],
            "accuracy": ev["accuracy"],
            "backdoor_success": bd,
            "quarantined": dict(coord.reputation.quarantined) if defended else {},
            "reputation": {i: coord.reputation.score(i) for i in members},
            "rounds_kept_out": {i: kept_out[i] for i in sorted(bad)},
            "honest_rounds_kept_out": float(np.mean([kept_out[i] for i in honest]))
            if present else 0.0,
            "incidents_by_kind": kinds,
            "first_incidents": [_incident_json(i) for i in run.incidents[:6]],
        }  # fmt: skip
    return {
        "scenario": ATTACK_SCENARIO,
        "malicious": {"backdoor": backdoor_id, "sybil": list(sybil_ids)},
        "trigger": dict(
            zip((train.feature_names[i] for i in trigger.features), trigger.values, strict=True)
        ),
        "defence": "multi-krum (f = 3) + update monitoring + reputation quarantine",
        "runs": runs,
    }
