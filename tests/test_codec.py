"""Tests of guardians.codec and guardians.protocol.messages: canonical CBOR on the
wire, strict decoding."""

from __future__ import annotations

import dataclasses

import cbor2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import guardians.ledger.entries as le
import guardians.protocol.secagg.messages as sa
import guardians.protocol.witness as wi
from guardians import codec
from guardians.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from guardians.protocol.messages import (
    DriftReport,
    GlobalModel,
    ModelUpdate,
    RecordsUpload,
    StatsReport,
    StatsRequest,
    StatsResult,
    TrainInstruction,
)

RNG = np.random.default_rng(0)


def samples():
    """One instance of every registered message type, with non-trivial arrays."""
    return [
        StatsRequest(round=0, aggregation="plain"),
        StatsReport(
            round=0,
            count=17,
            sum=RNG.normal(size=5),
            sumsq=RNG.random(5) * 1e6,
        ),
        StatsResult(
            round=0,
            mean=RNG.normal(size=5).astype(np.float32),
            scale=(RNG.random(5) + 0.1).astype(np.float32),
        ),
        TrainInstruction(
            round=3,
            epochs=2,
            batch_size=64,
            learning_rate=1e-3,
            optimizer="adam",
            momentum=0.9,
            proximal=0.0,
            aggregation="plain",
            params=RNG.normal(size=101).astype(np.float32),
        ),
        ModelUpdate(
            round=3,
            num_samples=1234,
            loss=0.4321,
            delta=RNG.normal(size=101).astype(np.float32),
        ),
        GlobalModel(round=3, params=RNG.normal(size=101).astype(np.float32)),
        RecordsUpload(
            features=RNG.normal(size=(4, 3)).astype(np.float32),
            labels=np.array([0, 1, 1, 2**40], dtype=np.int64),
        ),
        sa.SecAggSetup(
            round=2, participants=("a", "b", "c"), degree=2, threshold=2, modulus_bits=64,
            scale_bits=20, clip=8.0, dim=10, max_weight=1000,
        ),
        sa.Advertise(round=2, x25519=b"x" * 32, mlkem=b"k" * 1184, signature=b"s" * 3373),
        sa.Keys(
            round=2, members=("a", "b"), x25519=(b"1" * 32, b"2" * 32),
            mlkem=(b"3" * 1184, b"4" * 1184), signatures=(b"5" * 9, b"6" * 9),
        ),
        sa.Encaps(round=2, recipients=("c",), ciphertexts=(b"c" * 1088,), signature=b"s" * 7),
        sa.EncapsRelay(
            round=2, senders=("a",), recipients=(("b", "c"),),
            ciphertexts=((b"1" * 5, b"2" * 5),), signatures=(b"s" * 7,),
        ),
        sa.Shares(round=2, recipients=("a", "b"), ciphertexts=(b"\x00" * 40, b"\x01" * 40)),
        sa.SharesRelay(round=2, senders=("a",), ciphertexts=(b"\x02" * 40,)),
        sa.MaskedInput(
            round=2, clipped=3, masked=RNG.integers(0, 2**63, size=11).astype(np.uint64)
        ),
        sa.MaskedInput(
            round=2, clipped=0, masked=RNG.integers(0, 2**32, size=11).astype(np.uint32),
            commitment=b"c" * 48, proof=b"p" * 100, signature=b"s" * 10,
        ),
        sa.ConsistencyCheck(round=2, survivors=("a", "b"), dropped=("c",)),
        sa.ConsistencySignature(round=2, signature=b"s" * 5),
        sa.UnmaskRequest(
            round=2, survivors=("a", "b"), dropped=("c",), signers=("a", "b"),
            signatures=(b"1" * 4, b"2" * 4),
        ),
        le.MemberAdmitted(member="a", identity_key=b"k" * 5),
        le.MemberRemoved(member="a", reason="left"),
        le.KeyRotated(member="a", identity_key=b"k" * 6),
        le.RoundCommitted(
            round=1, participants=("a", "b"), rule="fedavg", privacy="secagg",
            model_hash=b"m" * 32, aggregate_hash=b"g" * 32,
        ),
        le.ModelPromoted(version=1, model_hash=b"m" * 32),
        le.ModelRolledBack(version=1, reason="backdoor", model_hash=b"m" * 32),
        le.Vote(proposal="p1", member="a", choice="yes", signature=b"s" * 3),
        le.Incident(round=1, member="a", kind="k", detail="d", evidence_hash=b"e" * 32),
        le.IntelDigest(source="a", count=3, bundle_hash=b"b" * 32),
        sa.UnmaskReply(
            round=2, self_owners=("a",), self_shares=(b"\x03" * 66,), pair_owners=("c",),
            pair_shares=(b"\x04" * 132,),
        ),
        sa.AggregateOpening(
            round=2, contributors=("a", "b"), commitments=(b"c" * 48, b"d" * 48),
            proof_digests=(b"p" * 32, b"q" * 32), signatures=(b"s" * 9, b"t" * 9),
            total=np.arange(12, dtype=np.uint64),
        ),
        DriftReport(round=3, records=120, feature_shift=0.4, label_rate=0.25, model_f1=0.8,
                        flag_rate=0.3),
        sa.ContributionEvidence(
            round=2, member="a", reason="does not verify", dim=10, bound_sq=2**40,
            weight_bits=24, projections=128, commitment=b"c" * 48, proof=b"p" * 70,
            signature=b"s" * 9,
        ),
        wi.WitnessKeyRequest(origin="c.example/log", log_name="c.example/log", log_key=b"k" * 32),
        wi.WitnessKey(origin="c.example/log", name="a.witness.c", ed25519=b"e" * 32,
                      mldsa44=b"m" * 1312, attestation=b"s" * 9),
        wi.CosignRequest(log_name="c.example/log", log_key=b"k" * 32,
                         proof=(b"h" * 32, b"i" * 32), old_size=3, note="cp\n\n— x y\n"),
        wi.Cosignature(note="cp\n\n— x y\n— w z\n"),
        wi.WitnessSize(size=7),
    ]  # fmt: skip


def assert_same_message(a, b):
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray)
            assert y.dtype.name in f.metadata["dtype"], f.name
            assert y.shape == x.shape, f.name
            np.testing.assert_array_equal(y, x)
        else:
            assert type(y) is type(x), f.name
            assert y == x, f.name


def test_every_registered_kind_is_covered():
    assert {type(m).KIND for m in samples()} == set(codec.registered_kinds())


@pytest.mark.parametrize("msg", samples(), ids=lambda m: m.KIND)
def test_round_trip(msg):
    data = codec.encode(msg)
    assert isinstance(data, bytes)
    back = codec.decode(data)
    assert_same_message(msg, back)
    assert codec.encode(back) == data
    # bytearray and memoryview are accepted too
    assert_same_message(msg, codec.decode(bytearray(data)))
    assert_same_message(msg, codec.decode(memoryview(data)))


@pytest.mark.parametrize("msg", samples(), ids=lambda m: m.KIND)
def test_encoding_is_deterministic(msg):
    data = codec.encode(msg)
    assert codec.encode(msg) == data
    # an equal message built separately (fresh arrays) encodes identically
    kwargs = {
        f.name: (
            np.array(getattr(msg, f.name), copy=True)
            if "dtype" in f.metadata
            else getattr(msg, f.name)
        )
        for f in dataclasses.fields(msg)
    }
    assert codec.encode(type(msg)(**kwargs)) == data
    # the wire form is one CBOR map with the kind and version
    obj = cbor2.loads(data)
    assert obj["type"] == msg.KIND
    assert obj["v"] == codec.WIRE_VERSION
    assert cbor2.dumps(obj, canonical=True) == data


def test_arrays_travel_as_typed_arrays():
    msg = samples()[4]  # ModelUpdate
    obj = cbor2.loads(codec.encode(msg))
    assert isinstance(obj["delta"], cbor2.CBORTag)
    assert obj["delta"].tag == 85  # float32 little-endian
    assert obj["delta"].value == msg.delta.astype("<f4").tobytes()
    rec = cbor2.loads(codec.encode(samples()[6]))
    assert rec["features"].tag == 40
    assert list(rec["features"].value[0]) == [4, 3]
    assert rec["labels"].tag == 79  # int64 little-endian


def test_encoding_converts_dtype_and_checks_ndim():
    m = GlobalModel(round=1, params=np.arange(4, dtype=np.float64))
    back = codec.decode(codec.encode(m))
    assert back.params.dtype == np.float32
    np.testing.assert_array_equal(back.params, [0, 1, 2, 3])
    with pytest.raises(LocalProtocolError):
        codec.encode(GlobalModel(round=1, params=np.zeros((2, 2), np.float32)))


@settings(max_examples=50, deadline=None)
@given(
    round_=st.integers(0, 2**63 - 1),
    n=st.integers(0, 300),
    loss=st.floats(allow_nan=False),
    samples_=st.integers(0, 2**40),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_property(round_, n, loss, samples_, seed):
    delta = np.random.default_rng(seed).normal(size=n).astype(np.float32)
    m = ModelUpdate(round=round_, num_samples=samples_, loss=loss, delta=delta)
    data = codec.encode(m)
    assert_same_message(m, codec.decode(data))


def test_nan_loss_round_trips():
    m = ModelUpdate(round=1, num_samples=1, loss=float("nan"), delta=np.zeros(2, np.float32))
    back = codec.decode(codec.encode(m))
    assert np.isnan(back.loss)


# --- rejection ----------------------------------------------------------------------------
def wire(msg):
    return codec.to_wire(msg)


def canonical(obj):
    return cbor2.dumps(obj, canonical=True)


def update():
    return ModelUpdate(round=2, num_samples=5, loss=0.5, delta=np.arange(4, dtype=np.float32))


def reject(data, match=None):
    with pytest.raises(DecodeError, match=match) as ei:
        codec.decode(data)
    assert isinstance(ei.value, RemoteProtocolError)
    return str(ei.value)


@pytest.mark.parametrize("msg", samples(), ids=lambda m: m.KIND)
def test_truncated_bytes_rejected(msg):
    data = codec.encode(msg)
    for cut in {0, 1, len(data) // 2, len(data) - 1}:
        reject(data[:cut])


@pytest.mark.parametrize("msg", samples(), ids=lambda m: m.KIND)
def test_trailing_bytes_rejected(msg):
    data = codec.encode(msg)
    reject(data + b"\x00", "trailing")
    reject(data + data, "trailing")


def test_not_bytes_rejected():
    with pytest.raises(DecodeError):
        codec.decode("a string")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        codec.decode(None)  # type: ignore[arg-type]


def test_size_limit():
    data = codec.encode(update())
    with pytest.raises(DecodeError, match="limit"):
        codec.decode(data, max_bytes=len(data) - 1)
    codec.decode(data, max_bytes=len(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_garbage_raises_decode_error_only(data):
    with pytest.raises(DecodeError):
        codec.decode(data)


@settings(max_examples=300, deadline=None)
@given(
    which=st.integers(0, 6),
    edits=st.lists(
        st.tuples(
            st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["set", "ins", "del"])
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_messages_decode_canonically_or_raise_decode_error(which, edits):
    data = bytearray(codec.encode(samples()[which]))
    for pos, byte, op in edits:
        i = pos % (len(data) + 1)
        if op == "set" and i < len(data):
            data[i] = byte
        elif op == "ins":
            data[i:i] = bytes([byte])
        elif op == "del" and i < len(data):
            del data[i]
    data = bytes(data)
    try:
        msg = codec.decode(data)
    except DecodeError:
        return
    # Anything accepted is exactly the canonical encoding of what was decoded.
    assert codec.encode(msg) == data


def test_not_a_map_rejected():
    reject(cbor2.dumps([1, 2, 3]), "map")
    reject(cbor2.dumps(7), "map")


def test_unknown_type_rejected():
    obj = wire(update())
    obj["type"] = "fl/update-v2"
    reject(canonical(obj), "unknown message type")
    obj["type"] = 3
    reject(canonical(obj), "unknown message type")
    del obj["type"]
    reject(canonical(obj), "unknown message type")


def test_wrong_version_rejected():
    obj = wire(update())
    for v in (0, 2, "1", None):
        obj["v"] = v
        reject(canonical(obj), "version")
    del obj["v"]
    reject(canonical(obj), "version")


def test_missing_field_rejected():
    obj = wire(update())
    del obj["num_samples"]
    reject(canonical(obj), "missing fields.*num_samples")


def test_extra_field_rejected():
    obj = wire(update())
    obj["member"] = "alice"
    reject(canonical(obj), "unexpected fields.*member")
    obj = wire(update())
    obj[7] = 1
    reject(canonical(obj), "unexpected fields")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("round", "2"),
        ("round", 2.0),
        ("round", True),
        ("round", None),
        ("num_samples", [5]),
        ("loss", "0.5"),
        ("loss", True),
        ("delta", [0.0, 1.0, 2.0, 3.0]),
        ("delta", b"\x00" * 16),
    ],
)
def test_wrong_field_type_rejected(field, value):
    obj = wire(update())
    obj[field] = value
    msg = reject(canonical(obj))
    assert f"fl/update.{field}" in msg


def test_wrong_text_field_type():
    obj = wire(
        TrainInstruction(
            round=1,
            epochs=1,
            batch_size=2,
            learning_rate=0.1,
            optimizer="sgd",
            momentum=0.0,
            proximal=0.0,
            aggregation="plain",
            params=np.zeros(2, np.float32),
        )
    )
    obj["optimizer"] = 1
    reject(canonical(obj), "optimizer")


def test_wrong_array_tag_rejected():
    obj = wire(update())
    obj["delta"] = cbor2.CBORTag(86, np.arange(4, dtype="<f8").tobytes())  # float64
    reject(canonical(obj), "float32")
    obj["delta"] = cbor2.CBORTag(84, np.arange(4, dtype="<f2").tobytes())  # float16
    reject(canonical(obj), "float32")
    obj["delta"] = cbor2.CBORTag(81, np.arange(4, dtype=">f4").tobytes())  # big-endian float32
    reject(canonical(obj), "float32")
    obj = wire(samples()[1])  # StatsReport wants float64
    obj["sum"] = cbor2.CBORTag(85, np.zeros(5, "<f4").tobytes())
    reject(canonical(obj), "float64")


def test_typed_array_content_must_be_bytes():
    obj = wire(update())
    obj["delta"] = cbor2.CBORTag(85, "abcd")
    reject(canonical(obj), "byte string")


@pytest.mark.parametrize("extra", [1, 2, 3, 5])
def test_array_length_not_multiple_of_item_size_rejected(extra):
    obj = wire(update())
    obj["delta"] = cbor2.CBORTag(85, b"\x00" * (16 + extra))
    reject(canonical(obj), "whole number")


def test_2d_array_shape_checks():
    base = samples()[6]
    feats = base.features.astype("<f4").tobytes()  # 12 values
    bad_shapes = [[4, 4], [3, 3], [12], [2, 2, 3], [4, -3], [4, 3.0], [True, 12], "4x3"]
    for shape in bad_shapes:
        obj = wire(base)
        obj["features"] = cbor2.CBORTag(40, [shape, cbor2.CBORTag(85, feats)])
        reject(canonical(obj), "features")
    obj = wire(base)
    obj["features"] = cbor2.CBORTag(85, feats)  # 1-D where 2-D is declared
    reject(canonical(obj), "2-D")
    obj["features"] = cbor2.CBORTag(40, [[6, 2], cbor2.CBORTag(85, feats)])
    # consistent shape but the labels now disagree on the number of records: the message's
    # own validation turns into a DecodeError
    reject(canonical(obj), "records")
    obj["features"] = cbor2.CBORTag(40, [[2, 6], cbor2.CBORTag(85, feats)])
    obj["labels"] = cbor2.CBORTag(79, np.zeros(2, "<i8").tobytes())
    assert codec.decode(canonical(obj)).features.shape == (2, 6)


@pytest.mark.parametrize("field", ["round", "num_samples"])
def test_negative_integers_rejected(field):
    obj = wire(update())
    obj[field] = -1
    reject(canonical(obj), "non-negative")


def test_non_canonical_key_order_rejected():
    obj = wire(update())
    reordered = dict(reversed(list(obj.items())))
    data = cbor2.dumps(reordered)  # insertion order, not deterministic order
    assert data != codec.encode(update())
    assert cbor2.loads(data) == cbor2.loads(codec.encode(update()))
    reject(data, "canonical")


def test_non_canonical_float_width_rejected():
    obj = wire(update())
    data = cbor2.dumps(obj)  # 0.5 as a 64-bit float, not the shortest (16-bit) form
    assert b"\xfb\x3f\xe0\x00\x00\x00\x00\x00\x00" in data
    reject(data, "canonical")


def test_non_shortest_integer_rejected():
    data = codec.encode(update())
    short = b"\x65round\x02"
    assert data.count(short) == 1
    for longer in (
        b"\x65round\x18\x02",
        b"\x65round\x19\x00\x02",
        b"\x65round\x1a\x00\x00\x00\x02",
    ):
        bad = data.replace(short, longer)
        assert cbor2.loads(bad)["round"] == 2
        reject(bad, "canonical")


def test_indefinite_length_rejected():
    data = codec.encode(GlobalModel(round=1, params=np.zeros(1, np.float32)))
    assert data[0] == 0xA7  # map of 7 pairs
    indefinite = b"\xbf" + data[1:] + b"\xff"
    assert cbor2.loads(indefinite)["round"] == 1
    reject(indefinite, "canonical")


def test_duplicate_keys_rejected():
    data = codec.encode(GlobalModel(round=1, params=np.zeros(1, np.float32)))
    # append a second "round" entry: the map now claims 8 pairs
    dup = b"\xa8" + data[1:] + b"\x65round\x01"
    reject(dup)


def test_float_field_accepts_only_its_canonical_form():
    obj = wire(update())
    obj["loss"] = 1  # an integer where a float is declared decodes as 1.0 but is not canonical
    reject(canonical(obj), "canonical")


def test_huge_integer_in_float_field_is_a_decode_error():
    obj = wire(update())
    obj["loss"] = 10**400
    reject(canonical(obj))


def test_huge_empty_shape_is_a_decode_error():
    base = RecordsUpload(features=np.zeros((0, 3), np.float32), labels=np.zeros(0, np.int64))
    obj = wire(base)
    for shape in ([0, 2**62], [0, 10**30], [2**40, 0]):
        obj["features"] = cbor2.CBORTag(40, [shape, cbor2.CBORTag(85, b"")])
        reject(canonical(obj))


def test_message_validation():
    with pytest.raises(ValueError):
        ModelUpdate(round=-1, num_samples=1, loss=0.0, delta=np.zeros(1, np.float32))
    with pytest.raises(ValueError):
        RecordsUpload(features=np.zeros((2, 3), np.float32), labels=np.zeros(3, np.int64))
    with pytest.raises(TypeError):

        @codec.message("fl/update")
        @dataclasses.dataclass(frozen=True)
        class Again(codec.Message):
            round: int

    with pytest.raises(TypeError):

        @codec.message("test/not-frozen")
        @dataclasses.dataclass
        class Mutable(codec.Message):
            round: int

    with pytest.raises(LocalProtocolError):
        codec.encode(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "hexdata",
    [
        "c4821b7fffffffffffffff01",  # decimal fraction with an exponent decimal cannot hold
        "c5821b7fffffffffffffff01",  # bigfloat overflowing decimal
        "c1fb7ff0000000000000",  # epoch date of infinity
        "c0636e6f74",  # date string that is no date
        "d81d00",  # shared reference to nothing
        "d8238101",  # regular expression holding a list
        "c2a0",  # bignum holding a map
        "a2647479706563c4821b7fffffffffffffff01617601",  # a hostile tag inside a message map
    ],
)
def test_hostile_semantic_tags_are_decode_errors(hexdata):
    """cbor2 decodes semantic tags itself, before any check of ours: each must still end as
    a DecodeError (12 such bytes once crashed an audit through an evidence file)."""
    with pytest.raises(codec.DecodeError):
        codec.decode(bytes.fromhex(hexdata))
