"""Guardians messages inside Flower messages.

A Guardians request travels as one Flower message whose content holds a single config record,
``"guardians"``, carrying the member-service frame (deterministic CBOR, see
:mod:`guardians.engine.member_service`) as bytes. Flower sees opaque bytes: our messages keep
their own signatures and end-to-end encryption, so the relay learns nothing it could not see
anyway and can change nothing undetected. Messages are of Flower's ``train`` type, so they pass
through a ClientApp's mods on their way to its train function, like Flower's own SecAgg+.
"""

from __future__ import annotations

from typing import Any

import cbor2
from flwr.app import ConfigRecord, Message, RecordDict

from guardians.errors import GuardiansError

RECORD = "guardians"
VERSION = 1
MESSAGE_TYPE = "train"


class EnvelopeError(GuardiansError):
    """A Flower message that should carry a Guardians frame does not."""


def is_guardians(msg: Message) -> bool:
    return msg.has_content() and RECORD in msg.content


def content_of(msg: Message) -> RecordDict:
    if not msg.has_content():
        raise EnvelopeError("Flower message without content")
    return msg.content


def pack(frame: dict[str, Any]) -> RecordDict:
    data = cbor2.dumps(frame, canonical=True)
    return RecordDict({RECORD: ConfigRecord({"v": VERSION, "frame": data})})


def frame_bytes(content: RecordDict) -> bytes:
    """The raw frame a Flower message's content carries."""
    if RECORD not in content:
        raise EnvelopeError("not a Guardians message (no 'guardians' record)")
    rec = content[RECORD]
    if not isinstance(rec, ConfigRecord):
        raise EnvelopeError("the 'guardians' record is not a config record")
    if rec.get("v") != VERSION:
        raise EnvelopeError(f"Guardians envelope version {rec.get('v')!r}, expected {VERSION}")
    data = rec.get("frame")
    if not isinstance(data, bytes):
        raise EnvelopeError("Guardians envelope without a bytes frame")
    return data


def unpack(content: RecordDict) -> dict[str, Any]:
    try:
        obj = cbor2.loads(frame_bytes(content))
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise EnvelopeError(f"malformed Guardians frame: {exc}") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("malformed Guardians frame: expected a map")
    return obj


def pack_raw(data: bytes) -> RecordDict:
    return RecordDict({RECORD: ConfigRecord({"v": VERSION, "frame": data})})
