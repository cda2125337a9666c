"""The ServerApp side: Guardians rounds over a Flower Grid.

:class:`FlowerFederation` is the same :class:`~guardians.engine.federation.Federation` walk as
the embedded engine (stats phase, secure rounds with contribution proofs, robust aggregation,
ledger commits); only :meth:`exchange` differs: each stage's messages go out through the
SuperLink with ``Grid.send_and_receive`` and whatever comes back before the stage timeout is
handed to the protocol. A SuperNode that died, or a member that stayed silent, is simply
absent, and the protocol's dropout recovery takes over.

:func:`run_consortium` is a whole coordinator for a ServerApp's ``main``::

    from flwr.serverapp import Grid, ServerApp
    from guardians.engine.flower import run_consortium

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_consortium(grid, "consortium.json", "out", rounds=10)
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Message
from flwr.serverapp import Grid

from guardians import codec
from guardians.crypto.errors import CryptoError, SignatureError
from guardians.engine import member_service
from guardians.engine.audit import AuditTrail, found_trail, model_hash
from guardians.engine.federation import COORDINATOR, Federation, Incident, Replies
from guardians.engine.flower import envelope
from guardians.errors import ConfigError, GuardiansError, RemoteProtocolError
from guardians.ledger.checkpoint import default_quorum
from guardians.node.coordinator import CoordinatorNode
from guardians.node.deployment import ConsortiumConfig
from guardians.protocol.round import RoundResult, Send

# A member's refusal of a coordinator message (the member accuses the coordinator).
_REFUSALS = {"RemoteProtocolError", "DecodeError"}


def send_and_collect(
    grid: Grid, msgs: Sequence[Message], timeout: float, poll: float = 0.2
) -> list[tuple[int, Message]]:
    """Push ``msgs``, then pull replies until all are in or ``timeout`` passes: (index of the
    message answered, reply). Grid.send_and_receive polls every 3 s; a secure round has seven
    stages, so we poll faster. Errors the SuperLink itself returns (an unreachable node) carry
    no sender of their own, so replies are matched to requests, never to claimed senders."""
    ids = list(grid.push_messages(msgs))
    index = {mid: k for k, mid in enumerate(ids) if mid is not None}
    pending = set(index)
    got: list[tuple[int, Message]] = []
    deadline = time.monotonic() + timeout
    while pending:
        for reply in grid.pull_messages(list(pending)):
            mid = reply.metadata.reply_to_message_id
            if mid in pending:
                pending.discard(mid)
                got.append((index[mid], reply))
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    return got


HELLO_TTL = 60.0
# What a run writes to its output directory (the operator's flwr log may already be there).
RUN_FILES = ("progress.jsonl", "rounds.jsonl", "params", "standardizer.npz", "egress.json",
             "ledger", "result.json")  # fmt: skip
MAX_REMOTE_TEXT = 500  # what a member's error text may put on the ledger


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REMOTE_TEXT else text[:MAX_REMOTE_TEXT] + "…"


def _frame(reply: Message) -> dict[str, Any]:
    """The member service's answer in a reply, or an EnvelopeError saying why there is none.
    Everything in it comes from a party we do not trust: shapes are checked before use."""
    if reply.has_error():
        raise envelope.EnvelopeError(f"ClientApp failed: {reply.error.reason}")
    frame = envelope.unpack(envelope.content_of(reply))
    if "error" in frame:
        why, kind = frame.get("error"), frame.get("error_type")
        if not isinstance(why, str) or not isinstance(kind, str):
            raise envelope.EnvelopeError("malformed error frame")
        raise RemoteRefusal(kind, why)
    return frame


class RemoteRefusal(envelope.EnvelopeError):
    """The member service answered with an error (a refusal, or a failure of its own)."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(f"{kind}: {_clip(why)}")
        self.kind = kind
        self.why = _clip(why)


class MembersMissingError(GuardiansError):
    """Not enough of the consortium's members answered on the Flower deployment."""


@dataclass(frozen=True)
class NodeClaim:
    node_id: int
    member: str
    fingerprint: str


def discover(
    grid: Grid,
    config: ConsortiumConfig,
    session: str,
    *,
    minimum: int,
    timeout: float,
    poll: float = 1.0,
    log: Callable[[dict[str, Any]], None] = lambda _: None,
) -> dict[str, int]:
    """Member → Flower node id, for every connected SuperNode whose member signs, with its
    identity key, a fresh nonce together with that node's id. Flower's node authentication
    says a node was registered; this says which member it is, so a node (registered or not)
    cannot pose as a member and swallow its messages."""
    keys = config.verify_keys()
    expected = set(keys)
    found: dict[str, int] = {}
    nonces: dict[int, bytes] = {}
    asked: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        fresh = [n for n in grid.get_node_ids() if n not in asked]
        nonces.update((n, secrets.token_bytes(member_service.NONCE_BYTES)) for n in fresh)
        msgs = [
            Message(envelope.pack({"op": "hello", "nonce": nonces[n]}), dst_node_id=n,
                    message_type=envelope.MESSAGE_TYPE, group_id="hello", ttl=HELLO_TTL)
            for n in fresh
        ]  # fmt: skip
        asked.update(fresh)
        left = max(1.0, deadline - time.monotonic())
        answered: set[int] = set()
        for k, reply in send_and_collect(grid, msgs, min(left, HELLO_TTL)) if msgs else ():
            node = fresh[k]
            answered.add(node)
            try:
                hello = _frame(reply)
            except envelope.EnvelopeError as exc:
                # A ClientApp that failed, or a member service not up yet: ask again later.
                asked.discard(node)
                log({"event": "node-not-ready", "node": node, "why": _clip(str(exc))})
                continue
            member, sig = hello.get("member"), hello.get("signature")
            try:
                if not isinstance(member, str) or member not in expected:
                    raise SignatureError(f"claims to be {_clip(repr(member))}, not a member")
                if not isinstance(sig, bytes):
                    raise SignatureError("no signature binding the node to the member")
                payload = member_service.binding_payload(session, member, node, nonces[node])
                keys[member].verify(sig, payload, member_service.BINDING_CONTEXT)
            except CryptoError as exc:
                log({"event": "unknown-node", "node": node, "why": _clip(str(exc))})
                continue
            if member in found and found[member] != node:
                log({"event": "duplicate-member", "member": member, "nodes": [found[member], node]})
                continue
            found[member] = node
            log({"event": "member-online", "member": member, "node": node})
        asked -= set(fresh) - answered  # no reply in time: ask again
        if len(found) == len(expected) or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    if len(found) < minimum:
        missing = sorted(set(expected) - set(found))
        raise MembersMissingError(
            f"{len(found)} of {len(expected)} members online after {timeout:.0f} s "
            f"(need {minimum}); missing: {missing}"
        )
    return found


class FlowerFederation(Federation):
    def __init__(
        self,
        coordinator: CoordinatorNode,
        grid: Grid,
        nodes: dict[str, int],
        *,
        audit: AuditTrail | None = None,
        stage_timeout: float = 120.0,
        progress: Callable[[dict[str, Any]], None] = lambda _: None,
    ) -> None:
        super().__init__(coordinator, audit)
        self.grid = grid
        self.nodes = dict(nodes)
        self.stage_timeout = stage_timeout
        self.progress = progress
        self.silent: dict[int, list[str]] = {}  # round → members that did not answer a stage

    def on_stage(self, round: int, stage: str) -> None:
        self.progress({"event": "stage", "round": round, "stage": stage})

    def request(self, member: str, frame: dict[str, Any], group: str) -> Message:
        # A stage's message expires with the stage: a late one must not reach the member
        # after the round has moved on.
        return Message(envelope.pack(frame), dst_node_id=self.nodes[member],
                       message_type=envelope.MESSAGE_TYPE, group_id=group,
                       ttl=self.stage_timeout + 10.0)  # fmt: skip

    def exchange(self, round: int, stage: str, sends: Sequence[Send]) -> Replies:
        # Members that never came online have no node; nodes the SuperLink has marked offline
        # (missed heartbeats) would only answer with an error after the timeout.
        online = set(self.grid.get_node_ids())
        live = [s for s in sends if s.to in self.nodes and self.nodes[s.to] in online]
        to = [s.to for s in live]
        msgs = [
            self.request(s.to, {"op": "deliver", "payload": codec.encode(s.message)}, str(round))
            for s in live
        ]
        t0 = time.perf_counter()
        replies = send_and_collect(self.grid, msgs, self.stage_timeout) if msgs else []
        self.compute[(round, COORDINATOR, f"wait:{stage}")] += time.perf_counter() - t0
        out: Replies = []
        answered = set()
        for k, reply in replies:
            member = to[k]
            answered.add(member)
            try:
                frame = _frame(reply)
            except RemoteRefusal as exc:
                # A member refusing a coordinator message accuses the coordinator.
                who = COORDINATOR if exc.kind in _REFUSALS else member
                kind = "protocol-violation" if who == COORDINATOR else "node-error"
                text = f"{member}: {exc.why}" if who == COORDINATOR else exc.why
                self.incident(Incident(round, who, text, kind=kind))
                continue
            except envelope.EnvelopeError as exc:
                self.incident(Incident(round, member, _clip(str(exc)), kind="node-error"))
                continue
            data = frame.get("replies")
            if not isinstance(data, list) or not all(isinstance(d, bytes) for d in data):
                self.incident(Incident(round, member, "malformed replies (not a list of bytes)"))
                continue
            for d in data:
                try:
                    out.append((member, codec.decode(d)))
                except RemoteProtocolError as exc:
                    self.incident(Incident(round, member, _clip(str(exc))))
        silent = sorted({s.to for s in sends} - answered)
        if silent:
            self.silent.setdefault(round, []).extend(silent)
            self.progress({"event": "silent", "round": round, "stage": stage, "members": silent})
        return out

    def egress(self) -> dict[str, Any]:
        """Each member's own egress record, as its member service metered it."""
        online = set(self.grid.get_node_ids())
        members = [m for m, n in self.nodes.items() if n in online]
        msgs = [self.request(m, {"op": "egress"}, "egress") for m in members]
        out: dict[str, Any] = {}
        for k, reply in send_and_collect(self.grid, msgs, self.stage_timeout):
            member = members[k]
            try:
                record = _egress_record(member, _frame(reply).get("egress"))
            except envelope.EnvelopeError as exc:
                self.progress({"event": "no-egress-record", "member": member,
                               "why": _clip(str(exc))})  # fmt: skip
                continue
            out[member] = record
        return out


_EGRESS_FIELDS = {"records_held": int, "raw_records_out": int, "messages_out": int,
                  "bytes_out": int, "bytes_in": int, "out_by_kind": dict,
                  "out_by_protection": dict}  # fmt: skip


def _egress_record(member: str, record: Any) -> dict[str, Any]:
    """A member's own egress record, in the shape ``EgressMeter.summary`` gives, or an error."""
    try:
        mine = record["per_member"][member]
        ok = all(isinstance(mine[k], t) for k, t in _EGRESS_FIELDS.items())
        ok = ok and all(isinstance(c, str) and isinstance(n, int)
                        for c, n in mine["out_by_protection"].items())  # fmt: skip
        ok = ok and all(isinstance(c, str) and isinstance(v, dict)
                        and all(isinstance(n, int) for n in v.values())
                        for c, v in mine["out_by_kind"].items())  # fmt: skip
    except (KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise envelope.EnvelopeError(f"{member}'s egress record is malformed")
    return {"per_member": {member: mine}}


def _round_json(result: RoundResult, fed: FlowerFederation) -> dict[str, Any]:
    return {
        "round": result.round,
        "contributors": sorted(result.contributors),
        "dropped": dict(result.dropped),
        "silent": sorted(set(fed.silent.get(result.round, []))),
        "rejected": sorted(result.rejected),
        "verified": result.verified,
        "clipped": result.clipped,
        "mean_local_loss": result.mean_loss if np.isfinite(result.mean_loss) else None,
        "model_sha256": model_hash(result.params).hex(),
    }


def run_consortium(
    grid: Grid,
    consortium: str | Path,
    out: str | Path,
    *,
    rounds: int,
    stage_timeout: float = 120.0,
    join_timeout: float = 300.0,
    ledger: bool = True,
) -> dict[str, Any]:
    """Coordinate ``rounds`` rounds of the consortium over ``grid``; write what happened to
    ``out`` (a new directory: a run never mixes with another's records): ``progress.jsonl``
    (as it happens), ``rounds.jsonl``, ``params/round-NNN.npy``, ``standardizer.npz``,
    ``egress.json``, ``ledger/`` and, last, ``result.json``.

    Each run is a new session: members start their round state afresh, and every transcript
    is bound to the run (``session_name``: consortium, genesis digest, Flower run id)."""
    cfg = ConsortiumConfig.load(consortium)
    if not str(out):
        raise ConfigError("run config 'out' is empty: name the run's output directory")
    out = Path(out)
    used = [n for n in RUN_FILES if (out / n).exists()]
    if used:
        raise ConfigError(f"{out} already holds a run ({', '.join(used)}): each run writes "
                          "to a new directory")  # fmt: skip
    (out / "params").mkdir(parents=True, exist_ok=True)
    session = member_service.session_name(cfg.name, cfg.digest(), int(grid.run.run_id))
    with contextlib.ExitStack() as stack:
        progress_file = stack.enter_context((out / "progress.jsonl").open("a", buffering=1))

        def progress(event: dict[str, Any]) -> None:
            progress_file.write(json.dumps({"t": round(time.time(), 3), **event}) + "\n")

        try:
            result = _coordinate(grid, cfg, Path(consortium), session, out, rounds,
                                 stage_timeout, join_timeout, ledger, progress,
                                 stack)  # fmt: skip
        except Exception as exc:
            progress({"event": "failed", "error": f"{type(exc).__name__}: {exc}"})
            raise
        progress({"event": "done"})
        return result


def _coordinate(
    grid: Grid, cfg: ConsortiumConfig, genesis: Path, session: str, out: Path, rounds: int,
    stage_timeout: float, join_timeout: float, ledger: bool,
    progress: Callable[[dict[str, Any]], None], stack: contextlib.ExitStack,
) -> dict[str, Any]:  # fmt: skip
    minimum = max(1, int(np.ceil(cfg.min_fraction * len(cfg.members))))
    if cfg.privacy == "secagg":
        minimum = max(3, minimum)
        if len(cfg.members) < 3:
            raise ConfigError("secure aggregation needs at least 3 members")
    if ledger:
        # Members found now are the run's; below the witness quorum no checkpoint could ever
        # be cosigned, so such a run does not start.
        minimum = max(minimum, default_quorum(len(cfg.members)))
    progress({"event": "waiting", "members": list(cfg.members), "session": session})
    nodes = discover(grid, cfg, session, minimum=minimum, timeout=join_timeout, log=progress)
    initial = cfg.initial_params(genesis) if cfg.external else None
    coord = CoordinatorNode(
        cfg.members, cfg.new_model(initial), cfg.train_config(), np.random.default_rng(cfg.seed),
        n_features=cfg.n_features, server_momentum=cfg.server_momentum,
        privacy=cfg.privacy, directory=cfg.verify_keys(), consortium=session,
        norm_bound=cfg.norm_bound, rule=cfg.rule, assumed_malicious=cfg.assumed_malicious,
        min_fraction=cfg.min_fraction, standardize=not cfg.external,
    )  # fmt: skip
    audit = None
    if ledger:
        ids = {m: k.raw for m, k in cfg.verify_keys().items()}
        audit, _ = found_trail(out / "ledger", cfg.name, ids)
        stack.callback(audit.close)
    fed = FlowerFederation(coord, grid, nodes, audit=audit, stage_timeout=stage_timeout,
                           progress=progress)  # fmt: skip
    rounds_file = stack.enter_context((out / "rounds.jsonl").open("a", buffering=1))

    def on_round(result: RoundResult) -> None:
        np.save(out / "params" / f"round-{result.round:03d}.npy", result.params)
        rec = _round_json(result, fed)
        rounds_file.write(json.dumps(rec) + "\n")
        progress({"event": "round", **rec})

    fed.run(rounds, on_round=on_round)
    if coord.standardizer is not None:
        np.savez(out / "standardizer.npz", mean=coord.standardizer.mean,
                 scale=coord.standardizer.scale)  # fmt: skip
    egress = fed.egress()
    (out / "egress.json").write_text(json.dumps(egress, indent=2) + "\n")
    result = {
        "consortium": cfg.name,
        "session": session,
        "genesis_sha256": cfg.digest(),
        "rounds": len(fed.run_record.rounds),
        "nodes": nodes,
        "incidents": [
            {"round": i.round, "member": i.member, "kind": i.kind, "error": i.error}
            for i in fed.run_record.incidents
        ],
        "reputation": {m: coord.reputation.score(m) for m in cfg.members},
        "reputation_threshold": coord.reputation.threshold,
        "quarantined": dict(coord.reputation.quarantined),
        "model_sha256": model_hash(coord.params).hex(),
        "wait_s": sum(v for (_, _, k), v in fed.compute.items() if k.startswith("wait:")),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
