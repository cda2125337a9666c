"""`guardians bench ledger`: sustained appends, proofs and verifications on the SQLite log.

Anchor: Trillian Tessera's published POSIX figure, about 2,900 appends/s on 12 cores (a
published number, not run here). Entries are realistic round-commit records (~200 bytes).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from guardians import codec
from guardians.ledger.entries import RoundCommitted
from guardians.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from guardians.ledger.store import LogStore

TESSERA_POSIX_APPENDS_PER_S = 2900


def _entries(n: int) -> list[bytes]:
    return [
        codec.encode(
            RoundCommitted(
                round=i, participants=tuple(f"member-{k:02d}" for k in range(8)), rule="fedavg",
                privacy="secagg", model_hash=os.urandom(32), aggregate_hash=os.urandom(32),
            )
        )
        for i in range(n)
    ]  # fmt: skip


def bench_ledger(entries: int = 200_000, batch: int = 1000, proofs: int = 20_000,
                 directory: str | None = None) -> dict[str, Any]:  # fmt: skip
    data = _entries(entries)
    with tempfile.TemporaryDirectory(dir=directory) as d:
        store = LogStore(Path(d) / "log.db")
        t = time.perf_counter()
        for i in range(0, entries, batch):
            store.append_batch(data[i : i + batch])
        append_s = time.perf_counter() - t
        rng = np.random.default_rng(0)
        idx = rng.integers(0, entries, proofs)
        t = time.perf_counter()
        incl = [store.inclusion_proof(int(i)) for i in idx]
        incl_s = time.perf_counter() - t
        olds = rng.integers(1, entries, proofs // 4)
        t = time.perf_counter()
        cons = [store.consistency_proof(int(o)) for o in olds]
        cons_s = time.perf_counter() - t
        root = store.root()
        leaves = [leaf_hash(data[int(i)]) for i in idx]
        t = time.perf_counter()
        for i, leaf, p in zip(idx, leaves, incl, strict=True):
            verify_inclusion(int(i), entries, leaf, p, root)
        ver_s = time.perf_counter() - t
        old_roots = [store.root(int(o)) for o in olds]
        t = time.perf_counter()
        for o, r, p in zip(olds, old_roots, cons, strict=True):
            verify_consistency(int(o), entries, r, root, p)
        cver_s = time.perf_counter() - t
        file_bytes = sum(f.stat().st_size for f in Path(d).iterdir())
        store.close()
    out = {
        "entries": entries,
        "batch": batch,
        "appends_per_s": entries / append_s,
        "inclusion_proofs_per_s": proofs / incl_s,
        "consistency_proofs_per_s": len(olds) / cons_s,
        "verifications_per_s": proofs / ver_s,
        "consistency_verifications_per_s": len(olds) / cver_s,
        "bytes_on_disk": file_bytes,
        "anchor": "Trillian Tessera POSIX, ~2,900 appends/s on 12 cores (published)",
        "anchor_appends_per_s": TESSERA_POSIX_APPENDS_PER_S,
    }
    out["appends_vs_anchor"] = out["appends_per_s"] / TESSERA_POSIX_APPENDS_PER_S
    return out
