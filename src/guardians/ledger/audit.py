"""Auditing a log directory without trusting its operator.

Checks, in order: the trust configuration (log key, witness keys, quorum); the latest checkpoint's
log signature and witness quorum (ML-DSA-44 cosignatures required); every stored hash recomputed
from the entries; the checkpoint root against the recomputed tree; consistency with the last
checkpoint this auditor accepted (kept in a state file); and the inclusion of every model
version under the checkpoint. The result is a report with a verdict; nothing here prints.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardians import codec, files
from guardians.crypto.sign import VerifyKey
from guardians.errors import GuardiansError
from guardians.ledger import attestation
from guardians.ledger import entries as _entries
from guardians.ledger.anchor import Anchor
from guardians.ledger.checkpoint import Checkpoint, accept_checkpoint, default_quorum
from guardians.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from guardians.ledger.note import CosignerKey, NoteVerifier, SignedNote
from guardians.ledger.store import LogStore


@dataclass
class AuditReport:
    log: str
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    size: int = 0
    checkpoint: str = ""
    kinds: dict[str, int] = field(default_factory=dict)
    model_versions: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append((name, ok, detail))
        return ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "verdict": "PASS" if self.ok else "FAIL",
            "size": self.size,
            "checkpoint": self.checkpoint,
            "entries_by_kind": self.kinds,
            "model_versions_included": self.model_versions,
            "checks": [{"check": n, "ok": ok, "detail": d} for n, ok, d in self.checks],
        }


def load_trust(
    path: Path,
) -> tuple[str, NoteVerifier, list[CosignerKey], int, dict[str, str] | None]:
    t = files.read_json(path)
    b64 = base64.b64decode
    log = NoteVerifier(t["log_key"]["name"], b64(t["log_key"]["ed25519"]))
    wits = [CosignerKey(w["name"], b64(w["ed25519"]), b64(w["mldsa44"])) for w in t["witnesses"]]
    quorum = t["quorum"]
    if type(quorum) is not int:
        raise ValueError(f"quorum must be an integer, not {quorum!r}")
    if not 1 <= quorum <= len({w.name for w in wits}):
        raise ValueError(f"quorum {quorum} impossible with {len(wits)} witnesses")
    anchor = t.get("anchor")
    if anchor is not None and not isinstance(anchor, dict):
        raise ValueError(f"the trust file's anchor must be an object, not {type(anchor).__name__}")
    if not isinstance(t["origin"], str):
        raise ValueError("the trust file's origin must be a string")
    return t["origin"], log, wits, quorum, anchor


def _check_identities(
    report: AuditReport, trust_path: Path, admitted: dict[str, bytes],
    identities: Mapping[str, bytes],
) -> None:  # fmt: skip
    """The log's admissions and the trust file's witnesses against the pinned genesis."""
    bad = []
    if set(admitted) != set(identities):
        bad.append(f"the log admits {sorted(admitted)}, the genesis lists {sorted(identities)}")
    for m in sorted(set(admitted) & set(identities)):
        if admitted[m] != identities[m]:
            bad.append(f"{m}: admitted with another identity key than the genesis")
    need = default_quorum(len(identities)) if identities else 1
    try:
        t = files.read_json(trust_path)
        listed = {str(w.get("member", "")) for w in t["witnesses"]}
        quorum = t["quorum"]
        if type(quorum) is not int:
            raise ValueError(f"quorum must be an integer, not {quorum!r}")
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
        bad.append(f"unreadable trust file: {exc}")
    else:
        if not listed <= set(identities):
            bad.append(f"witnesses of non-members: {sorted(listed - set(identities))}")
        if quorum < need:
            bad.append(f"quorum {quorum} is below {need} of the {len(identities)} members: a "
                       f"split view would need only {max(0, 2 * quorum - len(identities))} "
                       "colluding witnesses")  # fmt: skip
    report.add("pinned identities", not bad,
               "; ".join(bad) if bad else f"{len(identities)} members: the log admits exactly "
               f"their genesis keys, witnesses are theirs, quorum ≥ {need}")  # fmt: skip


def attestation_problems(trust: Mapping[str, Any], admitted: Mapping[str, bytes]) -> list[str]:
    """What is wrong with the trust file's witnesses: each must be a different member's, under
    that member's witness name, attested by the identity key the member was admitted with
    (``admitted``: the log's own entries) for this consortium and this log (origin and note
    key). Empty when all is well. Shared by `audit verify` and the portal."""
    bad: list[str] = []
    try:
        consortium = trust.get("consortium")
        if not isinstance(consortium, str) or not consortium:
            return ["the trust file names no consortium: witness keys unattested"]
        origin = str(trust["origin"])
        log_key = base64.b64decode(trust["log_key"]["ed25519"], validate=True)
        seen: set[str] = set()
        for w in trust["witnesses"]:
            member = str(w.get("member", ""))
            try:
                if not member or member in seen:
                    raise ValueError("each witness must be a different member's")
                seen.add(member)
                key = CosignerKey(str(w["name"]), base64.b64decode(w["ed25519"], validate=True),
                                  base64.b64decode(w["mldsa44"], validate=True))  # fmt: skip
                identity = admitted.get(member)
                if identity is None:
                    raise ValueError("no identity key admitted on the log")
                signed = base64.b64decode(w.get("attestation", ""), validate=True)
                attestation.check(consortium, member, VerifyKey(identity), origin, log_key, key,
                                  signed)  # fmt: skip
            except (GuardiansError, KeyError, TypeError, ValueError, binascii.Error) as exc:
                bad.append(f"{member or '?'}: {exc}")
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        bad.append(f"unreadable trust file: {exc}")
    return bad


def _check_attestations(report: AuditReport, trust_path: Path, admitted: dict[str, bytes]) -> None:
    try:
        trust = files.read_json(trust_path)
        bad = attestation_problems(trust, admitted)
        n = len(trust["witnesses"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        bad, n = [f"unreadable trust file: {exc}"], 0
    report.add("witness attestations", not bad,
               "; ".join(bad) if bad else f"{n} witness keys, one per member, attested by the "
               "identity keys admitted on the log for this log")  # fmt: skip


def default_state_path(origin: str) -> Path:
    """Where an auditor keeps the last checkpoint it accepted for ``origin``."""
    import hashlib
    import os

    base = os.environ.get("GUARDIANS_STATE_DIR") or str(
        Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        / "guardians" / "audit"
    )  # fmt: skip
    return Path(base) / (hashlib.sha256(origin.encode()).hexdigest()[:32] + ".checkpoint")


def verify_log_dir(
    directory: str | Path,
    *,
    trust: str | Path | None = None,
    state: str | Path | None = None,
    anchor: Anchor | None = None,
    identities: Mapping[str, bytes] | None = None,
    extra: Callable[[AuditReport, Checkpoint], None] | None = None,
) -> AuditReport:
    """``extra``: further checks of a higher layer (they add to the report, never raise), run
    on the verified checkpoint before the state is written. ``state``: file keeping the last
    accepted checkpoint ("default": one per origin, see
    :func:`default_state_path`). ``anchor``: a live contract to read the latest anchored
    checkpoint from; without it, the anchors recorded in anchor.json (if any) are checked.
    ``identities``: the members' identity keys pinned out of band (the consortium's genesis):
    the log must admit exactly these keys, witnesses must be these members', and the quorum
    at least :func:`~guardians.ledger.checkpoint.default_quorum` of them."""
    d = Path(directory)
    report = AuditReport(str(d))
    if trust is None:
        # The trust.json published next to a log is the operator's own claim: accepting it
        # would let anyone present a forged log signed and "witnessed" by keys of their own.
        report.add("trust configuration", False,
                   "no pinned trust: pass the consortium's trust file (log key, witness keys, "
                   "quorum) obtained out of band")  # fmt: skip
        return report
    trust_path = Path(trust)
    try:
        origin, log_key, witnesses, quorum, declared_anchor = load_trust(trust_path)
    except (OSError, ValueError, KeyError, TypeError, binascii.Error, GuardiansError) as exc:
        report.add("trust configuration", False, f"{trust_path}: {exc}")
        return report
    pinned = f"{origin}, {len(witnesses)} witnesses, quorum {quorum} (pinned: {trust_path})"
    report.add("trust configuration", True, pinned)
    try:
        note = SignedNote.parse(files.read_regular(d / "checkpoint", files.NOTE))
        cp = accept_checkpoint(note, log_key, witnesses, quorum, origin=origin)
    except (OSError, GuardiansError) as exc:
        report.add("checkpoint signatures", False, str(exc))
        return report
    report.checkpoint = note.text
    sigs = f"log signature and ≥{quorum} ML-DSA-44 witness cosignatures, size {cp.size}"
    report.add("checkpoint signatures", True, sigs)
    try:
        store = LogStore(d / "log.db", readonly=True)
    except (OSError, GuardiansError) as exc:
        report.add("log entries", False, str(exc))
        return report
    try:
        try:
            store.verify()
            report.add("log entries", True, f"{store.size} entries; every hash recomputed")
        except GuardiansError as exc:
            report.add("log entries", False, f"tampered: {exc}")
            return report
        report.size = store.size
        if cp.size > store.size:
            report.add("checkpoint root", False,
                       f"checkpoint size {cp.size} exceeds the log's {store.size}")  # fmt: skip
            return report
        root = store.root(cp.size)
        same = root == cp.root
        detail = (
            "matches the recomputed tree"
            if same
            else f"recomputed root {root.hex()} differs from the checkpoint's"
        )
        if not report.add("checkpoint root", same, detail):
            return report
        state_path = default_state_path(cp.origin) if state == "default" else state
        new_state = _check_state(report, store, cp, Path(state_path) if state_path else None)
        _check_anchor(report, store, cp, d, anchor, declared_anchor)
        kinds: Counter[str] = Counter()
        versions = 0
        admitted: dict[str, bytes] = {}
        for idx, data in store.entries(0, cp.size):
            entry: codec.Message | None = None
            try:
                entry = codec.decode(data)
                kind = entry.KIND
            except GuardiansError:
                kind = "(undecodable)"
            if isinstance(entry, _entries.MemberAdmitted):
                admitted.setdefault(entry.member, entry.identity_key)
            kinds[kind] += 1
            if kind == "log/model-promoted":
                verify_inclusion(idx, cp.size, leaf_hash(data), store.inclusion_proof(idx, cp.size),
                                 cp.root)  # fmt: skip
                versions += 1
        if identities is not None:
            _check_identities(report, trust_path, admitted, identities)
        _check_attestations(report, trust_path, admitted)
        report.kinds = dict(sorted(kinds.items()))
        report.model_versions = versions
        report.add("model versions included", "(undecodable)" not in kinds,
                   f"{versions} model versions proven included under the checkpoint")  # fmt: skip
        if extra is not None:
            extra(report, cp)
        if new_state is not None and report.ok:  # remember only what fully verified
            try:
                new_state.parent.mkdir(parents=True, exist_ok=True)
                tmp = new_state.with_name(new_state.name + ".tmp")
                tmp.write_text(cp.text())
                tmp.replace(new_state)  # a crash mid-write leaves the previous state whole
            except OSError as exc:
                report.add("auditor state", False, f"cannot record the checkpoint in "
                           f"{new_state}: {exc.strerror or exc}")  # fmt: skip
    except GuardiansError as exc:
        report.add("inclusion", False, str(exc))
    finally:
        store.close()
    return report


def _check_anchor(
    report: AuditReport,
    store: LogStore,
    cp: Checkpoint,
    d: Path,
    anchor: Anchor | None,
    declared: dict[str, str] | None,
) -> None:
    if anchor is not None:
        size, root = anchor.latest(cp.origin)
        where = f"contract {anchor.address}"
        points = [(size, root)] if size else []
    elif (d / "anchor.json").exists():
        try:
            rec = files.read_json(d / "anchor.json", files.RECORD)
            points = [(a["size"], bytes.fromhex(a["root"])) for a in rec["anchored"]]
            if any(type(n) is not int or n < 0 for n, _ in points):
                raise ValueError("an anchored size is not a non-negative integer")
            where = f"anchor.json ({rec.get('chain') or 'chain'}, contract {rec['contract']})"
            if declared and rec["contract"] != declared.get("contract"):
                report.add("anchored checkpoints", False,
                           "anchor.json names another contract than the trust file")  # fmt: skip
                return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            report.add("anchored checkpoints", False, f"anchor.json unreadable: {exc}")
            return
    elif declared:
        report.add("anchored checkpoints", False,
                   f"the consortium anchors on {declared.get('contract')}, but no anchor record "
                   "was found")  # fmt: skip
        return
    else:
        return
    for size, root in points:
        if size > store.size:
            report.add("anchored checkpoints", False,
                       f"anchored size {size} exceeds the log's {store.size}")  # fmt: skip
            return
        if store.root(size) != root:
            why = f"the log's root at anchored size {size} differs from the anchor"
            report.add("anchored checkpoints", False, why)
            return
    if declared and not points:
        report.add("anchored checkpoints", False,
                   f"the consortium anchors on {declared.get('contract')}, but no checkpoint "
                   "was anchored")  # fmt: skip
        return
    latest = max((s for s, _ in points), default=0)
    detail = f"{len(points)} anchors consistent with the log (latest size {latest}); {where}"
    report.add("anchored checkpoints", True, detail)


def _check_state(
    report: AuditReport, store: LogStore, cp: Checkpoint, state: Path | None
) -> Path | None:
    """Check consistency with the last accepted checkpoint; return where to record this one
    (written by the caller only if the whole audit passes)."""
    if state is None:
        report.add("consistency with last seen", True, "no state file given: first audit")
        return None
    if state.exists():
        try:
            prev = Checkpoint.parse_text(files.read_text(state))
        except (OSError, ValueError, GuardiansError) as exc:
            report.add("consistency with last seen", False, f"unreadable state file: {exc}")
            return None
        if prev.origin != cp.origin:
            report.add("consistency with last seen", False, "state file is for another log")
            return None
        try:
            if prev.size > cp.size:
                raise GuardiansError(f"log went back from size {prev.size} to {cp.size}")
            if prev.size:
                verify_consistency(prev.size, cp.size, prev.root, cp.root,
                                   store.consistency_proof(prev.size, cp.size))  # fmt: skip
        except GuardiansError as exc:
            report.add("consistency with last seen", False, f"rewritten history: {exc}")
            return None
        report.add("consistency with last seen", True, f"extends size {prev.size}")
    else:
        report.add("consistency with last seen", True, "first audit of this log")
    return state
