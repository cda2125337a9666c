"""Datasets: NSL-KDD (vendored), WDBC (scikit-learn) and user CSV files, loaded offline.

A :class:`Dataset` holds a member-side numeric encoding of records (``X``: categorical fields
one-hot over a fixed public vocabulary, heavy-tailed counts log-scaled, *not* standardized —
standardization statistics are computed from members' own data, see ``preprocess``).
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from guardians.errors import (
    ConstantLabelError,
    EmptyDatasetError,
    FeatureMismatchError,
    MissingLabelError,
    NonNumericFeatureError,
    NonNumericLabelError,
    RaggedRowError,
    UnknownDatasetError,
)
from guardians.learning import nslkdd_schema as kdd

TASKS = ("binary", "family")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Records of one dataset (or one member's share of it).

    ``groups`` names a coarse category per row (NSL-KDD attack family, or the class name), used
    for skewed partitions and per-family metrics; ``kinds`` the finest label (NSL-KDD attack
    type), used to find attack types absent from training.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    groups: np.ndarray
    kinds: np.ndarray
    positive_groups: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = self.X.shape[0]
        if self.X.ndim != 2 or self.X.dtype != np.float32:
            raise ValueError("X must be a 2-D float32 array")
        if self.X.shape[1] != len(self.feature_names):
            raise ValueError("X columns and feature names disagree")
        for name in ("y", "groups", "kinds"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have one entry per row")

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(
            name=self.name,
            X=self.X[index],
            y=self.y[index],
            classes=self.classes,
            feature_names=self.feature_names,
            groups=self.groups[index],
            kinds=self.kinds[index],
            positive_groups=self.positive_groups,
        )


@dataclass(frozen=True, eq=False)
class DataSplit:
    """A training set (to be partitioned across members) and a held-out test set."""

    train: Dataset
    test: Dataset
    source: str


# --- NSL-KDD --------------------------------------------------------------------------------
NSL_KDD_TRAIN = "KDDTrain+_20Percent.txt.gz"
NSL_KDD_TEST = "KDDTest+.txt.gz"


def _nslkdd_feature_names() -> tuple[str, ...]:
    names: list[str] = []
    for f in kdd.FEATURES:
        if f in kdd.CATEGORICAL:
            names.extend(f"{f}={v}" for v in kdd.CATEGORICAL[f])
        else:
            names.append(f"log1p({f})" if f in kdd.LOG_SCALED else f)
    return tuple(names)


def parse_nslkdd_rows(rows: Sequence[Sequence[str]], *, task: str, source: str) -> Dataset:
    """Encode raw NSL-KDD rows (41 features, label, difficulty) into a :class:`Dataset`."""
    if task not in TASKS:
        raise UnknownDatasetError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if not rows:
        raise EmptyDatasetError(f"{source}: no rows")
    width = len(kdd.FEATURES) + 2
    for i, r in enumerate(rows):
        if len(r) != width:
            raise RaggedRowError(f"{source}: line {i + 1} has {len(r)} fields, expected {width}")
    cols = list(zip(*rows, strict=True))
    blocks: list[np.ndarray] = []
    n = len(rows)
    for j, f in enumerate(kdd.FEATURES):
        col = cols[j]
        if f in kdd.CATEGORICAL:
            vocab = {v: k for k, v in enumerate(kdd.CATEGORICAL[f])}
            onehot = np.zeros((n, len(vocab)), dtype=np.float32)
            # A value outside the public vocabulary encodes as all zeros, as unseen traffic would.
            idx = np.array([vocab.get(v, -1) for v in col])
            known = idx >= 0
            onehot[np.nonzero(known)[0], idx[known]] = 1.0
            blocks.append(onehot)
        else:
            try:
                values = np.asarray(col, dtype=np.float64)
            except ValueError:
                bad = next(i for i, v in enumerate(col) if not _is_float(v))
                raise NonNumericFeatureError(
                    f"{source}: line {bad + 1}, feature {f!r}: {col[bad]!r} is not a number"
                ) from None
            if f in kdd.LOG_SCALED:
                values = np.log1p(np.maximum(values, 0.0))
            blocks.append(values.astype(np.float32)[:, None])
    X = np.ascontiguousarray(np.hstack(blocks), dtype=np.float32)
    labels = np.asarray(cols[len(kdd.FEATURES)], dtype=object)
    try:
        families = np.array([kdd.family_of(v) for v in labels], dtype=object)
    except ValueError as exc:
        raise NonNumericLabelError(f"{source}: {exc}") from None
    if task == "binary":
        y = (families != kdd.NORMAL).astype(np.int64)
        classes: tuple[str, ...] = ("normal", "attack")
    else:
        index = {f: k for k, f in enumerate(kdd.FAMILIES)}
        y = np.array([index[f] for f in families], dtype=np.int64)
        classes = kdd.FAMILIES
    return Dataset(
        name="nsl-kdd",
        X=X,
        y=y,
        classes=classes,
        feature_names=_nslkdd_feature_names(),
        groups=families.astype(str),
        kinds=labels.astype(str),
        positive_groups=kdd.ATTACK_FAMILIES,
    )


def _read_vendored(name: str) -> list[list[str]]:
    ref = resources.files("guardians.learning.datasets").joinpath("nsl_kdd", name)
    with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="ascii", newline="") as fh:
        return [r for r in csv.reader(fh) if r]


def load_nslkdd(task: str = "binary") -> DataSplit:
    """NSL-KDD: the 20% training file and KDDTest+, both vendored in the package."""
    train = parse_nslkdd_rows(_read_vendored(NSL_KDD_TRAIN), task=task, source=NSL_KDD_TRAIN)
    test = parse_nslkdd_rows(_read_vendored(NSL_KDD_TEST), task=task, source=NSL_KDD_TEST)
    return DataSplit(train=train, test=test, source="NSL-KDD (UNB CIC), KDDTrain+ 20% / KDDTest+")


# --- WDBC -------------------------------------------------------------------------------------
def load_wdbc(seed: int = 0, test_fraction: float = 0.3) -> DataSplit:
    """Wisconsin Diagnostic Breast Cancer from scikit-learn; positive class = malignant."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    X = np.asarray(bunch.data, dtype=np.float32)
    y = (np.asarray(bunch.target) == 0).astype(np.int64)  # sklearn: 0 = malignant
    classes = ("benign", "malignant")
    groups = np.array([classes[v] for v in y])
    full = Dataset(
        name="wdbc",
        X=X,
        y=y,
        classes=classes,
        feature_names=tuple(str(f) for f in bunch.feature_names),
        groups=groups,
        kinds=groups.copy(),
        positive_groups=("malignant",),
    )
    train_idx, test_idx = stratified_split(y, test_fraction, np.random.default_rng(seed))
    return DataSplit(
        train=full.subset(train_idx),
        test=full.subset(test_idx),
        source="Wisconsin Diagnostic Breast Cancer (UCI, via scikit-learn)",
    )


def stratified_split(
    y: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (train, test) holding ``test_fraction`` of each class in the test part."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = max(1, round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# --- CSV --------------------------------------------------------------------------------------
def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _CsvTable:
    header: tuple[str, ...]
    features: np.ndarray
    labels: np.ndarray  # float64 label values
    source: str


def _read_csv_table(path: Path, label: str) -> _CsvTable:
    source = str(path)
    if not path.is_file():
        raise EmptyDatasetError(f"{source}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = tuple(h.strip() for h in next(reader))
        except StopIteration:
            raise EmptyDatasetError(f"{source}: the file is empty (no header row)") from None
        if label not in header:
            raise MissingLabelError(
                f"{source}: no label column {label!r}; columns are: {', '.join(header)}"
            )
        if len(set(header)) != len(header):
            dup = sorted({h for h in header if header.count(h) > 1})
            raise FeatureMismatchError(f"{source}: duplicate column names {dup}")
        li = header.index(label)
        feats: list[list[float]] = []
        labels: list[float] = []
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise RaggedRowError(
                    f"{source}: line {line} has {len(row)} fields, the header has {len(header)}"
                )
            raw_label = row[li].strip()
            try:
                lv = float(raw_label)
            except ValueError:
                raise NonNumericLabelError(
                    f"{source}: line {line}: label {label!r} is {raw_label!r}, not a number "
                    "(encode classes as integers, e.g. 0 = benign, 1 = attack)"
                ) from None
            if not math.isfinite(lv) or lv != int(lv):
                raise NonNumericLabelError(
                    f"{source}: line {line}: label {label!r} is {raw_label!r}; "
                    "labels must be integer class numbers"
                )
            values: list[float] = []
            for j, cell in enumerate(row):
                if j == li:
                    continue
                try:
                    v = float(cell)
                except ValueError:
                    what = "empty" if not cell.strip() else f"{cell!r}, not a number"
                    raise NonNumericFeatureError(
                        f"{source}: line {line}, column {header[j]!r}: value is {what}"
                    ) from None
                if not math.isfinite(v):
                    raise NonNumericFeatureError(
                        f"{source}: line {line}, column {header[j]!r}: value {cell!r} is not finite"
                    )
                values.append(v)
            feats.append(values)
            labels.append(lv)
    if not feats:
        raise EmptyDatasetError(f"{source}: the file has a header but no data rows")
    n_feat = len(header) - 1
    return _CsvTable(
        header=header,
        features=np.asarray(feats, dtype=np.float64).reshape(len(feats), n_feat),
        labels=np.asarray(labels, dtype=np.float64),
        source=source,
    )


def load_csv(
    path: str | Path,
    label: str,
    *,
    test_path: str | Path | None = None,
    seed: int = 0,
    test_fraction: float = 0.25,
) -> DataSplit:
    """A user CSV file with a header row; ``label`` names the integer class column.

    Without ``test_path`` a stratified ``test_fraction`` of rows (by ``seed``) is held out.
    """
    train_t = _read_csv_table(Path(path), label)
    classes_v = np.unique(train_t.labels)
    if len(classes_v) < 2:
        raise ConstantLabelError(
            f"{train_t.source}: label {label!r} is {classes_v[0]:g} in every row; "
            "a detector needs at least two classes"
        )
    feature_names = tuple(h for h in train_t.header if h != label)

    def to_dataset(t: _CsvTable) -> Dataset:
        unknown = sorted(set(np.unique(t.labels)) - set(classes_v))
        if unknown:
            raise FeatureMismatchError(
                f"{t.source}: label values {[f'{u:g}' for u in unknown]} do not occur in "
                f"the training file"
            )
        y = np.searchsorted(classes_v, t.labels).astype(np.int64)
        names = tuple(f"{c:g}" for c in classes_v)
        groups = np.array([names[v] for v in y])
        return Dataset(
            name=f"csv:{Path(path).name}",
            X=t.features.astype(np.float32),
            y=y,
            classes=names,
            feature_names=feature_names,
            groups=groups,
            kinds=groups.copy(),
            positive_groups=names[1:],
        )

    full = to_dataset(train_t)
    if test_path is None:
        tr, te = stratified_split(full.y, test_fraction, np.random.default_rng(seed))
        return DataSplit(train=full.subset(tr), test=full.subset(te), source=str(path))
    test_t = _read_csv_table(Path(test_path), label)
    if test_t.header != train_t.header:
        missing = [h for h in train_t.header if h not in test_t.header]
        extra = [h for h in test_t.header if h not in train_t.header]
        detail = (
            f"missing {missing}, unexpected {extra}" if missing or extra else "columns reordered"
        )
        raise FeatureMismatchError(
            f"{test_t.source}: columns differ from {train_t.source}: {detail}"
        )
    return DataSplit(train=full, test=to_dataset(test_t), source=f"{path} / {test_path}")


# --- by name ----------------------------------------------------------------------------------
DATASETS = ("nsl-kdd", "wdbc", "csv:PATH")


def load_dataset(
    spec: str,
    *,
    task: str = "binary",
    label: str | None = None,
    test_path: str | None = None,
    seed: int = 0,
) -> DataSplit:
    """Load a dataset by name: ``nsl-kdd``, ``wdbc`` or ``csv:PATH`` (with ``label``)."""
    if spec == "nsl-kdd":
        return load_nslkdd(task)
    if spec == "wdbc":
        return load_wdbc(seed)
    if spec.startswith("csv:"):
        path = spec[4:]
        if not path:
            raise UnknownDatasetError("csv: needs a path, as in csv:data/flows.csv")
        if not label:
            raise MissingLabelError(f"{spec}: name the label column with --label COLUMN")
        return load_csv(path, label, test_path=test_path, seed=seed)
    raise UnknownDatasetError(f"unknown dataset {spec!r}; choose one of: {', '.join(DATASETS)}")
