"""C2SP signed notes, Ed25519 note signatures, and tlog-cosignature cosignatures.

- signed-note (c2sp.org/signed-note): text ending in a newline, a blank line, then lines
  ``— <key name> base64(key ID ‖ signature)``; key ID = SHA-256(name ‖ 0x0A ‖ type ‖ key)[:4].
- type 0x01: Ed25519 over the note text (the log's checkpoint signature).
- type 0x04: timestamped Ed25519 cosignature over "cosignature/v1\\ntime T\\n" ‖ text.
- type 0x06: timestamped ML-DSA-44 cosignature over the binary ``cosigned_message``
  ("subtree/v1\\n\\0", cosigner name, timestamp, origin, start = 0, end = size, root), which
  commits to the cosigner's name and resists quantum forgery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from guardians.errors import GuardiansError

EM_DASH = "\u2014"
TYPE_ED25519 = 0x01
TYPE_COSIG_ED25519 = 0x04
TYPE_COSIG_MLDSA44 = 0x06
MAX_SIGNATURES = 100


class NoteError(GuardiansError):
    """A signed note is malformed, or a signature on it does not verify."""


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {base64.b64encode(self.key_id + self.signature).decode()}"


@dataclass(frozen=True)
class SignedNote:
    text: str
    signatures: tuple[NoteSignature, ...] = ()

    def format(self) -> str:
        return self.text + "\n" + "".join(s.line() + "\n" for s in self.signatures)

    def with_signatures(self, *sigs: NoteSignature) -> SignedNote:
        return SignedNote(self.text, self.signatures + tuple(sigs))

    @classmethod
    def parse(cls, raw: str | bytes) -> SignedNote:
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise NoteError("note is not valid UTF-8") from None
        if any(ord(c) < 0x20 and c != "\n" for c in raw):
            raise NoteError("note contains control characters")
        if not raw.endswith("\n"):
            raise NoteError("note does not end with a newline")
        cut = raw.rfind("\n\n")
        if cut < 0:
            raise NoteError("note has no blank line before its signatures")
        text, block = raw[: cut + 1], raw[cut + 2 :]
        sigs = []
        for line in block[:-1].split("\n"):  # newline only: no other line breaks count
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] != EM_DASH or not parts[1]:
                raise NoteError(f"malformed signature line {line!r}")
            try:
                blob = base64.b64decode(parts[2], validate=True)
            except binascii.Error:
                raise NoteError(f"signature of {parts[1]!r} is not base64") from None
            if len(blob) < 5:
                raise NoteError(f"signature of {parts[1]!r} is too short")
            sigs.append(NoteSignature(parts[1], blob[:4], blob[4:]))
        if not sigs:
            raise NoteError("note has no signatures")
        if len(sigs) > MAX_SIGNATURES:
            raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
        return cls(text, tuple(sigs))


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"invalid key name {name!r}")


# --- the log's own note signature (type 0x01) ----------------------------------------------
class NoteSigner:
    def __init__(self, name: str, key: ed25519.Ed25519PrivateKey | None = None) -> None:
        _check_name(name)
        self.name = name
        self._key = key or ed25519.Ed25519PrivateKey.generate()
        self.public_key = self._key.public_key().public_bytes_raw()
        self.key_id = key_id(name, TYPE_ED25519, self.public_key)

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.public_key)

    def sign(self, text: str) -> NoteSignature:
        return NoteSignature(self.name, self.key_id, self._key.sign(text.encode()))


class NoteVerifier:
    def __init__(self, name: str, public_key: bytes) -> None:
        _check_name(name)
        self.name = name
        self.public_key = public_key
        self.key_id = key_id(name, TYPE_ED25519, public_key)

    def verify(self, note: SignedNote) -> None:
        """Raise NoteError unless a signature of this key is on the note and verifies."""
        mine = [s for s in note.signatures if s.name == self.name and s.key_id == self.key_id]
        if not mine:
            raise NoteError(f"note is not signed by {self.name}")
        pk = ed25519.Ed25519PublicKey.from_public_bytes(self.public_key)
        for s in mine:
            try:
                pk.verify(s.signature, note.text.encode())
            except InvalidSignature:
                raise NoteError(f"signature of {self.name} does not verify") from None


# --- cosignatures (tlog-cosignature) ----------------------------------------------------------
def _u8(b: bytes) -> bytes:
    if not 1 <= len(b) <= 255:
        raise NoteError("field must be 1..255 bytes")
    return bytes([len(b)]) + b


def mldsa_cosigned_message(
    cosigner: str, timestamp: int, origin: str, size: int, root: bytes
) -> bytes:
    return (
        b"subtree/v1\n\x00" + _u8(cosigner.encode()) + timestamp.to_bytes(8, "big")
        + _u8(origin.encode()) + (0).to_bytes(8, "big") + size.to_bytes(8, "big") + root
    )  # fmt: skip


def ed25519_cosigned_message(timestamp: int, text: str) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


@dataclass(frozen=True)
class CosignerKey:
    """What a client knows of one witness: its name and both public keys."""

    name: str
    ed25519: bytes
    mldsa44: bytes

    @property
    def ed_key_id(self) -> bytes:
        return key_id(self.name, TYPE_COSIG_ED25519, self.ed25519)

    @property
    def ml_key_id(self) -> bytes:
        return key_id(self.name, TYPE_COSIG_MLDSA44, self.mldsa44)


class Cosigner:
    """A witness's signing keys: an Ed25519 (type 0x04) and an ML-DSA-44 (type 0x06) cosigner."""

    def __init__(self, name: str) -> None:
        _check_name(name)
        self.name = name
        self._ed = ed25519.Ed25519PrivateKey.generate()
        self._ml = mldsa.MLDSA44PrivateKey.generate()
        self.key = CosignerKey(
            name, self._ed.public_key().public_bytes_raw(), self._ml.public_key().public_bytes_raw()
        )

    def cosign(
        self, text: str, origin: str, size: int, root: bytes, timestamp: int
    ) -> tuple[NoteSignature, NoteSignature]:
        ts = timestamp.to_bytes(8, "big")
        ed = self._ed.sign(ed25519_cosigned_message(timestamp, text))
        ml = self._ml.sign(mldsa_cosigned_message(self.name, timestamp, origin, size, root))
        return (
            NoteSignature(self.name, self.key.ed_key_id, ts + ed),
            NoteSignature(self.name, self.key.ml_key_id, ts + ml),
        )


def verify_cosignature(
    note: SignedNote, key: CosignerKey, origin: str, size: int, root: bytes, *, require_pq: bool
) -> bool:
    """True if ``key`` validly cosigned the note: with ``require_pq`` its ML-DSA-44 cosignature
    must be present and valid (an Ed25519 one, if present, must be valid too); without it either
    type suffices. False if it did not sign; NoteError if a signature claiming to be from it
    fails to verify."""
    found = {"ed": False, "ml": False}
    for s in note.signatures:
        if s.name != key.name:
            continue
        if len(s.signature) < 8:
            raise NoteError(f"cosignature of {key.name} is too short")
        ts, sig = int.from_bytes(s.signature[:8], "big"), s.signature[8:]
        if ts >= 1 << 63:
            raise NoteError(f"cosignature of {key.name} has an invalid timestamp")
        try:
            if s.key_id == key.ed_key_id:
                ed25519.Ed25519PublicKey.from_public_bytes(key.ed25519).verify(
                    sig, ed25519_cosigned_message(ts, note.text)
                )
                found["ed"] = True
            elif s.key_id == key.ml_key_id:
                mldsa.MLDSA44PublicKey.from_public_bytes(key.mldsa44).verify(
                    sig, mldsa_cosigned_message(key.name, ts, origin, size, root)
                )
                found["ml"] = True
        except InvalidSignature:
            raise NoteError(f"cosignature of {key.name} does not verify") from None
    return found["ml"] if require_pq else found["ml"] or found["ed"]
