"""Contribution proofs inside a secure-aggregation round (shared by members, coordinator and
auditors).

A member commits to exactly the words it feeds into secure aggregation (its weighted,
fixed-point update, then its weight), proves ‖update‖₂ ≤ B on that commitment, signs
(commitment, proof digest, statement), and appends its commitment blinding as eight 32-bit
limbs to the masked words, so the unmasked total also carries Σ blindings. The coordinator
verifies every proof before fixing the survivor set (a bad proof excludes the member, whose
masked input is then discarded like a dropout's), and publishes an :class:`AggregateOpening`
anyone can check against the signed commitments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from guardians.crypto.errors import CryptoError
from guardians.crypto.hashing import frame_all, tagged_hash
from guardians.crypto.sign import SigningKey, VerifyKey
from guardians.crypto.zk import norm
from guardians.crypto.zk.sigma import Context
from guardians.errors import ConfigError, GuardiansError
from guardians.protocol.secagg.messages import AggregateOpening, ContributionEvidence
from guardians.protocol.secagg.quantize import FixedPoint

LIMBS = 8


class EvidenceError(GuardiansError):
    """Evidence of a rejected contribution does not show misbehaviour."""


PURPOSE = "secagg/contribution"
SIGNATURE_CONTEXT = b"secagg/contribution/v2"  # v2: the statement is signed too


def statement(dim: int, norm_bound: float, fp: FixedPoint, max_weight: int) -> norm.NormStatement:
    if fp.modulus_bits != 64:
        raise ConfigError("contribution proofs need 64-bit secure-aggregation words")
    # Every coordinate of a proven update is then within the clip range too, so the capacity
    # check (which assumes clipped coordinates) also covers a malicious member's words.
    if norm_bound > fp.clip:
        raise ConfigError(f"norm bound {norm_bound} exceeds the clip range {fp.clip}")
    stmt = norm.NormStatement.for_update(dim, norm_bound, fp.scale_bits, max_weight)
    # Evidence carries B² as a 64-bit integer (and no such bound is meaningful in 64-bit words).
    if stmt.bound_sq >= 1 << 63:
        raise ConfigError(f"norm bound {norm_bound} at scale 2^{fp.scale_bits} is too large")
    return stmt


def proof_context(consortium: str, round: int, member: str) -> Context:
    return Context(consortium=consortium, round=round, member=member, purpose=PURPOSE)


def proof_digest(proof: bytes) -> bytes:
    return tagged_hash("secagg/contribution-proof", proof)


def signed_payload(
    consortium: str,
    round: int,
    member: str,
    commitment: bytes,
    digest: bytes,
    stmt: norm.NormStatement,
) -> bytes:
    """What a member signs: its commitment and proof for this round, and the statement it
    proved (so evidence of a rejected proof cannot be re-read against another statement)."""
    return frame_all(consortium.encode(), round.to_bytes(8, "big"), member.encode(),
                     commitment, digest, *statement_fields(stmt))  # fmt: skip


def statement_fields(stmt: norm.NormStatement) -> tuple[bytes, ...]:
    return tuple(v.to_bytes(32, "big") for v in (stmt.dim, stmt.bound_sq, stmt.weight_bits,
                                                  stmt.projections))  # fmt: skip


def l2_clip(x: np.ndarray, norm_bound: float, weight: int, scale_bits: int, dim: int) -> np.ndarray:
    """Scale ``x`` so that round(weight·x·2^f) stays within the proven bound even after
    stochastic rounding (which can add up to 1 per coordinate: √d in norm)."""
    b_int = math.floor(norm_bound * 2.0**scale_bits)
    # float64 throughout: a float32 norm is off by ~1e-7 relative, more than the margin.
    x = np.asarray(x, dtype=np.float64)
    room = (b_int * weight - math.sqrt(dim) - 1) / (weight * 2.0**scale_bits) * (1 - 1e-9)
    nrm = float(np.linalg.norm(x))
    if room <= 0:
        return np.zeros_like(x)
    return x if nrm <= room else x * (room / nrm)


def within_bound(stmt: norm.NormStatement, words: np.ndarray) -> bool:
    v = signed_values(words)
    return sum(a * a for a in v[:-1].tolist()) <= stmt.bound_sq * int(v[-1]) ** 2


def signed_values(words: np.ndarray) -> np.ndarray:
    """Two's-complement 64-bit words → the signed integers they encode."""
    return np.asarray(words, dtype=np.uint64).view(np.int64)


def contribute(
    consortium: str,
    round: int,
    member: str,
    identity: SigningKey,
    stmt: norm.NormStatement,
    words: np.ndarray,
    masks: norm.ProverMasks | None = None,
) -> tuple[np.ndarray, bytes, bytes, bytes]:
    """(words with blinding limbs appended, commitment, proof bytes, signature); ``masks``
    precomputed for this statement's dimension, if the member made them ahead."""
    commitment, opening = norm.commit(stmt, signed_values(words))
    proof = norm.prove(proof_context(consortium, round, member), stmt, commitment, opening, masks)
    data = proof.to_bytes()
    sig = identity.sign(
        signed_payload(consortium, round, member, commitment, proof_digest(data), stmt),
        SIGNATURE_CONTEXT,
    )
    extended = np.concatenate([np.asarray(words, np.uint64), norm.blinding_limbs(opening.blinding)])
    return extended, commitment, data, sig


def verify_opening(
    consortium: str,
    directory: Mapping[str, VerifyKey],
    stmt: norm.NormStatement,
    opening: AggregateOpening,
) -> np.ndarray:
    """Check every contributor's signature on its commitment and that the aggregate opens their
    product; return the aggregate words (update sum, then weight sum). Raises
    :class:`~guardians.crypto.errors.SignatureError` or :class:`norm.AggregateMismatchError`."""
    n = len(opening.contributors)
    if not (len(opening.commitments) == len(opening.proof_digests) == len(opening.signatures) == n):
        raise norm.AggregateMismatchError("aggregate opening has lists of different lengths")
    if len(set(opening.contributors)) != n:
        raise norm.AggregateMismatchError("aggregate opening lists a contributor twice")
    if opening.total.shape != (stmt.dim + 1 + LIMBS,):
        raise norm.AggregateMismatchError(
            f"aggregate of shape {opening.total.shape}, expected ({stmt.dim + 1 + LIMBS},)"
        )
    for m, com, dg, sig in zip(opening.contributors, opening.commitments, opening.proof_digests,
                               opening.signatures, strict=True):  # fmt: skip
        key = directory.get(m)
        if key is None:
            raise norm.AggregateMismatchError(f"contributor {m!r} has no known identity key")
        key.verify(sig, signed_payload(consortium, opening.round, m, com, dg, stmt),
                   SIGNATURE_CONTEXT)  # fmt: skip
    words = opening.total[: stmt.dim + 1]
    blinding = norm.blinding_from_limbs(opening.total[stmt.dim + 1 :])
    norm.check_aggregate(stmt, opening.commitments, signed_values(words), blinding)
    return words


def evidence_statement(ev: ContributionEvidence) -> norm.NormStatement:
    """The statement the member signed its rejected proof for (raises ConfigError if it is
    not a valid statement)."""
    return norm.NormStatement(dim=ev.dim, bound_sq=ev.bound_sq, weight_bits=ev.weight_bits,
                              projections=ev.projections)  # fmt: skip


def check_evidence(
    consortium: str,
    directory: Mapping[str, VerifyKey],
    ev: ContributionEvidence,
) -> str:
    """Confirm a rejection: the member signed this commitment and proof for this statement,
    and the proof does not verify. Returns why it fails; raises ``SignatureError`` if the
    member did not sign it and :class:`EvidenceError` if the proof in fact verifies (or the
    evidence names no valid statement)."""
    key = directory.get(ev.member)
    if key is None:
        raise EvidenceError(f"no identity key for {ev.member!r}")
    if not 0 <= ev.round < 1 << 63:
        raise EvidenceError(f"evidence names round {ev.round}, not a round number")
    try:
        stmt = evidence_statement(ev)
    except ConfigError as exc:
        raise EvidenceError(f"evidence of {ev.member!r} names no valid statement: {exc}") from None
    digest = proof_digest(ev.proof)
    payload = signed_payload(consortium, ev.round, ev.member, ev.commitment, digest, stmt)
    key.verify(ev.signature, payload, SIGNATURE_CONTEXT)
    ctx = proof_context(consortium, ev.round, ev.member)
    try:
        proof = norm.NormProof.from_bytes(ev.proof, stmt)
        norm.verify(ctx, stmt, ev.commitment, proof)
    except CryptoError as exc:
        return str(exc)
    raise EvidenceError(f"the proof of {ev.member!r} in round {ev.round} verifies: no misbehaviour")
