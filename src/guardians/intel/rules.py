"""Signature rules for flow records (NSL-KDD's protocol, service and TCP flag), derived from the
records a member flagged and shared as a STIX pattern; members apply them to their own traffic.

The pattern is an OR of observations, one per (protocol, service, flag) combination, each with
the byte-count ranges the flagged records showed:
``[network-traffic:protocols[*] = 'tcp' AND network-traffic:x_guardians_service = 'smtp' AND
network-traffic:x_guardians_flag = 'SF' AND network-traffic:src_byte_count >= 1 AND
network-traffic:src_byte_count <= 9 AND network-traffic:dst_byte_count >= 0 AND
network-traffic:dst_byte_count <= 0]``. It names no address and no member.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from guardians.intel.stix import IntelFormatError, _quote

FIELDS = ("protocol_type", "service", "flag")
_OBS = re.compile(
    r"\[network-traffic:protocols\[\*\] = '([a-z0-9_]+)' AND "
    r"network-traffic:x_guardians_service = '([A-Za-z0-9_]+)' AND "
    r"network-traffic:x_guardians_flag = '([A-Za-z0-9_]+)' AND "
    r"network-traffic:src_byte_count >= (\d+) AND network-traffic:src_byte_count <= (\d+) AND "
    r"network-traffic:dst_byte_count >= (\d+) AND network-traffic:dst_byte_count <= (\d+)\]"
)
Term = tuple[str, str, str, int, int, int, int]  # protocol, service, flag, src lo/hi, dst lo/hi


def _bytes(X: np.ndarray, feature_names: tuple[str, ...], name: str) -> np.ndarray:
    if name in feature_names:
        return np.rint(X[:, feature_names.index(name)]).astype(np.int64)
    return np.rint(np.expm1(X[:, feature_names.index(f"log1p({name})")])).astype(np.int64)


def categorical(X: np.ndarray, feature_names: tuple[str, ...], field: str) -> np.ndarray:
    """Recover a one-hot encoded categorical column (e.g. ``service``) as strings."""
    cols = [(i, n.split("=", 1)[1]) for i, n in enumerate(feature_names)
            if n.startswith(field + "=")]  # fmt: skip
    if not cols:
        raise IntelFormatError(f"no one-hot columns for {field!r}")
    idx = np.array([i for i, _ in cols])
    names = np.array([v for _, v in cols], dtype=object)
    return names[np.argmax(X[:, idx], axis=1)]


@dataclass(frozen=True)
class FlowSignature:
    family: str
    terms: tuple[Term, ...]

    @property
    def triples(self) -> tuple[tuple[str, str, str], ...]:
        return tuple(t[:3] for t in self.terms)  # type: ignore[misc]

    def pattern(self) -> str:
        return " OR ".join(
            f"[network-traffic:protocols[*] = {_quote(p)} AND "
            f"network-traffic:x_guardians_service = {_quote(s)} AND "
            f"network-traffic:x_guardians_flag = {_quote(f)} AND "
            f"network-traffic:src_byte_count >= {a} AND network-traffic:src_byte_count <= {b} "
            f"AND network-traffic:dst_byte_count >= {c} AND network-traffic:dst_byte_count <= {d}]"
            for p, s, f, a, b, c, d in self.terms
        )

    @classmethod
    def from_pattern(cls, pattern: str, family: str) -> FlowSignature:
        parts = pattern.split(" OR ")
        terms = []
        for part in parts:
            m = _OBS.fullmatch(part.strip())
            if m is None:
                raise IntelFormatError(f"not a flow-signature observation: {part[:80]!r}")
            g = m.groups()
            if any(len(x) > 20 for x in g[3:]):
                raise IntelFormatError("byte count out of range in a flow signature")
            terms.append((g[0], g[1], g[2], *(int(x) for x in g[3:])))
        return cls(family, tuple(terms))  # type: ignore[arg-type]

    def match(self, X: np.ndarray, feature_names: tuple[str, ...]) -> np.ndarray:
        cols = [categorical(X, feature_names, f) for f in FIELDS]
        src, dst = _bytes(X, feature_names, "src_bytes"), _bytes(X, feature_names, "dst_bytes")
        hit = np.zeros(len(X), dtype=bool)
        for p, s, f, a, b, c, d in self.terms:
            hit |= ((cols[0] == p) & (cols[1] == s) & (cols[2] == f) & (src >= a) & (src <= b)
                    & (dst >= c) & (dst <= d))  # fmt: skip
        return hit


def derive(
    X: np.ndarray, feature_names: tuple[str, ...], family: str, *, coverage: float = 0.9,
    max_terms: int = 6,
) -> FlowSignature:  # fmt: skip
    """The fewest (protocol, service, flag) combinations covering ``coverage`` of the flagged
    records (at most ``max_terms``)."""
    if len(X) == 0:
        raise IntelFormatError("no flagged records to derive a signature from")
    cols = [categorical(X, feature_names, f) for f in FIELDS]
    src, dst = _bytes(X, feature_names, "src_bytes"), _bytes(X, feature_names, "dst_bytes")
    counts = Counter(zip(*cols, strict=True))
    chosen: list[Term] = []
    covered = 0
    for triple, n in counts.most_common(max_terms):
        sel = (cols[0] == triple[0]) & (cols[1] == triple[1]) & (cols[2] == triple[2])
        chosen.append((str(triple[0]), str(triple[1]), str(triple[2]), int(src[sel].min()),
                       int(src[sel].max()), int(dst[sel].min()), int(dst[sel].max())))  # fmt: skip
        covered += n
        if covered >= coverage * len(X):
            break
    return FlowSignature(family, tuple(chosen))
