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

import httpx
import numpy as np
import pytest

flwr = pytest.importorskip("flwr")

from flwr.app import ConfigRecord, RecordDict  # noqa: E402

from guardians import codec  # noqa: E402
from guardians.crypto.errors import SignatureError  # noqa: E402
from guardians.engine import member_service  # noqa: E402
from guardians.engine.audit import model_hash  # noqa: E402
from guardians.engine.flower import envelope  # noqa: E402
from guardians.engine.flower.deploy import DeploymentError, LocalDeployment, free_port  # noqa: E402
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
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        ConsortiumConfig.load(bad)
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 10)
    with pytest.raises(ConfigError, match="holds 64 bytes, this one 10"):
        load_identity(short)
    records = member_dir(consortium, "member-01") / "records.npz"
    with pytest.raises(ConfigError, match="model takes 7"):
        load_records(records, n_features=7)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a records archive"):
        load_records(tmp_path / "junk.npz")
    with pytest.raises(ConfigError, match="already holds a consortium"):
        found_consortium(consortium, "again", {"m": load_records(records)})


# --- the member service -----------------------------------------------------------------------
def _service(consortium: Path, member: str = "member-01") -> member_service.MemberService:
    cfg = ConsortiumConfig.load(consortium / "consortium.json")
    d = member_dir(consortium, member)
    node = MemberNode(
        member, load_records(d / "records.npz"), cfg.new_model(), np.random.default_rng(0),
        identity=load_identity(d / "identity.key"), directory=cfg.verify_keys(),
        consortium=cfg.name, require_secure=True,
    )  # fmt: skip
    return member_service.MemberService(node)


def test_member_service_answers_and_refuses_with_typed_errors(consortium):
    svc = _service(consortium)
    nonce = os.urandom(32)
    hello = svc.handle({"op": "hello", "nonce": nonce, "node_id": 42})
    assert hello["member"] == "member-01"
    # The member binds itself to transport node 42 under the coordinator's fresh nonce; the
    # binding does not transfer to another node or another nonce.
    key = ConsortiumConfig.load(consortium / "consortium.json").verify_keys()["member-01"]
    ctx = member_service.BINDING_CONTEXT
    key.verify(hello["signature"], member_service.binding_payload(
        "guardians-e2e", "member-01", 42, nonce), ctx)  # fmt: skip
    for node, n in ((43, nonce), (42, os.urandom(32))):
        with pytest.raises(SignatureError):
            key.verify(hello["signature"], member_service.binding_payload(
                "guardians-e2e", "member-01", node, n), ctx)  # fmt: skip
    assert "32-byte nonce" in svc.handle({"op": "hello", "nonce": b"short", "node_id": 1})["error"]
    assert "node id" in svc.handle({"op": "hello", "nonce": nonce, "node_id": -1})["error"]
    assert "unknown operation" in svc.handle({"op": "format-disk"})["error"]
    assert "bytes payload" in svc.handle({"op": "deliver", "payload": "text"})["error"]
    bad = svc.handle({"op": "deliver", "payload": b"\xa1\x00garbage"})
    assert bad["error_type"] == "DecodeError"
    # The member's own policy: a plaintext statistics request is refused, by name.
    plain = codec.encode(StatsRequest(round=0, aggregation="plain"))
    refused = svc.handle({"op": "deliver", "payload": plain})
    assert refused["error_type"] == "RemoteProtocolError"
    assert "requires secure aggregation" in refused["error"]
    # Nothing left the member for any of these.
    assert svc.handle({"op": "egress"})["egress"]["messages_out"] == 0


def test_member_service_over_its_unix_socket(consortium, tmp_path):
    import threading

    sock = tmp_path / "m.sock"
    server = member_service.serve(_service(consortium), sock)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert oct(sock.stat().st_mode & 0o777) == "0o600"  # the member's account only
        assert member_service.call(sock, {"op": "egress"})["egress"]["raw_records"] == 0
        # A frame that is not CBOR gets no answer rather than a crash; the service lives on.
        import socket as socketlib

        with socketlib.socket(socketlib.AF_UNIX) as s:
            s.connect(str(sock))
            s.sendall(b"\x00\x00\x00\x03abc")
            s.settimeout(5)
            assert s.recv(10) == b""
        assert member_service.call(sock, {"op": "egress"})["egress"]["raw_records"] == 0
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(member_service.ServiceError, match="unreachable"):
        member_service.call(tmp_path / "gone.sock", {"op": "hello"})


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
    report = verify_log_dir(out / "ledger", trust=out / "ledger" / "trust.json")
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
    assert all(e["raw_records"] == 0 and e["messages_out"] > 20 for e in egress.values())
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
