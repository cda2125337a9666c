"""Cryptographic building blocks. Primitives come from `cryptography` (OpenSSL); this package only
composes them: domain-separated hashing and key derivation, composite (Ed25519 + ML-DSA-65)
signatures, hybrid (X25519 + ML-KEM-768) pairwise secrets, AEAD, Shamir sharing, mask PRG."""
