"""STIX 2.1 from detections (with the `stix2` library), and strict validation of what arrives.

A member's detector flags a flow; :func:`local_intel` turns it into the member's own Indicator,
Observed-Data and Sighting (raw, for its own SOC tools). What leaves the member is built by
:mod:`guardians.intel.anonymize` instead. :func:`parse_bundle` is the only way bytes from outside
become STIX objects here: size-limited, STIX 2.1 only, every object validated by `stix2`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stix2
from stix2.exceptions import STIXError

from guardians import files
from guardians.errors import GuardiansError

TLP = {"clear": stix2.TLP_WHITE, "green": stix2.TLP_GREEN, "amber": stix2.TLP_AMBER,
       "red": stix2.TLP_RED}  # fmt: skip
MAX_BUNDLE_BYTES = 1 << 20
MAX_OBJECTS = 10_000


class IntelFormatError(GuardiansError):
    """Bytes that are not an acceptable STIX 2.1 bundle (malformed, oversize, wrong version,
    invalid objects)."""


@dataclass(frozen=True)
class Detection:
    """One flagged flow (or a group of like flows) as a member's detector saw it."""

    family: str  # what the detector calls it, e.g. "DoS" or a new family's name
    protocol: str  # "tcp", "udp", "icmp"
    dst_port: int | None = None
    src_ip: str | None = None
    dst_ip: str | None = None
    domain: str | None = None
    count: int = 1
    confidence: int = 80
    first_seen: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_seen: datetime | None = None

    def __post_init__(self) -> None:
        if self.protocol not in ("tcp", "udp", "icmp"):
            raise IntelFormatError(f"protocol must be tcp, udp or icmp, not {self.protocol!r}")
        if self.dst_port is not None and not 0 <= self.dst_port <= 65535:
            raise IntelFormatError(f"port {self.dst_port} out of range")
        if self.count < 1 or not 0 <= self.confidence <= 100:
            raise IntelFormatError("count must be positive and confidence in 0..100")


def _quote(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def raw_pattern(d: Detection) -> str:
    """The member's own (unshared) STIX pattern for a detection."""
    terms = [f"network-traffic:protocols[*] = {_quote(d.protocol)}"]
    if d.dst_port is not None:
        terms.append(f"network-traffic:dst_port = {d.dst_port}")
    if d.dst_ip:
        terms.append(f"network-traffic:dst_ref.value = {_quote(d.dst_ip)}")
    if d.src_ip:
        terms.append(f"network-traffic:src_ref.value = {_quote(d.src_ip)}")
    obs = "[" + " AND ".join(terms) + "]"
    if d.domain:
        obs += f" OR [domain-name:value = {_quote(d.domain)}]"
    return obs


def local_intel(d: Detection, member: stix2.Identity, tlp: str = "amber") -> list[Any]:
    """Indicator, Observed-Data and Sighting for the member's own tools (never shared as is)."""
    mark = [TLP[tlp]]
    addrs = {k: stix2.IPv4Address(value=v) for k, v in (("src", d.src_ip), ("dst", d.dst_ip)) if v}
    last = d.last_seen or d.first_seen
    indicator = stix2.Indicator(
        created_by_ref=member.id, name=f"{d.family} traffic", pattern=raw_pattern(d),
        pattern_type="stix", valid_from=d.first_seen, indicator_types=["malicious-activity"],
        confidence=d.confidence, object_marking_refs=mark,
    )  # fmt: skip
    observed: list[Any] = []
    if addrs:  # STIX network-traffic needs at least one endpoint
        traffic = stix2.NetworkTraffic(
            protocols=[d.protocol], dst_port=d.dst_port,
            src_ref=addrs["src"].id if "src" in addrs else None,
            dst_ref=addrs["dst"].id if "dst" in addrs else None,
        )  # fmt: skip
        observed = [stix2.ObservedData(
            created_by_ref=member.id, first_observed=d.first_seen, last_observed=last,
            number_observed=d.count, object_refs=[traffic.id, *(a.id for a in addrs.values())],
            object_marking_refs=mark,
        ), traffic, *addrs.values()]  # fmt: skip
    sighting = stix2.Sighting(
        created_by_ref=member.id, sighting_of_ref=indicator.id, count=d.count,
        first_seen=d.first_seen, last_seen=last, where_sighted_refs=[member.id],
        observed_data_refs=[observed[0].id] if observed else None, object_marking_refs=mark,
    )  # fmt: skip
    return [indicator, *observed[:1], sighting, *observed[1:]]


def bundle(objects: Sequence[Any]) -> str:
    return stix2.Bundle(objects=list(objects), allow_custom=True).serialize()


def parse_bundle(data: bytes | str, *, max_bytes: int = MAX_BUNDLE_BYTES) -> list[Any]:
    """Validate an incoming STIX 2.1 bundle; return its objects or raise IntelFormatError
    naming what was wrong. Nothing is returned (so nothing can be stored) unless every object
    is valid."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise IntelFormatError(f"bundle of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    try:
        text = raw.decode("utf-8")
        if files.nesting_depth(text) > files.MAX_DEPTH:  # would crash the JSON parser
            raise ValueError(f"nested deeper than {files.MAX_DEPTH} levels")
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise IntelFormatError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != "bundle":
        raise IntelFormatError("not a STIX bundle (top-level type must be 'bundle')")
    objs = doc.get("objects")
    if not isinstance(objs, list) or not objs:
        raise IntelFormatError("bundle has no objects")
    if len(objs) > MAX_OBJECTS:
        raise IntelFormatError(f"bundle has {len(objs)} objects, limit {MAX_OBJECTS}")
    out = []
    for i, o in enumerate(objs):
        if not isinstance(o, dict):
            raise IntelFormatError(f"object {i} is not a JSON object")
        if not isinstance(o.get("id"), str) or "--" not in o["id"]:
            raise IntelFormatError(f"object {i} has no STIX id (the sender names its objects)")
        if o.get("spec_version") != "2.1" and o.get("type") != "marking-definition":
            raise IntelFormatError(f"object {i} ({o.get('type')!r}) is not STIX 2.1 "
                                   f"(spec_version {o.get('spec_version')!r})")  # fmt: skip
        try:
            parsed = stix2.parse(o, allow_custom=True, version="2.1")
        except (STIXError, ValueError, TypeError, OverflowError) as exc:
            raise IntelFormatError(f"object {i} ({o.get('type')!r}) is invalid: {exc}") from None
        if isinstance(parsed, dict):  # an unregistered type: stix2 could not validate it
            raise IntelFormatError(f"object {i}: unknown STIX object type {o.get('type')!r}")
        out.append(parsed)
    return out
