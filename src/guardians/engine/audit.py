"""The consortium's audit trail: every round and model version goes on the transparency log,
each checkpoint is cosigned by every member's witness, and the result is written as a log
directory that ``guardians audit verify`` (or anyone holding the consortium's trust file) can
check without trusting the log operator.

In this embedded engine every party runs in one process, so the witnesses' keys and state live
here too; in a deployment each member runs its own witness, with its own long-lived keys and
persisted state, on its side of the network (not built yet).

Directory layout::

    log.db        the SQLite log (entries and Merkle node hashes)
    checkpoint    the latest cosigned checkpoint (C2SP signed note)
    trust.json    origin, log key, witness keys, quorum: what a verifier is configured with
    anchor.json   where checkpoints were anchored on Ethereum, and each anchored (size, root)
    evidence/     signed evidence of rejected contributions, named by the digest on the log
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from guardians import codec
from guardians.ledger.anchor import Anchor
from guardians.ledger.checkpoint import TransparencyLog, Witness
from guardians.ledger.entries import Incident, MemberAdmitted, ModelPromoted, RoundCommitted
from guardians.ledger.note import Cosigner, NoteSigner, SignedNote
from guardians.ledger.store import LogStore, StoreError
from guardians.protocol.round import RoundResult


def model_hash(params: np.ndarray) -> bytes:
    """Digest of a model's parameters (float32, little-endian), domain-separated."""
    return hashlib.sha256(b"guardians/v1/model\n" + np.asarray(params, "<f4").tobytes()).digest()


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
            # Keys and witness state live in this object: reopening would mint new ones and
            # silently re-found the log. A new consortium gets a new directory.
            raise StoreError(f"{self.dir} already holds a log; use a new directory")
        self.origin = origin
        self.log = TransparencyLog(LogStore(self.dir / "log.db"), origin, NoteSigner(origin))
        verifier = {origin: self.log.signer.verifier()}
        self.witnesses = {
            m: Witness(Cosigner(f"{m}.witness.{origin.split('/')[0]}"), verifier) for m in members
        }
        self.quorum = quorum or (len(self.witnesses) // 2 + 1)
        self.latest: SignedNote | None = None
        self._witnessed = 0
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
            "witnesses": [
                {
                    "member": m,
                    "name": w.cosigner.key.name,
                    "ed25519": base64.b64encode(w.cosigner.key.ed25519).decode(),
                    "mldsa44": base64.b64encode(w.cosigner.key.mldsa44).decode(),
                }
                for m, w in self.witnesses.items()
            ],
            "quorum": self.quorum,
        }
        if self.anchor is not None:
            trust["anchor"] = {"contract": self.anchor.address, "chain": self.chain}
        (self.dir / "trust.json").write_text(json.dumps(trust, indent=2) + "\n")

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

    def checkpoint(self, timestamp: int | None = None) -> SignedNote:
        """Sign a checkpoint and have every member's witness cosign it."""
        ts = int(time.time()) if timestamp is None else timestamp
        note = self.log.checkpoint()
        old = self._witnessed
        size = self.log.store.size
        proof = self.log.store.consistency_proof(old, size) if 0 < old < size else []
        for w in self.witnesses.values():
            note = w.add_checkpoint(old, proof, note, ts)
        self._witnessed = size
        self.latest = note
        (self.dir / "checkpoint").write_text(note.format())
        if self.anchor is not None and size > (self.anchored[-1]["size"] if self.anchored else 0):
            # Members take turns submitting: no single account is the anchor's gatekeeper.
            sender = self.anchor_accounts[len(self.anchored) % len(self.anchor_accounts)]
            root = self.log.store.root()
            tx = self.anchor.submit(self.origin, size, root, sender=sender)
            self.anchored.append({"size": size, "root": root.hex(), "tx": tx, "from": sender})
            (self.dir / "anchor.json").write_text(json.dumps({
                "chain": self.chain, "contract": self.anchor.address,
                "submitters": self.anchor_accounts, "anchored": self.anchored,
            }, indent=2) + "\n")  # fmt: skip
        return note

    def close(self) -> None:
        self.log.store.close()


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
