"""Witness cosigning between the log operator (the coordinator) and each member's own witness.

A member's witness holds its cosigning keys and what it has vouched for; the coordinator only
relays. Sans-I/O: :class:`MemberWitness` consumes :class:`WitnessKeyRequest` and
:class:`CosignRequest` and answers with :class:`WitnessKey` and :class:`Cosignature`, raising
:class:`~guardians.errors.RemoteProtocolError` when the log operator asks for something a witness
must refuse (a split view, a rollback, a second key for a log).

- **Key attestation** (:mod:`guardians.ledger.attestation`). A witness announces its public
  keys signed with the member's composite identity key, bound to the consortium and the log's
  origin, so the operator cannot list a witness key of its own in the trust file: anyone
  holding the members' identity keys (they are the log's first entries) checks it.
- **One log per witness.** The first request pins the log (origin and note key); every request
  for another origin or key is refused, so the operator cannot have the members witness a
  fork it founded under a new origin. The attestation names the log key too.
- **tlog-witness semantics** (:class:`guardians.ledger.checkpoint.Witness`): a checkpoint is
  cosigned only if it is consistent with the last one this witness cosigned for that origin.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from guardians.codec import Message, bytes_field, message
from guardians.crypto.sign import SigningKey
from guardians.errors import RemoteProtocolError
from guardians.ledger import attestation
from guardians.ledger.attestation import witness_name
from guardians.ledger.checkpoint import Checkpoint, CheckpointError, ConflictError, Witness
from guardians.ledger.note import Cosigner, CosignerKey, NoteError, NoteVerifier, SignedNote

MAX_PROOF_HASHES = 64  # a consistency proof has at most 2·log2(size) hashes
MAX_NOTE_BYTES = 64 * 1024  # a checkpoint signed by the log is a few hundred bytes
MAX_ORIGIN_BYTES = 255  # the ML-DSA cosignature encodes the origin with a one-byte length


@message("ledger/witness-key-request")
@dataclass(frozen=True, eq=False)
class WitnessKeyRequest(Message):
    """Coordinator → member: announce your witness keys for the log ``origin`` (whose notes
    the key ``log_name``/``log_key`` signs)."""

    origin: str
    log_name: str
    log_key: bytes = bytes_field("public")


@message("ledger/witness-key")
@dataclass(frozen=True, eq=False)
class WitnessKey(Message):
    """Member → coordinator: its witness's public keys, attested by its identity key."""

    origin: str
    name: str
    ed25519: bytes = bytes_field("public")
    mldsa44: bytes = bytes_field("public")
    attestation: bytes = bytes_field("public")

    @property
    def key(self) -> CosignerKey:
        return CosignerKey(self.name, self.ed25519, self.mldsa44)


@message("ledger/cosign-request")
@dataclass(frozen=True, eq=False)
class CosignRequest(Message):
    """Coordinator → member: cosign ``note`` (the log's signed checkpoint), consistent with the
    ``old_size`` this witness last cosigned through ``proof`` (tlog-witness add-checkpoint)."""

    log_name: str
    log_key: bytes = bytes_field("public")
    proof: tuple[bytes, ...] = bytes_field("public")
    old_size: int
    note: str


@message("ledger/witness-size")
@dataclass(frozen=True, eq=False)
class WitnessSize(Message):
    """Member → coordinator: the request's old size is not what this witness last cosigned
    for that log; this is (tlog-witness's 409 Conflict). Ask again from there."""

    size: int


@message("ledger/cosignature")
@dataclass(frozen=True, eq=False)
class Cosignature(Message):
    """Member → coordinator: the note with this witness's cosignatures added."""

    note: str


def trust_entry(member: str, wk: WitnessKey) -> dict[str, str]:
    """A witness as listed in a log's trust file."""
    return {
        "member": member,
        "name": wk.name,
        "ed25519": base64.b64encode(wk.ed25519).decode(),
        "mldsa44": base64.b64encode(wk.mldsa44).decode(),
        "attestation": base64.b64encode(wk.attestation).decode(),
    }


class MemberWitness:
    """A member's witness of one log: fresh cosigning keys per instance, the log it serves
    (pinned by the first request) and the latest checkpoint it cosigned (evidence of any
    conflict is kept)."""

    def __init__(self, member: str, consortium: str, identity: SigningKey) -> None:
        self.member = member
        self.consortium = consortium
        self.identity = identity
        self.cosigner = Cosigner(witness_name(member, consortium))
        self._logs: dict[str, NoteVerifier] = {}
        self.log: tuple[str, bytes] | None = None  # (origin, note key) once pinned
        self.state = Witness(self.cosigner, self._logs)

    def _refuse(self, why: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"witness {self.cosigner.name}: {why}", peer="coordinator")

    def _serve(self, origin: str, log_name: str, log_key: bytes) -> None:
        """Pin the log on first sight; refuse any other afterwards."""
        if self.log is not None:
            if self.log != (origin, log_key) or log_name != origin:
                raise self._refuse(f"this witness serves log {self.log[0]!r} only")
            return
        if log_name != origin or not 0 < len(origin.encode()) <= MAX_ORIGIN_BYTES:
            raise self._refuse("a log's note key must be named for its origin (≤ 255 bytes)")
        if len(log_key) != 32:
            raise self._refuse(f"a log key is a 32-byte Ed25519 key, got {len(log_key)} bytes")
        try:
            self._logs[origin] = NoteVerifier(log_name, log_key)
        except NoteError as exc:
            raise self._refuse(f"invalid log key: {exc}") from None
        self.log = (origin, log_key)

    def receive(self, msg: Message, now: int) -> list[Message]:
        """Answer one request; ``now`` (Unix seconds) is this witness's own clock."""
        if isinstance(msg, WitnessKeyRequest):
            self._serve(msg.origin, msg.log_name, msg.log_key)
            key = self.cosigner.key
            sig = self.identity.sign(
                attestation.payload(self.consortium, self.member, msg.origin, msg.log_key, key),
                attestation.CONTEXT,
            )
            return [WitnessKey(origin=msg.origin, name=key.name, ed25519=key.ed25519,
                               mldsa44=key.mldsa44, attestation=sig)]  # fmt: skip
        if isinstance(msg, CosignRequest):
            out = self._cosign(msg, now)
            return [out if isinstance(out, WitnessSize) else Cosignature(note=out.format())]
        raise self._refuse(f"unexpected {msg.KIND}")

    def _cosign(self, msg: CosignRequest, now: int) -> SignedNote | WitnessSize:
        if len(msg.proof) > MAX_PROOF_HASHES or msg.old_size < 0:
            raise self._refuse("malformed consistency proof or size")
        if len(msg.note.encode()) > MAX_NOTE_BYTES:
            raise self._refuse(f"a checkpoint note over {MAX_NOTE_BYTES} bytes")
        try:
            note = SignedNote.parse(msg.note)
            origin = Checkpoint.parse_text(note.text).origin
        except (NoteError, CheckpointError) as exc:
            raise self._refuse(f"malformed checkpoint: {exc}") from None
        self._serve(origin, msg.log_name, msg.log_key)
        known = self.state.latest.get(origin)
        try:
            if msg.old_size != (known.size if known else 0):
                self._logs[origin].verify(note)  # tell our size only to the log itself
                return WitnessSize(size=known.size if known else 0)
            return self.state.add_checkpoint(msg.old_size, list(msg.proof), note, now)
        except ConflictError as exc:
            raise self._refuse(f"conflicting checkpoint (split view or rollback): {exc}") from None
        except (CheckpointError, NoteError, ValueError) as exc:  # ValueError: key not a point
            raise self._refuse(f"checkpoint refused: {exc}") from None
