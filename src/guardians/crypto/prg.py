"""Mask expansion: a 256-bit seed → a vector of uint32 or uint64 words, with AES-256-CTR.

The AES key is derived from the seed with a purpose label (domain separation); the counter block
starts at zero, which is safe because each derived key expands exactly one mask. The keystream
becomes a numpy array without a copy and without any Python loop over parameters.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from guardians.crypto.errors import CryptoError
from guardians.crypto.kdf import derive

_ZERO_IV = bytes(16)


def expand(seed: bytes, n: int, *, bits: int = 64, label: str = "secagg/mask") -> np.ndarray:
    """``n`` pseudorandom words of ``bits`` (32 or 64) bits from a 32-byte ``seed``."""
    if len(seed) != 32:
        raise CryptoError("mask seeds are 32 bytes (256 bits)")
    if bits not in (32, 64):
        raise CryptoError(f"mask words are 32 or 64 bits, not {bits}")
    key = derive(seed, label)
    enc = Cipher(algorithms.AES(key), modes.CTR(_ZERO_IV)).encryptor()
    nbytes = n * bits // 8
    stream = enc.update(bytes(nbytes)) + enc.finalize()
    return np.frombuffer(stream, dtype=np.dtype(f"<u{bits // 8}"))
