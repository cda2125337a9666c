"""Typed log entries. Only hashes, commitments, identities and decisions — never raw data.

Each entry is a registered message (deterministic CBOR, see ``guardians.codec``), so an entry has
exactly one byte encoding and its leaf hash is reproducible by anyone.
"""

from __future__ import annotations

from dataclasses import dataclass

from guardians.codec import Message, bytes_field, message

DIGEST_BYTES = 32


def _digest(name: str, value: bytes) -> None:
    if len(value) != DIGEST_BYTES:
        raise ValueError(f"{name} must be a {DIGEST_BYTES}-byte digest")


@message("log/member-admitted")
@dataclass(frozen=True, eq=False)
class MemberAdmitted(Message):
    member: str
    identity_key: bytes = bytes_field("public")


@message("log/member-removed")
@dataclass(frozen=True, eq=False)
class MemberRemoved(Message):
    member: str
    reason: str


@message("log/key-rotated")
@dataclass(frozen=True, eq=False)
class KeyRotated(Message):
    member: str
    identity_key: bytes = bytes_field("public")


@message("log/round-committed")
@dataclass(frozen=True, eq=False)
class RoundCommitted(Message):
    round: int
    participants: tuple[str, ...]
    rule: str
    privacy: str
    model_hash: bytes = bytes_field("public")
    aggregate_hash: bytes = bytes_field("public")

    def __post_init__(self) -> None:
        _digest("model_hash", self.model_hash)
        _digest("aggregate_hash", self.aggregate_hash)


@message("log/model-promoted")
@dataclass(frozen=True, eq=False)
class ModelPromoted(Message):
    version: int
    model_hash: bytes = bytes_field("public")

    def __post_init__(self) -> None:
        _digest("model_hash", self.model_hash)


@message("log/model-rolled-back")
@dataclass(frozen=True, eq=False)
class ModelRolledBack(Message):
    version: int
    reason: str
    model_hash: bytes = bytes_field("public")

    def __post_init__(self) -> None:
        _digest("model_hash", self.model_hash)


@message("log/vote")
@dataclass(frozen=True, eq=False)
class Vote(Message):
    proposal: str
    member: str
    choice: str
    signature: bytes = bytes_field("public")


@message("log/incident")
@dataclass(frozen=True, eq=False)
class Incident(Message):
    round: int
    member: str
    kind: str
    detail: str
    evidence_hash: bytes = bytes_field("public")

    def __post_init__(self) -> None:
        _digest("evidence_hash", self.evidence_hash)


@message("log/intel-digest")
@dataclass(frozen=True, eq=False)
class IntelDigest(Message):
    source: str
    count: int
    bundle_hash: bytes = bytes_field("public")

    def __post_init__(self) -> None:
        _digest("bundle_hash", self.bundle_hash)


ENTRY_TYPES: tuple[type[Message], ...] = (
    MemberAdmitted, MemberRemoved, KeyRotated, RoundCommitted, ModelPromoted, ModelRolledBack,
    Vote, Incident, IntelDigest,
)  # fmt: skip
