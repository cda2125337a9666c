"""Contribution proofs inside secure aggregation: bad proofs exclude their maker, the aggregate
opens the accepted members' commitments, and a coordinator that lies about it is caught."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from guardians import codec
from guardians.crypto.errors import SignatureError
from guardians.crypto.sign import SigningKey
from guardians.crypto.zk import norm
from guardians.errors import ConfigError, RemoteProtocolError, RoundAbortedError
from guardians.learning.models import LogisticRegression
from guardians.learning.train import TrainConfig
from guardians.node.coordinator import CoordinatorNode
from guardians.protocol.messages import GlobalModel, TrainInstruction
from guardians.protocol.secagg import contrib
from guardians.protocol.secagg.client import SecAggMember
from guardians.protocol.secagg.messages import (
    AggregateOpening,
    ContributionEvidence,
    MaskedInput,
)
from guardians.protocol.secagg.quantize import FixedPoint
from guardians.protocol.secagg.server import SecureRound

NAMES = tuple(f"m{i}" for i in range(6))
D = 12
BOUND = 1.0
FP = FixedPoint(scale_bits=16)

Tamper = Callable[[str, codec.Message], codec.Message]


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {m: SigningKey.generate() for m in NAMES}


def wire(msg: codec.Message) -> codec.Message:
    return codec.decode(codec.encode(msg))


class Verifiable:
    def __init__(self, keys, n: int = 5, *, vectors=None, norm_bound: float | None = BOUND,
                 round: int = 1, weight: int | None = None) -> None:  # fmt: skip
        self.ids = NAMES[:n]
        self.directory = {m: keys[m].verify_key for m in self.ids}
        rng = np.random.default_rng(round)
        self.vectors = vectors or {m: rng.normal(0, 0.2, D) for m in self.ids}
        self.weights = {m: weight or 10 * (i + 1) for i, m in enumerate(self.ids)}
        self.server = SecureRound(
            consortium="c", round=round, selected=self.ids, directory=self.directory,
            global_params=np.zeros(D, np.float32), train=TrainConfig(), fixed_point=FP,
            max_weight=max(1000, weight or 0), norm_bound=norm_bound,
        )  # fmt: skip
        self.members = {
            m: SecAggMember(
                member=m,
                consortium="c",
                identity=keys[m],
                directory=self.directory,
                vector=self.vectors[m],
                weight=self.weights[m],
                rng=np.random.default_rng(i),
            )
            for i, m in enumerate(self.ids)
        }
        self.refused: dict[str, str] = {}
        self.prepared: dict[str, int] = {}

    def run(self, tamper: Tamper | None = None, silent: frozenset[str] = frozenset(),
            ahead: frozenset[str] = frozenset()):  # fmt: skip
        sends = [s for s in self.server.start() if not isinstance(s.message, TrainInstruction)]
        while sends is not None:
            for s in sends:
                if s.to in silent and self.server.stage == "masked":
                    continue
                replies = self.members[s.to].receive(wire(s.message))
                if s.to in ahead and self.members[s.to].prepare():  # as an idle driver does
                    self.prepared[s.to] = self.prepared.get(s.to, 0) + 1
                for r in replies:
                    r = wire(r)
                    if tamper is not None:
                        r = tamper(s.to, r)
                    try:
                        self.server.receive(s.to, r)
                    except RemoteProtocolError as exc:
                        self.refused[s.to] = str(exc)
            sends = self.server.advance()
        return self.server.finish(self.ids)

    def deliver(self, sends, change: Callable[[AggregateOpening], AggregateOpening] | None = None):
        """Hand the aggregate openings to the contributors; {member: error} for refusals."""
        errors = {}
        for s in sends:
            if isinstance(s.message, AggregateOpening):
                msg = change(s.message) if change else s.message
                try:
                    self.members[s.to].receive(wire(msg))
                except RemoteProtocolError as exc:
                    errors[s.to] = str(exc)
        return errors


def test_honest_round_is_verified_by_every_contributor(keys):
    v = Verifiable(keys)
    result, sends = v.run()
    assert result.verified and result.rejected == {}
    assert result.contributors == v.ids
    assert v.deliver(sends) == {}
    totals = [v.members[m].verified_total for m in v.ids]
    assert all(np.array_equal(t, totals[0]) for t in totals)
    assert int(totals[0][-1]) == sum(v.weights.values())
    expected = sum(v.weights[m] * v.vectors[m] for m in v.ids) / sum(v.weights.values())
    np.testing.assert_allclose(result.params, expected, atol=1e-4)
    assert any(isinstance(s.message, GlobalModel) for s in sends)


def test_a_contribution_computed_ahead_is_the_one_masked(keys):
    v = Verifiable(keys)
    m = v.members["m0"]
    assert not m.prepare()  # before the setup there is no statement to prove
    seen: dict[str, MaskedInput] = {}

    def keep(who: str, msg: codec.Message) -> codec.Message:
        if isinstance(msg, MaskedInput):
            seen[who] = msg
        return msg

    ahead = frozenset(v.ids[:3])
    result, sends = v.run(keep, ahead=ahead)
    assert result.verified and result.rejected == {} and result.contributors == v.ids
    assert v.prepared == dict.fromkeys(ahead, 1)  # once each, right after the setup
    assert v.deliver(sends) == {}
    for who in v.ids:
        # The masked input carries the commitment computed ahead (or inline), and the opening
        # check (Σ commitments = commit(aggregate)) passed, so the masked words are those
        # committed to.
        assert seen[who].commitment == v.members[who]._commitment != b""
    assert not m.prepare()  # nothing left to do after the masked input


def test_prover_masks_made_ahead_serve_the_round_they_fit(keys):
    first = Verifiable(keys)
    first.run()
    stmt = first.members["m0"].statement
    other = norm.NormStatement(stmt.dim + 1, stmt.bound_sq, stmt.weight_bits)
    v = Verifiable(keys, round=2)
    fits, misfit = norm.precompute_masks(stmt), norm.precompute_masks(other)
    v.members["m0"].masks, v.members["m1"].masks = fits, misfit
    seen: dict[str, MaskedInput] = {}

    def keep(who: str, msg: codec.Message) -> codec.Message:
        if isinstance(msg, MaskedInput):
            seen[who] = msg
        return msg

    result, sends = v.run(keep)
    assert result.verified and result.rejected == {} and v.deliver(sends) == {}
    assert norm.NormProof.from_bytes(seen["m0"].proof, stmt).t_main == fits.point and fits.used
    assert not misfit.used  # another dimension: ignored, fresh masks made inline
    assert v.members["m0"].masks is v.members["m1"].masks is None


def test_a_contribution_failing_ahead_fails_the_masked_input_stage(keys):
    v = Verifiable(keys)
    v.members["m0"].vector = np.full(D, np.nan)
    with pytest.raises(RemoteProtocolError, match="non-finite"):
        v.run(ahead=frozenset({"m0"}))
    assert v.prepared == {"m0": 1}  # the failure was kept, not raised by prepare()
    assert not v.members["m0"].prepare()  # and not recomputed


def test_updates_above_the_bound_are_scaled_into_it(keys):
    vectors = {m: np.full(D, 0.1) for m in NAMES[:5]}
    vectors["m2"] = np.full(D, 3.0)  # norm ≈ 10.4, far above the bound of 1
    v = Verifiable(keys, vectors=vectors)
    result, sends = v.run()
    assert result.verified and result.rejected == {}
    assert v.deliver(sends) == {}
    words = v.members["m0"].verified_total
    # m2's share of the sum has norm ≤ 1 per unit weight: its influence is bounded.
    assert np.linalg.norm(result.params - 0.1) < 1.0 * v.weights["m2"] / sum(v.weights.values())
    assert int(words[-1]) == sum(v.weights.values())


def _resign(keys, member: str, msg: MaskedInput, stmt=None, **change) -> MaskedInput:
    new = dataclasses.replace(msg, **change)
    stmt = stmt or contrib.statement(D, BOUND, FP, 1000)
    digest = contrib.proof_digest(new.proof)
    payload = contrib.signed_payload("c", 1, member, new.commitment, digest, stmt)
    sig = keys[member].sign(payload, contrib.SIGNATURE_CONTEXT)
    return dataclasses.replace(new, signature=sig)


def bad_proof_by(keys, who: str) -> Tamper:
    """``who`` sends a wrong proof, validly signed (a member cheating on its own proof)."""

    def tamper(member: str, msg: codec.Message) -> codec.Message:
        if member == who and isinstance(msg, MaskedInput):
            proof = bytearray(msg.proof)
            proof[-40] ^= 1
            return _resign(keys, member, msg, proof=bytes(proof))
        return msg

    return tamper


def _honest_evidence(keys) -> tuple[Verifiable, ContributionEvidence]:
    """Evidence a framing coordinator would write: m0's own valid, signed proof."""
    stolen = {}

    def keep(member, msg):
        if isinstance(msg, MaskedInput) and member == "m0":
            stolen["m0"] = msg
        return msg

    v = Verifiable(keys)
    v.run(keep)
    mi, st = stolen["m0"], v.server.statement
    return v, ContributionEvidence(
        round=1, member="m0", reason="made up", dim=st.dim, bound_sq=st.bound_sq,
        weight_bits=st.weight_bits, projections=st.projections, commitment=mi.commitment,
        proof=mi.proof, signature=mi.signature,
    )  # fmt: skip


def test_a_bad_proof_excludes_its_maker_and_the_rest_aggregate(keys):
    v = Verifiable(keys)
    result, sends = v.run(bad_proof_by(keys, "m1"))
    assert set(result.rejected) == {"m1"}
    assert "contribution proof rejected" in result.rejected["m1"]
    # The evidence is the member's own signed commitment and proof: anyone can confirm it.
    ev = codec.decode(result.evidence["m1"])
    assert isinstance(ev, ContributionEvidence) and ev.member == "m1"
    assert contrib.evidence_statement(ev) == v.server.statement
    assert "does not verify" in contrib.check_evidence("c", v.directory, ev)
    forged = dataclasses.replace(ev, member="m2")  # blaming someone else needs their signature
    with pytest.raises(SignatureError):
        contrib.check_evidence("c", v.directory, forged)
    # Re-reading the proof against another statement (a stricter bound, say) would make any
    # honest proof fail: the member signed the statement too, so that is refused.
    stricter = dataclasses.replace(ev, bound_sq=ev.bound_sq // 4)
    with pytest.raises(SignatureError):
        contrib.check_evidence("c", v.directory, stricter)
    with pytest.raises(contrib.EvidenceError, match="no valid statement"):
        contrib.check_evidence("c", v.directory, dataclasses.replace(ev, projections=3))
    assert "m1" not in result.contributors and result.verified
    assert v.deliver(sends) == {}
    others = [m for m in v.ids if m != "m1"]
    expected = sum(v.weights[m] * v.vectors[m] for m in others) / sum(v.weights[m] for m in others)
    np.testing.assert_allclose(result.params, expected, atol=1e-4)


def test_a_proof_replayed_from_another_member_is_rejected(keys):
    stolen = {}

    def tamper(member, msg):
        if isinstance(msg, MaskedInput):
            if member == "m0":
                stolen["m0"] = msg
            elif member == "m3":
                m0 = stolen["m0"]
                return _resign(keys, member, msg, commitment=m0.commitment, proof=m0.proof)
        return msg

    v = Verifiable(keys)
    result, _ = v.run(tamper)
    assert set(result.rejected) == {"m3"}


@pytest.mark.parametrize("field", ["commitment", "proof", "signature"])
def test_a_relay_cannot_alter_a_signed_contribution(keys, field):
    def tamper(member, msg):
        if member == "m2" and isinstance(msg, MaskedInput):
            data = bytearray(getattr(msg, field))
            data[5] ^= 1
            return dataclasses.replace(msg, **{field: bytes(data)})
        return msg

    v = Verifiable(keys)
    result, _ = v.run(tamper)
    assert "m2" in v.refused and "m2" not in result.contributors
    assert result.verified


def test_masking_other_words_than_committed_aborts_the_round(keys):
    """A member proves a small committed update but masks a huge one: the opening check fails
    and the poisoned aggregate is never released."""

    def tamper(member, msg):
        if member == "m4" and isinstance(msg, MaskedInput):
            masked = msg.masked.copy()
            masked[0] += np.uint64(1 << 40)
            return dataclasses.replace(msg, masked=masked)
        return msg

    v = Verifiable(keys)
    with pytest.raises(RoundAbortedError, match="does not open"):
        v.run(tamper)


@pytest.mark.parametrize("lie", ["sum", "weight", "blinding", "commitment", "contributors",
                                 "signature"])  # fmt: skip
def test_members_catch_a_coordinator_that_lies_about_the_aggregate(keys, lie):
    v = Verifiable(keys)
    _, sends = v.run()

    def change(op: AggregateOpening) -> AggregateOpening:
        total = op.total.copy()
        if lie == "sum":
            total[3] += np.uint64(1 << 18)  # a shifted coordinate: a poisoned model
            return dataclasses.replace(op, total=total)
        if lie == "weight":
            total[D] += np.uint64(5)
            return dataclasses.replace(op, total=total)
        if lie == "blinding":
            total[D + 1] += np.uint64(1)
            return dataclasses.replace(op, total=total)
        if lie == "commitment":  # a forged commitment for m1 that would explain a shifted sum
            fake, _ = norm.commit(v.server.statement, np.zeros(D + 1, np.int64))
            coms = list(op.commitments)
            coms[1] = fake
            return dataclasses.replace(op, commitments=tuple(coms))
        if lie == "contributors":
            return dataclasses.replace(
                op, contributors=op.contributors[:-1], commitments=op.commitments[:-1],
                proof_digests=op.proof_digests[:-1], signatures=op.signatures[:-1],
            )  # fmt: skip
        sigs = list(op.signatures)
        sigs[0], sigs[1] = sigs[1], sigs[0]
        return dataclasses.replace(op, signatures=tuple(sigs))

    errors = v.deliver(sends, change)
    assert set(errors) == set(v.ids)
    assert all(v.members[m].verified_total is None for m in v.ids)


def test_malformed_or_unowed_openings_are_typed_refusals(keys):
    v = Verifiable(keys)
    _, sends = v.run()
    short = v.deliver(sends, lambda op: dataclasses.replace(op, commitments=op.commitments[:1]))
    assert all("commitment list" in e for e in short.values()) and len(short) == len(v.ids)
    # A member whose masked input never went out is owed no opening.
    v2 = Verifiable(keys, n=6)
    _, sends2 = v2.run(silent=frozenset({"m5"}))
    assert not v2.members["m5"].masked_sent
    op = next(s.message for s in sends2 if isinstance(s.message, AggregateOpening))
    with pytest.raises(RemoteProtocolError, match="did not contribute"):
        v2.members["m5"].receive(wire(op))


def test_evidence_naming_an_impossible_round_is_refused(keys):
    v = Verifiable(keys)
    result, _ = v.run(bad_proof_by(keys, "m1"))
    ev = codec.decode(result.evidence["m1"])
    with pytest.raises(contrib.EvidenceError, match="not a round number"):
        contrib.check_evidence("c", v.directory, dataclasses.replace(ev, round=-1))


def test_the_opening_is_accepted_once(keys):
    v = Verifiable(keys)
    _, sends = v.run()
    assert v.deliver(sends) == {}
    assert set(v.deliver(sends)) == set(v.ids)  # a replayed opening is refused


def test_dropout_at_the_masked_stage_with_proofs(keys):
    v = Verifiable(keys, n=6)
    result, sends = v.run(silent=frozenset({"m5"}))
    assert result.verified and "m5" not in result.contributors
    assert v.deliver(sends) == {}


def test_proof_fields_in_a_round_without_proofs_are_refused(keys):
    def tamper(member, msg):
        if member == "m0" and isinstance(msg, MaskedInput):
            return dataclasses.replace(msg, proof=b"x")
        return msg

    v = Verifiable(keys, norm_bound=None)
    result, sends = v.run(tamper)
    assert "m0" in v.refused and not result.verified
    assert not any(isinstance(s.message, AggregateOpening) for s in sends)


def test_configuration_errors(keys):
    directory = {m: keys[m].verify_key for m in NAMES[:3]}
    with pytest.raises(ConfigError, match="64-bit"):
        SecureRound(consortium="c", round=1, selected=NAMES[:3], directory=directory,
                    global_params=np.zeros(4), train=TrainConfig(),
                    fixed_point=FixedPoint(modulus_bits=32, scale_bits=8, clip=1.0),
                    max_weight=10, norm_bound=1.0)  # fmt: skip
    with pytest.raises(ConfigError, match="model updates"):
        SecureRound(consortium="c", round=0, selected=NAMES[:3], directory=directory,
                    global_params=np.zeros(4), train=TrainConfig(), max_weight=1,
                    purpose="stats", norm_bound=1.0)  # fmt: skip
    with pytest.raises(ConfigError, match="secure aggregation"):
        CoordinatorNode(NAMES[:3], LogisticRegression(4, 2), TrainConfig(),
                        np.random.default_rng(0), n_features=4, norm_bound=1.0)  # fmt: skip
    # B² must fit the 64-bit integer evidence carries it in.
    with pytest.raises(ConfigError, match="too large"):
        contrib.statement(10, 300.0, FixedPoint(scale_bits=24, clip=1000.0), 100)
    assert contrib.statement(10, 2.0, FixedPoint(), 1 << 24).bound_sq < 1 << 63


def test_float32_updates_far_above_the_bound_still_prove(keys):
    """Large float32 updates scaled onto the bound must not overshoot it by rounding."""
    rng = np.random.default_rng(11)
    vectors = {m: (rng.normal(0, 1.0, D) * 50).astype(np.float32) for m in NAMES[:4]}
    v = Verifiable(keys, n=4, vectors=vectors, weight=60000)
    result, sends = v.run()
    assert result.verified and result.rejected == {} and v.refused == {}
    assert v.deliver(sends) == {}


def test_evidence_of_an_honest_proof_is_refused(keys):
    """A coordinator cannot frame an honest member: its valid proof is not evidence."""
    v, ev = _honest_evidence(keys)
    with pytest.raises(contrib.EvidenceError, match="verifies"):
        contrib.check_evidence("c", v.directory, ev)


def test_rejected_proof_evidence_goes_beside_the_log(keys, tmp_path):
    import hashlib

    from guardians.engine.audit import AuditTrail

    def tamper(member, msg):
        if member == "m1" and isinstance(msg, MaskedInput):
            proof = bytearray(msg.proof)
            proof[100] ^= 1
            return _resign(keys, member, msg, proof=bytes(proof))
        return msg

    v = Verifiable(keys)
    result, _ = v.run(tamper)
    trail = AuditTrail(tmp_path / "log", "test.example/log", v.ids)
    trail.record_incident(1, "m1", result.rejected["m1"], "invalid-contribution-proof",
                          result.evidence["m1"])  # fmt: skip
    digest = hashlib.sha256(result.evidence["m1"]).hexdigest()
    assert (tmp_path / "log" / "evidence" / f"{digest}.cbor").read_bytes() == result.evidence["m1"]
    entry = codec.decode(trail.log.store.entry(trail.log.store.size - 1))
    assert entry.kind == "invalid-contribution-proof" and entry.evidence_hash.hex() == digest


def test_auditors_check_the_evidence_kept_beside_the_log(keys, tmp_path):
    from guardians.engine.audit import REJECTED_CONTRIBUTION, AuditTrail, check_evidence

    v = Verifiable(keys)
    result, _ = v.run(bad_proof_by(keys, "m1"))
    log = tmp_path / "log"
    trail = AuditTrail(log, "test.example/log", v.ids)
    trail.admit({m: keys[m].verify_key.raw for m in v.ids})
    trail.record_incident(1, "m1", result.rejected["m1"], REJECTED_CONTRIBUTION,
                          result.evidence["m1"])  # fmt: skip
    trail.close()
    ok, detail = check_evidence(log, "c")
    assert ok and "1 rejected contribution(s)" in detail, detail
    # Bound to the consortium: the member signed for "c", not for another.
    ok, detail = check_evidence(log, "elsewhere")
    assert not ok and "round 1, m1" in detail
    (f,) = (log / "evidence").iterdir()
    data = f.read_bytes()
    f.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert "does not match the log's digest" in check_evidence(log, "c")[1]
    f.unlink()
    assert "no evidence file" in check_evidence(log, "c")[1]


def test_evidence_that_an_honest_member_was_excluded_fails_the_audit(keys, tmp_path):
    """A coordinator that excludes a member with a valid proof cannot produce evidence that
    survives the audit: the member's own signed proof verifies."""
    from guardians.engine.audit import REJECTED_CONTRIBUTION, AuditTrail, check_evidence

    v, ev = _honest_evidence(keys)
    framed = codec.encode(ev)
    trail = AuditTrail(tmp_path / "log", "test.example/log", v.ids)
    trail.admit({m: keys[m].verify_key.raw for m in v.ids})
    trail.record_incident(1, "m0", "made up", REJECTED_CONTRIBUTION, framed)
    trail.close()
    ok, detail = check_evidence(tmp_path / "log", "c")
    assert not ok and "verifies: no misbehaviour" in detail
