"""What a deployed consortium is made of, on disk.

``consortium.json`` is the genesis every party reads: members, their public identity keys, the
model, how members train, the privacy method and the aggregation rule. Each member keeps its own
secret identity key and its records next to its node and nothing else of anyone's; the
coordinator needs only the genesis. Every loader refuses a malformed file with a
:class:`~guardians.errors.ConfigError` that names the file and the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from guardians.crypto.errors import CryptoError
from guardians.crypto.sign import SigningKey, VerifyKey
from guardians.errors import ConfigError
from guardians.learning.data import Dataset
from guardians.learning.models import MLP, build_model
from guardians.learning.train import TrainConfig
from guardians.node.coordinator import PRIVACY_METHODS

IDENTITY_SEED_BYTES = 64


@dataclass(frozen=True)
class ConsortiumConfig:
    name: str
    members: tuple[str, ...]
    directory: dict[str, str]  # member → composite public identity key, hex
    n_features: int
    n_classes: int
    model: str = "mlp"
    hidden: tuple[int, ...] = (64, 32)
    l2: float = 1e-4
    seed: int = 0
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    privacy: str = "secagg"
    norm_bound: float | None = 2.0
    rule: str = "fedavg"
    assumed_malicious: int = 0
    server_momentum: float = 0.9
    min_fraction: float = 0.5
    # model "external": a Flower app's own model, trained by its own train function. Its
    # parameters are the named arrays of `layout` ([name, shape] pairs, in order), flattened;
    # the initial values sit in `initial.npz` beside this file, pinned by `initial_sha256`.
    layout: tuple[tuple[str, tuple[int, ...]], ...] = ()
    initial_sha256: str = ""

    def __post_init__(self) -> None:
        # Every party reads this file to decide what it will accept: check it whole, and fail
        # closed (a typo in `privacy` must not turn a member's secure-only policy off).
        def need(ok: bool, why: str) -> None:
            if not ok:
                raise ConfigError(f"consortium: {why}")

        need(isinstance(self.name, str) and bool(self.name), "name must be a non-empty string")
        need(isinstance(self.members, tuple) and all(isinstance(m, str) and m
                                                     for m in self.members),
             "members must be a list of member ids")  # fmt: skip
        need(len(set(self.members)) == len(self.members) and bool(self.members),
             "members must be distinct and at least one")  # fmt: skip
        need(isinstance(self.directory, dict), "directory must map members to keys")
        need(set(self.directory) == set(self.members),
             f"directory must name exactly the members (extra: "
             f"{sorted(set(self.directory) - set(self.members))}, missing: "
             f"{sorted(set(self.members) - set(self.directory))})")  # fmt: skip
        for m, key in self.directory.items():
            try:
                VerifyKey(bytes.fromhex(key))
            except (ValueError, TypeError, CryptoError) as exc:
                raise ConfigError(f"consortium: identity key of {m!r} is unusable: {exc}") from None
        for name in ("n_features", "n_classes", "seed", "assumed_malicious"):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                 f"{name} must be a non-negative integer, got {v!r}")  # fmt: skip
        if self.model == "external":
            names = [n for n, _ in self.layout]
            need(bool(self.layout) and len(set(names)) == len(names)
                 and all(isinstance(n, str) and n and all(isinstance(d, int) and d > 0
                                                          for d in shape)
                         for n, shape in self.layout),
                 "an external model needs a layout of distinct [name, shape] pairs")  # fmt: skip
            need(len(self.initial_sha256) == 64, "an external model needs initial_sha256")
        else:
            need(self.n_features >= 1 and self.n_classes >= 2,
                 "need n_features ≥ 1 and n_classes ≥ 2")  # fmt: skip
        need(isinstance(self.hidden, tuple) and all(isinstance(h, int) and h > 0
                                                    for h in self.hidden),
             f"hidden must be a list of positive layer widths, got {self.hidden!r}")  # fmt: skip
        need(self.privacy in PRIVACY_METHODS,
             f"privacy must be one of {PRIVACY_METHODS}, got {self.privacy!r}")  # fmt: skip
        need(self.norm_bound is None or (isinstance(self.norm_bound, int | float)
                                         and self.norm_bound > 0),
             f"norm_bound must be positive or null, got {self.norm_bound!r}")  # fmt: skip
        need(isinstance(self.rule, str), "rule must be a string")
        need(self.norm_bound is None or self.privacy == "secagg" or "norm-bound" in self.rule,
             "norm_bound is enforced by contribution proofs (privacy secagg) or by a "
             "norm-bound rule")  # fmt: skip
        for name in ("l2", "server_momentum", "min_fraction"):
            need(isinstance(getattr(self, name), int | float), f"{name} must be a number")
        need(0 < self.min_fraction <= 1, f"min_fraction must be in (0, 1], got {self.min_fraction}")
        need(isinstance(self.train, dict), "train must be a map of training settings")
        self.train_config()  # refuse bad training settings now, not at round 1

    def digest(self) -> str:
        """SHA-256 of the genesis as every party reads it (sorted-key JSON): bound into every
        run's transcripts, so parties holding different genesis files cannot take part
        together."""
        canon = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(b"guardians/v1/genesis\n" + canon.encode()).hexdigest()

    def verify_keys(self) -> dict[str, VerifyKey]:
        return {m: VerifyKey(bytes.fromhex(k)) for m, k in self.directory.items()}

    def train_config(self) -> TrainConfig:
        try:
            return TrainConfig(**self.train)
        except TypeError as exc:
            raise ConfigError(f"consortium: bad train settings: {exc}") from None

    @property
    def external(self) -> bool:
        return self.model == "external"

    def new_model(self, initial: np.ndarray | None = None) -> MLP | ExternalModel:
        """The consortium's model: a fresh MLP/logistic regression, or for an external model
        its parameter vector (``initial``, else zeros: members only need its size)."""
        if self.external:
            return ExternalModel(self.layout, initial)
        return build_model(self.model, self.n_features, self.n_classes, hidden=self.hidden,
                           l2=self.l2, seed=self.seed)  # fmt: skip

    def initial_params(self, genesis: str | Path) -> np.ndarray:
        """An external model's initial parameters from ``initial.npz`` beside the genesis file,
        checked against the digest the genesis pins."""
        path = Path(genesis).with_name("initial.npz")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the initial model: {exc.strerror}") from None
        if hashlib.sha256(data).hexdigest() != self.initial_sha256:
            raise ConfigError(f"{path} does not match the genesis' initial_sha256")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            try:
                arrays = {n: z[n] for n, _ in self.layout}
            except KeyError as exc:
                raise ConfigError(f"{path}: no array {exc} of the layout") from None
        return flatten(self.layout, arrays)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ConsortiumConfig:
        p = Path(path)
        try:
            raw = json.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such consortium file") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{p}: not a consortium file: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: not a consortium file (expected a JSON object)")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(f"{p}: unknown fields {sorted(unknown)}")
        try:
            if isinstance(raw.get("members"), list):
                raw["members"] = tuple(raw["members"])
            if isinstance(raw.get("hidden", ()), list):
                raw["hidden"] = tuple(raw["hidden"])
            if isinstance(raw.get("layout", ()), list):
                raw["layout"] = tuple(
                    (n, tuple(shape)) if isinstance(shape, list) else (n, shape)
                    for n, shape in raw["layout"]
                )
            return cls(**raw)
        except TypeError as exc:
            raise ConfigError(f"{p}: missing or mistyped field: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None


Layout = tuple[tuple[str, tuple[int, ...]], ...]


def flatten(layout: Layout, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Named arrays → one float32 vector, in layout order; shapes must match exactly."""
    parts = []
    for name, shape in layout:
        if name not in arrays:
            raise ConfigError(f"no array {name!r} (the layout names {[n for n, _ in layout]})")
        a = np.asarray(arrays[name])
        if a.shape != tuple(shape):
            raise ConfigError(f"array {name!r} has shape {a.shape}, the layout says {shape}")
        parts.append(a.astype(np.float32, copy=False).ravel())
    extra = set(arrays) - {n for n, _ in layout}
    if extra:
        raise ConfigError(f"arrays not in the layout: {sorted(extra)}")
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def unflatten(layout: Layout, flat: np.ndarray) -> dict[str, np.ndarray]:
    out, at = {}, 0
    for name, shape in layout:
        n = int(np.prod(shape))
        out[name] = flat[at : at + n].reshape(shape)
        at += n
    if at != flat.size:
        raise ConfigError(f"{flat.size} parameters, the layout holds {at}")
    return out


class ExternalModel:
    """A Flower app's model as Guardians sees it: a flat parameter vector with a layout. It
    is never trained here (the app's own train function does that)."""

    def __init__(self, layout: Layout, initial: np.ndarray | None = None) -> None:
        self.layout = layout
        self.n_params = sum(int(np.prod(s)) for _, s in layout)
        self._params = (np.zeros(self.n_params, np.float32) if initial is None
                        else np.asarray(initial, np.float32).copy())  # fmt: skip
        if self._params.shape != (self.n_params,):
            raise ConfigError(f"initial parameters: {self._params.size}, layout: {self.n_params}")

    def get_params(self) -> np.ndarray:
        return self._params.copy()

    def set_params(self, flat: np.ndarray) -> None:
        flat = np.asarray(flat, np.float32)
        if flat.shape != (self.n_params,):
            raise ConfigError(f"{flat.size} parameters, the layout holds {self.n_params}")
        self._params = flat.copy()


def new_identity_seed() -> bytes:
    return secrets.token_bytes(IDENTITY_SEED_BYTES)


def write_secret(path: str | Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (created 0600, never world-readable)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # A new file only, never through a symlink: an existing file may have other owners.
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise ConfigError(f"{p} already exists; refusing to overwrite a secret") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_identity(path: str | Path) -> SigningKey:
    p = Path(path)
    try:
        seed = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read identity key: {exc.strerror}") from None
    if len(seed) != IDENTITY_SEED_BYTES:
        raise ConfigError(f"{p}: an identity key file holds {IDENTITY_SEED_BYTES} bytes, "
                          f"this one {len(seed)}")  # fmt: skip
    return SigningKey.from_seed(seed)


def save_records(path: str | Path, data: Dataset) -> None:
    """A member's records as a numpy archive (no pickled objects), readable by its owner only."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        _savez(f, data)


def _savez(f: Any, data: Dataset) -> None:
    np.savez(
        f, name=np.array(data.name), X=data.X, y=data.y, classes=np.array(data.classes),
        feature_names=np.array(data.feature_names), groups=data.groups.astype(str),
        kinds=data.kinds.astype(str), positive_groups=np.array(data.positive_groups, dtype=str),
    )  # fmt: skip


def load_records(path: str | Path, n_features: int | None = None) -> Dataset:
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            data = Dataset(
                name=str(z["name"]), X=z["X"], y=z["y"], classes=tuple(z["classes"].tolist()),
                feature_names=tuple(z["feature_names"].tolist()), groups=z["groups"],
                kinds=z["kinds"], positive_groups=tuple(z["positive_groups"].tolist()),
            )  # fmt: skip
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such records file") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{p}: not a records archive: {exc}") from None
    if n_features is not None and data.n_features != n_features:
        raise ConfigError(f"{p}: {data.n_features} features, the consortium's model takes "
                          f"{n_features}")  # fmt: skip
    return data


def member_dir(root: str | Path, member: str) -> Path:
    return Path(root) / "members" / member


def found_consortium(
    root: str | Path,
    name: str,
    shares: dict[str, Dataset],
    initial: Mapping[str, np.ndarray] | None = None,
    **settings: Any,
) -> ConsortiumConfig:
    """Lay out a new consortium under ``root``: each member's directory with a fresh secret
    identity key and its records, and the genesis naming every member's public key. (In a real
    deployment each member generates its key on its own machine and sends only the public
    half to the founder; this lays out all of them on one machine, for a local deployment.)"""
    root = Path(root)
    if (root / "consortium.json").exists():
        raise ConfigError(f"{root} already holds a consortium; use a new directory")
    any_share = next(iter(shares.values()))
    directory = {}
    for m, data in shares.items():
        seed = new_identity_seed()
        write_secret(member_dir(root, m) / "identity.key", seed)
        save_records(member_dir(root, m) / "records.npz", data)
        directory[m] = SigningKey.from_seed(seed).verify_key.raw.hex()
    if initial is not None:  # a Flower app's own model: its arrays, in the app's order
        buf = io.BytesIO()
        np.savez(buf, **{n: np.asarray(a, np.float32) for n, a in initial.items()})
        (root / "initial.npz").write_bytes(buf.getvalue())
        settings = {**settings, "model": "external",
                    "layout": tuple((n, tuple(np.shape(a))) for n, a in initial.items()),
                    "initial_sha256": hashlib.sha256(buf.getvalue()).hexdigest()}  # fmt: skip
    cfg = ConsortiumConfig(
        name=name, members=tuple(shares), directory=directory,
        n_features=any_share.n_features, n_classes=len(any_share.classes), **settings,
    )  # fmt: skip
    cfg.save(root / "consortium.json")
    return cfg
