"""`guardians bench intel`: collective defence, measured.

Detection: a federated model is trained on NSL-KDD (plaintext FedAvg, the demo's members and
model); the KDDTest+ attack type it misses most among those absent from training (≥ 200
records) plays the new family. Member A sees the first half of those records, derives a flow
signature and shares it anonymously; every member applies it to the second half. Reported: the
detection rate at members that never saw the family with the model alone and with the shared
signature added, and the false-positive rate on KDDTest+ normal traffic before and after.

Latency, over real HTTP on loopback: our TAXII 2.1 server and N − 1 member processes
(``guardians.bench.intel_member``). With
Guardians each member keeps a long-poll open (``wait``) and is protected as soon as the
indicator is released; the centralized hub is the same server polled at a fixed interval (as
MISP-style hubs sync on a schedule), each member at a random phase. A trial's latency runs
from A's post to protection (indicator fetched, parsed, compiled) at the last member.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import stix2
import uvicorn

from guardians.bench.robustness import Setting, run_federation
from guardians.engine.ports import free_port
from guardians.engine.taxii import TAXII, taxii_app
from guardians.intel.rules import FlowSignature, derive
from guardians.intel.scan import scan_feed
from guardians.intel.stix import bundle
from guardians.intel.store import IntelStore
from guardians.learning.data import load_dataset

Progress = Callable[[str], None]
CONSORTIUM = stix2.Identity(name="Guardians consortium", identity_class="organization")


def detection(seed: int = 0, rounds: int = 10) -> dict[str, Any]:
    split = load_dataset("nsl-kdd", seed=seed)
    train, test = split.train, split.test
    model, std = _federated_model(split, seed, rounds)
    pred = model.predict_proba(std.transform(test.X))
    flagged = (pred[:, 1] >= 0.5) if pred.shape[1] == 2 else pred.argmax(axis=1) != 0
    novel = [k for k in set(test.kinds.tolist()) - set(train.kinds.tolist())
             if int(np.sum(test.kinds == k)) >= 200]  # fmt: skip
    rates = {k: float(flagged[test.kinds == k].mean()) for k in novel}
    family = min(rates, key=lambda k: (rates[k], k))
    idx = np.flatnonzero(test.kinds == family)
    seen, held = idx[: len(idx) // 2], idx[len(idx) // 2 :]
    sig = derive(test.X[seen], test.feature_names, family)
    shared = FlowSignature.from_pattern(sig.pattern(), family)  # what members parse
    rule_hit = shared.match(test.X, test.feature_names)
    normal = test.y == 0
    return {
        "family": family,
        "family_records": len(idx),
        "signature": [list(t) for t in sig.triples],
        "candidates_model_detection": dict(sorted(rates.items())),
        "unseen_family_detection_before": float(flagged[held].mean()),
        "unseen_family_detection_after": float((flagged | rule_hit)[held].mean()),
        "normal_fpr_before": float(flagged[normal].mean()),
        "normal_fpr_after": float((flagged | rule_hit)[normal].mean()),
        "pattern": sig.pattern(),
    }


def _federated_model(split: Any, seed: int, rounds: int) -> tuple[Any, Any]:
    _, coord = run_federation(split, "fedavg", "none", 0.0, Setting(rounds=rounds, seed=seed))
    return coord.model, coord.standardizer


def _indicator(pattern: str, family: str) -> list[Any]:
    ind = stix2.Indicator(
        created_by_ref=CONSORTIUM.id, name=f"{family} traffic", pattern=pattern,
        pattern_type="stix", indicator_types=["malicious-activity"],
        object_marking_refs=[stix2.TLP_GREEN],
    )  # fmt: skip
    return [ind]


def _run_mode(
    base: str, store: IntelStore, pattern: str, n: int, mode: str, interval: float, trials: int
) -> tuple[list[float], list[Any]]:
    """``n`` member processes; per trial, seconds from A's post until the last is protected."""
    cids = [store.create_collection(f"{mode}-{i}") for i in range(trials)]
    cmd = [sys.executable, "-m", "guardians.bench.intel_member", base, mode, str(interval), *cids]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    feed: list[Any] = []
    out = []
    try:
        for i, cid in enumerate(cids):
            for p in procs:  # every member is ready (polling, or about to) for this trial
                assert p.stdout is not None
                line = p.stdout.readline().split()
                if line != ["ready", str(i)]:
                    raise RuntimeError(f"member process said {line!r}")
            time.sleep(0.1)
            objs = _indicator(pattern, "new")
            feed += objs
            body = json.dumps({"objects": [json.loads(o.serialize()) for o in objs]})
            t0 = time.time()
            headers = {"Accept": TAXII, "Content-Type": TAXII}
            url = f"{base}/api/collections/{cid}/objects/"
            httpx.post(url, content=body, headers=headers).raise_for_status()
            got = []
            for p in procs:
                assert p.stdout is not None
                word, idx, ts = p.stdout.readline().split()
                if word != "got" or int(idx) != i:
                    raise RuntimeError(f"member process out of step: {word} {idx}")
                got.append(float(ts))
            out.append(max(got) - t0)
    finally:
        for p in procs:
            p.wait(timeout=60)
    return out, feed


def latency(
    pattern: str, *, members: int, trials: int, hub_interval: float, progress: Progress | None
) -> dict[str, Any]:
    import tempfile

    tmp = tempfile.mkdtemp(prefix="guardians-intel-")
    store = IntelStore(os.path.join(tmp, "feed.db"))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(taxii_app(store), host="127.0.0.1", port=port,
                                        log_level="error"))  # fmt: skip
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    while not srv.started:
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, list[float]] = {"guardians": [], "hub": []}
    feed: list[Any] = []
    try:
        for mode in ("guardians", "hub"):
            out[mode], posted = _run_mode(base, store, pattern, members - 1, mode, hub_interval,
                                          trials)  # fmt: skip
            feed += posted
            if progress:
                progress(f"{mode}: median {1e3 * float(np.median(out[mode])):.1f} ms")
    finally:
        srv.should_exit = True
        th.join(timeout=5)
        store.close()
    scan = scan_feed(feed, secrets=[f"member-{i + 1:02d}" for i in range(members)])
    g, h = np.array(out["guardians"]) * 1e3, np.array(out["hub"]) * 1e3
    return {
        "p50_ms": float(np.percentile(g, 50)), "p99_ms": float(np.percentile(g, 99)),
        "hub_p50_ms": float(np.percentile(h, 50)), "hub_p99_ms": float(np.percentile(h, 99)),
        "hub_interval_s": hub_interval, "trials": trials, "members": members,
        "latency_reduction_p50": 1 - float(np.percentile(g, 50) / np.percentile(h, 50)),
        "anonymized_share": scan.anonymized_share, "feed_objects": scan.objects,
    }  # fmt: skip


def disclosures(members: int, family: str) -> dict[str, Any]:
    """What a non-member relay (or another member) can read about who detected what: objects
    naming a member, in a MISP-style hub where members upload their own intel, and in our feed.
    NSL-KDD flows carry no addresses, so the count is of member identities."""
    from datetime import UTC, datetime

    from guardians.intel.anonymize import Anonymizer, EpochKey
    from guardians.intel.stix import Detection, local_intel

    orgs = [stix2.Identity(name=f"member-{i + 1:02d}", identity_class="organization")
            for i in range(members)]  # fmt: skip
    det = Detection(family=family, protocol="tcp", first_seen=datetime(2026, 1, 1, tzinfo=UTC))
    hub_feed = [o for org in orgs for o in local_intel(det, org)]
    secrets = [x for org in orgs for x in (org.name, org.id)]
    hub = scan_feed(hub_feed, secrets=secrets)
    key = EpochKey.derive(os.urandom(32), 0)
    ours = scan_feed(Anonymizer(CONSORTIUM, key).share(det), secrets=secrets)
    return {"hub_disclosures": len(hub.leaking), "hub_objects": hub.objects,
            "hub_anonymized_share": hub.anonymized_share,
            "disclosures": len(ours.leaking)}  # fmt: skip


def bench_intel(
    *, members: int = 8, trials: int = 20, hub_interval: float = 1.0, seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:  # fmt: skip
    det = detection(seed)
    if progress:
        progress(f"{det['family']}: detection {det['unseen_family_detection_before']:.1%} → "
                 f"{det['unseen_family_detection_after']:.1%}")  # fmt: skip
    lat = latency(det["pattern"], members=members, trials=trials, hub_interval=hub_interval,
                  progress=progress)  # fmt: skip
    example = json.loads(bundle(_indicator(det["pattern"], det["family"])))
    return {**lat, **det, **disclosures(members, det["family"]), "bundle_example": example}
