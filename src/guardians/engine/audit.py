"""The consortium's audit trail: every round and model version goes on the transparency log,
each checkpoint is cosigned by every member's witness, and the result is written as a log
directory that ``guardians audit verify`` (or anyone holding the consortium's trust file) can
check without trusting the log operator.

The log operator (the coordinator) holds no witness key. Each member's witness
(:class:`guardians.protocol.witness.MemberWitness`, inside its node) announces its keys attested
by the member's identity key, and cosigns through the transport like any other protocol
message: :meth:`AuditTrail.cosign_requests` builds each witness's request,
:meth:`AuditTrail.publish` checks the cosignatures that came back and publishes the checkpoint
once a quorum holds. :class:`LocalWitnesses` runs every member's witness in one process, for
tools and tests that hold a whole consortium.

Directory layout::

    log.db        the SQLite log (entries and Merkle node hashes)
    checkpoint    the latest cosigned checkpoint (C2SP signed note)
    trust.json    origin, log key, witness keys, quorum: what a verifier is configured with
    anchor.json   where checkpoints were anchored on Ethereum, and each anchored (size, root)
    evidence/     signed evidence of rejected contributions, named by the digest on the log
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from guardians import codec, files
from guardians.crypto.errors import CryptoError
from guardians.crypto.sign import SigningKey, VerifyKey
from guardians.errors import GuardiansError
from guardians.ledger.anchor import Anchor
from guardians.ledger.attestation import witness_name
from guardians.ledger.audit import AuditReport, verify_log_dir
from guardians.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    TransparencyLog,
    accept_checkpoint,
    default_quorum,
)
from guardians.ledger.entries import Incident, MemberAdmitted, ModelPromoted, RoundCommitted
from guardians.ledger.note import (
    MAX_SIGNATURES,
    NoteError,
    NoteSignature,
    NoteSigner,
    SignedNote,
    verify_cosignature,
)
from guardians.ledger.store import LogStore, StoreError
from guardians.protocol.round import RoundResult
from guardians.protocol.secagg import contrib
from guardians.protocol.secagg.contrib import EvidenceError
from guardians.protocol.secagg.messages import ContributionEvidence
from guardians.protocol.witness import (
    MAX_NOTE_BYTES,
    MAX_ORIGIN_BYTES,
    Cosignature,
    CosignRequest,
    MemberWitness,
    WitnessKey,
    WitnessKeyRequest,
    WitnessSize,
    trust_entry,
)


def model_hash(params: np.ndarray) -> bytes:
    """Digest of a model's parameters (float32, little-endian), domain-separated."""
    return hashlib.sha256(b"guardians/v1/model\n" + np.asarray(params, "<f4").tobytes()).digest()


# The incident kind of a contribution excluded for its proof (its evidence goes beside the log).
REJECTED_CONTRIBUTION = "invalid-contribution-proof"


class AuditTrail:
    def __init__(
        self,
        directory: str | Path,
        origin: str,
        members: Iterable[str],
        *,
        quorum: int | None = None,
        anchor: Anchor | None = None,
        anchor_accounts: list[str] | None = None,
        chain: str = "",
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        if (self.dir / "log.db").exists():
            # The log key lives in this object: reopening would mint a new one and silently
            # re-found the log. A new consortium gets a new directory.
            raise StoreError(f"{self.dir} already holds a log; use a new directory")
        if not 0 < len(origin.encode()) <= MAX_ORIGIN_BYTES:
            raise CheckpointError(f"a log origin is 1 to {MAX_ORIGIN_BYTES} bytes")
        self.origin = origin
        self.log = TransparencyLog(LogStore(self.dir / "log.db"), origin, NoteSigner(origin))
        self.members = list(members)
        self.quorum = quorum or default_quorum(len(self.members))
        self.witnesses: dict[str, WitnessKey] = {}  # enrolled: member → attested keys
        self.consortium = ""  # the name the witnesses' attestations are bound to
        self._witnessed: dict[str, int] = {}  # the size each witness last cosigned
        self.latest: SignedNote | None = None
        self.anchor = anchor
        self.anchor_accounts = anchor_accounts or ([anchor.submitter] if anchor else [])
        self.anchored: list[dict[str, object]] = []
        self.chain = chain
        self._write_trust()

    def _write_trust(self) -> None:
        trust = {
            "origin": self.origin,
            "log_key": {
                "name": self.log.signer.name,
                "ed25519": base64.b64encode(self.log.signer.public_key).decode(),
            },
            "witnesses": [trust_entry(m, wk) for m, wk in self.witnesses.items()],
            "quorum": self.quorum,
        }
        if self.consortium:
            trust["consortium"] = self.consortium
        if self.anchor is not None:
            trust["anchor"] = {"contract": self.anchor.address, "chain": self.chain}
        # Atomically: the file is served and read while a run adds a late witness to it.
        tmp = self.dir / f".trust.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(trust, indent=2) + "\n")
        os.replace(tmp, self.dir / "trust.json")

    # --- witnesses ------------------------------------------------------------------------
    def witness_key_request(self) -> WitnessKeyRequest:
        signer = self.log.signer
        return WitnessKeyRequest(origin=self.origin, log_name=signer.name,
                                 log_key=signer.public_key)  # fmt: skip

    def enrol(self, keys: Mapping[str, WitnessKey], consortium: str) -> None:
        """List the members' witness keys (their attestations for ``consortium`` already
        checked against the members' identity keys) in the trust file. Enough of them must
        exist for the quorum."""
        unknown = sorted(set(keys) - set(self.members))
        if unknown:
            raise CheckpointError(f"witness keys from non-members: {unknown}")
        if len(keys) < self.quorum:
            raise CheckpointError(f"{len(keys)} witnesses enrolled: quorum {self.quorum} "
                                  "is impossible")  # fmt: skip
        misnamed = sorted(m for m, wk in keys.items() if wk.name != witness_name(m, consortium))
        if misnamed:
            raise CheckpointError(f"witnesses not under their members' names: {misnamed}")
        self.witnesses = dict(keys)
        self.consortium = consortium
        self._witnessed = dict.fromkeys(keys, 0)
        self._write_trust()

    def add_witness(self, member: str, key: WitnessKey) -> None:
        """Enrol one more member's witness after the first enrolment (it was unreachable then);
        its attestation already checked, as for :meth:`enrol`."""
        if not self.witnesses:
            raise CheckpointError("no enrolment yet to add a witness to")
        if member not in self.members or member in self.witnesses:
            raise CheckpointError(f"{member!r} is not a member without a witness")
        if key.name != witness_name(member, self.consortium):
            raise CheckpointError(f"witness of {member!r} not under its member's name")
        self.witnesses[member] = key
        self._witnessed[member] = 0
        self._write_trust()

    def cosign_requests(self) -> tuple[SignedNote, dict[str, CosignRequest]]:
        """Sign a checkpoint of the log as it stands; one cosign request per enrolled witness,
        each with a consistency proof from the size that witness last cosigned."""
        if not self.witnesses:
            raise CheckpointError("no witnesses enrolled")
        note = self.log.checkpoint()
        return note, {m: self.cosign_request(m, note) for m in self.witnesses}

    def cosign_request(
        self, member: str, note: SignedNote, old: int | None = None
    ) -> CosignRequest:
        """The request for one witness, from the size it last cosigned (``old``: the size the
        witness itself says it holds, after a :class:`WitnessSize` answer)."""
        size = Checkpoint.parse_text(note.text).size
        if old is None:
            old = self._witnessed[member]
        if not 0 <= old <= size:
            raise CheckpointError(f"witness size {old} outside this log's 0..{size}")
        self._witnessed[member] = old
        proof = self.log.store.consistency_proof(old, size) if 0 < old < size else []
        signer = self.log.signer
        return CosignRequest(log_name=signer.name, log_key=signer.public_key, old_size=old,
                             proof=tuple(proof), note=note.format())  # fmt: skip

    def publish(
        self, note: SignedNote, replies: Mapping[str, Cosignature]
    ) -> tuple[SignedNote | None, dict[str, str]]:
        """Add the valid cosignatures among ``replies`` to ``note``; with a quorum, publish it
        (the checkpoint file, and an anchor when the log grew). Returns the published note
        (None without a quorum) and, per member, what was wrong with its reply."""
        cp = Checkpoint.parse_text(note.text)
        problems: dict[str, str] = {}
        pq: list[NoteSignature] = []
        classic: list[NoteSignature] = []
        for m, reply in replies.items():
            wk = self.witnesses.get(m)
            if wk is None:
                problems[m] = "a cosignature from a member that is not an enrolled witness"
                continue
            try:
                if len(reply.note.encode()) > MAX_NOTE_BYTES:
                    raise NoteError(f"a reply over {MAX_NOTE_BYTES} bytes")
                got = SignedNote.parse(reply.note)
                if got.text != note.text:
                    raise NoteError("it cosigned another checkpoint")
                # Only this witness's own key ids: nothing else it sends is copied.
                ml = [
                    s for s in got.signatures if s.name == wk.name and s.key_id == wk.key.ml_key_id
                ]
                ed = [
                    s for s in got.signatures if s.name == wk.name and s.key_id == wk.key.ed_key_id
                ]
                if len(ml) != 1 or len(ed) > 1 or not verify_cosignature(
                    SignedNote(note.text, (*ml, *ed)), wk.key, cp.origin, cp.size, cp.root,
                    require_pq=True,
                ):  # fmt: skip
                    raise NoteError("no valid ML-DSA-44 cosignature")
            except NoteError as exc:
                problems[m] = f"invalid cosignature: {exc}"
                continue
            pq.extend(ml)
            classic.extend(ed)
            self._witnessed[m] = cp.size
        if len(pq) < self.quorum:
            return None, problems
        # Ed25519 cosignatures too while the note stays within what parsers accept.
        keep = classic if 1 + len(pq) + len(classic) <= MAX_SIGNATURES else []
        note = note.with_signatures(*pq, *keep)
        # The auditors' rule, applied before anything is published.
        accept_checkpoint(note, self.log.signer.verifier(),
                          [wk.key for wk in self.witnesses.values()], self.quorum,
                          origin=self.origin)  # fmt: skip
        self.latest = note
        (self.dir / "checkpoint").write_text(note.format())
        size = cp.size
        if self.anchor is not None and size > (self.anchored[-1]["size"] if self.anchored else 0):
            # Members take turns submitting: no single account is the anchor's gatekeeper.
            sender = self.anchor_accounts[len(self.anchored) % len(self.anchor_accounts)]
            root = cp.root
            tx = self.anchor.submit(self.origin, size, root, sender=sender)
            self.anchored.append({"size": size, "root": root.hex(), "tx": tx, "from": sender})
            (self.dir / "anchor.json").write_text(json.dumps({
                "chain": self.chain, "contract": self.anchor.address,
                "submitters": self.anchor_accounts, "anchored": self.anchored,
            }, indent=2) + "\n")  # fmt: skip
        return note, problems

    def append(self, *entries: codec.Message) -> None:
        self.log.store.append_batch(codec.encode(e) for e in entries)

    def admit(self, identities: dict[str, bytes]) -> None:
        self.append(*(MemberAdmitted(member=m, identity_key=k) for m, k in identities.items()))

    def record_round(self, result: RoundResult, *, rule: str, privacy: str) -> None:
        digest = model_hash(result.params)
        self.append(
            RoundCommitted(
                round=result.round, participants=result.contributors, rule=rule,
                privacy=privacy, model_hash=digest,
                # A verified round binds the opened aggregate and every signed commitment.
                aggregate_hash=result.aggregate_digest or hashlib.sha256(
                    b"guardians/v1/aggregate\n" + digest + result.round.to_bytes(8, "big")
                ).digest(),
            ),
            ModelPromoted(version=result.round, model_hash=digest),
        )  # fmt: skip

    def record_incident(
        self,
        round: int,
        member: str,
        detail: str,
        kind: str = "protocol-violation",
        evidence: bytes = b"",
    ) -> None:
        """Log an incident. Signed evidence (a rejected contribution) is kept beside the log as
        ``evidence/<sha256>.cbor`` and its digest goes on the log; otherwise the digest of the
        observation itself."""
        if evidence:
            digest = hashlib.sha256(evidence).digest()
            (self.dir / "evidence").mkdir(exist_ok=True)
            (self.dir / "evidence" / f"{digest.hex()}.cbor").write_bytes(evidence)
        else:
            text = f"guardians/v1/incident\n{round}\n{member}\n{detail}"
            digest = hashlib.sha256(text.encode()).digest()
        self.append(Incident(round=round, member=member, kind=kind,
                             detail=detail[:500], evidence_hash=digest))  # fmt: skip

    def close(self) -> None:
        self.log.store.close()


class LocalWitnesses:
    """Every member's witness in this process, each with its own identity key: for tools and
    tests that hold a whole consortium. A deployment's witnesses run in the members' nodes."""

    def __init__(self, consortium: str, members: Iterable[str]) -> None:
        self.consortium = consortium
        self.identities = {m: SigningKey.generate() for m in members}
        self.witnesses = {m: MemberWitness(m, consortium, k) for m, k in self.identities.items()}

    def enrol(self, trail: AuditTrail) -> None:
        keys = {}
        for m, w in self.witnesses.items():
            (reply,) = w.receive(trail.witness_key_request(), 0)
            assert isinstance(reply, WitnessKey)
            keys[m] = reply
        trail.enrol(keys, self.consortium)

    def checkpoint(self, trail: AuditTrail, timestamp: int | None = None) -> SignedNote:
        """Have every witness cosign the trail's current checkpoint, and publish it."""
        if not trail.witnesses:
            self.enrol(trail)
        now = int(time.time()) if timestamp is None else timestamp
        note, reqs = trail.cosign_requests()
        replies: dict[str, Cosignature] = {}
        for m, req in reqs.items():
            (reply,) = self.witnesses[m].receive(req, now)
            if isinstance(reply, WitnessSize):  # it holds another size: ask from there
                (reply,) = self.witnesses[m].receive(trail.cosign_request(m, note, reply.size),
                                                     now)  # fmt: skip
            assert isinstance(reply, Cosignature)
            replies[m] = reply
        published, problems = trail.publish(note, replies)
        if published is None:
            raise CheckpointError(f"no witness quorum: {problems}")
        return published


def found_trail(
    directory: str | Path,
    consortium: str,
    identities: dict[str, bytes],
    *,
    eth_rpc: str | None = None,
) -> tuple[AuditTrail, Anchor]:
    """A new consortium's audit trail: a fresh log origin, the anchor contract deployed (on the
    embedded EVM, or on the JSON-RPC node at ``eth_rpc``), members anchoring in turn, and the
    members admitted with their public identity keys as the log's first entries."""
    from web3 import Web3

    from guardians.ledger.anchor import embedded_chain

    if eth_rpc:
        w3 = Web3(Web3.HTTPProvider(eth_rpc))
        chain = f"JSON-RPC {eth_rpc}"
    else:
        w3 = embedded_chain()
        chain = "embedded EVM (eth-tester + py-evm)"
    ids = list(identities)
    accounts = [w3.eth.accounts[k % len(w3.eth.accounts)] for k in range(len(ids))]
    anchor = Anchor.deploy(w3, sorted(set(accounts)))
    # A new consortium, a new log: its origin names this run.
    origin = f"{consortium}.example/{os.urandom(6).hex()}"
    trail = AuditTrail(directory, origin, ids, anchor=anchor, anchor_accounts=accounts,
                       chain=chain)  # fmt: skip
    trail.admit(identities)
    return trail, anchor


# --- auditing what the log says about rejected contributions ---------------------------------
# Evidence is a member's signed commitment and proof: 32 bytes per parameter, so this bounds
# what an auditor reads for one rejection (2^22 parameters and more).
MAX_EVIDENCE_BYTES = 1 << 28


def audit_log_dir(
    directory: str | Path,
    *,
    trust: str | Path | None = None,
    state: str | Path | None = None,
    anchor: Anchor | None = None,
    identities: Mapping[str, bytes] | None = None,
) -> AuditReport:
    """:func:`~guardians.ledger.audit.verify_log_dir` with :func:`check_evidence` on the
    evidence kept beside the log, bound to the consortium the pinned trust file names; the
    auditor's state records the checkpoint only if that passes too."""
    consortium = ""
    if trust is not None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            consortium = str(files.read_json(trust).get("consortium") or "")

    def evidence(report: AuditReport, cp: Checkpoint) -> None:
        report.add("contribution evidence",
                   *check_evidence(directory, consortium, identities, size=cp.size))  # fmt: skip

    return verify_log_dir(directory, trust=trust, state=state, anchor=anchor,
                          identities=identities, extra=evidence)  # fmt: skip


def check_evidence(
    directory: str | Path,
    consortium: str,
    identities: Mapping[str, bytes] | None = None,
    *,
    size: int | None = None,
) -> tuple[bool, str]:
    """Every rejected contribution on the log's first ``size`` entries (an
    ``invalid-contribution-proof`` incident) must come with its evidence beside the log: the
    file the log's digest names, holding the member's own signed commitment and proof (under
    the identity key the log admitted, or the pinned one) for the statement it names, and
    that proof must fail. Evidence whose proof verifies shows a member excluded without cause.
    Returns (passed, what was found); never raises."""
    d = Path(directory)
    try:
        admitted, rejected = _rejections(d, size)
    except (GuardiansError, OSError) as exc:
        return False, f"cannot read the log: {exc}"
    if not rejected:
        return True, "no rejected contributions on the log"
    if not consortium:
        return False, (f"{len(rejected)} rejected contribution(s), but the trust file names no "
                       "consortium to check their signatures against")  # fmt: skip
    pinned = identities if identities is not None else admitted
    problems = []
    for inc in rejected:
        try:
            _check_one(d, inc, consortium, pinned)
        except (GuardiansError, CryptoError, OSError) as exc:
            problems.append(f"round {inc.round}, {inc.member}: {exc}")
    if problems:
        return False, "; ".join(problems)
    return True, (f"{len(rejected)} rejected contribution(s), each its member's own signed "
                  "proof, which fails")  # fmt: skip


def evidence_names(directory: str | Path) -> list[str]:
    """The evidence files the log names (one per rejected contribution), e.g. to fetch them
    beside a downloaded copy of the log."""
    _, rejected = _rejections(Path(directory), None)
    return [f"{inc.evidence_hash.hex()}.cbor" for inc in rejected]


def _rejections(d: Path, size: int | None) -> tuple[dict[str, bytes], list[Incident]]:
    admitted: dict[str, bytes] = {}
    rejected: list[Incident] = []
    store = LogStore(d / "log.db", readonly=True)
    try:
        for _, data in store.entries(0, store.size if size is None else min(size, store.size)):
            try:
                entry = codec.decode(data)
            except GuardiansError:
                continue  # verify_log_dir reports undecodable entries
            if isinstance(entry, MemberAdmitted):
                admitted.setdefault(entry.member, entry.identity_key)
            elif isinstance(entry, Incident) and entry.kind == REJECTED_CONTRIBUTION:
                rejected.append(entry)
    finally:
        store.close()
    return admitted, rejected


def _check_one(d: Path, inc: Incident, consortium: str, keys: Mapping[str, bytes]) -> None:
    path = d / "evidence" / f"{inc.evidence_hash.hex()}.cbor"
    # The directory is the operator's: a device, a pipe or a huge file there must not make the
    # auditor read forever.
    try:
        data = files.read_regular(path, MAX_EVIDENCE_BYTES)
    except FileNotFoundError:
        raise EvidenceError(f"no evidence file {path.name}") from None
    except OSError as exc:
        raise EvidenceError(f"{path.name}: {exc.strerror or exc}") from None
    if hashlib.sha256(data).digest() != inc.evidence_hash:
        raise EvidenceError("the evidence file does not match the log's digest")
    ev = codec.decode(data)
    if not isinstance(ev, ContributionEvidence):
        raise EvidenceError(f"a {ev.KIND} message, not contribution evidence")
    if (ev.member, ev.round) != (inc.member, inc.round):
        raise EvidenceError(f"evidence about {ev.member!r} in round {ev.round}")
    key = keys.get(ev.member)
    if key is None:
        raise EvidenceError(f"no identity key for {ev.member!r}")
    contrib.check_evidence(consortium, {ev.member: VerifyKey(key)}, ev)
