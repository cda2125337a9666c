"""What the portal shows: one reading of a demo output directory, checked with the ledger's own
verification code.

A snapshot is read fresh for every request, because the demo may still be writing: the log
(SQLite, WAL) grows and the checkpoint and anchor record are rewritten after every round. The
checkpoint is verified against the consortium's *pinned* trust file (log key, witness keys,
quorum) with :func:`guardians.ledger.checkpoint.accept_checkpoint`; every stored hash is
recomputed with :meth:`LogStore.verify`; each model version's inclusion is checked with
:func:`guardians.ledger.merkle.verify_inclusion`; anchored roots are compared with the log's.
Nothing the portal cannot verify is reported as verified: each check is ``True`` (passed),
``False`` (failed) or ``None`` (could not be made, e.g. without a trust file), and the verdict
says which.

Reputation, accuracy, attack results and intel statistics come from ``metrics.json``: they are
the demo's measurements, not ledger entries, and the page labels them so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guardians import codec, files
from guardians.errors import GuardiansError
from guardians.ledger.audit import attestation_problems, load_trust
from guardians.ledger.checkpoint import Checkpoint, accept_checkpoint
from guardians.ledger.entries import (
    Incident,
    MemberAdmitted,
    MemberRemoved,
    ModelPromoted,
    ModelRolledBack,
    RoundCommitted,
)
from guardians.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from guardians.ledger.note import (
    CosignerKey,
    NoteError,
    NoteVerifier,
    SignedNote,
    verify_cosignature,
)
from guardians.ledger.store import LogStore

# A read that races the demo's writer (the checkpoint is rewritten in place; LogStore loads the
# size and the node hashes in two statements) can look like tampering; a real defect survives
# a re-read of unchanged files.
READ_ATTEMPTS = 3
RETRY_DELAY_S = 0.1

Check = dict[str, Any]
Decoded = list[tuple[int, bytes, Any]]  # (log index, entry bytes, decoded entry or None)


class PortalError(GuardiansError):
    """The portal was pointed at something it cannot serve (not a demo output directory)."""


class NotFoundError(PortalError):
    """A proof was asked for an entry or tree size the log does not have."""


class UnavailableError(PortalError):
    """The log cannot be read (missing or corrupt log.db, no checkpoint)."""


def check_demo_dir(path: str | Path) -> Path:
    """Return ``path`` if it looks like the output of ``guardians demo --out``; raise
    PortalError naming what is missing otherwise. A demo that is still running has ``ledger/``
    but no ``metrics.json`` yet, so either one is enough."""
    d = Path(path)
    if not d.is_dir():
        raise PortalError(f"{d}: no such directory")
    if not ((d / "ledger").is_dir() or (d / "metrics.json").is_file()):
        raise PortalError(
            f"{d} is not a demo output directory: it holds neither ledger/ nor metrics.json "
            f"(create one with `guardians demo --out {d}`)"
        )
    return d


def fingerprint(*keys: bytes) -> str:
    """A short, readable fingerprint of public keys: the first 8 bytes of SHA-256 over their
    concatenation, as four hex groups."""
    h = hashlib.sha256(b"".join(keys)).hexdigest()[:16]
    return " ".join(h[i : i + 4] for i in range(0, 16, 4))


class _Checks(list[Check]):
    def add(self, name: str, ok: bool | None, detail: str) -> None:
        """Record a check: passed (True), failed (False) or not made (None)."""
        self.append({"check": name, "ok": ok, "detail": detail})


@dataclass
class _Trust:
    path: Path
    origin: str
    log_key: NoteVerifier
    witnesses: list[CosignerKey]
    quorum: int
    anchor: dict[str, str] | None
    members: dict[str, str]  # witness name -> member id


def _attestations(trust_path: Path | None, decoded: Decoded, checks: _Checks) -> None:
    """The witnesses' keys against their members' attestations, as `guardians audit verify`
    checks them (identity keys from the log's admissions)."""
    if trust_path is None:
        return
    admitted: dict[str, bytes] = {}
    for _, _, e in decoded:
        if isinstance(e, MemberAdmitted):
            admitted.setdefault(e.member, e.identity_key)
    try:
        bad = attestation_problems(files.read_json(trust_path), admitted)
    except (OSError, ValueError) as exc:
        bad = [f"unreadable trust file: {exc}"]
    checks.add("witness attestations", not bad,
               "; ".join(bad) if bad else "every witness key attested by its member's identity "
               "key on the log")  # fmt: skip


def _read_trust(path: Path) -> _Trust:
    # The ledger's own parser, so the portal and `guardians audit verify` agree on the keys;
    # the raw file adds the member each witness belongs to.
    origin, log_key, witnesses, quorum, anchor = load_trust(path)
    raw = files.read_json(path)
    members = {w["name"]: str(w.get("member", w["name"])) for w in raw["witnesses"]}
    return _Trust(path, origin, log_key, witnesses, quorum, anchor, members)


@dataclass
class Portal:
    """The portal's view of one demo directory. Between requests it keeps only the last
    checkpoint it fully verified, so that a later one which does not extend it (a rewritten
    history) is caught between two page refreshes."""

    directory: Path
    trust_path: Path
    refresh_seconds: float = 5.0
    _last_seen: Checkpoint | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ledger(self) -> Path:
        return self.directory / "ledger"

    # --- the snapshot ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, read and checked now."""
        snap: dict[str, Any] = {}
        for attempt in range(READ_ATTEMPTS):
            before = self._files_state()
            snap = self._read()
            if snap["verdict"] != "failed" or self._files_state() == before:
                break
            if attempt + 1 < READ_ATTEMPTS:
                time.sleep(RETRY_DELAY_S)
        self._remember(snap)
        return snap

    def _files_state(self) -> tuple[tuple[int, int], ...]:
        state = []
        for name in ("checkpoint", "log.db", "log.db-wal", "anchor.json"):
            try:
                st = (self.ledger / name).stat()
                state.append((st.st_size, st.st_mtime_ns))
            except OSError:
                state.append((-1, -1))
        return tuple(state)

    def _read(self) -> dict[str, Any]:
        checks = _Checks()
        trust = self._trust(checks)
        cp, checkpoint = self._checkpoint(trust, checks)
        log: dict[str, Any] = {
            "present": False,
            "ok": None,
            "error": None,
            "size": 0,
            "pending": 0,
            "entries_by_kind": {},
        }
        decoded: Decoded = []
        included: dict[int, tuple[bool, str]] = {}
        anchor = _anchor_unchecked(trust)
        store = self._open_store(log, checks)
        if store is not None:
            try:
                decoded = _read_log(store, cp, checkpoint, log, checks)
                _attestations(self.trust_path if trust else None, decoded, checks)
                included = _inclusion(store, cp, checkpoint, decoded, checks)
                anchor = self._anchor(store, trust, checks)
                self._consistency(store, cp, checkpoint, checks)
            finally:
                store.close()
        metrics, metrics_status = _read_metrics(self.directory / "metrics.json")
        results = [c["ok"] for c in checks]
        if False in results:
            verdict = "failed"
        elif checkpoint["verified"] and log["ok"] and None not in results:
            verdict = "verified"
        else:
            verdict = "unverified"
        federated = _dict(metrics.get("federated"))
        reputation = _dict(federated.get("reputation"))
        members = _members(decoded, trust, checkpoint, reputation)
        rounds = _rounds(decoded, checkpoint, federated)
        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "directory": str(self.directory),
            "refresh_seconds": self.refresh_seconds,
            "verdict": verdict,
            "checks": checks,
            "consortium": _consortium(trust, checkpoint, members, rounds, metrics, self.trust_path),
            "checkpoint": checkpoint,
            "log": log,
            "members": members,
            "reputation": {"threshold": reputation.get("threshold"), "source": "metrics.json"}
            if reputation
            else None,
            "rounds": rounds,
            "models": _models(decoded, checkpoint, included),
            "incidents": [
                {
                    "index": idx,
                    "round": e.round,
                    "member": e.member,
                    "kind": e.kind,
                    "detail": e.detail,
                    "evidence_hash": e.evidence_hash.hex(),
                    "pending": _pending(idx, checkpoint),
                }
                for idx, _, e in decoded
                if isinstance(e, Incident)
            ],
            "anchor": anchor,
            "metrics": metrics_status,
            "federated": {k: federated.get(k) for k in ("accuracy", "f1", "roc_auc", "fpr")}
            if federated
            else None,
            "intel": _dict(metrics.get("collective_defence")) or None,
            "under_attack": _under_attack(metrics.get("under_attack")),
        }

    def _trust(self, checks: _Checks) -> _Trust | None:
        if not self.trust_path.is_file():
            checks.add(
                "pinned trust",
                None,
                f"no trust file at {self.trust_path}: nothing can be verified. Pin the "
                "consortium's genesis trust.json (obtained out of band); the copy beside the "
                "log is the operator's own claim and proves nothing.",
            )
            return None
        try:
            trust = _read_trust(self.trust_path)
        except (OSError, ValueError, KeyError, TypeError, binascii.Error, GuardiansError) as exc:
            checks.add("pinned trust", False, f"{self.trust_path}: unusable: {exc}")
            return None
        checks.add(
            "pinned trust",
            True,
            f"{trust.origin}: {len(trust.witnesses)} witnesses, quorum "
            f"{trust.quorum} (from {self.trust_path})",
        )
        return trust

    def _checkpoint(
        self, trust: _Trust | None, checks: _Checks
    ) -> tuple[Checkpoint | None, dict[str, Any]]:
        info: dict[str, Any] = {
            "present": False,
            "verified": False,
            "error": None,
            "log_signature": None,
            "cosignatures": [],
            "valid_cosignatures": 0,
            "consistency": None,
            "quorum": trust.quorum if trust else None,
        }
        try:
            raw = files.read_regular(self.ledger / "checkpoint", files.NOTE)
        except FileNotFoundError:
            info["error"] = "no checkpoint yet: the log has not signed one"
            checks.add("checkpoint signatures", None, info["error"])
            return None, info
        except OSError as exc:
            info["error"] = f"checkpoint unreadable: {exc.strerror or exc}"
            checks.add("checkpoint signatures", False, info["error"])
            return None, info
        try:
            note = SignedNote.parse(raw)
            cp = Checkpoint.parse_text(note.text)
        except GuardiansError as exc:
            info["error"] = f"malformed checkpoint: {exc}"
            checks.add("checkpoint signatures", False, info["error"])
            return None, info
        info.update(
            present=True,
            origin=cp.origin,
            size=cp.size,
            root_hex=cp.root.hex(),
            root_b64=base64.b64encode(cp.root).decode(),
            note=note.format(),
            signatures=len(note.signatures),
        )
        if trust is None:
            info["error"] = "unverified: no pinned trust file"
            checks.add("checkpoint signatures", None, info["error"])
            return cp, info
        try:
            trust.log_key.verify(note)
            info["log_signature"] = {
                "ok": True,
                "key": trust.log_key.name,
                "detail": "Ed25519 signature of the log key verifies",
            }
        except NoteError as exc:
            info["log_signature"] = {"ok": False, "key": trust.log_key.name, "detail": str(exc)}
        good = 0
        for w in trust.witnesses:
            try:
                ok = verify_cosignature(note, w, cp.origin, cp.size, cp.root, require_pq=True)
                detail = (
                    "ML-DSA-44 (and Ed25519) cosignature verifies"
                    if ok
                    else "no ML-DSA-44 cosignature from this witness"
                )
            except NoteError as exc:
                ok, detail = False, str(exc)
            good += ok
            info["cosignatures"].append(
                {"witness": w.name, "member": trust.members.get(w.name), "ok": ok, "detail": detail}
            )
        info["valid_cosignatures"] = good
        try:  # the client rule itself decides, exactly as `guardians audit verify` does
            accept_checkpoint(
                note, trust.log_key, trust.witnesses, trust.quorum, origin=trust.origin
            )
        except GuardiansError as exc:
            info["error"] = str(exc)
            checks.add("checkpoint signatures", False, str(exc))
            return cp, info
        info["verified"] = True
        checks.add(
            "checkpoint signatures",
            True,
            f"log signature and {good} valid ML-DSA-44 witness cosignatures "
            f"(quorum {trust.quorum}), size {cp.size}",
        )
        return cp, info

    def _open_store(self, log: dict[str, Any], checks: _Checks) -> LogStore | None:
        path = self.ledger / "log.db"
        if not path.is_file():
            log["error"] = f"no log at {path}"
            checks.add("log entries", None, log["error"])
            return None
        log["present"] = True
        try:
            return LogStore(path, readonly=True)
        except GuardiansError as exc:
            log["ok"], log["error"] = False, str(exc)
            checks.add("log entries", False, str(exc))
            return None

    def _anchor(self, store: LogStore, trust: _Trust | None, checks: _Checks) -> dict[str, Any]:
        info = _anchor_unchecked(trust)
        declared = info["declared"]
        path = self.ledger / "anchor.json"
        if not path.is_file():
            info["detail"] = "no anchor record (anchor.json)"
            if declared:
                info["consistent"] = False
                checks.add(
                    "anchored checkpoints",
                    False,
                    f"the consortium anchors on {declared.get('contract')}, but "
                    "there is no anchor record",
                )
            return info
        try:
            rec = files.read_json(path, files.RECORD)
            points = [
                (
                    int(a["size"]),
                    bytes.fromhex(a["root"]),
                    str(a.get("tx", "")),
                    str(a.get("from", "")),
                )
                for a in rec["anchored"]
            ]
            info.update(
                present=True, contract=str(rec["contract"]), chain=str(rec.get("chain", ""))
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            info["consistent"], info["detail"] = False, f"anchor.json unreadable: {exc}"
            checks.add("anchored checkpoints", False, info["detail"])
            return info
        info["contract_matches_trust"] = (
            None if not declared else declared.get("contract") == info["contract"]
        )
        for size, root, tx, sender in points:
            match = size <= store.size and store.root(size) == root
            info["records"].append(
                {"size": size, "root": root.hex(), "tx": tx, "from": sender, "matches_log": match}
            )
        if info["records"]:
            info["latest"] = max(info["records"], key=lambda r: r["size"])
        bad = [r for r in info["records"] if not r["matches_log"]]
        latest = info["latest"]["size"] if info["latest"] else 0
        ok = info["contract_matches_trust"] is not False and not bad
        if info["contract_matches_trust"] is False:
            detail = "anchor.json names another contract than the pinned trust file"
        elif bad:
            detail = (
                f"the log's root at anchored size {bad[0]['size']} differs from the anchored "
                "root (or the log is shorter)"
            )
        else:
            detail = (
                f"{len(points)} anchors consistent with the log (latest size {latest}); "
                f"contract {info['contract']}"
            )
        info["consistent"], info["detail"] = ok, detail
        checks.add("anchored checkpoints", ok, detail)
        return info

    def _consistency(
        self,
        store: LogStore,
        cp: Checkpoint | None,
        checkpoint: dict[str, Any],
        checks: _Checks,
    ) -> None:
        with self._lock:
            prev = self._last_seen
        if cp is None or not checkpoint["verified"]:
            return
        if prev is None or prev.origin != cp.origin:
            checkpoint["consistency"] = {"ok": None, "detail": "first checkpoint this portal saw"}
            return
        try:
            if prev.size > cp.size:
                raise GuardiansError(f"the log went back from size {prev.size} to {cp.size}")
            if prev.size:
                verify_consistency(
                    prev.size,
                    cp.size,
                    prev.root,
                    cp.root,
                    store.consistency_proof(prev.size, cp.size),
                )
        except GuardiansError as exc:
            checkpoint["consistency"] = {"ok": False, "detail": f"rewritten history: {exc}"}
            checks.add("consistency with last seen", False, f"rewritten history: {exc}")
            return
        detail = f"extends the checkpoint of size {prev.size} this portal verified before"
        checkpoint["consistency"] = {"ok": True, "detail": detail}
        checks.add("consistency with last seen", True, detail)

    def _remember(self, snap: dict[str, Any]) -> None:
        """Remember a checkpoint only once everything about it verified."""
        cp = snap["checkpoint"]
        if snap["verdict"] == "verified":
            seen = Checkpoint(cp["origin"], cp["size"], bytes.fromhex(cp["root_hex"]))
            with self._lock:
                if self._last_seen is None or seen.size >= self._last_seen.size:
                    self._last_seen = seen

    # --- proofs ------------------------------------------------------------------------------
    def proof(self, index: int, size: int | None = None) -> dict[str, Any]:
        """An RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` (default: the
        latest checkpoint's), with the entry itself so that the client hashes the leaf on its
        own rather than trusting a leaf hash."""
        cp: Checkpoint | None = None
        try:
            note = SignedNote.parse(files.read_regular(self.ledger / "checkpoint", files.NOTE))
            cp = Checkpoint.parse_text(note.text)
        except (OSError, GuardiansError):
            cp = None
        if size is None:
            if cp is None:
                raise UnavailableError("no readable checkpoint: ask for a tree size")
            size = cp.size
        path = self.ledger / "log.db"
        if not path.is_file():
            raise UnavailableError(f"no log at {path}")
        try:
            store = LogStore(path, readonly=True)
        except GuardiansError as exc:
            raise UnavailableError(str(exc)) from None
        try:
            if not 0 <= index < size <= store.size:
                raise NotFoundError(
                    f"no entry {index} in a tree of size {size} (the log "
                    f"holds {store.size} entries)"
                )
            entry = store.entry(index)
            audit_path = store.inclusion_proof(index, size)
            signed = cp if cp is not None and cp.size == size else None
            root = signed.root if signed is not None else store.root(size)
        finally:
            store.close()
        return {
            "index": index,
            "tree_size": size,
            "entry": entry.hex(),
            "leaf_hash": leaf_hash(entry).hex(),
            "audit_path": [h.hex() for h in audit_path],
            "root": root.hex(),
            "root_source": "checkpoint" if signed else "log (no signed checkpoint of this size)",
        }


# --- reading the log -------------------------------------------------------------------------
def _read_log(
    store: LogStore,
    cp: Checkpoint | None,
    checkpoint: dict[str, Any],
    log: dict[str, Any],
    checks: _Checks,
) -> Decoded:
    log["size"] = store.size
    try:
        store.verify()
        log["ok"] = True
        checks.add("log entries", True, f"{store.size} entries; every hash recomputed")
    except GuardiansError as exc:
        log["ok"], log["error"] = False, f"tampered: {exc}"
        checks.add("log entries", False, log["error"])
    if cp is not None:
        if cp.size > store.size:
            checkpoint["root_matches_log"] = False
            checks.add(
                "checkpoint root",
                False,
                f"checkpoint size {cp.size} exceeds the log's {store.size}",
            )
        else:
            same = store.root(cp.size) == cp.root
            checkpoint["root_matches_log"] = same
            checks.add(
                "checkpoint root",
                same,
                "matches the tree recomputed from the log"
                if same
                else f"the log's root at size {cp.size} differs from the checkpoint's",
            )
            log["pending"] = store.size - cp.size
    decoded: Decoded = []
    kinds: Counter[str] = Counter()
    for idx, data in store.entries(0, store.size):
        try:
            entry: Any = codec.decode(data)
            kinds[entry.KIND] += 1
        except GuardiansError:
            entry = None
            kinds["(undecodable)"] += 1
        decoded.append((idx, data, entry))
    log["entries_by_kind"] = dict(sorted(kinds.items()))
    return decoded


def _inclusion(
    store: LogStore,
    cp: Checkpoint | None,
    checkpoint: dict[str, Any],
    decoded: Decoded,
    checks: _Checks,
) -> dict[int, tuple[bool, str]]:
    """Prove every model version under a verified checkpoint, hashing the entry as stored."""
    if cp is None or not checkpoint["verified"] or cp.size > store.size:
        return {}
    out: dict[int, tuple[bool, str]] = {}
    for idx, data, entry in decoded:
        if idx < cp.size and isinstance(entry, ModelPromoted):
            try:
                verify_inclusion(
                    idx, cp.size, leaf_hash(data), store.inclusion_proof(idx, cp.size), cp.root
                )
                out[idx] = (True, "included under the verified checkpoint")
            except GuardiansError as exc:
                out[idx] = (False, str(exc))
    if out:
        good = sum(ok for ok, _ in out.values())
        checks.add(
            "model versions included",
            good == len(out),
            f"{good} of {len(out)} model versions proven included under the checkpoint",
        )
    return out


def _anchor_unchecked(trust: _Trust | None) -> dict[str, Any]:
    return {
        "present": False,
        "declared": trust.anchor if trust else None,
        "records": [],
        "latest": None,
        "consistent": None,
        "contract": None,
        "chain": None,
        "contract_matches_trust": None,
        "detail": "log unavailable: anchors not checked",
    }


def _read_metrics(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if not path.is_file():
        return {}, {
            "present": False,
            "error": f"no {path.name} yet: measurements (reputation, "
            "accuracy, attacks, intel) appear when the demo finishes",
        }
    try:
        data = files.read_json(path, files.RECORD)
    except (OSError, ValueError) as exc:
        return {}, {"present": False, "error": f"{path.name} unreadable: {exc}"}
    if not isinstance(data, dict):
        return {}, {"present": False, "error": f"{path.name} is not a JSON object"}
    return data, {"present": True, "error": None}


# --- shaping the page's sections ---------------------------------------------------------------
def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _pending(idx: int, checkpoint: dict[str, Any]) -> bool:
    """True for an entry appended after the latest checkpoint (no signed root covers it)."""
    return not checkpoint["present"] or idx >= checkpoint["size"]


def _models(
    decoded: Decoded, checkpoint: dict[str, Any], included: dict[int, tuple[bool, str]]
) -> list[dict[str, Any]]:
    rolled_back = {e.version: e.reason for _, _, e in decoded if isinstance(e, ModelRolledBack)}
    out = []
    for idx, _, e in decoded:
        if not isinstance(e, ModelPromoted):
            continue
        pending = _pending(idx, checkpoint)
        if idx in included:
            ok, detail = included[idx]
            server: dict[str, Any] = {"ok": ok, "detail": detail}
        elif pending:
            server = {"ok": None, "detail": "appended after the latest checkpoint"}
        else:
            server = {"ok": None, "detail": "not checked: no verified checkpoint"}
        out.append(
            {
                "index": idx,
                "version": e.version,
                "model_hash": e.model_hash.hex(),
                "pending": pending,
                "rolled_back": rolled_back.get(e.version),
                "server_inclusion": server,
            }
        )
    return out


def _rounds(
    decoded: Decoded, checkpoint: dict[str, Any], federated: dict[str, Any]
) -> list[dict[str, Any]]:
    per_round = federated.get("per_round")
    measured = {r.get("round"): r for r in per_round or [] if isinstance(r, dict)}
    out = []
    for idx, _, e in decoded:
        if isinstance(e, RoundCommitted):
            m = measured.get(e.round, {})
            out.append(
                {
                    "index": idx,
                    "round": e.round,
                    "participants": list(e.participants),
                    "rule": e.rule,
                    "privacy": e.privacy,
                    "model_hash": e.model_hash.hex(),
                    "aggregate_hash": e.aggregate_hash.hex(),
                    "pending": _pending(idx, checkpoint),
                    "accuracy": m.get("accuracy"),
                    "f1": m.get("f1"),
                    "proofs_verified": m.get("verified"),
                    "rejected": m.get("rejected"),
                }
            )
    return out


def _members(
    decoded: Decoded,
    trust: _Trust | None,
    checkpoint: dict[str, Any],
    reputation: dict[str, Any],
) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}

    def row(member: str) -> dict[str, Any]:
        return rows.setdefault(
            member,
            {
                "member": member,
                "admitted_index": None,
                "identity_fingerprint": None,
                "removed": None,
                "witness": None,
                "witness_fingerprint": None,
                "cosigned": None,
                "reputation": None,
                "quarantined_round": None,
            },
        )

    for idx, _, e in decoded:
        if isinstance(e, MemberAdmitted):
            r = row(e.member)
            r["admitted_index"] = idx
            r["identity_fingerprint"] = fingerprint(e.identity_key) if e.identity_key else None
        elif isinstance(e, MemberRemoved):
            row(e.member)["removed"] = e.reason
    if trust is not None:
        cosigned = {c["witness"]: c["ok"] for c in checkpoint["cosignatures"]}
        for w in trust.witnesses:
            r = row(trust.members.get(w.name, w.name))
            r["witness"] = w.name
            r["witness_fingerprint"] = fingerprint(w.ed25519, w.mldsa44)
            r["cosigned"] = cosigned.get(w.name)
    quarantined = _dict(reputation.get("quarantined"))
    for member, score in _dict(reputation.get("scores")).items():
        r = row(member)
        r["reputation"] = score if isinstance(score, int | float) else None
        r["quarantined_round"] = quarantined.get(member)
    return sorted(rows.values(), key=lambda r: r["member"])


def _consortium(
    trust: _Trust | None,
    checkpoint: dict[str, Any],
    members: list[dict[str, Any]],
    rounds: list[dict[str, Any]],
    metrics: dict[str, Any],
    trust_path: Path,
) -> dict[str, Any]:
    config = _dict(metrics.get("config"))
    dataset = _dict(metrics.get("dataset"))
    last = rounds[-1] if rounds else {}
    admitted = sum(1 for m in members if m["admitted_index"] is not None)
    return {
        "origin": trust.origin if trust else checkpoint.get("origin"),
        "members": admitted or config.get("members"),
        "quorum": trust.quorum if trust else None,
        "witnesses": len(trust.witnesses) if trust else None,
        "dataset": dataset.get("name") or config.get("dataset"),
        "dataset_source": dataset.get("source"),
        "train_records": dataset.get("train_records"),
        "test_records": dataset.get("test_records"),
        # What the log says the rounds used; the demo's configuration only until one is logged.
        "privacy": last.get("privacy") or config.get("privacy"),
        "rule": last.get("rule") or config.get("rule"),
        "proofs": config.get("proofs"),
        "rounds_logged": len(rounds),
        "rounds_configured": config.get("rounds"),
        "command": metrics.get("command"),
        "trust_file": str(trust_path),
    }


def _under_attack(x: Any) -> dict[str, Any] | None:
    if not isinstance(x, dict):
        return None
    keys = (
        "members",
        "f1",
        "accuracy",
        "backdoor_success",
        "quarantined",
        "incidents_by_kind",
        "honest_rounds_kept_out",
    )
    runs = [
        {"name": name, **{k: _dict(r).get(k) for k in keys}}
        for name, r in _dict(x.get("runs")).items()
    ]
    return {
        "scenario": x.get("scenario"),
        "defence": x.get("defence"),
        "malicious": x.get("malicious"),
        "runs": runs,
    }
