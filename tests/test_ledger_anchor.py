"""The Vyper anchor contract on the embedded EVM, and the audit's anchor check."""

import json

import pytest

from guardians.ledger.anchor import Anchor, AnchorError, compiled, embedded_chain
from guardians.ledger.audit import verify_log_dir
from tests.test_ledger_audit import make_log


@pytest.fixture(scope="module")
def chain():
    w3 = embedded_chain()
    return w3, Anchor.deploy(w3, w3.eth.accounts[:3])


def test_contract_compiles_from_the_packaged_source():
    abi, bytecode = compiled()
    names = {f.get("name") for f in abi}
    assert {"anchor", "latest", "Anchored", "authorized"} <= names
    assert bytecode.startswith("0x") and len(bytecode) > 200


def test_authorized_members_anchor_growing_sizes(chain):
    w3, a = chain
    acc = w3.eth.accounts
    a.submit("log.example/a", 5, b"\x01" * 32, sender=acc[0])
    a.submit("log.example/a", 9, b"\x02" * 32, sender=acc[2])
    assert a.latest("log.example/a") == (9, b"\x02" * 32)
    assert a.latest("log.example/other") == (0, bytes(32))
    events = [e for e in a.events() if e["origin"] == "log.example/a"]
    assert [e["size"] for e in events] == [5, 9] and events[1]["submitter"] == acc[2]


def test_unauthorized_submitter_is_rejected(chain):
    w3, a = chain
    with pytest.raises(AnchorError, match="unauthorized submitter"):
        a.submit("log.example/b", 3, b"\x03" * 32, sender=w3.eth.accounts[7])
    assert a.latest("log.example/b")[0] == 0


def test_size_rollback_is_rejected(chain):
    _, a = chain
    a.submit("log.example/c", 10, b"\x04" * 32)
    for size in (10, 4):
        with pytest.raises(AnchorError, match="size must grow"):
            a.submit("log.example/c", size, b"\x05" * 32)
    assert a.latest("log.example/c") == (10, b"\x04" * 32)


def test_audit_checks_the_anchor_against_the_log(tmp_path, chain):
    _, a = chain
    d = make_log(tmp_path / "ledger", rounds=4)
    from guardians.ledger.store import LogStore

    store = LogStore(d / "log.db")
    origin = json.loads((d / "trust.json").read_text())["origin"]
    a.submit(origin, 6, store.root(6))
    rep = verify_log_dir(d, trust=d / "trust.json", anchor=a)
    assert rep.ok, rep.checks
    assert any(n == "anchored checkpoints" and ok for n, ok, _ in rep.checks)
    # An anchor that the log's history does not match is caught (rewritten after anchoring).
    a.submit(origin, 8, b"\x09" * 32)
    rep = verify_log_dir(d, trust=d / "trust.json", anchor=a)
    assert not rep.ok and "anchored checkpoints" in [n for n, ok, _ in rep.checks if not ok]


def test_recorded_anchors_are_checked_too(tmp_path):
    d = make_log(tmp_path / "ledger", rounds=3)
    from guardians.ledger.store import LogStore

    root = LogStore(d / "log.db").root(5).hex()
    rec = {"chain": "test", "contract": "0x0", "anchored": [{"size": 5, "root": root}]}
    (d / "anchor.json").write_text(json.dumps(rec))
    assert verify_log_dir(d, trust=d / "trust.json").ok
    rec["anchored"][0]["root"] = "00" * 32
    (d / "anchor.json").write_text(json.dumps(rec))
    assert not verify_log_dir(d, trust=d / "trust.json").ok


def test_a_size_beyond_uint64_cannot_freeze_an_origin(chain):
    _, a = chain
    with pytest.raises(AnchorError, match="64 bits"):
        a.submit("log.example/d", 2**64, b"\x06" * 32)
    a.submit("log.example/d", 2**64 - 1, b"\x06" * 32)


def test_an_audit_trail_never_reopens_a_log(tmp_path):
    from guardians.engine.audit import AuditTrail
    from guardians.ledger.store import StoreError

    make_log(tmp_path / "ledger", rounds=1)
    with pytest.raises(StoreError, match="already holds a log"):
        AuditTrail(tmp_path / "ledger", "test.example/log", ["a", "b"])
