"""Typed errors of the crypto layer."""

from guardians.errors import GuardiansError


class CryptoError(GuardiansError):
    """A cryptographic check failed or an input was malformed."""


class SignatureError(CryptoError):
    """A signature did not verify (forged, tampered, wrong key or wrong context)."""


class DecryptionError(CryptoError):
    """An AEAD ciphertext did not authenticate (tampered, wrong key or wrong associated data)."""


class KeyFormatError(CryptoError):
    """A public key or ciphertext has the wrong length or encoding."""


class ShareError(CryptoError):
    """Secret shares are malformed, duplicated or too few to reconstruct."""
