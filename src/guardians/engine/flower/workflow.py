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
                    message_type=envelope.MESSAGE_TYPE, group_id="hello")
            for n in fresh
        ]  # fmt: skip
        asked.update(fresh)
        left = max(1.0, deadline - time.monotonic())
        for k, reply in send_and_collect(grid, msgs, min(left, 60.0)) if msgs else ():
            node = fresh[k]
            if reply.has_error():
                asked.discard(node)  # e.g. its member service was not up yet: ask again
                continue
            try:
                hello = envelope.unpack(envelope.content_of(reply))
            except envelope.EnvelopeError:
                continue
            member, sig = hello.get("member"), hello.get("signature")
            try:
                if member not in expected or not isinstance(sig, bytes):
                    raise SignatureError("no member identity and signature")
                payload = member_service.binding_payload(config.name, member, node, nonces[node])
                keys[member].verify(sig, payload, member_service.BINDING_CONTEXT)
            except CryptoError as exc:
                log({"event": "unknown-node", "node": node, "claims": str(member), "why": str(exc)})
                continue
            if member in found and found[member] != node:
                log({"event": "duplicate-member", "member": member, "nodes": [found[member], node]})
                continue
            found[member] = node
            log({"event": "member-online", "member": member, "node": node})
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
        return Message(envelope.pack(frame), dst_node_id=self.nodes[member],
                       message_type=envelope.MESSAGE_TYPE, group_id=group)  # fmt: skip

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
            if reply.has_error():
                self.incident(Incident(round, member, f"ClientApp failed: {reply.error.reason}",
                                       kind="node-error"))  # fmt: skip
                continue
            try:
                frame = envelope.unpack(envelope.content_of(reply))
            except envelope.EnvelopeError as exc:
                self.incident(Incident(round, member, str(exc)))
                continue
            if "error" in frame:
                who = COORDINATOR if frame.get("error_type") in _REFUSALS else member
                kind = "protocol-violation" if who == COORDINATOR else "node-error"
                self.incident(Incident(round, who, f"{member}: {frame['error']}", kind=kind))
                continue
            for data in frame.get("replies", []):
                try:
                    out.append((member, codec.decode(data)))
                except RemoteProtocolError as exc:
                    self.incident(Incident(round, member, str(exc)))
        silent = sorted({s.to for s in sends} - answered)
        if silent:
            self.silent.setdefault(round, []).extend(silent)
            self.progress({"event": "silent", "round": round, "stage": stage, "members": silent})
        return out

    def egress(self) -> dict[str, Any]:
        """Each member's own egress record, as its member service metered it."""
        members = list(self.nodes)
        msgs = [self.request(m, {"op": "egress"}, "egress") for m in members]
        out: dict[str, Any] = {}
        for k, reply in send_and_collect(self.grid, msgs, self.stage_timeout):
            member = members[k]
            if reply.has_error():
                continue
            try:
                frame = envelope.unpack(envelope.content_of(reply))
            except envelope.EnvelopeError:
                continue
            if isinstance(frame.get("egress"), dict):
                out[member] = frame["egress"]
        return out


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
    ``out``: ``progress.jsonl`` (as it happens), ``rounds.jsonl``, ``params/round-NNN.npy``,
    ``standardizer.npz``, ``egress.json``, ``ledger/`` and, last, ``result.json``."""
    cfg = ConsortiumConfig.load(consortium)
    out = Path(out)
    (out / "params").mkdir(parents=True, exist_ok=True)
    progress_file = (out / "progress.jsonl").open("a", buffering=1)

    def progress(event: dict[str, Any]) -> None:
        progress_file.write(json.dumps({"t": round(time.time(), 3), **event}) + "\n")

    try:
        minimum = max(3, int(np.ceil(cfg.min_fraction * len(cfg.members))))
        if len(cfg.members) < minimum:
            raise ConfigError(f"{consortium}: secure aggregation needs at least 3 members")
        progress({"event": "waiting", "members": list(cfg.members)})
        nodes = discover(grid, cfg, minimum=minimum, timeout=join_timeout, log=progress)
        coord = CoordinatorNode(
            cfg.members, cfg.new_model(), cfg.train_config(), np.random.default_rng(cfg.seed),
            n_features=cfg.n_features, server_momentum=cfg.server_momentum,
            privacy=cfg.privacy, directory=cfg.verify_keys(), consortium=cfg.name,
            norm_bound=cfg.norm_bound if cfg.privacy == "secagg" else None, rule=cfg.rule,
            min_fraction=cfg.min_fraction,
        )  # fmt: skip
        audit = None
        if ledger:
            ids = {m: k.raw for m, k in cfg.verify_keys().items()}
            audit, _ = found_trail(out / "ledger", cfg.name, ids)
        fed = FlowerFederation(coord, grid, nodes, audit=audit, stage_timeout=stage_timeout,
                               progress=progress)  # fmt: skip
        rounds_file = (out / "rounds.jsonl").open("a", buffering=1)

        def on_round(result: RoundResult) -> None:
            np.save(out / "params" / f"round-{result.round:03d}.npy", result.params)
            rec = _round_json(result, fed)
            rounds_file.write(json.dumps(rec) + "\n")
            progress({"event": "round", **rec})

        fed.run(rounds, on_round=on_round)
        rounds_file.close()
        assert coord.standardizer is not None
        np.savez(out / "standardizer.npz", mean=coord.standardizer.mean,
                 scale=coord.standardizer.scale)  # fmt: skip
        egress = fed.egress()
        (out / "egress.json").write_text(json.dumps(egress, indent=2) + "\n")
        if audit is not None:
            audit.close()
        result = {
            "consortium": cfg.name,
            "rounds": len(fed.run_record.rounds),
            "nodes": nodes,
            "incidents": [
                {"round": i.round, "member": i.member, "kind": i.kind, "error": i.error}
                for i in fed.run_record.incidents
            ],
            "reputation": {m: coord.reputation.score(m) for m in cfg.members},
            "model_sha256": model_hash(coord.params).hex(),
            "wait_s": sum(v for (_, _, k), v in fed.compute.items() if k.startswith("wait:")),
        }
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        progress({"event": "done"})
        return result
    except Exception as exc:
        progress({"event": "failed", "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        progress_file.close()
