"""Tests of guardians.learning.partition: iid, Dirichlet label skew and attack-family skew."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardians.errors import PartitionError
from guardians.learning.partition import SCHEMES, dirichlet, family_skew, iid, partition

FAMILIES = ("DoS", "Probe", "R2L", "U2R")


def synthetic(n_normal=200, per_family=(120, 60, 30, 12), seed=0):
    groups = np.array(
        ["normal"] * n_normal
        + [f for f, k in zip(FAMILIES, per_family, strict=True) for _ in range(k)]
    )
    groups = groups[np.random.default_rng(seed).permutation(len(groups))]
    labels = (groups != "normal").astype(np.int64)
    return labels, groups


def check_disjoint_cover(part, n):
    allidx = np.concatenate(part.indices)
    assert len(allidx) == n, "some row is missing or duplicated"
    np.testing.assert_array_equal(np.sort(allidx), np.arange(n))
    for ix in part.indices:
        assert ix.dtype.kind in "iu"
        np.testing.assert_array_equal(ix, np.sort(ix))


def run(scheme, labels, groups, members, seed, **kw):
    return partition(scheme, labels, groups, members, np.random.default_rng(seed), **kw)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("members", [1, 3, 7])
def test_disjoint_and_covering(scheme, members):
    labels, groups = synthetic()
    kw = {"families_per_member": 4} if (scheme == "family" and members == 1) else {}
    part = run(scheme, labels, groups, members, 0, **kw)
    assert part.scheme == scheme
    assert part.members == members
    check_disjoint_cover(part, len(groups))
    for ix, seen in zip(part.indices, part.seen_groups, strict=True):
        assert seen == frozenset(np.unique(groups[ix]).tolist())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_reproducible_by_seed_and_seed_sensitive(scheme):
    labels, groups = synthetic()
    a = run(scheme, labels, groups, 4, 11)
    b = run(scheme, labels, groups, 4, 11)
    c = run(scheme, labels, groups, 4, 12)
    for x, y in zip(a.indices, b.indices, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.seen_groups == b.seen_groups
    assert any(
        len(x) != len(y) or not np.array_equal(x, y)
        for x, y in zip(a.indices, c.indices, strict=True)
    )


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    members=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_iid_property(n, members, seed):
    groups = np.array(["normal", "DoS", "Probe"])[np.arange(n) % 3]
    if members > n:
        with pytest.raises(PartitionError):
            iid(groups, members, np.random.default_rng(seed))
        return
    part = iid(groups, members, np.random.default_rng(seed))
    check_disjoint_cover(part, n)
    sizes = [len(ix) for ix in part.indices]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=30, deadline=None)
@given(
    members=st.integers(1, 8),
    alpha=st.sampled_from([0.1, 0.5, 1.0, 10.0]),
    seed=st.integers(0, 2**32 - 1),
    min_rows=st.integers(0, 20),
)
def test_dirichlet_property(members, alpha, seed, min_rows):
    labels = np.random.default_rng(seed).integers(0, 3, 300)
    groups = labels.astype(str)
    try:
        part = dirichlet(
            labels, groups, members, alpha, np.random.default_rng(seed), min_rows=min_rows
        )
    except PartitionError:
        # Only acceptable when the skew is extreme; never for mild skew.
        assert alpha < 1.0
        return
    check_disjoint_cover(part, 300)
    assert min(len(ix) for ix in part.indices) >= min(min_rows, 300 // members)


def test_dirichlet_min_rows_and_skew():
    labels, groups = synthetic()
    part = dirichlet(labels, groups, 5, 0.3, np.random.default_rng(0), min_rows=25)
    assert min(len(ix) for ix in part.indices) >= 25
    # label skew: attack share differs markedly across members (uniform split would not)
    shares = [labels[ix].mean() for ix in part.indices]
    assert max(shares) - min(shares) > 0.2
    # large alpha is close to iid
    flat = dirichlet(labels, groups, 5, 1000.0, np.random.default_rng(0))
    shares = [labels[ix].mean() for ix in flat.indices]
    assert max(shares) - min(shares) < 0.15


def test_dirichlet_impossible_min_rows_raises():
    labels = np.array([0] * 50 + [1] * 50)
    with pytest.raises(PartitionError, match="rows"):
        dirichlet(
            labels, labels.astype(str), 10, 1e-3, np.random.default_rng(0), min_rows=10, max_tries=5
        )


# Settings with enough member slots to hold every family (fewer: see the test below).
@pytest.mark.parametrize(
    ("members", "k"),
    [(m, k) for m in (1, 2, 3, 4, 5, 9) for k in (1, 2, 3, 4) if m * k >= len(FAMILIES)],
)
def test_family_skew_properties(members, k):
    _, groups = synthetic()
    part = family_skew(
        groups,
        members,
        np.random.default_rng(members * 10 + k),
        negative_group="normal",
        families_per_member=k,
    )
    check_disjoint_cover(part, len(groups))
    normal_rows = np.flatnonzero(groups == "normal")
    normal_counts = []
    held = set()
    for ix, seen in zip(part.indices, part.seen_groups, strict=True):
        g = groups[ix]
        assert "normal" in seen
        normal_counts.append(int((g == "normal").sum()))
        attack = set(g[g != "normal"].tolist())
        assert len(attack) == k, f"member holds {sorted(attack)}, expected {k} families"
        assert seen == attack | {"normal"}
        held |= attack
    assert held == set(FAMILIES), "every family is held by at least one member"
    assert sum(normal_counts) == len(normal_rows)
    assert max(normal_counts) - min(normal_counts) <= 1
    # each family's records are split evenly among its holders
    for f in FAMILIES:
        per = [int((groups[ix] == f).sum()) for ix in part.indices]
        held_by = [c for c in per if c]
        assert max(held_by) - min(held_by) <= 1


def test_family_skew_k_larger_than_families_is_capped():
    _, groups = synthetic()
    part = family_skew(
        groups, 3, np.random.default_rng(0), negative_group="normal", families_per_member=10
    )
    for seen in part.seen_groups:
        assert seen == frozenset({"normal", *FAMILIES})


@pytest.mark.parametrize(("members", "k"), [(1, 2), (3, 1)])
def test_family_skew_few_member_slots(members, k):
    _, groups = synthetic()
    try:
        part = family_skew(
            groups,
            members,
            np.random.default_rng(0),
            negative_group="normal",
            families_per_member=k,
        )
    except PartitionError:
        return  # a clear, typed refusal is acceptable
    check_disjoint_cover(part, len(groups))


def test_family_skew_needs_normal_and_attacks():
    with pytest.raises(PartitionError, match="attack family"):
        family_skew(np.array(["normal"] * 10), 2, np.random.default_rng(0), negative_group="normal")
    with pytest.raises(PartitionError, match="'normal'"):
        family_skew(np.array(["DoS"] * 10), 2, np.random.default_rng(0), negative_group="normal")


def test_family_skew_on_nslkdd():
    from guardians.learning.data import load_nslkdd

    train = load_nslkdd("binary").train
    part = partition("family", train.y, train.groups, 8, np.random.default_rng(0))
    check_disjoint_cover(part, len(train))
    held = set()
    for ix, seen in zip(part.indices, part.seen_groups, strict=True):
        fams = set(np.unique(train.groups[ix]).tolist())
        assert "normal" in fams
        assert len(fams - {"normal"}) == 2
        assert seen == fams
        held |= fams
        # labels stay aligned with the groups of the rows a member holds
        np.testing.assert_array_equal(train.y[ix], (train.groups[ix] != "normal").astype(int))
    assert held == {"normal", "DoS", "Probe", "R2L", "U2R"}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_errors(scheme):
    labels, groups = synthetic()
    with pytest.raises(PartitionError):
        run(scheme, labels, groups, 0, 0)
    with pytest.raises(PartitionError):
        run(scheme, labels, groups, -1, 0)
    small_l, small_g = labels[:5], groups[:5]
    with pytest.raises(PartitionError, match="5 rows"):
        run(scheme, small_l, small_g, 6, 0)


@pytest.mark.parametrize("alpha", [0.0, -0.5, -1e-9])
def test_bad_alpha(alpha):
    labels, groups = synthetic()
    with pytest.raises(PartitionError, match="alpha"):
        run("dirichlet", labels, groups, 3, 0, alpha=alpha)


def test_unknown_scheme():
    labels, groups = synthetic()
    with pytest.raises(PartitionError, match="unknown partition scheme"):
        run("round-robin", labels, groups, 3, 0)
