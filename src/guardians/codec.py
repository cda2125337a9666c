"""Canonical wire encoding of protocol messages.

A message is a frozen dataclass registered with :func:`message`. On the wire it is one CBOR map
(RFC 8949, deterministic encoding) ``{"type": KIND, "v": VERSION, <field>: <value>, ...}``.
numpy arrays travel as RFC 8746 typed arrays (little-endian; multi-dimensional ones wrapped in
tag 40 with their shape), so a 10^6-parameter update is one byte string, not 10^6 floats.

Decoding is strict: the bytes must be exactly the deterministic encoding of a registered message
with every field present and of the declared type — anything else raises :class:`DecodeError`
naming what was wrong. Rejecting non-canonical encodings means one message has one byte string,
which signatures over messages (later layers) rely on.
"""

from __future__ import annotations

import dataclasses
import io
import math
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import cbor2
import numpy as np

from guardians.errors import DecodeError, LocalProtocolError

WIRE_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 30

# RFC 8746 typed-array tags (little-endian variants) and the multi-dimensional array tag.
_DTYPE_TAG: dict[str, int] = {
    "uint8": 64,
    "uint32": 70,
    "uint64": 71,
    "int32": 78,
    "int64": 79,
    "float32": 85,
    "float64": 86,
}
_TAG_DTYPE = {t: np.dtype(d).newbyteorder("<") for d, t in _DTYPE_TAG.items()}
_TAG_NDARRAY = 40


class Message:
    """Base of every protocol message (a frozen dataclass registered with :func:`message`)."""

    KIND: ClassVar[str]


M = TypeVar("M", bound=type)
_REGISTRY: dict[str, type[Message]] = {}


def message(kind: str) -> Callable[[M], M]:
    """Class decorator: register a frozen message dataclass under its wire ``kind``."""

    def register(cls: M) -> M:
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"{cls.__name__} must be a frozen dataclass")
        if kind in _REGISTRY:
            raise TypeError(f"message kind {kind!r} registered twice")
        cls.KIND = kind  # type: ignore[attr-defined]
        _REGISTRY[kind] = cls  # type: ignore[assignment]
        return cls

    return register


# What a field's bytes are, for the egress audit: member data in the clear ("plain"), masked
# words, AEAD/KEM ciphertext, or public material that carries no member data (keys, signatures).
PROTECTIONS = ("plain", "masked", "ciphertext", "public")


def array_field(
    dtype: str | tuple[str, ...],
    ndim: int = 1,
    *,
    protection: str = "plain",
    empty_default: bool = False,
) -> Any:
    """Declare a dataclass field holding a numpy array of ``dtype`` (or one of several) and
    ``ndim`` dimensions (``empty_default``: an empty array of the first dtype unless given; it
    is still encoded, and required on decoding)."""
    dtypes = (dtype,) if isinstance(dtype, str) else tuple(dtype)
    for d in dtypes:
        if d not in _DTYPE_TAG:
            raise TypeError(f"unsupported array dtype {d}")
    if protection not in PROTECTIONS:
        raise TypeError(f"unknown protection {protection!r}")
    meta = {"dtype": dtypes, "ndim": ndim, "protection": protection}
    if empty_default:
        return dataclasses.field(
            default_factory=lambda: np.zeros((0,) * ndim, dtype=dtypes[0]), metadata=meta
        )
    return dataclasses.field(metadata=meta)


def bytes_field(protection: str, *, default: Any = dataclasses.MISSING) -> Any:
    """Declare a bytes (or tuple of bytes) field and what its content is."""
    if protection not in PROTECTIONS:
        raise TypeError(f"unknown protection {protection!r}")
    return dataclasses.field(default=default, metadata={"protection": protection})


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 0


def classify(msg: Message, wire_bytes: int) -> dict[str, int]:
    """Bytes of ``msg`` by protection class; the rest of the encoding counts as "header"."""
    out = dict.fromkeys(PROTECTIONS, 0)
    for f in dataclasses.fields(msg):  # type: ignore[arg-type]
        prot = f.metadata.get("protection")
        if prot:
            out[prot] += _nbytes(getattr(msg, f.name))
    out["header"] = max(0, wire_bytes - sum(out.values()))
    return out


def registered_kinds() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


# --- encoding ---------------------------------------------------------------------------------
def _encode_array(arr: np.ndarray, dtypes: tuple[str, ...], ndim: int, where: str) -> cbor2.CBORTag:
    a = np.asarray(arr)
    if a.ndim != ndim:
        raise LocalProtocolError(f"{where}: array has {a.ndim} dimensions, expected {ndim}")
    # With several allowed dtypes the array's own decides; otherwise it is converted.
    dtype = a.dtype.name if a.dtype.name in dtypes else dtypes[0]
    data = np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    typed = cbor2.CBORTag(_DTYPE_TAG[dtype], data)
    if ndim == 1:
        return typed
    return cbor2.CBORTag(_TAG_NDARRAY, [list(a.shape), typed])


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def to_wire(msg: Message) -> dict[str, Any]:
    cls = type(msg)
    if getattr(cls, "KIND", None) not in _REGISTRY:
        raise LocalProtocolError(f"{cls.__name__} is not a registered message")
    out: dict[str, Any] = {"type": cls.KIND, "v": WIRE_VERSION}
    for f in dataclasses.fields(msg):  # type: ignore[arg-type]
        value = getattr(msg, f.name)
        if "dtype" in f.metadata:
            out[f.name] = _encode_array(
                value, f.metadata["dtype"], f.metadata["ndim"], f"{cls.KIND}.{f.name}"
            )
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def encode(msg: Message) -> bytes:
    """The deterministic CBOR encoding of ``msg``."""
    return cbor2.dumps(to_wire(msg), canonical=True)


# --- decoding ---------------------------------------------------------------------------------
def _decode_array(value: Any, dtypes: tuple[str, ...], ndim: int, where: str) -> np.ndarray:
    shape: list[int] | None = None
    if ndim > 1:
        if not (
            isinstance(value, cbor2.CBORTag)
            and value.tag == _TAG_NDARRAY
            and isinstance(value.value, list | tuple)
            and len(value.value) == 2
        ):
            raise DecodeError(f"{where}: expected a {ndim}-D typed array (RFC 8746 tag 40)")
        shape, value = value.value
        if (
            not isinstance(shape, list | tuple)
            or len(shape) != ndim
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
        ):
            raise DecodeError(f"{where}: bad array shape {shape!r}")
    wanted = {_DTYPE_TAG[d]: d for d in dtypes}
    if not isinstance(value, cbor2.CBORTag) or value.tag not in wanted:
        got = value.tag if isinstance(value, cbor2.CBORTag) else type(value).__name__
        names = " or ".join(f"{d} (tag {_DTYPE_TAG[d]})" for d in dtypes)
        raise DecodeError(f"{where}: expected a {names} typed array, got {got}")
    want = value.tag
    dtype = wanted[want]
    if not isinstance(value.value, bytes):
        raise DecodeError(f"{where}: typed array content must be a byte string")
    raw = value.value
    dt = _TAG_DTYPE[want]
    if len(raw) % dt.itemsize:
        raise DecodeError(f"{where}: {len(raw)} bytes is not a whole number of {dtype} values")
    arr = np.frombuffer(raw, dtype=dt).astype(np.dtype(dtype), copy=False)
    if shape is not None:
        if math.prod(shape) != arr.size or any(s > arr.size and arr.size for s in shape):
            raise DecodeError(f"{where}: shape {shape} does not match {arr.size} values")
        try:
            arr = arr.reshape(shape)
        except (ValueError, OverflowError):
            raise DecodeError(f"{where}: shape {shape} is not a valid array shape") from None
    return arr


def _check_scalar(value: Any, hint: Any, where: str) -> Any:
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecodeError(f"{where}: expected an integer, got {type(value).__name__}")
        if not -(1 << 63) <= value < (1 << 64):
            raise DecodeError(f"{where}: integer outside the 64-bit range")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DecodeError(f"{where}: expected a number, got {type(value).__name__}")
        try:
            return float(value)
        except OverflowError:
            raise DecodeError(f"{where}: number out of range") from None
    if hint is str:
        if not isinstance(value, str):
            raise DecodeError(f"{where}: expected text, got {type(value).__name__}")
        return value
    if hint is bytes:
        if not isinstance(value, bytes):
            raise DecodeError(f"{where}: expected bytes, got {type(value).__name__}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise DecodeError(f"{where}: expected a boolean, got {type(value).__name__}")
        return value
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise DecodeError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_check_scalar(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_scalar(value, inner[0], where)
    raise LocalProtocolError(f"{where}: unsupported field type {hint!r}")


def decode(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse bytes into a registered message, strictly (see the module docstring)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise DecodeError(f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    stream = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(stream).decode()
    # Semantic tags (dates, decimals, sets, ...) are decoded by cbor2 before any of our checks
    # (none of our messages uses them): whatever they raise is a malformed message.
    except (cbor2.CBORDecodeError, ValueError, ArithmeticError, TypeError, LookupError,
            RecursionError) as exc:  # fmt: skip
        raise DecodeError(f"malformed CBOR: {type(exc).__name__}: {exc}") from None
    if stream.tell() != len(data):
        raise DecodeError(f"{len(data) - stream.tell()} trailing bytes after the message")
    if not isinstance(obj, dict):
        raise DecodeError(f"a message is a CBOR map, got {type(obj).__name__}")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise DecodeError(f"unknown message type {kind!r}")
    if obj.get("v") != WIRE_VERSION:
        raise DecodeError(f"{kind}: unsupported wire version {obj.get('v')!r}")
    cls = _REGISTRY[kind]
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = _field_types(cls)
    extra = set(obj) - set(fields) - {"type", "v"}
    if extra:
        raise DecodeError(f"{kind}: unexpected fields {sorted(map(str, extra))}")
    missing = set(fields) - set(obj)
    if missing:
        raise DecodeError(f"{kind}: missing fields {sorted(missing)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        where = f"{kind}.{name}"
        if "dtype" in f.metadata:
            kwargs[name] = _decode_array(obj[name], f.metadata["dtype"], f.metadata["ndim"], where)
        else:
            kwargs[name] = _check_scalar(obj[name], hints[name], where)
    try:
        msg = cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"{kind}: {exc}") from None
    if encode(msg) != data:
        raise DecodeError(f"{kind}: not the deterministic (canonical) encoding")
    return msg
