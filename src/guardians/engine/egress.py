"""The egress meter: what crosses each member's data boundary, measured on the wire bytes.

Every message a transport carries is recorded (sender, recipient, kind, bytes). For messages
leaving a member, the meter also *scans the payload* for that member's raw records: it holds a
fingerprint index of the member's record rows (their exact float32 byte encoding, the form the
member holds them in) and reports how many of its records occur verbatim anywhere in the bytes,
at any byte offset (identical records count once each). Reports read this record; nothing
assumes it.

The scan catches records copied verbatim in the member's encoding (the way a data upload, or an
update with records smuggled into it, carries them). It is not a proof that no information about
records leaks through model updates — that is what secure aggregation and differential privacy
are for.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Public constants of the window hash (odd, so invertible mod 2^64). The hash only buckets
# candidate windows; every candidate is verified byte for byte.
_MIX = np.uint64(0x9E3779B97F4A7C15)
_BASE = 0xBF58476D1CE4E5B9
_BASE_INV = pow(_BASE, -1, 1 << 64)


def _mix(words: np.ndarray) -> np.ndarray:
    x = words.astype(np.uint64) * _MIX
    return x ^ (x >> np.uint64(29))


def _powers(base: int, n: int) -> np.ndarray:
    p = np.full(n, base, dtype=np.uint64)
    p[0] = 1
    return np.cumprod(p, dtype=np.uint64)  # wraps mod 2^64


def window_hashes(words: np.ndarray, width: int) -> np.ndarray:
    """sum_j mix(w[s+j]) * BASE^j (mod 2^64) for every window start s, in O(len) numpy ops."""
    n = len(words)
    weighted = _mix(words) * _powers(_BASE, n)
    q = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(weighted, dtype=np.uint64, out=q[1:])
    starts = n - width + 1
    return (q[width : width + starts] - q[:starts]) * _powers(_BASE_INV, starts)


class RecordFingerprints:
    """An index that finds verbatim copies of a member's record rows inside a byte string."""

    def __init__(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.dtype("<f4"))
        if rows.ndim != 2 or rows.shape[1] < 1:
            raise ValueError("records must be a non-empty 2-D array")
        self.n_records = rows.shape[0]
        self.width = rows.shape[1]
        words = rows.view("<u4")
        # Rows with one repeated word (all zeros, say) would match any constant run in a
        # payload: they cannot be told apart from padding, so they are not fingerprinted.
        distinct = (
            (words != words[:, :1]).any(axis=1)
            if self.width > 1
            else np.ones(len(words), dtype=bool)
        )
        self.unindexed = int((~distinct).sum())
        keep = np.flatnonzero(distinct)
        # Identical records (common in traffic logs) share one index entry.
        self._rows, self._inverse = np.unique(words[keep], axis=0, return_inverse=True)
        self._row_ids = keep
        hashes = (_mix(self._rows) * _powers(_BASE, self.width)).sum(axis=1, dtype=np.uint64)
        order = np.argsort(hashes, kind="stable")
        self._sorted_hashes = hashes[order]
        self._sorted_pos = order

    def scan(self, payload: bytes) -> np.ndarray:
        """Sorted ids of the records that occur verbatim in ``payload``."""
        L = self.width
        nh = len(self._sorted_hashes)
        if nh == 0 or len(payload) < 4 * L:
            return np.zeros(0, dtype=np.int64)
        matched = np.zeros(len(self._rows), dtype=bool)
        span = np.arange(L)
        for align in range(4):
            count = (len(payload) - align) // 4
            if count < L:
                continue
            w = np.frombuffer(payload, dtype="<u4", offset=align, count=count)
            h = window_hashes(w, L)
            pos = np.searchsorted(self._sorted_hashes, h)
            np.minimum(pos, nh - 1, out=pos)
            cand = np.flatnonzero(self._sorted_hashes[pos] == h)
            if not len(cand):
                continue
            # Verify candidates in chunks: gather each window and compare with its row.
            for c0 in range(0, len(cand), 4096):
                cs = cand[c0 : c0 + 4096]
                windows = w[cs[:, None] + span]
                first = self._sorted_pos[pos[cs]]
                ok = (windows == self._rows[first]).all(axis=1)
                matched[first[ok]] = True
                # 64-bit hash collisions between distinct rows: check the rest of the bucket.
                for s_i, win in zip(cs[~ok], windows[~ok], strict=True):
                    i = pos[s_i] + 1
                    while i < nh and self._sorted_hashes[i] == h[s_i]:
                        r = self._sorted_pos[i]
                        if np.array_equal(self._rows[r], win):
                            matched[r] = True
                        i += 1
        return np.sort(self._row_ids[matched[self._inverse]])


@dataclass
class EgressRecord:
    sender: str
    recipient: str
    kind: str
    bytes: int
    raw_records: int


@dataclass
class BoundaryTotals:
    messages: int = 0
    bytes: int = 0
    raw_records: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    by_protection: dict[str, int] = field(default_factory=dict)


class EgressMeter:
    """Records what crosses each registered member boundary, and which raw records did."""

    def __init__(self) -> None:
        self._fingerprints: dict[str, RecordFingerprints] = {}
        self._leaked: dict[str, set[int]] = defaultdict(set)
        self.log: list[EgressRecord] = []
        self.egress: dict[str, BoundaryTotals] = defaultdict(BoundaryTotals)
        self.ingress: dict[str, BoundaryTotals] = defaultdict(BoundaryTotals)

    def register_boundary(self, member: str, records: np.ndarray) -> None:
        self._fingerprints[member] = RecordFingerprints(records)
        self.egress.setdefault(member, BoundaryTotals())
        self.ingress.setdefault(member, BoundaryTotals())

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self._fingerprints)

    def record(
        self,
        sender: str,
        recipient: str,
        kind: str,
        payload: bytes,
        classes: dict[str, int] | None = None,
    ) -> EgressRecord:
        raw = 0
        if sender in self._fingerprints:
            ids = self._fingerprints[sender].scan(payload)
            raw = len(ids)
            self._leaked[sender].update(ids.tolist())
            self._add(self.egress[sender], kind, len(payload), raw)
            for c, n in (classes or {"header": len(payload)}).items():
                self.egress[sender].by_protection[c] = (
                    self.egress[sender].by_protection.get(c, 0) + n
                )
        if recipient in self._fingerprints:
            self._add(self.ingress[recipient], kind, len(payload), 0)
        rec = EgressRecord(sender, recipient, kind, len(payload), raw)
        self.log.append(rec)
        return rec

    @staticmethod
    def _add(t: BoundaryTotals, kind: str, n: int, raw: int) -> None:
        t.messages += 1
        t.bytes += n
        t.raw_records += raw
        k = t.by_kind.setdefault(kind, {"messages": 0, "bytes": 0})
        k["messages"] += 1
        k["bytes"] += n

    def distinct_records_leaked(self, member: str) -> int:
        """How many of the member's distinct records crossed its boundary at least once."""
        return len(self._leaked.get(member, ()))

    def summary(self) -> dict[str, Any]:
        per_member = {}
        for m in self._fingerprints:
            e, i = self.egress[m], self.ingress[m]
            per_member[m] = {
                "records_held": self._fingerprints[m].n_records,
                "raw_records_out": self.distinct_records_leaked(m),
                "messages_out": e.messages,
                "bytes_out": e.bytes,
                "bytes_in": i.bytes,
                "out_by_kind": dict(e.by_kind),
                "out_by_protection": dict(e.by_protection),
            }
        return summarize(per_member)


def summarize(per_member: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Totals over members' egress records (each as in ``EgressMeter.summary()["per_member"]``):
    also how records metered at separate machines are combined."""
    prot: dict[str, int] = defaultdict(int)
    for p in per_member.values():
        for c, n in p["out_by_protection"].items():
            prot[c] += n
    data = prot["plain"] + prot["masked"] + prot["ciphertext"]
    total = sum(prot.values())
    protected = prot["masked"] + prot["ciphertext"]
    updates = sum(p["out_by_kind"].get("fl/update", {}).get("messages", 0)
                  for p in per_member.values())  # fmt: skip
    return {
        "raw_records": sum(p["raw_records_out"] for p in per_member.values()),
        "bytes_by_protection": dict(prot),
        # Of the bytes that carry member data (not keys, signatures or framing).
        "protected_share_of_data_bytes": protected / data if data else None,
        "protected_share_of_all_bytes": protected / total if total else None,
        "plaintext_updates_out": updates,
        "bytes_out": sum(p["bytes_out"] for p in per_member.values()),
        "bytes_in": sum(p["bytes_in"] for p in per_member.values()),
        "messages_out": sum(p["messages_out"] for p in per_member.values()),
        "per_member": per_member,
    }
