"""Guardians over Flower: the member service, the envelope, and a real deployment (SuperLink and
SuperNodes as processes, TLS, node authentication) that survives a killed SuperNode."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest

flwr = pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, Message, RecordDict  # noqa: E402
from flwr.serverapp import Grid  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from guardians import codec  # noqa: E402
from guardians.crypto.errors import SignatureError  # noqa: E402
from guardians.crypto.sign import SigningKey  # noqa: E402
from guardians.engine import member_service  # noqa: E402
from guardians.engine.audit import model_hash  # noqa: E402
from guardians.engine.flower import envelope  # noqa: E402
from guardians.engine.flower.deploy import DeploymentError, LocalDeployment  # noqa: E402
from guardians.engine.flower.mod import guardians_mod  # noqa: E402
from guardians.engine.flower.workflow import (  # noqa: E402
    MembersMissingError,
    discover,
    run_consortium,
)
from guardians.engine.ports import free_port  # noqa: E402
from guardians.errors import ConfigError  # noqa: E402
from guardians.learning.data import load_dataset  # noqa: E402
from guardians.learning.metrics import Predictions, evaluate  # noqa: E402
from guardians.learning.partition import partition  # noqa: E402
from guardians.learning.preprocess import Standardizer  # noqa: E402
from guardians.ledger.audit import verify_log_dir  # noqa: E402
from guardians.ledger.entries import ModelPromoted, RoundCommitted  # noqa: E402
from guardians.ledger.store import LogStore  # noqa: E402
from guardians.node.deployment import (  # noqa: E402
    ConsortiumConfig,
    found_consortium,
    load_identity,
    load_records,
    member_dir,
)
from guardians.node.member import MemberNode  # noqa: E402
from guardians.protocol.messages import StatsRequest  # noqa: E402

MEMBERS = [f"member-{k:02d}" for k in range(1, 5)]


@pytest.fixture(scope="module")
def split():
    return load_dataset("nsl-kdd", task="binary", seed=0)


def _consortium(root: Path, split, per_member: int = 1500) -> ConsortiumConfig:
    tr = split.train
    part = partition("iid", tr.y, tr.groups, len(MEMBERS), np.random.default_rng(0))
    shares = {m: tr.subset(ix[:per_member]) for m, ix in zip(MEMBERS, part.indices, strict=True)}
    return found_consortium(root, "guardians-e2e", shares, hidden=(16,),
                            train={"epochs": 1, "batch_size": 64})  # fmt: skip


@pytest.fixture(scope="module")
def consortium(tmp_path_factory, split) -> Path:
    # Unix socket paths are short (108 bytes): a short root.
    root = Path(tmp_path_factory.mktemp("c"))
    _consortium(root, split)
    return root


# --- genesis and member files ---------------------------------------------------------------
def test_genesis_and_member_files_refuse_bad_input(consortium, tmp_path):
    cfg = ConsortiumConfig.load(consortium / "consortium.json")
    assert cfg.members == tuple(MEMBERS) and cfg.privacy == "secagg"
    key = member_dir(consortium, "member-01") / "identity.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert load_identity(key).verify_key.raw.hex() == cfg.directory["member-01"]
    with pytest.raises(ConfigError, match="no such consortium file"):
        ConsortiumConfig.load(tmp_path / "nope.json")
    raw = json.loads((consortium / "consortium.json").read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**raw, "colour": "red"}))
    with pytest.raises(ConfigError, match="unknown fields"):
        ConsortiumConfig.load(bad)
    bad.write_text(json.dumps({**raw, "directory": {**raw["directory"], "member-02": "00ff"}}))
    with pytest.raises(ConfigError, match="identity key of 'member-02'"):
        ConsortiumConfig.load(bad)
    bad.write_text(json.dumps({**raw, "train": {"epochs": 0}}))
    with pytest.raises(ConfigError, match="epochs"):
        ConsortiumConfig.load(bad)
    # Fails closed, naming the file and the field: a typo must not turn a policy off.
    for field, value, why in (
        ("privacy", "secgg", "privacy must be one of"),
        ("min_fraction", 5, "min_fraction must be in"),
        ("members", "abc", "members must be a list"),
        ("n_features", "3", "n_features must be a non-negative integer"),
        ("hidden", "ab", "hidden must be a list"),
        (
            "directory",
            {**raw["directory"], "member-99": raw["directory"]["member-01"]},
            "directory must name exactly the members \\(extra: \\[.member-99.\\]",
        ),
        ("norm_bound", -1, "norm_bound must be positive"),
    ):
        bad.write_text(json.dumps({**raw, field: value}))
        with pytest.raises(ConfigError, match=f"{bad}: consortium: {why}"):
            ConsortiumConfig.load(bad)
    bad.write_text(json.dumps({**raw, "privacy": "none"}))  # norm bound without secagg
    with pytest.raises(ConfigError, match="norm_bound is enforced by"):
        ConsortiumConfig.load(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        ConsortiumConfig.load(bad)
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 10)
    with pytest.raises(ConfigError, match="holds 64 bytes, this one 10"):
        load_identity(short)
    from guardians.node.deployment import write_secret

    with pytest.raises(ConfigError, match="refusing to overwrite a secret"):
        write_secret(key, b"x" * 64)
    records = member_dir(consortium, "member-01") / "records.npz"
    assert oct(records.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ConfigError, match="model takes 7"):
        load_records(records, n_features=7)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a records archive"):
        load_records(tmp_path / "junk.npz")
    with pytest.raises(ConfigError, match="already holds a consortium"):
        found_consortium(consortium, "again", {"m": load_records(records)})


# --- the member service -----------------------------------------------------------------------
def _service(
    consortium: Path, member: str = "member-01", identity: SigningKey | None = None,
    evidence_dir: Path | None = None,
) -> member_service.MemberService:  # fmt: skip
    """A member's node as `guardians member serve` builds it."""
    cfg = ConsortiumConfig.load(consortium / "consortium.json")
    d = member_dir(consortium, member)
    data = load_records(d / "records.npz")
    key = identity or load_identity(d / "identity.key")

    def factory(session: str) -> MemberNode:
        return MemberNode(member, data, cfg.new_model(), np.random.default_rng(0),
                          identity=key, directory=cfg.verify_keys(), consortium=session,
                          require_secure=cfg.privacy == "secagg",
                          external_training=cfg.external)  # fmt: skip

    return member_service.MemberService(member, data.X, factory, cfg.name, cfg.digest(),
                                        evidence_dir=evidence_dir)  # fmt: skip


def test_the_member_keeps_its_own_evidence_of_a_split_view(consortium, tmp_path):
    """The refusal goes to the coordinator, the party under suspicion: the member's service
    also writes the evidence (both checkpoints as the log signed them) to its own disk."""
    from guardians.engine.audit import AuditTrail
    from guardians.ledger.checkpoint import TransparencyLog
    from guardians.ledger.entries import ModelPromoted
    from guardians.ledger.note import SignedNote
    from guardians.protocol.witness import Cosignature, CosignRequest

    evidence = tmp_path / "evidence"
    svc = _service(consortium, evidence_dir=evidence)
    svc.handle({"op": "hello", "nonce": os.urandom(32), "node_id": 1, "run_id": 9})

    def deliver(msg):
        return svc.handle({"op": "deliver", "payload": codec.encode(msg), "run_id": 9})

    trail = AuditTrail(tmp_path / "log", "c.example/log", ["member-01"])
    trail.append(*(ModelPromoted(version=k, model_hash=bytes(32)) for k in range(3)))
    assert "replies" in deliver(trail.witness_key_request())
    note = trail.log.checkpoint()
    req = CosignRequest(log_name=trail.origin, log_key=trail.log.signer.public_key, proof=(),
                        old_size=0, note=note.format())  # fmt: skip
    (reply,) = deliver(req)["replies"]
    assert isinstance(codec.decode(reply), Cosignature)
    assert not evidence.exists()  # nothing to report yet
    fork = LogStore(tmp_path / "fork.db")
    fork.append_batch(codec.encode(ModelPromoted(version=k, model_hash=b"\x01" * 32))
                      for k in range(5))  # fmt: skip
    forked = TransparencyLog(fork, trail.origin, trail.log.signer).checkpoint()
    bad = CosignRequest(log_name=trail.origin, log_key=trail.log.signer.public_key,
                        proof=tuple(fork.consistency_proof(3)), old_size=3,
                        note=forked.format())  # fmt: skip
    refused = deliver(bad)
    assert refused["error_type"] == "RemoteProtocolError" and "split view" in refused["error"]
    (path,) = evidence.iterdir()
    assert path.stat().st_mode & 0o777 == 0o600
    ev = json.loads(path.read_text())
    verifier = trail.log.signer.verifier()
    for key in ("witnessed_note", "presented_note"):  # both signed by the log itself
        verifier.verify(SignedNote.parse(ev[key]))
    assert (
        SignedNote.parse(ev["presented_note"]).text != SignedNote.parse(ev["witnessed_note"]).text
    )
    deliver(bad)  # the same refusal again: no second copy
    assert len(list(evidence.iterdir())) == 1


def test_member_service_answers_and_refuses_with_typed_errors(consortium):
    svc = _service(consortium)
    cfg = ConsortiumConfig.load(consortium / "consortium.json")
    session = member_service.session_name(cfg.name, cfg.digest(), 5)
    nonce = os.urandom(32)
    hello = svc.handle({"op": "hello", "nonce": nonce, "node_id": 42, "run_id": 5})
    assert hello["member"] == "member-01"
    # The member binds itself to transport node 42, in run 5, under the coordinator's fresh
    # nonce; the binding transfers to no other node, nonce or run.
    key = cfg.verify_keys()["member-01"]
    ctx = member_service.BINDING_CONTEXT
    key.verify(hello["signature"],
               member_service.binding_payload(session, "member-01", 42, nonce), ctx)  # fmt: skip
    other_run = member_service.session_name(cfg.name, cfg.digest(), 6)
    for sess, node, n in ((session, 43, nonce), (session, 42, os.urandom(32)),
                          (other_run, 42, nonce)):  # fmt: skip
        with pytest.raises(SignatureError):
            key.verify(hello["signature"],
                       member_service.binding_payload(sess, "member-01", node, n), ctx)  # fmt: skip
    bad = {"op": "hello", "nonce": b"short", "node_id": 1, "run_id": 5}
    assert "32-byte nonce" in svc.handle(bad)["error"]
    assert "node id" in svc.handle({**bad, "nonce": nonce, "node_id": -1})["error"]
    assert "run id" in svc.handle({"op": "hello", "nonce": nonce, "node_id": 1})["error"]
    assert "unknown operation" in svc.handle({"op": "format-disk", "run_id": 5})["error"]
    assert "bytes payload" in svc.handle({"op": "deliver", "payload": "x", "run_id": 5})["error"]
    garbage = svc.handle({"op": "deliver", "payload": b"\xa1\x00garbage", "run_id": 5})
    assert garbage["error_type"] == "DecodeError"
    # The member's own policy: a plaintext statistics request is refused, by name.
    plain = codec.encode(StatsRequest(round=0, aggregation="plain"))
    refused = svc.handle({"op": "deliver", "payload": plain, "run_id": 5})
    assert refused["error_type"] == "RemoteProtocolError"
    assert "requires secure aggregation" in refused["error"]
    # A message of another run (a late or replayed one) is refused before it is even decoded.
    stale = svc.handle({"op": "deliver", "payload": plain, "run_id": 4})
    assert "this member is in run 5" in stale["error"]
    # Every answer that left the member is on its egress record, and no record left.
    eg = svc.handle({"op": "egress", "run_id": 5})["egress"]
    kinds = eg["per_member"]["member-01"]["out_by_kind"]
    assert kinds["service/hello"]["messages"] == 1 and kinds["service/error"]["messages"] >= 6
    assert eg["raw_records"] == 0


def test_member_service_over_its_unix_socket(consortium, tmp_path):
    import socket as socketlib
    import threading

    sock = tmp_path / "m.sock"
    server = member_service.serve(_service(consortium), sock)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert oct(sock.stat().st_mode & 0o777) == "0o600"  # the member's account only
        assert (
            member_service.call(sock, {"op": "egress", "run_id": 1})["egress"]["raw_records"] == 0
        )
        # Malformed frames get no answer rather than a crash, and the service lives on:
        # trailing bytes after the map, a frame that is not a map, a frame cut short.
        for raw in (b"\x00\x00\x00\x03\xa0\x00\x00", b"\x00\x00\x00\x01\x01",
                    b"\x00\x00\x00\x09\xa1"):  # fmt: skip
            with socketlib.socket(socketlib.AF_UNIX) as s:
                s.connect(str(sock))
                s.sendall(raw)
                s.shutdown(socketlib.SHUT_WR)
                s.settimeout(5)
                assert s.recv(10) == b""
        assert member_service.call(sock, {"op": "egress", "run_id": 1})["egress"]
        # A second service cannot take over a live socket.
        with pytest.raises(member_service.ServiceError, match="already listening"):
            member_service.serve(_service(consortium), sock)
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(member_service.ServiceError, match="unreachable"):
        member_service.call(tmp_path / "gone.sock", {"op": "egress", "run_id": 1})
    # Never replaces a file that is not a socket, and says so for paths too long to bind.
    victim = tmp_path / "notes.txt"
    victim.write_text("keep me")
    with pytest.raises(member_service.ServiceError, match="not a socket"):
        member_service.serve(_service(consortium), victim)
    assert victim.read_text() == "keep me"
    with pytest.raises(member_service.ServiceError, match="too long"):
        member_service.serve(_service(consortium), tmp_path / ("x" * 120))
    # For a SuperNode running under its own account: the socket is shared with one group.
    import grp

    mine = grp.getgrgid(os.getgid()).gr_name
    shared = member_service.serve(_service(consortium), tmp_path / "g.sock", group=mine)
    st = (tmp_path / "g.sock").stat()
    assert oct(st.st_mode & 0o777) == "0o660" and st.st_gid == os.getgid()
    shared.server_close()
    with pytest.raises(member_service.ServiceError, match="no such group"):
        member_service.serve(_service(consortium), tmp_path / "h.sock", group="no-such-group-x")


# --- the workflow over Flower's Grid contract, in process ---------------------------------------
class LoopbackGrid(Grid):
    """Flower's Grid contract in one process: every message goes through the real
    ``guardians_mod`` into a real member service over its Unix socket. (The real SuperLink and
    SuperNodes run in ``test_flower_deployment_survives_a_killed_supernode``.)"""

    def __init__(self, sockets: dict[int, Path], run_id: int, app: Any = None) -> None:
        self.sockets = sockets
        self.app = app  # a whole ClientApp (its mods, then its handlers); else the mod alone
        self._run = SimpleNamespace(run_id=run_id)
        self.offline: set[int] = set()
        self.replies: dict[str, Message] = {}

    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        raise NotImplementedError

    def get_node_ids(self) -> list[int]:
        return [n for n in self.sockets if n not in self.offline]

    def push_messages(self, messages: Any) -> list[str]:
        ids = []
        for m in messages:
            mid = m.object_id
            m.metadata.__dict__["_message_id"] = mid  # as Flower's HttpGrid does
            node = m.metadata.dst_node_id
            if node in self.sockets and node not in self.offline:
                TaskIdentity.node_id = node
                ctx = Context(run_id=self._run.run_id, node_id=node,
                              node_config={"guardians-socket": str(self.sockets[node])},
                              state=RecordDict(), run_config={})  # fmt: skip
                # (keyed by the id it was pushed under: a mod may replace the content)
                self.replies[mid] = (
                    self.app(m, ctx) if self.app is not None else guardians_mod(m, ctx, _no_app)
                )
                TaskIdentity.node_id = 1
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Any) -> list[Message]:
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
        raise NotImplementedError


def _no_app(msg: Message, ctx: Context) -> Message:
    raise AssertionError("a Guardians message reached the app's own handler")


@pytest.fixture
def flower_task():
    """Flower messages are created inside a task (a run): give this process one."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 70, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


@pytest.fixture
def services(consortium, tmp_path):
    """Member services on Unix sockets for members 1-3, plus a rogue node whose service
    claims to be member-02 with a key of its own."""
    import threading

    servers = {}
    specs = {11: ("member-01", None), 12: ("member-02", None), 13: ("member-03", None),
             66: ("member-02", SigningKey.generate())}  # fmt: skip
    for node, (m, key) in specs.items():
        server = member_service.serve(_service(consortium, m, key), tmp_path / f"{node}.sock")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[node] = server
    yield {n: tmp_path / f"{n}.sock" for n in specs}
    for server in servers.values():
        server.shutdown()
        server.server_close()


def test_discovery_binds_members_and_turns_away_a_rogue_node(consortium, services, flower_task):
    cfg = ConsortiumConfig.load(consortium / "consortium.json")
    grid = LoopbackGrid(services, run_id=70)
    session = member_service.session_name(cfg.name, cfg.digest(), 70)
    events: list[dict] = []
    nodes = discover(grid, cfg, session, minimum=3, timeout=3, poll=0.1, log=events.append)
    assert nodes == {"member-01": 11, "member-02": 12, "member-03": 13}
    rogue = [e for e in events if e.get("node") == 66]
    assert rogue and rogue[0]["event"] == "unknown-node"
    # Without member-03 online there are too few members, and the error names who is missing.
    grid.offline = {13}
    with pytest.raises(MembersMissingError, match="member-03"):
        discover(grid, cfg, session, minimum=3, timeout=0.5, poll=0.1)


def test_runs_over_the_grid_contract_twice_with_the_same_member_nodes(
    consortium, services, flower_task, tmp_path
):
    """Secure rounds with contribution proofs through mod → member service; a second run
    on the same long-lived member nodes starts a fresh session and works too."""
    del services[66]
    genesis = consortium / "consortium.json"
    first = run_consortium(LoopbackGrid(services, run_id=70), genesis, tmp_path / "run1",
                           rounds=1, stage_timeout=30, join_timeout=5)  # fmt: skip
    TaskIdentity.run_id = 71
    second = run_consortium(LoopbackGrid(services, run_id=71), genesis, tmp_path / "run2",
                            rounds=1, stage_timeout=30, join_timeout=5)  # fmt: skip
    for res in (first, second):
        assert res["rounds"] == 1 and not res["incidents"]
    assert first["session"] != second["session"]
    rounds = [json.loads(x) for x in (tmp_path / "run2" / "rounds.jsonl").read_text().splitlines()]
    assert rounds[0]["verified"] and rounds[0]["contributors"] == MEMBERS[:3]
    pinned = {m: k.raw for m, k in ConsortiumConfig.load(genesis).verify_keys().items()}
    report = verify_log_dir(
        tmp_path / "run2" / "ledger",
        trust=tmp_path / "run2" / "ledger" / "trust.json",
        identities=pinned,
    )
    assert report.ok and ("pinned identities", True) in [(n, ok) for n, ok, _ in report.checks]
    # A run never writes over another's records.
    with pytest.raises(ConfigError, match="already holds a run"):
        run_consortium(LoopbackGrid(services, run_id=71), consortium / "consortium.json",
                       tmp_path / "run2", rounds=1)  # fmt: skip


def _softmax_app(
    data_of: dict[int, Any],
    mean: np.ndarray,
    std: np.ndarray,
    seen: list[dict],
    spoil: dict[int, str],
) -> Any:
    """An existing Flower app: its own model (softmax regression in numpy), its own
    preprocessing and `@app.train`, plus the one Guardians mod. ``spoil`` makes a node's train
    function answer badly ("shape": arrays of the wrong shape, "count": no num-examples)."""
    from flwr.app import Array, ArrayRecord, MetricRecord
    from flwr.clientapp import ClientApp

    app = ClientApp(mods=[guardians_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        w = msg.content["arrays"]["w"].numpy().copy()
        b = msg.content["arrays"]["b"].numpy().copy()
        conf = msg.content["config"]
        seen.append(dict(conf))
        d = data_of[context.node_id]
        X, y = (d.X - mean) / std, d.y
        for _ in range(int(conf["local-epochs"])):
            z = X @ w + b
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(y)), y] -= 1
            w -= float(conf["lr"]) * (X.T @ p) / len(y)
            b -= float(conf["lr"]) * p.mean(axis=0)
        how = spoil.get(context.node_id)
        arrays = {"w": Array(w[:-1] if how == "shape" else w), "b": Array(b)}
        metrics = {"train_loss": 0.5} if how == "count" else {"num-examples": len(y),
                                                              "train_loss": 0.5}  # fmt: skip
        reply = RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord(metrics)})
        return Message(reply, reply_to=msg)

    return app


def _run_app_consortium(split, tmp_path: Path, spoil: dict[int, str], rounds: int) -> dict:
    import threading

    tr = split.train
    mean, std = tr.X.mean(axis=0), tr.X.std(axis=0) + 1e-6  # the app's own preprocessing
    # Four members: with three, one dropping before its keys leaves a neighbourhood below
    # the threshold and no sum can be released.
    part = partition("iid", tr.y, tr.groups, 4, np.random.default_rng(1))
    ids = MEMBERS
    shares = {m: tr.subset(ix[:1500]) for m, ix in zip(ids, part.indices, strict=True)}
    initial = {"w": np.zeros((tr.n_features, 2), np.float32), "b": np.zeros(2, np.float32)}
    root = tmp_path / "x"
    cfg = found_consortium(root, "app-consortium", shares, initial=initial,
                           train={"epochs": 1, "batch_size": 64, "learning_rate": 0.5})  # fmt: skip
    data_of = dict(zip((11, 12, 13, 14), shares.values(), strict=True))
    seen: list[dict] = []
    app = _softmax_app(data_of, mean, std, seen, spoil)
    servers, sockets = [], {}
    for node, m in zip((11, 12, 13, 14), ids, strict=True):
        sockets[node] = tmp_path / f"a{node}.sock"
        server = member_service.serve(_service(root, m), sockets[node])
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        grid = LoopbackGrid(sockets, 70, app=app)
        res = run_consortium(grid, root / "consortium.json", tmp_path / "run", rounds=rounds,
                             stage_timeout=30, join_timeout=5)  # fmt: skip
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    rounds_rec = [
        json.loads(x) for x in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()
    ]
    return {"cfg": cfg, "result": res, "rounds": rounds_rec, "seen": seen, "mean": mean,
            "std": std}  # fmt: skip


def test_an_existing_flower_app_trains_its_own_model_through_guardians(
    split, tmp_path, flower_task
):
    """A Flower app with its own model and its own `@app.train` adds one mod; the genesis names
    the app's arrays. Each member's update comes from the app's train function and leaves
    only masked, with its norm proof; the aggregate is verified; the model learns."""
    from guardians.node.deployment import unflatten

    run = _run_app_consortium(split, tmp_path, {}, rounds=2)
    cfg, res, seen = run["cfg"], run["result"], run["seen"]
    f = split.train.n_features
    assert cfg.external and cfg.layout == (("w", (f, 2)), ("b", (2,)))
    assert res["rounds"] == 2 and not res["incidents"], res["incidents"]
    assert all(r["verified"] and r["contributors"] == MEMBERS for r in run["rounds"])
    assert len(seen) == 8 and seen[0]["server-round"] == 1 and seen[0]["local-epochs"] == 1
    assert not (tmp_path / "run" / "standardizer.npz").exists()  # the app preprocesses itself
    final = unflatten(cfg.layout, np.load(tmp_path / "run" / "params" / "round-002.npy"))
    te = split.test
    pred = ((te.X - run["mean"]) / run["std"] @ final["w"] + final["b"]).argmax(axis=1)
    assert np.mean(pred == te.y) > 0.7
    # The app saw the global arrays; only masked updates left the members.
    egress = json.loads((tmp_path / "run" / "egress.json").read_text())
    for m, e in egress.items():
        kinds = e["per_member"][m]["out_by_kind"]
        assert e["per_member"][m]["raw_records_out"] == 0 and "fl/update" not in kinds


@pytest.mark.parametrize(("how", "why"), [("shape", "has shape"), ("count", "num-examples")])
def test_an_app_answering_badly_is_an_incident_and_the_round_goes_on(
    how, why, split, tmp_path, flower_task
):
    run = _run_app_consortium(split, tmp_path, {14: how}, rounds=1)
    # The member's own node refused what its app produced, and said why; with no update to
    # protect it then sat the round out. Both are its own failures, not the coordinator's.
    incidents = run["result"]["incidents"]
    assert [i["member"] for i in incidents] == ["member-04", "member-04"], incidents
    texts = sorted(i["error"] for i in incidents)
    assert any(why in t for t in texts) and any("did not complete" in t for t in texts), texts
    assert all(i["kind"] == "node-error" for i in incidents)
    (rnd,) = run["rounds"]
    assert rnd["verified"] and rnd["contributors"] == MEMBERS[:3]


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        ({"replies": 5}, "malformed replies"),
        ({"replies": None}, "malformed replies"),
        ({"replies": ["text"]}, "malformed replies"),
        ({"replies": [b"\x00"]}, "CBOR map"),
        ({"error": "x", "error_type": ["list"]}, "malformed error frame"),
        ({"error": "y" * 5000, "error_type": "ServiceError"}, "yyy…"),
    ],
)
def test_exchange_turns_malformed_answers_into_incidents(frame, why, consortium, flower_task):
    """Whatever a member's node answers, the coordinator records an incident naming the
    member and goes on; nothing it sends can crash the coordinator."""
    from guardians.engine.flower.workflow import FlowerFederation
    from guardians.protocol.round import Send

    class Scripted(LoopbackGrid):
        def push_messages(self, messages: Any) -> list[str]:
            ids = []
            for m in messages:
                m.metadata.__dict__["_message_id"] = m.object_id
                self.replies[m.object_id] = Message(envelope.pack(frame), reply_to=m)
                ids.append(m.object_id)
            return ids

    cfg = ConsortiumConfig.load(consortium / "consortium.json")
    coord = SimpleNamespace(members=cfg.members)
    fed = FlowerFederation(coord, Scripted({11: Path("-")}, 70), {"member-01": 11},  # type: ignore[arg-type]
                           stage_timeout=2)  # fmt: skip
    send = Send("member-01", StatsRequest(round=0, aggregation="secagg"))
    assert fed.exchange(1, "advertise", [send]) == []
    (inc,) = fed.run_record.incidents
    assert inc.member == "member-01" and why.lower() in inc.error.lower()
    assert len(inc.error) < 600


def test_envelope_round_trip_and_malformed_envelopes():
    content = envelope.pack({"op": "hello"})
    assert envelope.unpack(content) == {"op": "hello"}
    with pytest.raises(envelope.EnvelopeError, match="not a Guardians message"):
        envelope.unpack(RecordDict({"config": ConfigRecord({"lr": 0.1})}))
    with pytest.raises(envelope.EnvelopeError, match="version 99"):
        envelope.unpack(RecordDict({"guardians": ConfigRecord({"v": 99, "frame": b""})}))
    with pytest.raises(envelope.EnvelopeError, match="without a bytes frame"):
        envelope.unpack(RecordDict({"guardians": ConfigRecord({"v": 1, "frame": "text"})}))
    with pytest.raises(envelope.EnvelopeError, match="malformed"):
        envelope.unpack(envelope.pack_raw(b"\xff\xff"))
    with pytest.raises(envelope.EnvelopeError, match="expected a map"):
        envelope.unpack(envelope.pack_raw(b"\x01"))


# --- a real deployment ------------------------------------------------------------------------
def _events(out: Path) -> list[dict]:
    p = out / "progress.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


@pytest.mark.slow
def test_flower_deployment_survives_a_killed_supernode(consortium, split, tmp_path):
    """SuperLink + four authenticated SuperNodes over TLS run secure rounds with contribution
    proofs; member-04's SuperNode is SIGKILLed in the middle of round 2 (after its shares went
    out, before its masked input): the round completes by dropout recovery, round 3 goes on
    without it, and the model and the ledger agree."""
    out = consortium / "run"
    with LocalDeployment(consortium) as dep:
        # TLS: the SuperLink's certificate verifies against the consortium CA only.
        ctx = ssl.create_default_context(cafile=str(dep.tls / "ca.crt"))
        assert httpx.get(f"https://127.0.0.1:{dep.port}/health", verify=ctx).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://127.0.0.1:{dep.port}/health")  # system CAs: refused
        # Node authentication: a SuperNode whose key was never registered is turned away.
        from guardians.engine.flower.deploy import make_node_key

        make_node_key(tmp_path / "intruder.key")
        intruder = dep._spawn("intruder", [
            shutil.which("flower-supernode") or "flower-supernode",
            "--superlink", f"127.0.0.1:{dep.port}",
            "--root-certificates", str(dep.tls / "ca.crt"),
            "--auth-supernode-private-key", str(tmp_path / "intruder.key"),
            "--host", "127.0.0.1", "--port", str(free_port()), "--max-retries", "1",
        ], "intruder")  # fmt: skip
        assert intruder.popen.wait(timeout=120) != 0

        cli = dep.submit(out, rounds=3, **{"stage-timeout": 25.0})
        killed = False
        deadline = time.monotonic() + 1200
        while cli.poll() is None and time.monotonic() < deadline:
            if not killed and any(
                e.get("event") == "stage" and e.get("round") == 2 and e.get("stage") == "masked"
                for e in _events(out)
            ):
                dep.kill_member("member-04")
                killed = True
            time.sleep(0.2)
        assert cli.poll() is not None, "the run did not finish"
        assert killed, "the run never reached round 2's masked-input stage"
    result = json.loads((out / "result.json").read_text())
    rounds = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines()]
    assert result["rounds"] == 3 and [r["round"] for r in rounds] == [1, 2, 3]
    assert rounds[0]["contributors"] == MEMBERS
    # Round 2: member-04 vanished mid-round; the others' sum was still recovered and checked.
    assert "member-04" in rounds[1]["dropped"] and "member-04" not in rounds[1]["contributors"]
    assert rounds[1]["contributors"] == MEMBERS[:3] and rounds[1]["verified"]
    assert rounds[2]["contributors"] == MEMBERS[:3] and rounds[2]["verified"]
    # The released models are the ones the ledger holds, and training did train.
    params = [np.load(out / "params" / f"round-{r:03d}.npy") for r in (1, 2, 3)]
    assert [model_hash(p).hex() for p in params] == [r["model_sha256"] for r in rounds]
    genesis = ConsortiumConfig.load(consortium / "consortium.json")
    pinned = {m: k.raw for m, k in genesis.verify_keys().items()}
    report = verify_log_dir(out / "ledger", trust=out / "ledger" / "trust.json",
                            identities=pinned)  # fmt: skip
    assert report.ok, report.as_dict()
    store = LogStore(out / "ledger" / "log.db")
    entries = [codec.decode(e) for _, e in store.entries()]
    store.close()
    committed = [e for e in entries if isinstance(e, RoundCommitted)]
    promoted = [e for e in entries if isinstance(e, ModelPromoted)]
    assert [e.round for e in committed] == [1, 2, 3]
    assert committed[1].participants == tuple(MEMBERS[:3])
    assert [e.model_hash.hex() for e in promoted] == [r["model_sha256"] for r in rounds]
    std = np.load(out / "standardizer.npz")
    cfg = ConsortiumConfig.load(consortium / "consortium.json")
    model = cfg.new_model()
    scaler = Standardizer(mean=std["mean"], scale=std["scale"])
    before = evaluate(Predictions(model.predict_proba(scaler.transform(split.test.X)), split.test))
    model.set_params(params[-1])
    after = evaluate(Predictions(model.predict_proba(scaler.transform(split.test.X)), split.test))
    assert after["accuracy"] > max(0.7, before["accuracy"] + 0.05), (before, after)
    # Measured at each member's own boundary: no raw record left any member.
    egress = json.loads((out / "egress.json").read_text())
    assert set(egress) == set(MEMBERS[:3])
    for m, e in egress.items():
        mine = e["per_member"][m]
        assert mine["raw_records_out"] == 0 and mine["messages_out"] > 20, (m, mine)
    # Every process of the deployment is gone.
    assert not any(p.alive() for p in dep.procs.values())


def test_a_run_without_result_says_why(tmp_path):
    from guardians.engine.flower.deploy import read_result

    (tmp_path / "progress.jsonl").write_text(
        json.dumps({"event": "failed", "error": "MembersMissingError: 1 of 4 members online"})
        + "\n"
    )
    with pytest.raises(DeploymentError, match="1 of 4 members online"):
        read_result(tmp_path)


def test_local_deployment_refuses_a_socket_path_too_long(tmp_path, split):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    _consortium(deep, split, per_member=50)
    with pytest.raises(ConfigError, match="too long for a Unix socket"):
        LocalDeployment(deep).prepare()


@pytest.mark.slow
def test_demo_over_flower_matches_its_ledger_and_portal(tmp_path):
    """`guardians demo --engine flower`: the federated run goes over a local Flower deployment;
    its ledger verifies, the portal reads it as verified, and no raw record left a member."""
    from fastapi.testclient import TestClient

    from guardians.portal import create_app

    out = tmp_path / "d"
    proc = subprocess.run(
        [sys.executable, "-m", "guardians", "demo", "--engine", "flower", "--members", "3",
         "--rounds", "2", "--no-wdbc", "--no-attacks", "--no-intel", "--no-compare-privacy",
         "--out", str(out)],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ran over Flower" in proc.stdout
    m = json.loads((out / "metrics.json").read_text())
    fed = m["federated"]
    assert fed["engine"]["name"] == "flower" and fed["engine"]["members"] == 3
    assert [r["round"] for r in fed["per_round"]] == [1, 2]
    assert all(r["verified"] and r["contributors"] == 3 for r in fed["per_round"])
    assert fed["ledger"]["verdict"] == "PASS" and fed["ledger"]["model_versions_included"] == 2
    assert m["egress"]["federated"]["raw_records"] == 0
    assert m["egress"]["federated"]["protected_share_of_data_bytes"] > 0.9
    assert sorted(m["egress"]["federated"]["per_member"]) == [f"member-0{k}" for k in (1, 2, 3)]
    with TestClient(create_app(out)) as client:
        snap = client.get("/api/summary").json()
    assert snap["verdict"] == "verified", snap.get("checks")


EXAMPLE_APP = Path(__file__).resolve().parents[1] / "examples" / "flower-app-with-guardians"


@pytest.mark.slow
def test_an_existing_flower_app_over_real_flower(split, tmp_path_factory):
    """The example app (its own model and train function, plus the Guardians mod and
    coordinator) submitted with `flwr run` to a real SuperLink with TLS and authenticated
    SuperNodes: its updates leave the members masked and proven, and its model learns."""
    from guardians.node.deployment import unflatten

    root = Path(tmp_path_factory.mktemp("x"))
    tr, te = split.train, split.test
    part = partition("iid", tr.y, tr.groups, 4, np.random.default_rng(2))
    shares = {m: tr.subset(ix[:1500]) for m, ix in zip(MEMBERS, part.indices, strict=True)}
    initial = {"w": np.zeros((tr.n_features, 2), np.float32), "b": np.zeros(2, np.float32)}
    cfg = found_consortium(root, "example-app", shares, initial=initial,
                           train={"epochs": 1, "batch_size": 64, "learning_rate": 0.1})  # fmt: skip
    with LocalDeployment(root, app_dir=EXAMPLE_APP) as dep:
        result = dep.run(root / "run", rounds=2, timeout=900)
    assert result["rounds"] == 2 and not result["incidents"], result["incidents"]
    rounds = [json.loads(x) for x in (root / "run" / "rounds.jsonl").read_text().splitlines()]
    assert all(r["verified"] and r["contributors"] == MEMBERS for r in rounds)
    final = unflatten(cfg.layout, np.load(root / "run" / "params" / "round-002.npy"))
    # The app standardizes with each member's own statistics; score the same way on the test
    # set with its own statistics.
    X = (te.X - te.X.mean(axis=0)) / (te.X.std(axis=0) + 1e-6)
    assert np.mean((X @ final["w"] + final["b"]).argmax(axis=1) == te.y) > 0.7
    egress = json.loads((root / "run" / "egress.json").read_text())
    for m, e in egress.items():
        mine = e["per_member"][m]
        assert mine["raw_records_out"] == 0 and "fl/update" not in mine["out_by_kind"]


def test_a_run_whose_log_could_not_be_witnessed_does_not_start(split, tmp_path, flower_task):
    """Plaintext rounds would start with half the members, but fewer than the witness quorum
    (3 of 4) could never cosign a checkpoint: the run refuses to begin, and says why."""
    import threading

    from guardians.errors import RoundAbortedError

    tr = split.train
    part = partition("iid", tr.y, tr.groups, 4, np.random.default_rng(3))
    shares = {m: tr.subset(ix[:200]) for m, ix in zip(MEMBERS, part.indices, strict=True)}
    root = tmp_path / "q"
    found_consortium(root, "quorum", shares, hidden=(4,), privacy="none", norm_bound=None)
    servers, sockets = [], {}
    for node, m in zip((31, 32), MEMBERS[:2], strict=True):
        sockets[node] = tmp_path / f"q{node}.sock"
        server = member_service.serve(_service(root, m), sockets[node])
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        with pytest.raises(MembersMissingError, match=r"2 of 4 members online .*\(need 3\)"):
            run_consortium(LoopbackGrid(sockets, 70), root / "consortium.json",
                           tmp_path / "run", rounds=1, join_timeout=1)  # fmt: skip
        # Without a log, half the members are enough to start (this model's statistics
        # round then still needs everyone).
        with pytest.raises(RoundAbortedError, match="round 0: 2 of 4 members replied"):
            run_consortium(LoopbackGrid(sockets, 70), root / "consortium.json",
                           tmp_path / "run2", rounds=1, join_timeout=1, ledger=False)  # fmt: skip
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_plaintext_rounds_over_the_grid_contract(split, tmp_path, flower_task):
    """A consortium that chose plaintext FedAvg (privacy "none") runs over the same transport:
    updates travel in the clear by the genesis' own choice, and the egress record says so."""
    import threading

    tr = split.train
    part = partition("iid", tr.y, tr.groups, 3, np.random.default_rng(3))
    shares = {m: tr.subset(ix[:800]) for m, ix in zip(MEMBERS[:3], part.indices, strict=True)}
    root = tmp_path / "p"
    found_consortium(root, "plain", shares, hidden=(8,), privacy="none", norm_bound=None,
                     train={"epochs": 1, "batch_size": 64})  # fmt: skip
    servers, sockets = [], {}
    for node, m in zip((21, 22, 23), shares, strict=True):
        sockets[node] = tmp_path / f"p{node}.sock"
        server = member_service.serve(_service(root, m), sockets[node])
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        grid = LoopbackGrid(sockets, 70)
        res = run_consortium(grid, root / "consortium.json", tmp_path / "run", rounds=2,
                             stage_timeout=30, join_timeout=5)  # fmt: skip
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert res["rounds"] == 2 and not res["incidents"], res["incidents"]
    egress = json.loads((tmp_path / "run" / "egress.json").read_text())
    for m, e in egress.items():
        mine = e["per_member"][m]
        assert mine["raw_records_out"] == 0 and mine["out_by_kind"]["fl/update"]["messages"] == 2


def test_an_aborted_round_is_on_the_ledger(consortium, services, flower_task, tmp_path):
    """Two of three members vanish right after joining: the statistics round cannot release
    a sum, the run fails with the reason, and the ledger still records the abort."""
    from guardians.errors import RoundAbortedError
    from guardians.ledger.entries import Incident as LoggedIncident

    del services[66]

    class Vanishing(LoopbackGrid):
        calls = 0

        def get_node_ids(self) -> list[int]:
            self.calls += 1
            return super().get_node_ids() if self.calls == 1 else [11]

    out = tmp_path / "run"
    with pytest.raises(RoundAbortedError):
        run_consortium(Vanishing(services, 70), consortium / "consortium.json", out,
                       rounds=1, stage_timeout=5, join_timeout=5)  # fmt: skip
    events = [json.loads(x) for x in (out / "progress.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "failed" and "RoundAbortedError" in events[-1]["error"]
    store = LogStore(out / "ledger" / "log.db")
    logged = [codec.decode(e) for _, e in store.entries()]
    store.close()
    aborts = [e for e in logged if isinstance(e, LoggedIncident) and e.kind == "round-aborted"]
    assert len(aborts) == 1 and aborts[0].round == 0 and aborts[0].member == "coordinator"
    # One member's witness of three is below the quorum: nothing vouches for this log, and the
    # run says so rather than publishing a checkpoint the coordinator cosigned itself.
    assert not (out / "ledger" / "checkpoint").exists()
    assert not verify_log_dir(out / "ledger", trust=out / "ledger" / "trust.json").ok
