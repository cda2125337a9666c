"""Splitting a training set across consortium members, reproducibly from a seed.

Three schemes:

- ``iid``: a uniform random split.
- ``dirichlet``: label skew; each class is spread over members by proportions drawn from
  Dirichlet(alpha) (small alpha = strong skew).
- ``family``: attack-family skew; every member sees normal traffic, but only some attack
  families — how a real threat-detection network looks (a bank sees fraud-style intrusions, an
  ISP floods, a hospital ransomware), and the setting where collaboration pays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guardians.errors import PartitionError

SCHEMES = ("iid", "dirichlet", "family")


@dataclass(frozen=True, eq=False)
class Partition:
    """Row indices of each member's share, plus the groups (families) each member holds."""

    scheme: str
    indices: tuple[np.ndarray, ...]
    seen_groups: tuple[frozenset[str], ...]

    @property
    def members(self) -> int:
        return len(self.indices)


def _check_members(members: int, n_rows: int) -> None:
    if members < 1:
        raise PartitionError(f"need at least one member, got {members}")
    if members > n_rows:
        raise PartitionError(f"cannot split {n_rows} rows across {members} members")


def _seen(groups: np.ndarray, indices: list[np.ndarray]) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(str(g) for g in np.unique(groups[ix])) for ix in indices)


def iid(groups: np.ndarray, members: int, rng: np.random.Generator) -> Partition:
    _check_members(members, len(groups))
    parts = [np.sort(p) for p in np.array_split(rng.permutation(len(groups)), members)]
    return Partition("iid", tuple(parts), _seen(groups, parts))


def dirichlet(
    labels: np.ndarray,
    groups: np.ndarray,
    members: int,
    alpha: float,
    rng: np.random.Generator,
    *,
    min_rows: int = 10,
    max_tries: int = 100,
) -> Partition:
    """Label skew by Dirichlet(alpha) proportions per class; every member gets ``min_rows``."""
    _check_members(members, len(labels))
    if alpha <= 0:
        raise PartitionError(f"Dirichlet alpha must be positive, got {alpha}")
    min_rows = min(min_rows, len(labels) // members)
    for _ in range(max_tries):
        buckets: list[list[np.ndarray]] = [[] for _ in range(members)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            props = rng.dirichlet(np.full(members, alpha))
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(int)
            for m, chunk in enumerate(np.split(idx, cuts)):
                buckets[m].append(chunk)
        parts = [np.sort(np.concatenate(b)) for b in buckets]
        if min(len(p) for p in parts) >= min_rows:
            return Partition("dirichlet", tuple(parts), _seen(groups, parts))
    raise PartitionError(
        f"could not give each of {members} members {min_rows} rows with alpha={alpha} "
        f"in {max_tries} draws; raise alpha or lower the member count"
    )


def family_skew(
    groups: np.ndarray,
    members: int,
    rng: np.random.Generator,
    *,
    negative_group: str,
    families_per_member: int = 2,
) -> Partition:
    """Every member gets an equal random share of ``negative_group`` (normal traffic) and the
    records of ``families_per_member`` attack families (more if there are too few members to
    cover every family); each family goes to at least one member, and its records are split
    evenly among the members that hold it."""
    _check_members(members, len(groups))
    families = sorted(str(g) for g in np.unique(groups) if g != negative_group)
    if not families:
        raise PartitionError("family skew needs at least one attack family in the data")
    if negative_group not in set(groups.tolist()):
        raise PartitionError(f"family skew needs {negative_group!r} records in the data")
    k = min(max(1, families_per_member), len(families))
    # Too few member slots to cover every family: give each member more families.
    k = max(k, -(-len(families) // members))
    # Rotate through families so each is covered; a seeded shuffle decides who gets what.
    order = rng.permutation(len(families))
    holders: dict[str, list[int]] = {f: [] for f in families}
    member_fams: list[set[str]] = []
    for m in range(members):
        fams = {families[order[(m * k + j) % len(families)]] for j in range(k)}
        member_fams.append(fams)
        for f in fams:
            holders[f].append(m)
    buckets: list[list[np.ndarray]] = [[] for _ in range(members)]
    neg = rng.permutation(np.flatnonzero(groups == negative_group))
    for m, chunk in enumerate(np.array_split(neg, members)):
        buckets[m].append(chunk)
    for f in families:
        idx = rng.permutation(np.flatnonzero(groups == f))
        for m, chunk in zip(holders[f], np.array_split(idx, len(holders[f])), strict=True):
            buckets[m].append(chunk)
    parts = [np.sort(np.concatenate(b)) for b in buckets]
    return Partition("family", tuple(parts), _seen(groups, parts))


def partition(
    scheme: str,
    labels: np.ndarray,
    groups: np.ndarray,
    members: int,
    rng: np.random.Generator,
    *,
    alpha: float = 0.5,
    negative_group: str = "normal",
    families_per_member: int = 2,
) -> Partition:
    """Dispatch on ``scheme`` (one of :data:`SCHEMES`)."""
    if scheme == "iid":
        return iid(groups, members, rng)
    if scheme == "dirichlet":
        return dirichlet(labels, groups, members, alpha, rng)
    if scheme == "family":
        return family_skew(
            groups,
            members,
            rng,
            negative_group=negative_group,
            families_per_member=families_per_member,
        )
    raise PartitionError(f"unknown partition scheme {scheme!r}; choose one of {SCHEMES}")
