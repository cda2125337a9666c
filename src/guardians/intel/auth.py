"""Authentic shared intel: every object carries its member's signature, or — to publish
anonymously — a linkable ring proof that some consortium member made it, with that member's
per-epoch tag (:mod:`guardians.crypto.zk.ring`).

The signed message is the SHA-256 (domain-separated) of the object's canonical JSON without
the authentication property itself. A server keeps at most ``per_tag`` anonymous objects per
tag and epoch, so one member cannot flood the feed as many anonymous sources.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Container, Mapping, Sequence
from typing import Any

from guardians.crypto.errors import CryptoError
from guardians.crypto.group import Point, Scalar
from guardians.crypto.hashing import tagged_hash
from guardians.crypto.sign import SigningKey, VerifyKey
from guardians.crypto.zk import ring
from guardians.crypto.zk.sigma import Context
from guardians.errors import GuardiansError

SIGNED = "x_guardians_signed"
ANONYMOUS = "x_guardians_anonymous"
PURPOSE = "intel/share"


class IntelAuthError(GuardiansError):
    """A shared object is unsigned, or its signature or membership proof does not verify."""


def digest(obj: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in obj.items() if k not in (SIGNED, ANONYMOUS)}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return tagged_hash("intel/object", canonical.encode())


def _ctx(consortium: str, epoch: int) -> Context:
    return Context(consortium=consortium, round=epoch, member="anonymous", purpose=PURPOSE)


def sign(obj: Mapping[str, Any], consortium: str, member: str, key: SigningKey) -> dict[str, Any]:
    sig = key.sign(tagged_hash("intel/signed", consortium.encode(), member.encode(), digest(obj)),
                   b"intel/share")  # fmt: skip
    return {**obj, SIGNED: {"member": member, "signature": base64.b64encode(sig).decode()}}


def sign_anonymously(
    obj: Mapping[str, Any], consortium: str, members: Sequence[Point], epoch: int, secret: Scalar
) -> dict[str, Any]:
    tag, proof = ring.prove(_ctx(consortium, epoch), digest(obj), members, epoch, secret)
    return {**obj, ANONYMOUS: {"epoch": epoch, "tag": tag.to_bytes().hex(),
                               "proof": base64.b64encode(proof).decode()}}  # fmt: skip


def verify(
    obj: Mapping[str, Any],
    consortium: str,
    directory: Mapping[str, VerifyKey],
    members: Sequence[Point],
    epochs: Container[int] | None = None,
) -> tuple[str, str]:
    """("signed", member) or ("anonymous", "epoch:tag"); IntelAuthError otherwise. With
    ``epochs`` (the server's current ones), an anonymous object from any other epoch is refused:
    a member cannot mint fresh tags by naming future epochs."""
    oid = obj.get("id", "?")
    if SIGNED in obj:
        s = obj[SIGNED]
        try:
            member, sig = s["member"], base64.b64decode(s["signature"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise IntelAuthError(f"{oid}: malformed signature block") from None
        key = directory.get(member)
        if key is None:
            raise IntelAuthError(f"{oid}: signed by {member!r}, not a consortium member")
        try:
            key.verify(sig, tagged_hash("intel/signed", consortium.encode(), member.encode(),
                                        digest(obj)), b"intel/share")  # fmt: skip
        except CryptoError as exc:
            raise IntelAuthError(f"{oid}: signature of {member!r} does not verify: {exc}") from None
        return "signed", member
    if ANONYMOUS in obj:
        a = obj[ANONYMOUS]
        try:
            epoch = a["epoch"]
            if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch < 1 << 63:
                raise ValueError("epoch")
            tag = Point.from_bytes(bytes.fromhex(a["tag"]))
            proof = base64.b64decode(a["proof"], validate=True)
        except (KeyError, TypeError, ValueError, OverflowError, CryptoError):
            raise IntelAuthError(f"{oid}: malformed membership proof") from None
        if epochs is not None and epoch not in epochs:
            raise IntelAuthError(f"{oid}: epoch {epoch} is not a current epoch")
        try:
            ring.verify(_ctx(consortium, epoch), digest(obj), members, epoch, tag, proof)
        except CryptoError as exc:
            raise IntelAuthError(f"{oid}: membership proof does not verify: {exc}") from None
        return "anonymous", f"{epoch}:{tag.to_bytes().hex()}"  # canonical, whatever was sent
    raise IntelAuthError(f"{oid}: unsigned (neither a member signature nor a membership proof)")
