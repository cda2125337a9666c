"""Messages of a secure-aggregation round. Stage order:

setup → advertise → keys → encaps → encaps-relay → shares → shares-relay → masked-input
→ consistency-check → consistency-signature → unmask-request → unmask-reply → (with contribution
proofs) aggregate-opening. Signatures and AEAD associated data bind every message to the
consortium, the round and the parties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guardians.codec import Message, array_field, bytes_field, message


@message("secagg/setup")
@dataclass(frozen=True, eq=False)
class SecAggSetup(Message):
    """Coordinator → member: the round's participants and parameters. Neighbourhoods are derived
    by every member from the participant list and the round, not chosen by the coordinator."""

    round: int
    participants: tuple[str, ...]
    degree: int
    threshold: int
    modulus_bits: int
    scale_bits: int
    clip: float
    dim: int
    max_weight: int
    # > 0: every member proves ‖update‖₂ ≤ norm_bound on a commitment (contribution proofs).
    norm_bound: float = 0.0


@message("secagg/advertise")
@dataclass(frozen=True, eq=False)
class Advertise(Message):
    """Member → coordinator: ephemeral X25519 and ML-KEM-768 keys, signed by the member's
    composite identity key."""

    round: int
    x25519: bytes = bytes_field("public")
    mlkem: bytes = bytes_field("public")
    signature: bytes = bytes_field("public")


@message("secagg/keys")
@dataclass(frozen=True, eq=False)
class Keys(Message):
    """Coordinator → member: the neighbours' signed advertisements, relayed unchanged."""

    round: int
    members: tuple[str, ...]
    x25519: tuple[bytes, ...] = bytes_field("public")
    mlkem: tuple[bytes, ...] = bytes_field("public")
    signatures: tuple[bytes, ...] = bytes_field("public")


@message("secagg/encaps")
@dataclass(frozen=True, eq=False)
class Encaps(Message):
    """Member → coordinator: ML-KEM ciphertexts for its higher-named neighbours, signed."""

    round: int
    recipients: tuple[str, ...]
    ciphertexts: tuple[bytes, ...] = bytes_field("ciphertext")
    signature: bytes = bytes_field("public")


@message("secagg/encaps-relay")
@dataclass(frozen=True, eq=False)
class EncapsRelay(Message):
    """Coordinator → member: each lower-named neighbour's ciphertext for it, with that
    neighbour's whole signed Encaps so the signature can be checked."""

    round: int
    senders: tuple[str, ...]
    recipients: tuple[tuple[str, ...], ...]
    ciphertexts: tuple[tuple[bytes, ...], ...] = bytes_field("ciphertext")
    signatures: tuple[bytes, ...] = bytes_field("public")


@message("secagg/shares")
@dataclass(frozen=True, eq=False)
class Shares(Message):
    """Member → coordinator: one AEAD ciphertext per neighbour, holding that neighbour's Shamir
    shares of the member's self-mask seed and of each of its pairwise seeds."""

    round: int
    recipients: tuple[str, ...]
    ciphertexts: tuple[bytes, ...] = bytes_field("ciphertext")


@message("secagg/shares-relay")
@dataclass(frozen=True, eq=False)
class SharesRelay(Message):
    """Coordinator → member: the ciphertexts addressed to it."""

    round: int
    senders: tuple[str, ...]
    ciphertexts: tuple[bytes, ...] = bytes_field("ciphertext")


@message("secagg/masked-input")
@dataclass(frozen=True, eq=False)
class MaskedInput(Message):
    """Member → coordinator: the quantized, weighted update plus masks (uniform-looking words
    mod 2^b); the last word is the member's weight, masked with the rest."""

    round: int
    clipped: int
    masked: np.ndarray = array_field(("uint64", "uint32"), protection="masked")
    # With contribution proofs: a commitment to the (unmasked) update, the norm proof, and the
    # member's signature over both. The masked words then end with the blinding's limbs.
    commitment: bytes = bytes_field("public", default=b"")
    proof: bytes = bytes_field("public", default=b"")
    signature: bytes = bytes_field("public", default=b"")


@message("secagg/consistency-check")
@dataclass(frozen=True, eq=False)
class ConsistencyCheck(Message):
    """Coordinator → surviving member: who sent masked input (S) and who dropped after
    sharing (D). The member signs (S, D) once; no share is released yet."""

    round: int
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]


@message("secagg/consistency-signature")
@dataclass(frozen=True, eq=False)
class ConsistencySignature(Message):
    """Member → coordinator: its composite signature over (round context, S, D)."""

    round: int
    signature: bytes = bytes_field("public")


@message("secagg/unmask-request")
@dataclass(frozen=True, eq=False)
class UnmaskRequest(Message):
    """Coordinator → surviving member: the same (S, D), with the signatures of the members
    who signed it; a member releases shares only if at least t of its neighbours did."""

    round: int
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    signers: tuple[str, ...]
    signatures: tuple[bytes, ...] = bytes_field("public")


@message("secagg/unmask-reply")
@dataclass(frozen=True, eq=False)
class UnmaskReply(Message):
    """Member → coordinator: its shares of survivors' self-mask seeds and of dropped members'
    pairwise seeds — never both for the same member."""

    round: int
    self_owners: tuple[str, ...]
    # Readable by the coordinator by design (it needs them to unmask the sum): counted as plain.
    self_shares: tuple[bytes, ...] = bytes_field("plain")
    pair_owners: tuple[str, ...]
    pair_shares: tuple[bytes, ...] = bytes_field("plain")


@message("secagg/aggregate-opening")
@dataclass(frozen=True, eq=False)
class AggregateOpening(Message):
    """Coordinator → contributors (and auditors): the unmasked aggregate with every
    contributor's signed commitment. Anyone can check that the aggregate opens the product of
    the commitments: a coordinator that lies about the sum is caught."""

    round: int
    contributors: tuple[str, ...]
    commitments: tuple[bytes, ...] = bytes_field("public")
    proof_digests: tuple[bytes, ...] = bytes_field("public")
    signatures: tuple[bytes, ...] = bytes_field("public")
    # The summed words: update, weight, then the blinding's eight 32-bit limbs.
    total: np.ndarray = array_field("uint64", protection="public")


@message("secagg/contribution-evidence")
@dataclass(frozen=True, eq=False)
class ContributionEvidence(Message):
    """A rejected contribution as its maker signed it: anyone holding the member's identity key
    can confirm that this member sent exactly this commitment and proof, and that the proof
    fails (``contrib.check_evidence``). Kept beside the log; its digest goes on the log."""

    round: int
    member: str
    reason: str
    # The statement the member proved (and signed): NormStatement's fields.
    dim: int
    bound_sq: int
    weight_bits: int
    projections: int
    commitment: bytes = bytes_field("public")
    proof: bytes = bytes_field("public")
    signature: bytes = bytes_field("public")
