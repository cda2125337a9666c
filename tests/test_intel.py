"""Threat intelligence: STIX 2.1 from detections, anonymization, strict parsing, feed scans."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest
import stix2

from guardians.intel.anonymize import Anonymizer, EpochKey, is_internal_address, is_internal_host
from guardians.intel.scan import scan_feed
from guardians.intel.stix import (
    MAX_BUNDLE_BYTES,
    Detection,
    IntelFormatError,
    bundle,
    local_intel,
    parse_bundle,
)

MEMBER = stix2.Identity(name="St. Mary Hospital SOC", identity_class="organization")
CONSORTIUM = stix2.Identity(name="Guardians consortium", identity_class="organization")
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
DET = Detection(
    family="worm-x", protocol="tcp", dst_port=445, src_ip="93.184.216.34",
    dst_ip="10.20.30.40", domain="update.evil-cdn.net", count=17, first_seen=T0,
)  # fmt: skip
SECRETS = [MEMBER.name, MEMBER.id, "93.184.216.34", "10.20.30.40", "update.evil-cdn.net"]


@pytest.fixture(scope="module")
def key() -> EpochKey:
    return EpochKey.derive(os.urandom(32), epoch=42)


def test_local_intel_is_valid_stix_with_tlp(key):
    objs = local_intel(DET, MEMBER, tlp="amber")
    types = [o["type"] for o in objs]
    assert types[:3] == ["indicator", "observed-data", "sighting"]
    back = parse_bundle(bundle(objs))
    assert [o["id"] for o in back] == [o["id"] for o in objs]
    ind = objs[0]
    assert ind["object_marking_refs"] == [stix2.TLP_AMBER.id]
    assert "445" in ind["pattern"] and "93.184.216.34" in ind["pattern"]
    assert objs[2]["count"] == 17 and objs[2]["where_sighted_refs"] == [MEMBER.id]


def test_shared_intel_names_no_member_and_carries_no_raw_observable(key):
    shared = Anonymizer(CONSORTIUM, key).share(DET)
    assert [o["type"] for o in shared] == ["indicator", "sighting"]
    assert all(o["created_by_ref"] == CONSORTIUM.id for o in shared)
    assert "where_sighted_refs" not in shared[1] and "observed_data_refs" not in shared[1]
    scan = scan_feed(shared, secrets=SECRETS)
    assert scan.anonymized_share == 1.0 and scan.leaking == {}
    # The member's own (raw) intel would leak everything: the scanner sees it.
    raw = scan_feed(local_intel(DET, MEMBER), secrets=SECRETS)
    assert raw.anonymized_share < 0.5 and any(MEMBER.id in v for v in raw.leaking.values())
    parse_bundle(bundle(shared))  # still valid STIX 2.1


def test_keyed_tags_match_only_with_the_epoch_key(key):
    pat = Anonymizer(CONSORTIUM, key).pattern(DET)
    assert key.tag("ipv4-addr", "93.184.216.34") in pat  # a member holding the key can match
    assert key.tag("ipv4-addr", "93.184.216.35") not in pat
    other_epoch = EpochKey.derive(b"\x01" * 32, epoch=43)
    assert other_epoch.tag("ipv4-addr", "93.184.216.34") not in pat
    assert key.tag("ipv4-addr", "1.2.3.4") != key.tag("domain-name", "1.2.3.4")  # typed
    assert key.tag("ipv6-addr", "2001:db8::1") == key.tag("ipv6-addr", "2001:0DB8:0:0::1")
    assert key.tag("ipv6-addr", "::ffff:93.184.216.34") == key.tag("ipv4-addr", "93.184.216.34")
    assert key.tag("domain-name", "evil.com.") == key.tag("domain-name", "evil.com")
    with pytest.raises(IntelFormatError):
        key.tag("ipv4-addr", "x")
    assert key.tag("domain-name", "Evil.COM ") == key.tag("domain-name", "evil.com")
    # The internal destination is dropped, not hashed.
    assert key.tag("ipv4-addr", "10.20.30.40") not in pat
    with pytest.raises(IntelFormatError, match="256 bits"):
        EpochKey.derive(b"short", 1)


@pytest.mark.parametrize("addr, internal", [
    ("10.0.0.1", True), ("192.168.1.1", True), ("172.16.5.4", True), ("127.0.0.1", True),
    ("169.254.1.1", True), ("100.64.0.1", True), ("fe80::1", True), ("::1", True),
    ("93.184.216.34", False), ("2a00:1450:4001:81a::200e", False),
])  # fmt: skip
def test_internal_addresses(addr, internal):
    assert is_internal_address(addr) is internal


def test_internal_hosts():
    for h in ("fileserver", "db01.corp", "printer.local", "x.internal", "nas.lan.", "nas.corp ",
              "router.home.arpa", "app.localhost", "10.0.0.5", "2002:a00:1::1"):  # fmt: skip
        assert is_internal_host(h), h
    for h in ("evil-cdn.net", "update.example.com"):
        assert not is_internal_host(h)
    with pytest.raises(IntelFormatError):
        is_internal_address("not-an-ip")


def _bundle_with(obj: dict) -> str:
    return json.dumps({"type": "bundle", "id": "bundle--6f5b1c9e-2b7c-4d36-9d7e-0d8a4b6f1e11",
                       "objects": [obj]})  # fmt: skip


@pytest.mark.parametrize("data, match", [
    (b"{not json", "not JSON"),
    (b'{"type": "indicator"}', "not a STIX bundle"),
    (b'{"type": "bundle", "objects": []}', "no objects"),
    (_bundle_with({"type": "indicator", "spec_version": "2.0", "id": "indicator--1"}),
     "not STIX 2.1"),
    (_bundle_with({"type": "indicator", "spec_version": "2.1",
                   "id": "indicator--6f5b1c9e-2b7c-4d36-9d7e-0d8a4b6f1e11",
                   "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z",
                   "pattern": "[this is not a pattern", "pattern_type": "stix",
                   "valid_from": "2026-01-01T00:00:00Z"}), "invalid"),
    (_bundle_with({"type": "sighting", "spec_version": "2.1"}), "no STIX id"),
    (_bundle_with({"type": "sighting", "spec_version": "2.1",
                   "id": "sighting--6f5b1c9e-2b7c-4d36-9d7e-0d8a4b6f1e11"}), "invalid"),
    (_bundle_with({"type": "x-unknown", "spec_version": "2.1",
                   "id": "x-unknown--6f5b1c9e-2b7c-4d36-9d7e-0d8a4b6f1e11"}), "unknown STIX"),
    (_bundle_with([1, 2]), "not a JSON object"),  # type: ignore[arg-type]
])  # fmt: skip
def test_bad_bundles_are_refused_with_a_reason(data, match):
    with pytest.raises(IntelFormatError, match=match):
        parse_bundle(data)


def test_oversize_bundles_are_refused_before_parsing():
    big = b" " * (MAX_BUNDLE_BYTES + 1)
    with pytest.raises(IntelFormatError, match="exceeds"):
        parse_bundle(big)


def test_detection_rejects_nonsense():
    with pytest.raises(IntelFormatError):
        Detection(family="x", protocol="sctp")
    with pytest.raises(IntelFormatError):
        Detection(family="x", protocol="tcp", dst_port=70000)
    with pytest.raises(IntelFormatError):
        Detection(family="x", protocol="tcp", count=0)


# --- k-anonymous release ---------------------------------------------------------------------
def test_k_anonymous_release_counts_members_securely():
    import numpy as np

    from guardians.crypto.sign import SigningKey
    from guardians.engine.inprocess import InProcessNetwork
    from guardians.engine.intel import k_anonymous_release, secure_count
    from guardians.errors import ConfigError
    from guardians.intel import release

    names = [f"m{i}" for i in range(5)]
    keys = {m: SigningKey.generate() for m in names}
    pending = {"m0": {"A", "B"}, "m1": {"A"}, "m2": {"A", "C"}, "m3": {"C"}, "m4": set()}
    assert k_anonymous_release("c", 1, pending, keys, 3) == {"A"}
    assert k_anonymous_release("c", 2, pending, keys, 3, immediate={"m3": {"C"}}) == {"A", "C"}
    assert k_anonymous_release("c", 3, pending, keys, 1) == {"A", "B", "C"}
    # The counts are exact, and what crossed the members' boundaries was masked.
    net = InProcessNetwork()
    vecs = {m: release.sketch(t) for m, t in pending.items()}
    for m in names:  # each member's boundary: its sketch must not cross it in the clear
        net.meter.register_boundary(m, vecs[m].astype(np.float32)[None, :])
    counts = secure_count("c", 4, vecs, keys, network=net)
    np.testing.assert_array_equal(counts, sum(vecs.values()))
    for m in names:
        by = net.meter.egress[m].by_protection
        # In the clear only the unmasking shares the coordinator reads by design (bytes, not
        # the sketch); the sketch itself left masked.
        assert by["masked"] > 8 * release.ROWS * release.BINS > 100 * by.get("plain", 0)
        assert net.meter.distinct_records_leaked(m) == 0
    with pytest.raises(ConfigError, match="at least 3"):
        secure_count("c", 5, {"m0": vecs["m0"], "m1": vecs["m1"]}, keys)
    with pytest.raises(ConfigError):
        release.releasable({"A"}, counts, 0)
    with pytest.raises(ConfigError, match="shape"):
        release.releasable({"A"}, counts[:-1], 2)


# --- signatures and collective defence ---------------------------------------------------------
def test_flow_signature_round_trips_and_matches():
    import numpy as np

    from guardians.intel.rules import FlowSignature, derive
    from guardians.learning.data import load_dataset

    te = load_dataset("nsl-kdd").test
    idx = np.flatnonzero(te.kinds == "mailbomb")
    sig = derive(te.X[idx[:100]], te.feature_names, "mailbomb")
    back = FlowSignature.from_pattern(sig.pattern(), "mailbomb")
    assert back == sig
    stix2.Indicator(pattern=sig.pattern(), pattern_type="stix", valid_from=T0)  # valid STIX
    assert back.match(te.X[idx[100:]], te.feature_names).mean() > 0.9
    assert back.match(te.X[te.y == 0], te.feature_names).mean() < 0.01
    with pytest.raises(IntelFormatError, match="flow-signature"):
        FlowSignature.from_pattern("[ipv4-addr:value = '1.2.3.4']", "x")
    with pytest.raises(IntelFormatError):
        derive(te.X[:0], te.feature_names, "x")


def test_bench_intel_keys_and_effect():
    from typer.testing import CliRunner

    from guardians.cli import app

    r = CliRunner().invoke(app, ["bench", "intel", "--members", "4", "--trials", "2",
                                 "--hub-interval", "0.2", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    for key in ("p50_ms", "p99_ms", "hub_p50_ms", "hub_p99_ms", "anonymized_share",
                "unseen_family_detection_before", "unseen_family_detection_after"):  # fmt: skip
        assert key in res
    assert res["anonymized_share"] == 1.0
    assert res["unseen_family_detection_after"] > res["unseen_family_detection_before"]
    assert res["p50_ms"] < res["hub_p50_ms"]


def test_local_intel_without_addresses_has_no_observed_data():
    objs = local_intel(Detection(family="x", protocol="udp", dst_port=53, first_seen=T0), MEMBER)
    assert [o["type"] for o in objs] == ["indicator", "sighting"]
    assert "observed_data_refs" not in objs[1]
    parse_bundle(bundle(objs))


def test_shared_times_are_coarse(key):
    d = Detection(family="x", protocol="tcp", dst_port=1, first_seen=T0.replace(minute=37,
                  second=12, microsecond=345678))  # fmt: skip
    ind, sig = Anonymizer(CONSORTIUM, key).share(d)
    for o in (ind, sig):
        for f in ("created", "modified"):
            assert o[f].minute == 0 and o[f].second == 0 and o[f].microsecond == 0
    assert ind["valid_from"] == T0 and sig["first_seen"] == T0


def test_a_bundle_nested_to_crash_the_parser_is_a_format_error():
    """CPython's JSON parser can overflow its C stack on deep enough nesting (a segfault, not
    an exception): such input is refused before it is parsed."""
    deep = '{"type": "bundle", "objects": [' + "[" * 200_000 + "]" * 200_000 + "]}"
    with pytest.raises(IntelFormatError, match="nested deeper"):
        parse_bundle(deep.encode())
