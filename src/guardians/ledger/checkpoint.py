"""Checkpoints (c2sp.org/tlog-checkpoint), the log that signs them, witnesses that cosign them
(c2sp.org/tlog-witness semantics), and the client rule that accepts one.

A checkpoint body is three lines — origin, tree size in decimal, base64 root hash — plus
optional extension lines, signed as a note by the log's Ed25519 key and cosigned by witnesses.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from guardians.errors import GuardiansError
from guardians.ledger.merkle import EMPTY_ROOT, HASH_BYTES, ProofError, verify_consistency
from guardians.ledger.note import (
    Cosigner,
    CosignerKey,
    NoteError,
    NoteSigner,
    NoteVerifier,
    SignedNote,
    verify_cosignature,
)
from guardians.ledger.store import LogStore

_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)


class CheckpointError(GuardiansError):
    """A checkpoint is malformed, badly signed, or not accepted by policy."""


class ConflictError(CheckpointError):
    """A checkpoint contradicts one already seen (split view or rewritten history). Carries the
    evidence: both checkpoints and the proof that failed."""

    def __init__(self, message: str, evidence: dict[str, object]) -> None:
        super().__init__(message)
        self.evidence = evidence


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(),
                 *self.extensions]  # fmt: skip
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse_text(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointError("a checkpoint has at least three newline-terminated lines")
        origin, size_s, root_s, *ext = lines[:-1]
        if not origin:
            raise CheckpointError("checkpoint origin is empty")
        if not _DECIMAL.fullmatch(size_s) or len(size_s) > 20 or int(size_s) >= 1 << 64:
            raise CheckpointError(f"checkpoint size {size_s!r} is not a decimal uint64")
        try:
            root = base64.b64decode(root_s, validate=True)
        except binascii.Error:
            raise CheckpointError("checkpoint root is not base64") from None
        if len(root) != HASH_BYTES:
            raise CheckpointError(f"checkpoint root is {len(root)} bytes, not {HASH_BYTES}")
        if any(not e for e in ext):
            raise CheckpointError("checkpoint extension lines must not be empty")
        return cls(origin, int(size_s), root, tuple(ext))


class TransparencyLog:
    """A log: the store plus the origin and signing key. It signs only checkpoints consistent
    with every checkpoint it signed before."""

    def __init__(self, store: LogStore, origin: str, signer: NoteSigner) -> None:
        self.store = store
        self.origin = origin
        self.signer = signer
        # Survives restarts: the log never signs anything inconsistent with what it signed.
        saved = store.get_meta("last_signed")
        self.last_signed: Checkpoint | None = (
            Checkpoint.parse_text(saved.decode()) if saved else None
        )

    def checkpoint(self) -> SignedNote:
        cp = Checkpoint(self.origin, self.store.size, self.store.root())
        prev = self.last_signed
        if prev is not None:
            try:
                if cp.size < prev.size:
                    raise ProofError(f"size went back from {prev.size} to {cp.size}")
                if prev.size:
                    proof = self.store.consistency_proof(prev.size, cp.size)
                    verify_consistency(prev.size, cp.size, prev.root, cp.root, proof)
            except ProofError as exc:
                raise ConflictError(
                    f"{self.origin}: refusing to sign a checkpoint inconsistent with the last "
                    f"one ({exc})",
                    {"previous": prev.text(), "new": cp.text()},
                ) from None
        self.store.set_meta("last_signed", cp.text().encode())
        self.last_signed = cp
        return SignedNote(cp.text(), (self.signer.sign(cp.text()),))


@dataclass
class Witness:
    """A member's witness (tlog-witness semantics): it cosigns a log's checkpoint only if it is
    consistent with the latest checkpoint it has cosigned for that origin, and keeps that
    latest checkpoint. An inconsistent checkpoint raises ConflictError and is kept as
    evidence. Sans-I/O: the caller persists ``latest`` and ``evidence``."""

    cosigner: Cosigner
    logs: Mapping[str, NoteVerifier]
    latest: dict[str, Checkpoint] = field(default_factory=dict)
    evidence: list[dict[str, object]] = field(default_factory=list)
    # The log-signed note of each latest checkpoint: with the conflicting one, evidence that
    # a third party can check against the log's key.
    latest_notes: dict[str, str] = field(default_factory=dict)

    def add_checkpoint(
        self, old_size: int, proof: Sequence[bytes], note: SignedNote, timestamp: int
    ) -> SignedNote:
        cp = Checkpoint.parse_text(note.text)
        verifier = self.logs.get(cp.origin)
        if verifier is None:
            raise CheckpointError(f"unknown log origin {cp.origin!r}")
        try:
            verifier.verify(note)
        except NoteError as exc:
            raise CheckpointError(f"{cp.origin}: {exc}") from None
        known = self.latest.get(cp.origin)
        known_size = known.size if known else 0
        if old_size != known_size:
            # The caller's view of this witness is stale: tell it the size we hold (HTTP 409).
            raise CheckpointError(
                f"{cp.origin}: old size {old_size} does not match the witnessed size {known_size}"
            )
        if cp.size < known_size:
            self._conflict(cp, known, proof, "the tree shrank (rollback)", note)
        if known is not None and known.size:
            try:
                verify_consistency(known.size, cp.size, known.root, cp.root, proof)
            except ProofError as exc:
                self._conflict(cp, known, proof, f"no consistency with the witnessed tree: {exc}",
                               note)  # fmt: skip
        elif proof:
            raise CheckpointError("a first checkpoint needs no consistency proof")
        if cp.size == 0 and cp.root != EMPTY_ROOT:
            raise CheckpointError(f"{cp.origin}: an empty tree has the empty root")
        # Cosign first: if signing fails, the witnessed state must not move.
        sigs = self.cosigner.cosign(note.text, cp.origin, cp.size, cp.root, timestamp)
        self.latest[cp.origin] = cp
        self.latest_notes[cp.origin] = SignedNote(note.text, tuple(
            s for s in note.signatures if s.name == verifier.name)).format()  # fmt: skip
        return note.with_signatures(*sigs)

    def save(self, path: str | Path) -> None:
        """Persist what this witness has seen (its latest checkpoint per origin, and evidence)
        atomically, so a restart never forgets the tree it vouched for."""
        p = Path(path)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps({
            "latest": {o: cp.text() for o, cp in self.latest.items()},
            "evidence": self.evidence,
        }, indent=2))  # fmt: skip
        os.replace(tmp, p)

    def load(self, path: str | Path) -> None:
        try:
            state = json.loads(Path(path).read_text())
            self.latest = {o: Checkpoint.parse_text(t) for o, t in state["latest"].items()}
            self.evidence = list(state["evidence"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: unreadable witness state: {exc}") from None

    def _conflict(
        self, cp: Checkpoint, known: Checkpoint | None, proof: Sequence[bytes], why: str,
        note: SignedNote | None = None,
    ) -> None:  # fmt: skip
        ev = {
            "origin": cp.origin,
            "witnessed": known.text() if known else "",
            "presented": cp.text(),
            "proof": [p.hex() for p in proof],
            "reason": why,
            # Both notes as the log signed them (when known): the log's own signature on two
            # checkpoints that do not extend one another.
            "witnessed_note": self.latest_notes.get(cp.origin, ""),
            "presented_note": note.format() if note is not None else "",
        }
        self.evidence.append(ev)
        raise ConflictError(f"{cp.origin}: split view or rewritten history: {why}", ev)


def default_quorum(n: int) -> int:
    """Cosignatures a checkpoint needs from n member witnesses: ⌊(n + f)/2⌋ + 1 with
    f = ⌊(n − 1)/3⌋, the most faulty members n > 3f tolerates. Two conflicting checkpoints
    then need 2q − n > f witnesses to sign both (a split view needs more colluders than the
    threat model allows), and the n − f honest ones still reach q."""
    if n < 1:
        raise CheckpointError("a log needs at least one witness")
    f = (n - 1) // 3
    return (n + f) // 2 + 1


def accept_checkpoint(
    note: SignedNote,
    log: NoteVerifier,
    witnesses: Sequence[CosignerKey],
    quorum: int,
    *,
    origin: str | None = None,
    require_pq: bool = True,
) -> Checkpoint:
    """The client rule: the log's signature, then at least ``quorum`` valid witness
    cosignatures (ML-DSA-44 required by default). Raises CheckpointError otherwise."""
    cp = Checkpoint.parse_text(note.text)
    if origin is not None and cp.origin != origin:
        raise CheckpointError(f"checkpoint of {cp.origin!r}, expected {origin!r}")
    unique = {w.name: w for w in witnesses}  # a witness listed twice still counts once
    if not 1 <= quorum <= len(unique):
        raise CheckpointError(f"quorum {quorum} impossible with {len(unique)} witnesses")
    try:
        log.verify(note)
        good = sum(
            verify_cosignature(note, w, cp.origin, cp.size, cp.root, require_pq=require_pq)
            for w in unique.values()
        )
    except NoteError as exc:
        raise CheckpointError(str(exc)) from None
    if good < quorum:
        raise CheckpointError(f"{good} valid witness cosignatures, policy requires {quorum}")
    return cp
