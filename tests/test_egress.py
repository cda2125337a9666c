"""Tests of guardians.engine.egress: record fingerprints and the egress meter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardians import codec
from guardians.engine.egress import EgressMeter, RecordFingerprints, window_hashes
from guardians.engine.inprocess import COORDINATOR, InProcessFederation, InProcessNetwork
from guardians.learning.data import Dataset
from guardians.learning.models import MLP
from guardians.learning.train import TrainConfig
from guardians.node.coordinator import CoordinatorNode
from guardians.node.member import MemberNode
from guardians.protocol.messages import GlobalModel, ModelUpdate, RecordsUpload


def records(n=50, width=7, seed=0):
    return np.random.default_rng(seed).normal(size=(n, width)).astype(np.float32)


def embed(rows, prefix, gaps, seed=1):
    """Random filler, then each row's float32 bytes separated by random gaps of given lengths."""
    rng = np.random.default_rng(seed)
    parts = [rng.bytes(prefix)]
    for r, g in zip(rows, gaps, strict=True):
        parts.append(np.asarray(r, dtype="<f4").tobytes())
        parts.append(rng.bytes(g))
    return b"".join(parts)


def test_window_hashes_match_direct_sum():
    from guardians.engine import egress

    w = np.random.default_rng(0).integers(0, 2**32, 30, dtype=np.uint64).astype(np.uint32)
    mixed = [int(v) for v in egress._mix(w)]
    for width in (1, 3, 30):
        fast = window_hashes(w, width)
        assert len(fast) == 30 - width + 1
        for s in range(len(fast)):
            direct = sum(mixed[s + j] * pow(egress._BASE, j, 1 << 64) for j in range(width))
            assert int(fast[s]) == direct % (1 << 64)
    # equal windows hash equally, wherever they are
    w2 = np.concatenate([w[5:12], w, w[5:12]])
    h = window_hashes(w2, 7)
    assert h[0] == h[7 + 5] == h[7 + 30]


@pytest.mark.parametrize("prefix", [0, 1, 2, 3, 4, 5, 6, 7, 101])
def test_finds_records_at_any_byte_offset(prefix):
    rows = records()
    fp = RecordFingerprints(rows)
    pick = [3, 17, 42, 0, 49]
    gaps = [1, 2, 3, 0, 5]
    payload = embed(rows[pick], prefix, gaps, seed=prefix)
    np.testing.assert_array_equal(fp.scan(payload), sorted(pick))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    width=st.integers(1, 12),
    n=st.integers(1, 60),
    data=st.data(),
)
def test_scan_reports_exactly_the_embedded_records(seed, width, n, data):
    rows = records(n, width, seed)
    if width == 1:
        # a single random float can occur by chance in random filler; use zero filler there
        rows = np.abs(rows) + 1.0
    fp = RecordFingerprints(rows)
    k = data.draw(st.integers(0, min(n, 8)))
    pick = data.draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))
    prefix = data.draw(st.integers(0, 40))
    gaps = data.draw(st.lists(st.integers(0, 9), min_size=k, max_size=k))
    if width == 1:
        payload = b"\x00" * prefix + b"".join(
            rows[i].astype("<f4").tobytes() + b"\x00" * g for i, g in zip(pick, gaps, strict=True)
        )
    else:
        payload = embed(rows[pick], prefix, gaps, seed=seed)
    np.testing.assert_array_equal(fp.scan(payload), sorted(set(pick)))


def test_overlapping_and_adjacent_records():
    rows = records(10, 4)
    fp = RecordFingerprints(rows)
    payload = rows[[2, 5, 7]].tobytes()  # back to back
    np.testing.assert_array_equal(fp.scan(payload), [2, 5, 7])
    # a record whose bytes straddle a non-aligned boundary inside another
    payload = b"\xaa" + rows[1].tobytes()[:6] + rows[8].tobytes() + b"\x00\x00"
    np.testing.assert_array_equal(fp.scan(payload), [8])


def test_partial_or_perturbed_records_are_not_reported():
    rows = records(10, 6)
    fp = RecordFingerprints(rows)
    assert len(fp.scan(rows[3].tobytes()[:-1])) == 0
    almost = rows[3].copy()
    almost[5] = np.nextafter(almost[5], np.float32(np.inf))
    assert len(fp.scan(almost.tobytes())) == 0
    assert len(fp.scan(rows[3].astype(">f4").tobytes())) == 0  # big-endian is not verbatim
    assert len(fp.scan(rows[3].astype(np.float64).tobytes())) == 0
    assert len(fp.scan(b"")) == 0


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2000), st.integers(0, 2**32 - 1))
def test_nothing_found_in_random_payloads(payload, seed):
    fp = RecordFingerprints(records(30, 5, seed))
    assert len(fp.scan(payload)) == 0


def test_nothing_found_in_encoded_model_updates():
    rows = records(200, 10)
    fp = RecordFingerprints(rows)
    rng = np.random.default_rng(5)
    for i in range(10):
        delta = (rng.normal(size=5000) * 10.0 ** rng.integers(-4, 2)).astype(np.float32)
        msg = ModelUpdate(round=i, num_samples=200, loss=0.3, delta=delta)
        assert len(fp.scan(codec.encode(msg))) == 0
        assert len(fp.scan(codec.encode(GlobalModel(round=i, params=delta)))) == 0


def test_duplicate_records_all_count():
    rows = records(8, 5)
    rows[6] = rows[2]
    rows[7] = rows[2]
    fp = RecordFingerprints(rows)
    np.testing.assert_array_equal(fp.scan(b"xy" + rows[2].tobytes()), [2, 6, 7])
    np.testing.assert_array_equal(fp.scan(rows[[6, 4]].tobytes()), [2, 4, 6, 7])


def test_constant_rows_are_not_indexed():
    rows = records(5, 4)
    rows[1] = 0.0
    rows[3] = 2.5
    fp = RecordFingerprints(rows)
    assert fp.unindexed == 2
    assert fp.n_records == 5
    payload = np.zeros(100, np.float32).tobytes() + rows.tobytes()
    np.testing.assert_array_equal(fp.scan(payload), [0, 2, 4])


def test_fingerprints_reject_bad_shapes():
    for bad in (np.zeros(5, np.float32), np.zeros((3, 0), np.float32)):
        with pytest.raises(ValueError):
            RecordFingerprints(bad)


def test_finds_real_nslkdd_records():
    from guardians.learning.data import load_nslkdd

    X = load_nslkdd("binary").train.X[:3000]
    fp = RecordFingerprints(X)
    assert fp.unindexed == 0
    pick = [10, 999, 2500]
    found = fp.scan(b"\x01" + X[pick].tobytes())
    # NSL-KDD has exact duplicate rows: every copy of a leaked row is a leaked record
    expected = np.flatnonzero((X[:, None, :] == X[pick][None, :, :]).all(axis=2).any(axis=1))
    np.testing.assert_array_equal(found, expected)
    assert set(pick) <= set(found.tolist())


# --- EgressMeter --------------------------------------------------------------------------
def test_meter_totals():
    meter = EgressMeter()
    rows_a, rows_b = records(20, 6, 1), records(20, 6, 2)
    meter.register_boundary("a", rows_a)
    meter.register_boundary("b", rows_b)
    assert meter.members == ("a", "b")
    rng = np.random.default_rng(0)
    sent = [
        ("a", COORDINATOR, "fl/update", rng.bytes(100)),
        ("a", COORDINATOR, "fl/update", rng.bytes(250)),
        ("a", COORDINATOR, "fl/stats-report", rng.bytes(40)),
        (COORDINATOR, "a", "fl/train", rng.bytes(300)),
        (COORDINATOR, "b", "fl/train", rng.bytes(310)),
        ("b", COORDINATOR, "central/records", b"\x00" + rows_b[[1, 2, 2, 9]].tobytes()),
        ("b", COORDINATOR, "central/records", rows_b[[9, 11]].tobytes()),
        ("x", "y", "other", rng.bytes(7)),  # neither side metered
    ]
    for s, r, k, p in sent:
        rec = meter.record(s, r, k, p)
        assert rec.bytes == len(p)
        assert (rec.sender, rec.recipient, rec.kind) == (s, r, k)
    assert len(meter.log) == len(sent)
    assert [e.raw_records for e in meter.log] == [0, 0, 0, 0, 0, 3, 2, 0]

    for m in ("a", "b"):
        out = [p for s, _, _, p in sent if s == m]
        inc = [p for _, r, _, p in sent if r == m]
        assert meter.egress[m].messages == len(out)
        assert meter.egress[m].bytes == sum(map(len, out))
        assert meter.ingress[m].messages == len(inc)
        assert meter.ingress[m].bytes == sum(map(len, inc))
        kinds = {k for s, _, k, _ in sent if s == m}
        assert set(meter.egress[m].by_kind) == kinds
        for k in kinds:
            ps = [p for s, _, kk, p in sent if s == m and kk == k]
            assert meter.egress[m].by_kind[k] == {"messages": len(ps), "bytes": sum(map(len, ps))}
    assert meter.egress["a"].raw_records == 0
    assert meter.egress["b"].raw_records == 5  # per message, repeats counted
    assert meter.distinct_records_leaked("b") == 4  # rows 1, 2, 9, 11
    assert meter.distinct_records_leaked("a") == 0
    summ = meter.summary()
    assert summ["raw_records"] == 4
    assert summ["bytes_out"] == sum(len(p) for s, _, _, p in sent if s in ("a", "b"))
    assert summ["bytes_in"] == 610
    assert summ["messages_out"] == 5
    assert summ["per_member"]["b"]["records_held"] == 20
    assert summ["per_member"]["b"]["raw_records_out"] == 4
    assert summ["per_member"]["a"]["out_by_kind"]["fl/update"] == {"messages": 2, "bytes": 350}


def test_records_upload_is_metered_as_raw_records():
    rows = records(30, 4)
    net = InProcessNetwork()
    net.meter.register_boundary("m", rows)
    msg = RecordsUpload(features=rows, labels=np.zeros(30, np.int64))
    back = net.transmit("m", COORDINATOR, msg)
    np.testing.assert_array_equal(back.features, rows)
    assert net.meter.egress["m"].raw_records == 30
    assert net.meter.distinct_records_leaked("m") == 30


def smuggling_update(rows, hide, n_params, round=1, offset=13):
    """A ModelUpdate whose delta has the float32 rows ``hide`` written into it."""
    delta = (np.random.default_rng(round).normal(size=n_params) * 1e-3).astype(np.float32)
    flat = rows[hide].ravel()
    delta[offset : offset + flat.size] = flat
    return ModelUpdate(round=round, num_samples=len(rows), loss=0.4, delta=delta)


def test_meter_detects_records_smuggled_in_a_model_update():
    rows = records(100, 9, seed=3)
    net = InProcessNetwork()
    net.meter.register_boundary("evil", rows)
    net.meter.register_boundary("honest", records(100, 9, seed=4))
    hide = [5, 17, 33, 64, 98]
    msg = smuggling_update(rows, hide, n_params=400)
    back = net.transmit("evil", COORDINATOR, msg)
    np.testing.assert_array_equal(back.delta, msg.delta)  # the update itself is well-formed
    assert net.meter.egress["evil"].raw_records >= 5
    assert net.meter.distinct_records_leaked("evil") == 5
    assert net.meter.summary()["per_member"]["evil"]["raw_records_out"] == 5
    assert net.meter.log[-1].raw_records == 5
    # an honest update of the same size leaks nothing
    honest = ModelUpdate(
        round=1,
        num_samples=100,
        loss=0.4,
        delta=np.random.default_rng(9).normal(size=400).astype(np.float32),
    )
    net.transmit("honest", COORDINATOR, honest)
    assert net.meter.egress["honest"].raw_records == 0
    assert net.meter.summary()["per_member"]["honest"]["raw_records_out"] == 0


class SmugglingMember(MemberNode):
    """Trains honestly, then overwrites part of its delta with its own raw records."""

    def handle(self, msg):
        replies = super().handle(msg)
        out = []
        for r in replies:
            if isinstance(r, ModelUpdate):
                delta = r.delta.copy()
                flat = self.records[:5].ravel()
                delta[7 : 7 + flat.size] = flat
                r = ModelUpdate(round=r.round, num_samples=r.num_samples, loss=r.loss, delta=delta)
            out.append(r)
        return out


def toy_dataset(seed, n=60, d=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = (rng.normal(size=(n, d)) + y[:, None]).astype(np.float32)
    g = np.array(["normal", "attack"])[y]
    return Dataset("toy", X, y, ("normal", "attack"), tuple(f"f{i}" for i in range(d)), g, g)


def test_federation_meters_smuggling_member_only():
    data = {"m1": toy_dataset(1), "m2": toy_dataset(2), "m3": toy_dataset(3)}
    cfg = TrainConfig(epochs=1, batch_size=16, learning_rate=1e-2)
    members = {
        m: (SmugglingMember if m == "m2" else MemberNode)(
            m, ds, MLP(4, 2, (8,), seed=0), np.random.default_rng(i)
        )
        for i, (m, ds) in enumerate(data.items())
    }
    coord = CoordinatorNode(
        list(members), MLP(4, 2, (8,), seed=0), cfg, np.random.default_rng(0), n_features=4
    )
    fed = InProcessFederation(coord, members)
    run = fed.run(2)
    assert len(run.rounds) == 2
    meter = fed.network.meter
    assert meter.egress["m2"].raw_records >= 5
    assert meter.distinct_records_leaked("m2") >= 5
    assert meter.distinct_records_leaked("m1") == 0
    assert meter.distinct_records_leaked("m3") == 0
    summ = meter.summary()
    assert summ["per_member"]["m2"]["raw_records_out"] >= 5
    assert summ["raw_records"] == summ["per_member"]["m2"]["raw_records_out"]
    # 3 stats reports, then per round 3 updates and 3 drift reports (summaries) out of members
    assert summ["messages_out"] == 3 + 2 * 3 + 2 * 3
    kinds = summ["per_member"]["m1"]["out_by_kind"]
    assert kinds["fl/drift-report"]["messages"] == 2
    assert set(meter.egress["m1"].by_kind) == {"fl/stats-report", "fl/update", "fl/drift-report"}
    kinds_in = set(meter.ingress["m1"].by_kind)
    assert kinds_in == {"fl/stats-request", "fl/stats-result", "fl/train", "fl/global-model"}
