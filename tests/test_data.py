"""Tests of guardians.learning.data: NSL-KDD, WDBC and user CSV files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from guardians.errors import (
    ConstantLabelError,
    DataError,
    EmptyDatasetError,
    FeatureMismatchError,
    MissingLabelError,
    NonNumericFeatureError,
    NonNumericLabelError,
    RaggedRowError,
    UnknownDatasetError,
)
from guardians.learning import nslkdd_schema as kdd
from guardians.learning.data import (
    Dataset,
    load_csv,
    load_dataset,
    load_nslkdd,
    load_wdbc,
    parse_nslkdd_rows,
    stratified_split,
)

N_TRAIN = 25_192
N_TEST = 22_544


# --- NSL-KDD ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kdd_binary():
    return load_nslkdd("binary")


@pytest.fixture(scope="module")
def kdd_family():
    return load_nslkdd("family")


def test_nslkdd_row_counts(kdd_binary):
    assert len(kdd_binary.train) == N_TRAIN
    assert len(kdd_binary.test) == N_TEST
    assert kdd_binary.train.X.shape == (N_TRAIN, 122)
    assert kdd_binary.test.X.shape == (N_TEST, 122)
    assert kdd_binary.train.X.dtype == np.float32
    assert np.all(np.isfinite(kdd_binary.train.X))
    assert np.all(np.isfinite(kdd_binary.test.X))


def test_nslkdd_feature_layout(kdd_binary):
    names = kdd_binary.train.feature_names
    assert len(names) == 38 + 3 + 70 + 11 == 122
    assert len(set(names)) == 122
    assert sum(n.startswith("protocol_type=") for n in names) == 3
    assert sum(n.startswith("service=") for n in names) == 70
    assert sum(n.startswith("flag=") for n in names) == 11
    numeric = [n for n in names if "=" not in n]
    assert len(numeric) == 38
    assert "log1p(src_bytes)" in numeric
    assert "serror_rate" in numeric  # a rate, not log-scaled
    assert kdd_binary.train.n_features == 122


def test_nslkdd_onehot_blocks_are_onehot(kdd_binary):
    names = np.array(kdd_binary.train.feature_names)
    X = kdd_binary.train.X
    for prefix in ("protocol_type=", "service=", "flag="):
        cols = np.flatnonzero(np.char.startswith(names, prefix))
        block = X[:, cols]
        assert set(np.unique(block).tolist()) <= {0.0, 1.0}
        # Every training value is in the public vocabulary: exactly one hot per row.
        np.testing.assert_array_equal(block.sum(axis=1), 1.0)


def test_nslkdd_binary_task(kdd_binary):
    train = kdd_binary.train
    assert train.classes == ("normal", "attack")
    assert train.n_classes == 2
    assert set(np.unique(train.y).tolist()) == {0, 1}
    # y is exactly "family is not normal"
    np.testing.assert_array_equal(train.y, (train.groups != "normal").astype(np.int64))
    assert int((train.y == 0).sum()) == 13_449
    assert train.positive_groups == ("DoS", "Probe", "R2L", "U2R")


def test_nslkdd_family_task(kdd_family):
    train, test = kdd_family.train, kdd_family.test
    assert train.classes == ("normal", "DoS", "Probe", "R2L", "U2R")
    assert train.n_classes == 5
    # groups are families and y indexes the same family
    np.testing.assert_array_equal(np.array(train.classes)[train.y], train.groups)
    np.testing.assert_array_equal(np.array(test.classes)[test.y], test.groups)
    counts = {g: int((train.groups == g).sum()) for g in train.classes}
    assert counts == {"normal": 13_449, "DoS": 9_234, "Probe": 2_289, "R2L": 209, "U2R": 11}


def test_nslkdd_groups_and_kinds(kdd_binary):
    train = kdd_binary.train
    assert set(np.unique(train.groups).tolist()) == set(kdd.FAMILIES)
    for kind, group in zip(train.kinds[:2000], train.groups[:2000], strict=True):
        assert kdd.family_of(str(kind)) == group
    assert "neptune" in set(train.kinds.tolist())
    assert set(train.groups[train.kinds == "neptune"].tolist()) == {"DoS"}


def test_nslkdd_test_has_novel_attack_kinds(kdd_binary):
    train_kinds = set(kdd_binary.train.kinds.tolist())
    test_kinds = set(kdd_binary.test.kinds.tolist())
    novel = test_kinds - train_kinds
    assert {"apache2", "mailbomb", "processtable", "saint", "mscan"} <= novel
    assert "normal" not in novel
    assert all(kdd.family_of(k) != "normal" for k in novel)


def test_nslkdd_parse_rejects_bad_rows():
    good = ["0", "tcp", "http", "SF"] + ["0"] * 37 + ["normal", "21"]
    assert len(good) == 43
    ds = parse_nslkdd_rows([good], task="binary", source="x")
    assert ds.X.shape == (1, 122)
    with pytest.raises(RaggedRowError, match="x: line 2"):
        parse_nslkdd_rows([good, good[:-1]], task="binary", source="x")
    bad = list(good)
    bad[4] = "lots"
    with pytest.raises(NonNumericFeatureError, match="src_bytes"):
        parse_nslkdd_rows([good, bad], task="binary", source="x")
    unknown = [*good[:-2], "not-an-attack", "1"]
    with pytest.raises(NonNumericLabelError, match="not-an-attack"):
        parse_nslkdd_rows([unknown], task="binary", source="x")
    with pytest.raises(UnknownDatasetError):
        parse_nslkdd_rows([good], task="nope", source="x")
    with pytest.raises(EmptyDatasetError):
        parse_nslkdd_rows([], task="binary", source="x")
    # An unseen service encodes as an all-zero one-hot block.
    odd = list(good)
    odd[2] = "gopher2"
    X = parse_nslkdd_rows([odd], task="binary", source="x").X
    names = np.array(ds.feature_names)
    assert X[0, np.char.startswith(names, "service=")].sum() == 0.0


def test_load_dataset_by_name_nslkdd_family():
    split = load_dataset("nsl-kdd", task="family")
    assert split.train.n_classes == 5
    assert len(split.test) == N_TEST


# --- WDBC ---------------------------------------------------------------------------------
def test_wdbc_split():
    split = load_wdbc(seed=0)
    train, test = split.train, split.test
    assert len(train) + len(test) == 569
    assert train.n_features == 30
    assert train.classes == ("benign", "malignant")
    assert int(train.y.sum() + test.y.sum()) == 212  # malignant is positive
    # stratified, 30% test per class
    assert int(test.y.sum()) == round(212 * 0.3)
    assert int((test.y == 0).sum()) == round(357 * 0.3)
    assert train.positive_groups == ("malignant",)
    np.testing.assert_array_equal(np.array(train.classes)[train.y], train.groups)

    # disjoint and complete: rows of the full data appear exactly once
    from sklearn.datasets import load_breast_cancer

    full = np.asarray(load_breast_cancer().data, dtype=np.float32)
    full_target = load_breast_cancer().target
    both = np.vstack([train.X, test.X])
    assert np.unique(both, axis=0).shape[0] == np.unique(full, axis=0).shape[0]
    # malignant label matches sklearn's target 0
    row = train.X[0]
    match = np.flatnonzero((full == row).all(axis=1))
    assert len(match) == 1
    assert train.y[0] == int(full_target[match[0]] == 0)


def test_wdbc_seed_changes_split():
    a = load_dataset("wdbc", seed=1)
    b = load_dataset("wdbc", seed=1)
    c = load_dataset("wdbc", seed=2)
    np.testing.assert_array_equal(a.test.X, b.test.X)
    assert a.test.X.shape == c.test.X.shape
    assert not np.array_equal(a.test.X, c.test.X)


def test_stratified_split_rejects_bad_fraction():
    for f in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            stratified_split(np.array([0, 1, 0, 1]), f, np.random.default_rng(0))


# --- CSV ----------------------------------------------------------------------------------
def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def make_rows(n=40):
    rng = np.random.default_rng(3)
    lines = ["a,b,label,c"]
    for i in range(n):
        lab = i % 2
        a, b, c = rng.normal(size=3) + lab
        lines.append(f"{a:.6f},{b:.6f},{lab},{c:.6f}")
    return "\n".join(lines) + "\n"


def test_csv_happy_path(tmp_path):
    p = write(tmp_path, "flows.csv", make_rows(40))
    split = load_csv(p, "label", seed=0)
    train, test = split.train, split.test
    assert train.feature_names == ("a", "b", "c")
    assert train.classes == ("0", "1")
    assert len(train) + len(test) == 40
    assert len(test) == 10  # 25% of each class of 20
    assert int(test.y.sum()) == 5
    assert train.X.dtype == np.float32
    assert train.name == "csv:flows.csv"
    assert train.positive_groups == ("1",)
    # values survive: find the row from the file
    raw = np.loadtxt(p, delimiter=",", skiprows=1)
    all_X = np.vstack([train.X, test.X])
    all_y = np.concatenate([train.y, test.y])
    order = np.lexsort(all_X.T[::-1])
    raw_feats = raw[:, [0, 1, 3]].astype(np.float32)
    raw_order = np.lexsort(raw_feats.T[::-1])
    np.testing.assert_array_equal(all_X[order], raw_feats[raw_order])
    np.testing.assert_array_equal(all_y[order], raw[raw_order, 2].astype(np.int64))


def test_csv_via_load_dataset_with_test_file(tmp_path):
    p = write(tmp_path, "tr.csv", "x,y,label\n1,2,0\n3,4,1\n5,6,1\n7,8,0\n")
    q = write(tmp_path, "te.csv", "x,y,label\n9,10,1\n11,12,0\n")
    split = load_dataset(f"csv:{p}", label="label", test_path=str(q))
    assert len(split.train) == 4
    np.testing.assert_array_equal(split.test.X, [[9, 10], [11, 12]])
    np.testing.assert_array_equal(split.test.y, [1, 0])


def test_csv_gz_and_noncontiguous_labels(tmp_path):
    p = tmp_path / "d.csv.gz"
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write("f,label\n" + "".join(f"{i},{[-1, 7][i % 2]}\n" for i in range(12)))
    split = load_csv(p, "label")
    assert split.train.classes == ("-1", "7")
    all_y = np.concatenate([split.train.y, split.test.y])
    all_x = np.concatenate([split.train.X[:, 0], split.test.X[:, 0]]).astype(int)
    np.testing.assert_array_equal(all_y, all_x % 2)


def test_csv_missing_label_column(tmp_path):
    p = write(tmp_path, "m.csv", "a,b\n1,2\n")
    with pytest.raises(MissingLabelError) as ei:
        load_csv(p, "label")
    assert str(p) in str(ei.value)
    assert "'label'" in str(ei.value)
    assert "a, b" in str(ei.value)


def test_csv_constant_label(tmp_path):
    p = write(tmp_path, "c.csv", "a,label\n1,1\n2,1\n3,1\n")
    with pytest.raises(ConstantLabelError) as ei:
        load_csv(p, "label")
    assert str(p) in str(ei.value)
    assert "label" in str(ei.value)


@pytest.mark.parametrize("value", ["benign", "", "0x1"])
def test_csv_non_numeric_label(tmp_path, value):
    p = write(tmp_path, "l.csv", f"a,label\n1,0\n2,1\n3,{value}\n")
    with pytest.raises(NonNumericLabelError) as ei:
        load_csv(p, "label")
    assert str(p) in str(ei.value)
    assert "line 4" in str(ei.value)


@pytest.mark.parametrize("value", ["0.5", "nan", "inf", "1e400"])
def test_csv_non_integer_label(tmp_path, value):
    p = write(tmp_path, "l.csv", f"a,label\n1,0\n2,{value}\n3,1\n")
    with pytest.raises(NonNumericLabelError) as ei:
        load_csv(p, "label")
    assert "line 3" in str(ei.value)
    assert "integer" in str(ei.value)


def test_csv_ragged_row(tmp_path):
    p = write(tmp_path, "r.csv", "a,b,label\n1,2,0\n1,2,1\n3,4,5,0\n")
    with pytest.raises(RaggedRowError) as ei:
        load_csv(p, "label")
    assert str(p) in str(ei.value)
    assert "line 4" in str(ei.value)
    q = write(tmp_path, "r2.csv", "a,b,label\n1,2,0\n1,1\n")
    with pytest.raises(RaggedRowError, match="line 3"):
        load_csv(q, "label")


@pytest.mark.parametrize(
    ("cell", "word"),
    [
        ("abc", "not a number"),
        ("", "empty"),
        ("  ", "empty"),
        ("nan", "not finite"),
        ("-inf", "not finite"),
        ("1e999", "not finite"),
    ],
)
def test_csv_bad_feature(tmp_path, cell, word):
    p = write(tmp_path, "f.csv", f"a,b,label\n1,2,0\n3,4,1\n5,{cell},1\n")
    with pytest.raises(NonNumericFeatureError) as ei:
        load_csv(p, "label")
    msg = str(ei.value)
    assert str(p) in msg
    assert "line 4" in msg
    assert "column 'b'" in msg
    assert word in msg


def test_csv_test_file_with_different_columns(tmp_path):
    p = write(tmp_path, "tr.csv", "x,y,label\n1,2,0\n3,4,1\n")
    q = write(tmp_path, "te.csv", "x,z,label\n1,2,0\n")
    with pytest.raises(FeatureMismatchError) as ei:
        load_csv(p, "label", test_path=q)
    assert str(q) in str(ei.value)
    assert "'y'" in str(ei.value)
    assert "'z'" in str(ei.value)
    r = write(tmp_path, "te2.csv", "y,x,label\n1,2,0\n")
    with pytest.raises(FeatureMismatchError, match="reordered"):
        load_csv(p, "label", test_path=r)
    s = write(tmp_path, "te3.csv", "x,y,label\n1,2,3\n")
    with pytest.raises(FeatureMismatchError, match="do not occur"):
        load_csv(p, "label", test_path=s)


def test_csv_duplicate_columns(tmp_path):
    p = write(tmp_path, "d.csv", "x,x,label\n1,2,0\n3,4,1\n")
    with pytest.raises(FeatureMismatchError, match="duplicate"):
        load_csv(p, "label")


def test_csv_empty_and_header_only(tmp_path):
    p = write(tmp_path, "e.csv", "")
    with pytest.raises(EmptyDatasetError) as ei:
        load_csv(p, "label")
    assert str(p) in str(ei.value)
    q = write(tmp_path, "h.csv", "a,label\n")
    with pytest.raises(EmptyDatasetError, match="no data rows"):
        load_csv(q, "label")
    r = write(tmp_path, "b.csv", "a,label\n\n\n")
    with pytest.raises(EmptyDatasetError):
        load_csv(r, "label")


def test_csv_missing_file(tmp_path):
    p = tmp_path / "nope.csv"
    with pytest.raises(DataError) as ei:
        load_csv(p, "label")
    assert str(p) in str(ei.value)
    with pytest.raises(DataError):
        load_dataset(f"csv:{p}", label="label")


def test_unknown_dataset_and_csv_without_label(tmp_path):
    with pytest.raises(UnknownDatasetError, match="kdd99"):
        load_dataset("kdd99")
    with pytest.raises(UnknownDatasetError):
        load_dataset("csv:", label="y")
    p = write(tmp_path, "ok.csv", "a,label\n1,0\n2,1\n")
    with pytest.raises(MissingLabelError):
        load_dataset(f"csv:{p}")
    with pytest.raises(MissingLabelError):
        load_dataset(f"csv:{p}", label="")


# --- Dataset ------------------------------------------------------------------------------
def test_subset_keeps_alignment():
    n = 20
    X = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n) % 3
    groups = np.array([f"g{v}" for v in y])
    kinds = np.array([f"k{i}" for i in range(n)])
    ds = Dataset("t", X, y, ("a", "b", "c"), ("f0", "f1", "f2"), groups, kinds, ("b", "c"))
    idx = np.array([17, 2, 5, 11])
    sub = ds.subset(idx)
    assert len(sub) == 4
    for j, i in enumerate(idx):
        np.testing.assert_array_equal(sub.X[j], X[i])
        assert sub.y[j] == y[i]
        assert sub.groups[j] == f"g{y[i]}"
        assert sub.kinds[j] == f"k{i}"
    assert sub.classes == ds.classes
    assert sub.feature_names == ds.feature_names
    assert sub.positive_groups == ds.positive_groups
    mask = y == 1
    sub2 = ds.subset(mask)
    assert len(sub2) == int(mask.sum())
    assert set(sub2.groups.tolist()) == {"g1"}


def test_subset_of_real_data_keeps_alignment(kdd_binary):
    train = kdd_binary.train
    idx = np.random.default_rng(0).choice(len(train), 500, replace=False)
    sub = train.subset(idx)
    np.testing.assert_array_equal(sub.X, train.X[idx])
    np.testing.assert_array_equal(sub.y, (sub.groups != "normal").astype(np.int64))
    assert all(kdd.family_of(k) == g for k, g in zip(sub.kinds, sub.groups, strict=True))


def test_dataset_validates_shapes():
    X = np.zeros((3, 2), dtype=np.float32)
    g = np.array(["a"] * 3)
    with pytest.raises(ValueError):
        Dataset("t", X.astype(np.float64), np.zeros(3), ("a", "b"), ("x", "y"), g, g)
    with pytest.raises(ValueError):
        Dataset("t", X, np.zeros(3), ("a", "b"), ("x",), g, g)
    with pytest.raises(ValueError):
        Dataset("t", X, np.zeros(2), ("a", "b"), ("x", "y"), g, g)
