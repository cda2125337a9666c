"""Members' own witnesses: attested keys, cosigning through the transport, refusals of split
views, and a log operator that cannot list or forge a witness of its own."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from guardians import codec
from guardians.crypto.errors import CryptoError
from guardians.crypto.sign import SigningKey
from guardians.engine.audit import AuditTrail, LocalWitnesses
from guardians.engine.inprocess import COORDINATOR, InProcessFederation
from guardians.errors import RemoteProtocolError
from guardians.learning.data import Dataset
from guardians.learning.models import MLP
from guardians.learning.train import TrainConfig
from guardians.ledger import attestation
from guardians.ledger.audit import attestation_problems, verify_log_dir
from guardians.ledger.checkpoint import CheckpointError, TransparencyLog
from guardians.ledger.entries import Incident as LoggedIncident
from guardians.ledger.entries import ModelPromoted
from guardians.ledger.note import Cosigner, SignedNote
from guardians.ledger.store import LogStore
from guardians.node.coordinator import CoordinatorNode
from guardians.node.member import MemberNode
from guardians.protocol.witness import (
    Cosignature,
    CosignRequest,
    MemberWitness,
    WitnessKey,
    WitnessKeyRequest,
    WitnessSize,
)

MEMBERS = ("m1", "m2", "m3", "m4")
ORIGIN = "test.example/log"


def grow(trail: AuditTrail, n: int, tag: str = "v") -> None:
    base = trail.log.store.size
    trail.append(*(ModelPromoted(version=base + k, model_hash=bytes([k % 256]) * 32)
                   for k in range(n)))  # fmt: skip


@pytest.fixture
def founded(tmp_path):
    trail = AuditTrail(tmp_path / "ledger", ORIGIN, MEMBERS)
    wits = LocalWitnesses("test", MEMBERS)
    trail.admit({m: k.verify_key.raw for m, k in wits.identities.items()})
    wits.enrol(trail)
    return trail, wits


def cosign(wits: LocalWitnesses, reqs: dict[str, CosignRequest], now: int = 1) -> dict:
    return {m: wits.witnesses[m].receive(r, now)[0] for m, r in reqs.items()}


def test_witness_keys_are_attested_and_listed_in_the_trust_file(founded):
    trail, wits = founded
    trust = json.loads((trail.dir / "trust.json").read_text())
    assert trust["consortium"] == "test" and trust["quorum"] == 3
    assert [w["member"] for w in trust["witnesses"]] == list(MEMBERS)
    lk = trail.log.signer.public_key
    for m, wk in trail.witnesses.items():
        vk = wits.identities[m].verify_key
        attestation.check("test", m, vk, ORIGIN, lk, wk.key, wk.attestation)
        # Bound to the member, its witness name, the consortium and the log (origin and key).
        for args in (("test", "m9", vk, ORIGIN, lk, wk.key),
                     ("other", m, vk, ORIGIN, lk, wk.key),
                     ("test", m, vk, "test.example/another", lk, wk.key),
                     ("test", m, vk, ORIGIN, bytes(32), wk.key),
                     ("test", m, vk, ORIGIN, lk, Cosigner(wk.name).key),
                     ("test", m, vk, ORIGIN, lk, Cosigner("x").key)):  # fmt: skip
            with pytest.raises(CryptoError):
                attestation.check(*args, wk.attestation)


def test_cosigning_through_requests_publishes_with_a_quorum(founded):
    trail, wits = founded
    grow(trail, 3)
    note, reqs = trail.cosign_requests()
    assert set(reqs) == set(MEMBERS) and all(r.old_size == 0 and not r.proof for r in reqs.values())
    # Requests and replies cross the wire as strict CBOR.
    replies = {m: codec.decode(codec.encode(r))
               for m, r in cosign(wits, {m: codec.decode(codec.encode(q))
                                         for m, q in reqs.items()}).items()}  # fmt: skip
    published, problems = trail.publish(note, replies)
    assert problems == {} and published is not None
    assert (trail.dir / "checkpoint").read_text() == published.format()
    # m4 misses the next checkpoint; the one after brings it along with its own proof.
    grow(trail, 2)
    note, reqs = trail.cosign_requests()
    published, problems = trail.publish(note, cosign(wits, {m: reqs[m] for m in MEMBERS[:3]}))
    assert published is not None and problems == {}
    grow(trail, 4)
    note, reqs = trail.cosign_requests()
    # 4 admissions, then 3, 2, 4 versions: m4 last cosigned at 7, the others at 9.
    assert reqs["m4"].old_size == 7 and reqs["m4"].proof and reqs["m1"].old_size == 9
    published, problems = trail.publish(note, cosign(wits, reqs))
    assert published is not None and problems == {}
    assert verify_log_dir(trail.dir, trust=trail.dir / "trust.json", state=None).ok


def test_forged_foreign_or_missing_cosignatures_do_not_count(founded):
    trail, wits = founded
    grow(trail, 2)
    before = (trail.dir / "checkpoint").exists()
    note, reqs = trail.cosign_requests()
    good = cosign(wits, reqs)
    operator = Cosigner(wits.witnesses["m2"].cosigner.name)  # same name, the operator's key
    cp_text = note.text
    forged = SignedNote(cp_text).with_signatures(
        *operator.cosign(cp_text, ORIGIN, 2 + len(MEMBERS), trail.log.store.root(), 1)
    )
    other = SignedNote.parse(good["m3"].note)
    replies = {
        "m1": good["m1"],
        "m2": Cosignature(note=note.with_signatures(*forged.signatures).format()),
        "m3": Cosignature(note=SignedNote("other\n", other.signatures).format()),
        "m4": good["m1"],  # m1's cosignature presented as m4's
    }
    published, problems = trail.publish(note, replies)
    assert published is None and set(problems) == {"m2", "m3", "m4"}
    assert "no valid" in problems["m2"] and "another checkpoint" in problems["m3"]
    assert (trail.dir / "checkpoint").exists() == before  # nothing published below quorum
    extra = trail.publish(note, {**good, "m9": good["m1"]})
    assert extra[0] is not None and "not an enrolled witness" in extra[1]["m9"]


def test_a_witness_refuses_split_views_key_changes_and_garbage(founded, tmp_path):
    trail, wits = founded
    grow(trail, 3)
    note, reqs = trail.cosign_requests()
    trail.publish(note, cosign(wits, reqs))
    w = wits.witnesses["m1"]
    size = trail.log.store.size
    # The operator signs a fork of the same log (same origin, same key): a split view.
    fork = LogStore(tmp_path / "fork.db")
    fork.append_batch(codec.encode(ModelPromoted(version=k, model_hash=b"\x07" * 32))
                      for k in range(size + 2))  # fmt: skip
    forked = TransparencyLog(fork, ORIGIN, trail.log.signer).checkpoint()
    req = dataclasses.replace(reqs["m1"], old_size=size, proof=tuple(fork.consistency_proof(size)),
                              note=forked.format())  # fmt: skip
    with pytest.raises(RemoteProtocolError, match="split view or rollback"):
        w.receive(req, 2)
    assert w.state.evidence  # kept
    with pytest.raises(RemoteProtocolError, match="serves log"):
        w.receive(dataclasses.replace(req, log_key=bytes(32)), 2)
    with pytest.raises(RemoteProtocolError, match="over 65536 bytes"):
        w.receive(dataclasses.replace(req, note="x" * 70_000), 2)
    with pytest.raises(RemoteProtocolError, match="malformed checkpoint"):
        w.receive(dataclasses.replace(req, note="not a note"), 2)
    with pytest.raises(RemoteProtocolError, match="malformed consistency proof"):
        w.receive(dataclasses.replace(req, proof=(b"\0" * 32,) * 65), 2)
    # A stale old size is answered with the size this witness holds (tlog-witness's 409) —
    # but only for a note the log signed.
    (answer,) = w.receive(dataclasses.replace(reqs["m1"], old_size=1), 2)
    assert isinstance(answer, WitnessSize) and answer.size == size
    unsigned = SignedNote(note.text, (Cosigner("someone").cosign(note.text, ORIGIN, size,
                                                                 bytes(32), 1)[0],))  # fmt: skip
    with pytest.raises(RemoteProtocolError, match="not signed by"):
        w.receive(dataclasses.replace(reqs["m1"], old_size=1, note=unsigned.format()), 2)
    with pytest.raises(RemoteProtocolError, match="unexpected"):
        w.receive(ModelPromoted(version=1, model_hash=bytes(32)), 2)


def test_a_lost_cosignature_is_resynchronised_from_the_witness_size(founded):
    trail, wits = founded
    grow(trail, 3)
    note, reqs = trail.cosign_requests()
    replies = cosign(wits, reqs)
    del replies["m2"]  # m2 cosigned, but its reply never arrived
    assert trail.publish(note, replies)[0] is not None
    grow(trail, 2)
    note, reqs = trail.cosign_requests()
    (answer,) = wits.witnesses["m2"].receive(reqs["m2"], 2)
    assert isinstance(answer, WitnessSize) and answer.size == 7 and reqs["m2"].old_size == 0
    retry = trail.cosign_request("m2", note, answer.size)
    assert retry.old_size == 7 and retry.proof
    replies = {
        **cosign(wits, {m: reqs[m] for m in ("m1", "m3", "m4")}),
        **cosign(wits, {"m2": retry}),
    }
    published, problems = trail.publish(note, replies)
    assert problems == {} and len({s.name for s in published.signatures}) == 5
    with pytest.raises(CheckpointError, match="outside this log"):
        trail.cosign_request("m2", note, 10**6)


def test_an_operator_listing_its_own_witness_fails_the_audit(founded):
    """Even with cosignatures that check out against the trust file, a witness key its member
    never attested fails the audit."""
    trail, wits = founded
    grow(trail, 2)
    wits.checkpoint(trail, timestamp=1)
    trust_path = trail.dir / "trust.json"
    assert verify_log_dir(trail.dir, trust=trust_path, state=None).ok
    trust = json.loads(trust_path.read_text())
    mine = Cosigner(trust["witnesses"][0]["name"])
    import base64

    trust["witnesses"][0]["ed25519"] = base64.b64encode(mine.key.ed25519).decode()
    trust["witnesses"][0]["mldsa44"] = base64.b64encode(mine.key.mldsa44).decode()
    trust_path.write_text(json.dumps(trust))
    report = verify_log_dir(trail.dir, trust=trust_path, state=None)
    bad = {name: detail for name, ok, detail in report.checks if not ok}
    assert set(bad) == {"witness attestations"} and "m1" in bad["witness attestations"]


def test_the_default_quorum_tolerates_a_third_of_the_witnesses():
    from guardians.ledger.checkpoint import default_quorum

    assert [default_quorum(n) for n in (1, 2, 3, 4, 5, 8, 10)] == [1, 2, 2, 3, 4, 6, 7]
    for n in range(1, 200):
        q, f = default_quorum(n), (n - 1) // 3
        assert 2 * q - n > f  # a split view needs more colluding witnesses than f
        assert n - f >= q  # f silent witnesses still leave a quorum
        assert q >= n // 2 + 1  # never below a majority
    with pytest.raises(CheckpointError, match="at least one witness"):
        default_quorum(0)


def test_enrolment_needs_a_quorum_of_members(tmp_path):
    trail = AuditTrail(tmp_path / "l", ORIGIN, MEMBERS)
    wits = LocalWitnesses("test", MEMBERS)
    keys = {m: wits.witnesses[m].receive(trail.witness_key_request(), 0)[0]
            for m in MEMBERS[:2]}  # fmt: skip
    with pytest.raises(CheckpointError, match="quorum 3 is impossible"):
        trail.enrol(keys, "test")
    with pytest.raises(CheckpointError, match="non-members"):
        trail.enrol({**keys, "x": keys["m1"]}, "test")
    keys3 = {**keys, "m3": keys["m1"]}  # m1's witness listed for m3 too
    with pytest.raises(CheckpointError, match="not under their members' names"):
        trail.enrol(keys3, "test")
    with pytest.raises(CheckpointError, match="no witnesses enrolled"):
        trail.cosign_requests()


def test_a_witness_serves_one_log_so_a_fork_under_a_new_origin_is_refused(founded, tmp_path):
    """The operator founds a second log (new origin, new key) and rewrites history there: the
    members' witnesses, pinned to the first, neither attest nor cosign it."""
    trail, wits = founded
    grow(trail, 2)
    wits.checkpoint(trail, timestamp=1)
    fork = AuditTrail(tmp_path / "fork", "test.example/fork", MEMBERS)
    grow(fork, 3)
    for w in wits.witnesses.values():
        with pytest.raises(RemoteProtocolError, match="serves log"):
            w.receive(fork.witness_key_request(), 1)
        forked = fork.log.checkpoint()
        req = CosignRequest(log_name=fork.origin, log_key=fork.log.signer.public_key, proof=(),
                            old_size=0, note=forked.format())  # fmt: skip
        with pytest.raises(RemoteProtocolError, match="serves log"):
            w.receive(req, 1)


def test_publish_counts_only_post_quantum_cosignatures_of_distinct_witnesses(founded):
    trail, wits = founded
    grow(trail, 2)
    note, reqs = trail.cosign_requests()
    good = cosign(wits, reqs)

    def only(reply, keep_ml: bool) -> Cosignature:
        got = SignedNote.parse(reply.note)
        sigs = [s for s in got.signatures if s.name != trail.log.signer.name
                and (len(s.signature) > 100) == keep_ml]  # fmt: skip
        return Cosignature(note=note.with_signatures(*sigs).format())

    ed_only = {m: only(r, keep_ml=False) for m, r in good.items()}
    published, problems = trail.publish(note, ed_only)
    assert published is None and set(problems) == set(MEMBERS)  # Ed25519 alone is not enough
    two = {m: good[m] for m in MEMBERS[:2]}
    assert trail.publish(note, two)[0] is None  # 2 of 4 with quorum 3
    # Junk lines under a witness's name are not copied into the published note.
    junk = SignedNote.parse(good["m1"].note)
    padded = junk.with_signatures(*[dataclasses.replace(junk.signatures[-1], key_id=b"\0\0\0\1")]
                                  * 10)  # fmt: skip
    published, problems = trail.publish(note, {**good, "m1": Cosignature(note=padded.format())})
    assert published is not None and problems == {}
    assert len(published.signatures) == 1 + 2 * len(MEMBERS)


def test_audit_refuses_unattested_duplicated_or_renamed_witnesses(founded):
    import base64

    trail, wits = founded
    grow(trail, 2)
    wits.checkpoint(trail, timestamp=1)
    trust_path = trail.dir / "trust.json"
    honest = json.loads(trust_path.read_text())

    admitted = {m: k.verify_key.raw for m, k in wits.identities.items()}

    def audit_with(change) -> dict[str, str]:
        """The failed checks of a full audit, plus the attestation check on its own (a full
        audit may stop earlier, at the quorum)."""
        t = json.loads(json.dumps(honest))
        change(t)
        trust_path.write_text(json.dumps(t))
        report = verify_log_dir(trail.dir, trust=trust_path, state=None)
        bad = {name: detail for name, ok, detail in report.checks if not ok}
        alone = attestation_problems(t, admitted)
        return {**bad, **({"witness attestations": "; ".join(alone)} if alone else {})}

    assert audit_with(lambda t: None) == {}
    # Dropping the consortium does not switch the check off.
    assert "witness attestations" in audit_with(lambda t: t.pop("consortium"))
    # One member listed twice (its own attested entry copied into another slot).
    assert "witness attestations" in audit_with(
        lambda t: t["witnesses"].__setitem__(1, {**t["witnesses"][0]})
    )
    # A member's entry carrying another member's witness name.
    assert "witness attestations" in audit_with(
        lambda t: t["witnesses"][1].__setitem__("name", t["witnesses"][0]["name"])
    )
    # Wrong JSON types are a failed check, not a crash.
    assert "witness attestations" in audit_with(
        lambda t: t["witnesses"][0].__setitem__("attestation", 5)
    )
    assert "witness attestations" in audit_with(
        lambda t: t["witnesses"][0].__setitem__("ed25519", base64.b64encode(b"x").decode() + "!")
    )


# --- through the engine -------------------------------------------------------------------
class LyingWitness(MemberNode):
    """Answers cosign requests with a cosignature by a key it never announced."""

    def handle(self, msg):
        if isinstance(msg, CosignRequest):
            other = MemberWitness(self.id, self.consortium, SigningKey.generate())
            return other.receive(msg, 1)
        return super().handle(msg)


def toy(seed: int, n: int = 60, d: int = 4) -> Dataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = (rng.normal(size=(n, d)) + y[:, None]).astype(np.float32)
    g = np.array(["normal", "attack"])[y]
    return Dataset("toy", X, y, ("normal", "attack"), tuple(f"f{i}" for i in range(d)), g, g)


def federation(tmp_path, special: dict[str, type[MemberNode]]):
    keys = {m: SigningKey.generate() for m in MEMBERS}
    directory = {m: k.verify_key for m, k in keys.items()}
    nodes = {
        m: special.get(m, MemberNode)(
            m, toy(i), MLP(4, 2, (8,), seed=0), np.random.default_rng(i), identity=keys[m],
            directory=directory, consortium="fed",
        )
        for i, m in enumerate(MEMBERS)
    }  # fmt: skip
    coord = CoordinatorNode(list(MEMBERS), MLP(4, 2, (8,), seed=0), TrainConfig(epochs=1),
                            np.random.default_rng(9), n_features=4, directory=directory,
                            consortium="fed")  # fmt: skip
    trail = AuditTrail(tmp_path / "ledger", "fed.example/run", MEMBERS)
    trail.admit({m: k.verify_key.raw for m, k in keys.items()})
    return InProcessFederation(coord, nodes, audit=trail), nodes, trail


def cosigners(trail: AuditTrail) -> set[str]:
    note = SignedNote.parse((trail.dir / "checkpoint").read_text())
    return {s.name for s in note.signatures} - {trail.log.signer.name}


def test_members_witness_the_federation_log_and_a_lying_witness_is_reported(tmp_path):
    fed, nodes, trail = federation(tmp_path, {"m4": LyingWitness})
    fed.run(2)
    # The coordinator holds no witness key: the trust file lists the members' own.
    assert {wk.name for wk in trail.witnesses.values()} == {
        n.witness.cosigner.name for n in nodes.values()
    }
    assert cosigners(trail) == {nodes[m].witness.cosigner.name for m in MEMBERS[:3]}
    lies = [i for i in fed.run_record.incidents if i.kind == "witness"]
    assert lies and all(i.member == "m4" and "no valid" in i.error for i in lies)
    assert not [i for i in fed.run_record.incidents if i.member == COORDINATOR]
    report = verify_log_dir(trail.dir, trust=trail.dir / "trust.json", state=None)
    assert report.ok, report.checks
    assert isinstance(trail.witnesses["m4"], WitnessKey)
    # Every incident is on the log, the last checkpoint's own included (after that checkpoint).
    entries = [codec.decode(e) for _, e in trail.log.store.entries(0, trail.log.store.size)]
    on_log = [(i.round, i.member, i.kind) for i in entries if isinstance(i, LoggedIncident)]
    assert on_log == [(i.round, i.member, i.kind) for i in fed.run_record.incidents]
    cp = SignedNote.parse((trail.dir / "checkpoint").read_text())
    assert int(cp.text.split("\n")[1]) < trail.log.store.size


class ForgetfulWitness(MemberNode):
    """Cosigns the first checkpoint, but its reply is lost on the way."""

    lost = 0

    def handle(self, msg):
        replies = super().handle(msg)
        if isinstance(msg, CosignRequest) and not self.lost:
            self.lost += 1
            return []
        return replies


def test_a_witness_whose_reply_was_lost_is_asked_again_from_its_size(tmp_path):
    fed, nodes, trail = federation(tmp_path, {"m3": ForgetfulWitness})
    fed.run(2)
    assert nodes["m3"].lost == 1
    assert cosigners(trail) == {n.witness.cosigner.name for n in nodes.values()}
    assert not [i for i in fed.run_record.incidents if i.kind == "witness"]
    assert verify_log_dir(trail.dir, trust=trail.dir / "trust.json", state=None).ok


def test_a_member_unreachable_at_enrolment_becomes_a_witness_later(tmp_path):
    fed, nodes, trail = federation(tmp_path, {})
    fed.dropouts = {1: {"m4": "collect"}}  # silent through round 1 and its checkpoint
    fed.standardize()
    fed.run_round(1)
    assert set(trail.witnesses) == {"m1", "m2", "m3"}
    stages: list[tuple[int, str]] = []
    fed.on_stage = lambda r, stage: stages.append((r, stage))  # type: ignore[method-assign]
    fed.run_round(2)  # asked again beside the cosign requests: enrolled, no extra stage
    assert set(trail.witnesses) == set(MEMBERS)
    assert (2, "cosign") in stages and (2, "witness-keys") not in stages
    assert cosigners(trail) == {nodes[m].witness.cosigner.name for m in MEMBERS[:3]}
    fed.run_round(3)
    assert cosigners(trail) == {n.witness.cosigner.name for n in nodes.values()}
    assert not [i for i in fed.run_record.incidents if i.kind == "witness"]
    trust = json.loads((trail.dir / "trust.json").read_text())
    assert len(trust["witnesses"]) == 4
    assert verify_log_dir(trail.dir, trust=trail.dir / "trust.json", state=None).ok


class RefusingWitness(MemberNode):
    """Refuses to announce witness keys (as a member whose witness pinned another log)."""

    asked = 0

    def handle(self, msg):
        if isinstance(msg, WitnessKeyRequest):
            self.asked += 1
            raise RemoteProtocolError("witness: this witness serves another log only",
                                      peer="coordinator")  # fmt: skip
        return super().handle(msg)


def test_a_member_refusing_its_witness_keys_is_asked_a_bounded_number_of_times(tmp_path):
    from guardians.engine.federation import LATE_ASKS

    fed, nodes, trail = federation(tmp_path, {"m4": RefusingWitness})
    fed.run(LATE_ASKS + 3)
    assert set(trail.witnesses) == {"m1", "m2", "m3"}
    assert nodes["m4"].asked == 1 + LATE_ASKS  # the first enrolment, then LATE_ASKS more
    assert verify_log_dir(trail.dir, trust=trail.dir / "trust.json", state=None).ok


class MisattestingWitness(MemberNode):
    """Announces its witness keys with a broken attestation, then for another log."""

    def handle(self, msg):
        replies = super().handle(msg)
        if isinstance(msg, WitnessKeyRequest):
            (wk,) = replies
            if self.id == "m4":
                return [dataclasses.replace(wk, attestation=bytes(len(wk.attestation)))]
            return [dataclasses.replace(wk, origin="fed.example/elsewhere")]
        return replies


def test_witnesses_without_a_valid_attestation_for_this_log_are_not_enrolled(tmp_path):
    fed, _, trail = federation(tmp_path, {"m4": MisattestingWitness})
    fed.run(1)
    assert set(trail.witnesses) == {"m1", "m2", "m3"}
    (inc,) = [i for i in fed.run_record.incidents if i.kind == "witness"]
    assert inc.member == "m4" and "not attested" in inc.error
    fed2, _, trail2 = federation(tmp_path / "2", {"m3": MisattestingWitness})
    fed2.run(1)
    assert set(trail2.witnesses) == {"m1", "m2", "m4"}
    (inc,) = [i for i in fed2.run_record.incidents if i.kind == "witness"]
    assert inc.member == "m3" and "unexpected" in inc.error


def test_pinned_genesis_identities_catch_an_operator_that_admits_its_own_keys(founded):
    trail, wits = founded
    grow(trail, 2)
    wits.checkpoint(trail, timestamp=1)
    trust = trail.dir / "trust.json"
    genesis = {m: k.verify_key.raw for m, k in wits.identities.items()}

    def failed(identities) -> dict[str, str]:
        report = verify_log_dir(trail.dir, trust=trust, state=None, identities=identities)
        return {name: detail for name, ok, detail in report.checks if not ok}

    assert failed(genesis) == {}
    # The log admitted (and the witnesses were attested by) keys the genesis does not hold.
    other = {**genesis, "m1": SigningKey.generate().verify_key.raw}
    assert "another identity key" in failed(other)["pinned identities"]
    assert "genesis lists" in failed({**genesis, "m5": genesis["m1"]})["pinned identities"]
    t = json.loads(trust.read_text())
    trust.write_text(json.dumps({**t, "quorum": 1}))
    assert "below 3 of the 4 members" in failed(genesis)["pinned identities"]
