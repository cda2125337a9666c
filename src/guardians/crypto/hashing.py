"""Domain-separated hashing: every hash in Guardians names its purpose.

``tagged_hash(tag, *parts)`` = SHA-256("guardians/v1/" + tag, then each part length-prefixed),
so no two purposes or part splits can collide.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = b"guardians/v1/"


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def tagged_hash(tag: str, *parts: bytes) -> bytes:
    h = hashlib.sha256(_frame(PREFIX + tag.encode()))
    for p in parts:
        h.update(_frame(bytes(p)))
    return h.digest()


def frame_all(*parts: bytes) -> bytes:
    """Unambiguous concatenation (length-prefixed) for KDF info and signed contexts."""
    return b"".join(_frame(bytes(p)) for p in parts)


def ct_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a, b)
