"""Authenticated encryption (ChaCha20-Poly1305, RFC 8439) with associated data.

Each key in Guardians protects one direction of one channel in one round; a random 96-bit nonce
is still used and sent with the ciphertext, so a key reused by mistake does not repeat a nonce.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from guardians.crypto.errors import DecryptionError

NONCE_BYTES = 12
TAG_BYTES = 16


def seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, ad)


def open_(key: bytes, sealed: bytes, ad: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError(f"ciphertext of {len(sealed)} bytes is too short")
    try:
        return ChaCha20Poly1305(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], ad)
    except InvalidTag:
        raise DecryptionError(
            "ciphertext does not authenticate (tampered, wrong key or context)"
        ) from None
