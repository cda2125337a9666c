"""What leaves a member: indicators with no member identity, no internal context and no raw
observables.

- The author is the consortium's identity, never the member's; sightings name no one.
- Internal addresses (private, loopback, link-local, shared, reserved) and internal host names
  (single-label, .local, .lan, .internal, .corp, .home, .intranet) are dropped.
- Times are rounded down to the hour; observables are canonicalized (one spelling each).
- Every remaining observable value is replaced by a keyed hash, HMAC-SHA-256 under the epoch's
  consortium key (derived with HKDF from the consortium secret and the epoch number, so keys
  rotate): members holding the key can match their own telemetry against it; a relay or
  outsider sees only 256-bit tags. The tag is framed with the observable's type, so an address
  and a domain can never collide.
- Observed-Data (raw telemetry) never leaves; a Sighting keeps only its count and time window.

What each party learns is listed in docs/intel.md.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stix2

from guardians.crypto.hashing import frame_all
from guardians.crypto.kdf import derive
from guardians.intel.stix import TLP, Detection, IntelFormatError, _quote

INTERNAL_SUFFIXES = (".local", ".lan", ".internal", ".corp", ".home", ".intranet", ".localdomain",
                     ".home.arpa", ".localhost", ".test", ".invalid", ".private")  # fmt: skip
TAG_PROPERTY = "x_guardians_tag"


def is_internal_address(value: str) -> bool:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise IntelFormatError(f"{value!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and is_internal_address(str(embedded)):
            return True
    return bool(ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
                or ip.is_unspecified or ip.is_multicast
                or (ip.version == 4 and ip in ipaddress.ip_network("100.64.0.0/10")))  # fmt: skip


def is_internal_host(name: str) -> bool:
    n = name.strip().strip(".").lower()
    try:  # an address written as a host name
        return is_internal_address(n)
    except IntelFormatError:
        pass
    return "." not in n or n.endswith(INTERNAL_SUFFIXES)


def canonical(kind: str, value: str) -> str:
    """One spelling per observable, so equal observables get equal tags."""
    v = value.strip()
    if kind in ("ipv4-addr", "ipv6-addr"):
        try:
            ip = ipaddress.ip_address(v.split("%")[0])
        except ValueError:
            raise IntelFormatError(f"{value!r} is not an IP address") from None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return ip.compressed
    if kind == "domain-name":
        return v.rstrip(".").lower()
    return v


def coarse(t: datetime) -> datetime:
    """Shared times are rounded down to the hour: a member's clock does not single it out."""
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class EpochKey:
    epoch: int
    key: bytes

    @classmethod
    def derive(cls, consortium_secret: bytes, epoch: int) -> EpochKey:
        if len(consortium_secret) < 32:
            raise IntelFormatError("the consortium secret must have at least 256 bits")
        return cls(epoch, derive(consortium_secret, "intel/observable-key",
                                 epoch.to_bytes(8, "big")))  # fmt: skip

    def tag(self, kind: str, value: str) -> str:
        """The keyed hash of one observable (lower-cased, so matching ignores case)."""
        v = canonical(kind, value).lower()
        if kind in ("ipv4-addr", "ipv6-addr"):  # an IPv4-mapped IPv6 address is the IPv4 one
            kind = "ipv6-addr" if ":" in v else "ipv4-addr"
        msg = frame_all(kind.encode(), v.encode())
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()


class Anonymizer:
    def __init__(self, consortium: stix2.Identity, key: EpochKey) -> None:
        self.consortium = consortium
        self.key = key

    def pattern(self, d: Detection) -> str:
        terms = [f"network-traffic:protocols[*] = {_quote(d.protocol)}"]
        if d.dst_port is not None:
            terms.append(f"network-traffic:dst_port = {d.dst_port}")
        for ref, ip in (("dst_ref", d.dst_ip), ("src_ref", d.src_ip)):
            if ip and not is_internal_address(ip):
                kind = "ipv6-addr" if ":" in ip else "ipv4-addr"
                terms.append(f"network-traffic:{ref}.{TAG_PROPERTY} = "
                             f"{_quote(self.key.tag(kind, ip))}")  # fmt: skip
        obs = "[" + " AND ".join(terms) + "]"
        if d.domain and not is_internal_host(d.domain):
            tag = _quote(self.key.tag("domain-name", d.domain))
            obs += f" OR [domain-name:{TAG_PROPERTY} = {tag}]"
        return obs

    def share(self, d: Detection, tlp: str = "green") -> list[Any]:
        """The Indicator and Sighting a member may publish for ``d``."""
        mark = [TLP[tlp]]
        first, last = coarse(d.first_seen), coarse(d.last_seen or d.first_seen)
        now = coarse(datetime.now(UTC))
        indicator = stix2.Indicator(
            created_by_ref=self.consortium.id, name=f"{d.family} traffic", created=now,
            modified=now, pattern=self.pattern(d), pattern_type="stix", valid_from=first,
            indicator_types=["malicious-activity"], confidence=d.confidence,
            object_marking_refs=mark, allow_custom=True,
            x_guardians_epoch=self.key.epoch,
        )  # fmt: skip
        sighting = stix2.Sighting(
            created_by_ref=self.consortium.id, sighting_of_ref=indicator.id, count=d.count,
            created=now, modified=now, first_seen=first, last_seen=max(first, last),
            object_marking_refs=mark,
        )  # fmt: skip
        return [indicator, sighting]
