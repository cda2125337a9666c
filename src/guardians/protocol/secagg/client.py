"""The member side of a secure-aggregation round (sans-I/O).

``SecAggMember(...).receive(msg)`` returns the replies to send; it never does I/O. Any check that
fails raises a typed error and the member stops taking part (to the coordinator it has dropped).
The member enforces its own safety rules; it does not rely on the coordinator:

- every neighbour key is verified against the member's own directory of identity keys;
- neighbourhoods are derived locally from the participant list (the coordinator cannot choose);
- an unmask request is answered once per round, only with survivors and dropped members that are
  disjoint, and never reveals both a self-mask share and pairwise-seed shares of one member.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from guardians.codec import Message
from guardians.crypto import aead, prg, shamir
from guardians.crypto.errors import CryptoError
from guardians.crypto.hashing import frame_all
from guardians.crypto.hybrid import HybridKeyPair, HybridPublic
from guardians.crypto.kdf import derive
from guardians.crypto.sign import SigningKey, VerifyKey
from guardians.crypto.zk.norm import AggregateMismatchError, NormStatement, ProverMasks
from guardians.errors import GuardiansError, LocalProtocolError, RemoteProtocolError
from guardians.protocol.secagg import contrib
from guardians.protocol.secagg.graph import neighbourhoods
from guardians.protocol.secagg.messages import (
    Advertise,
    AggregateOpening,
    ConsistencyCheck,
    ConsistencySignature,
    Encaps,
    EncapsRelay,
    Keys,
    MaskedInput,
    SecAggSetup,
    Shares,
    SharesRelay,
    UnmaskReply,
    UnmaskRequest,
)
from guardians.protocol.secagg.quantize import FixedPoint

SEED_BYTES = 32


class Stage(Enum):
    SETUP = "setup"
    KEYS = "keys"
    ENCAPS = "encaps"
    SHARES = "shares"
    CONSISTENCY = "consistency"
    UNMASK = "unmask"
    DONE = "done"


# --- transcript bindings shared with the coordinator ----------------------------------------
def round_context(consortium: str, round: int) -> bytes:
    return frame_all(b"consortium", consortium.encode(), b"round", round.to_bytes(8, "big"))


def advertise_payload(consortium: str, round: int, member: str, pub: HybridPublic) -> bytes:
    return frame_all(round_context(consortium, round), member.encode(), pub.x25519, pub.mlkem)


def encaps_payload(
    consortium: str, round: int, member: str, recipients: tuple[str, ...], cts: tuple[bytes, ...]
) -> bytes:
    return frame_all(
        round_context(consortium, round),
        member.encode(),
        *(r.encode() for r in recipients),
        *cts,
    )


def shares_ad(consortium: str, round: int, sender: str, recipient: str) -> bytes:
    return frame_all(
        round_context(consortium, round), b"shares", sender.encode(), recipient.encode()
    )


def unmask_sets_payload(
    consortium: str, round: int, survivors: tuple[str, ...], dropped: tuple[str, ...]
) -> bytes:
    return frame_all(
        round_context(consortium, round), b"survivors", *(m.encode() for m in survivors),
        b"dropped", *(m.encode() for m in dropped),
    )  # fmt: skip


def pair_context(consortium: str, round: int, lo: str, hi: str) -> bytes:
    return frame_all(round_context(consortium, round), lo.encode(), hi.encode())


def mask_sign(me: str, other: str) -> int:
    """+1 if ``me`` adds the pair mask, -1 if it subtracts it (lower name adds)."""
    return 1 if me < other else -1


def expand_mask(seed: bytes, n: int, fp: FixedPoint) -> np.ndarray:
    return prg.expand(seed, n, bits=fp.modulus_bits).astype(fp.dtype, copy=False)


@dataclass
class _Received:
    """What one neighbour's share bundle gave us."""

    self_share: bytes
    pair_shares: bytes  # concatenated shares of the neighbour's pairwise seeds, in its order


@dataclass(frozen=True, eq=False)
class _Contribution:
    """What a member feeds into the masked input: its encoded words (with blinding limbs when
    proving), how many coordinates were clipped, and its signed commitment and proof."""

    words: np.ndarray
    clipped: int
    commitment: bytes = b""
    proof: bytes = b""
    signature: bytes = b""


@dataclass
class SecAggMember:
    member: str
    consortium: str
    identity: SigningKey
    directory: Mapping[str, VerifyKey]
    vector: np.ndarray
    weight: int
    fixed_point: FixedPoint = field(default_factory=FixedPoint)
    rng: np.random.Generator = field(
        default_factory=lambda: np.random.default_rng(int.from_bytes(os.urandom(16), "big"))
    )
    # Prover masks made ahead (norm.precompute_masks); used if they fit this round's statement.
    masks: ProverMasks | None = None

    def __post_init__(self) -> None:
        self.stage = Stage.SETUP
        self.round = -1
        self._keys: HybridKeyPair | None = None
        self._self_seed = os.urandom(SEED_BYTES)
        self._peer_pub: dict[str, HybridPublic] = {}
        self._pair_secret: dict[str, bytes] = {}
        self._received: dict[str, _Received] = {}
        self.clipped = 0
        self.statement: NormStatement | None = None
        self._commitment = b""
        self._contribution: _Contribution | None = None
        self._contribution_error: GuardiansError | None = None
        # The checked aggregate (update sum, then weight sum) once an opening verified.
        self.verified_total: np.ndarray | None = None
        # The survivor and dropped sets this member signed.
        self._view: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        # Whether its masked input (with commitment and proof) went out: from then on its update
        # may be in the aggregate, so the round's opening is what its model must be checked on.
        self.masked_sent = False

    # --- helpers ------------------------------------------------------------------------------
    def _remote(self, text: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"secagg round {self.round}, {self.member}: {text}",
                                   peer="coordinator")  # fmt: skip

    def _expect(self, msg: Message, stage: Stage, kind: type) -> None:
        if self.stage is not stage or not isinstance(msg, kind):
            raise self._remote(f"unexpected {msg.KIND} in stage {self.stage.value}")
        if msg.round != self.round:  # type: ignore[attr-defined]
            raise self._remote(f"{msg.KIND} for round {msg.round} (stale or replayed)")  # type: ignore[attr-defined]

    def _channel_key(self, sender: str, recipient: str) -> bytes:
        peer = recipient if sender == self.member else sender
        lo, hi = sorted((self.member, peer))
        return derive(self._pair_secret[peer], "secagg/channel", pair_context(
            self.consortium, self.round, lo, hi), sender.encode(), recipient.encode())  # fmt: skip

    def _mask_seed(self, peer: str) -> bytes:
        lo, hi = sorted((self.member, peer))
        return derive(self._pair_secret[peer], "secagg/mask-seed",
                      pair_context(self.consortium, self.round, lo, hi))  # fmt: skip

    # --- work ahead of the next message ------------------------------------------------------
    def prepare(self) -> bool:
        """Compute the contribution (encoded words, commitment, proof, signature) ahead: it
        depends only on the update and the setup, not on the key exchange, so a driver with
        idle time (after answering the setup, while the coordinator gathers every member's
        keys) calls this and the masked-input stage only masks; otherwise that stage computes
        it. A failure is kept and raised by the masked-input stage, as if computed there.
        Returns whether there was work."""
        if (self._contribution is not None or self._contribution_error is not None
                or self.stage not in (Stage.KEYS, Stage.ENCAPS, Stage.SHARES)):  # fmt: skip
            return False
        try:
            self._contribution = self._contribute()
        except GuardiansError as exc:
            self._contribution_error = exc
        return True

    def _contribute(self) -> _Contribution:
        fp = self.fixed_point
        vector = self.vector
        if self.statement is not None:
            vector = contrib.l2_clip(vector, self._norm_bound, self.weight, fp.scale_bits,
                                     len(vector))  # fmt: skip
        words, clipped = fp.encode(vector, self.weight, self.rng)
        for shrink in (1e-6, 1e-4, 1e-2):  # float rounding at the very edge: never in practice
            if self.statement is None or contrib.within_bound(self.statement, words):
                break
            vector = vector * (1 - shrink)
            words, clipped = fp.encode(vector, self.weight, self.rng)
        if self.statement is None:
            return _Contribution(words, clipped)
        masks, self.masks = self.masks, None
        if masks is not None and not masks.fits(self.statement):
            masks = None
        words, commitment, proof, signature = contrib.contribute(
            self.consortium, self.round, self.member, self.identity, self.statement, words, masks
        )
        return _Contribution(words, clipped, commitment, proof, signature)

    # --- the protocol -----------------------------------------------------------------------
    def receive(self, msg: Message) -> list[Message]:
        handler = {
            SecAggSetup: self._on_setup,
            Keys: self._on_keys,
            EncapsRelay: self._on_encaps_relay,
            SharesRelay: self._on_shares_relay,
            ConsistencyCheck: self._on_consistency,
            UnmaskRequest: self._on_unmask,
            AggregateOpening: self._on_opening,
        }.get(type(msg))
        if handler is None:
            raise self._remote(f"unexpected message {msg.KIND}")
        try:
            return handler(msg)  # type: ignore[operator]
        except CryptoError as exc:
            self.stage = Stage.DONE
            raise RemoteProtocolError(
                f"secagg round {self.round}, {self.member}: {type(exc).__name__}: {exc}",
                peer="coordinator",
            ) from exc
        except RemoteProtocolError:
            self.stage = Stage.DONE  # any failed check ends this member's part in the round
            raise
        except AggregateMismatchError as exc:
            self.stage = Stage.DONE
            raise RemoteProtocolError(
                f"secagg round {self.round}, {self.member}: the coordinator's aggregate is not "
                f"what the contributors committed to: {exc}",
                peer="coordinator",
            ) from exc
        except GuardiansError as exc:  # bad parameters (ConfigError), an update out of range
            self.stage = Stage.DONE
            raise RemoteProtocolError(
                f"secagg round {self.round}, {self.member}: {type(exc).__name__}: {exc}",
                peer="coordinator",
            ) from exc

    def _on_setup(self, msg: SecAggSetup) -> list[Message]:
        if self.stage is not Stage.SETUP:
            raise self._remote("a second setup for this round")
        self.round = msg.round
        if self.member not in msg.participants:
            raise self._remote("setup does not list this member")
        unknown = [p for p in msg.participants if p not in self.directory]
        if unknown:
            raise self._remote(f"participants without a known identity key: {unknown}")
        if msg.dim != len(self.vector):
            raise self._remote(f"dimension {msg.dim}, this member's update has {len(self.vector)}")
        if not 1 <= self.weight <= msg.max_weight:
            raise self._remote(f"weight {self.weight} outside 1..{msg.max_weight}")
        if len(msg.participants) < 3:
            raise self._remote("fewer than 3 participants: the sum would reveal an update")
        fp = FixedPoint(msg.modulus_bits, msg.scale_bits, msg.clip, self.fixed_point.policy)
        self.fixed_point = fp
        if msg.norm_bound > 0:
            self.statement = contrib.statement(msg.dim, msg.norm_bound, fp, msg.max_weight)
            self._norm_bound = msg.norm_bound
        self.neighbours = neighbourhoods(self.consortium, msg.round, msg.participants, msg.degree)
        self.my_neighbours = self.neighbours[self.member]
        self.participants = tuple(msg.participants)
        if not 1 <= msg.threshold <= len(self.my_neighbours):
            raise self._remote(
                f"threshold {msg.threshold} with {len(self.my_neighbours)} neighbours"
            )
        # Safety floor: a threshold below half the neighbourhood lets fewer colluders recover.
        if 2 * msg.threshold <= len(self.my_neighbours):
            raise self._remote(f"threshold {msg.threshold} is at most half of the neighbourhood")
        self.threshold = msg.threshold
        self._keys = HybridKeyPair()
        pub = self._keys.public
        sig = self.identity.sign(
            advertise_payload(self.consortium, self.round, self.member, pub), b"secagg/advertise"
        )
        self.stage = Stage.KEYS
        return [Advertise(round=self.round, x25519=pub.x25519, mlkem=pub.mlkem, signature=sig)]

    def _on_keys(self, msg: Keys) -> list[Message]:
        self._expect(msg, Stage.KEYS, Keys)
        assert self._keys is not None
        n = len(msg.members)
        if not (len(msg.x25519) == len(msg.mlkem) == len(msg.signatures) == n):
            raise self._remote("keys message has lists of different lengths")
        for m, x, k, sig in zip(msg.members, msg.x25519, msg.mlkem, msg.signatures, strict=True):
            if m not in self.my_neighbours:
                raise self._remote(f"keys for {m!r}, who is not a neighbour")
            if m in self._peer_pub:
                raise self._remote(f"keys for {m!r} listed twice")
            pub = HybridPublic(x, k)
            # The coordinator cannot substitute a key: it would need the member's signature.
            self.directory[m].verify(
                sig, advertise_payload(self.consortium, self.round, m, pub), b"secagg/advertise"
            )
            self._peer_pub[m] = pub
        recipients, cts = [], []
        for v in sorted(self._peer_pub):
            if self.member < v:
                lo, hi = self.member, v
                ct, secret = self._keys.encapsulate_to(
                    self._peer_pub[v],
                    "secagg/pair",
                    pair_context(self.consortium, self.round, lo, hi),
                )
                self._pair_secret[v] = secret
                recipients.append(v)
                cts.append(ct)
        payload = encaps_payload(self.consortium, self.round, self.member, tuple(recipients),
                                 tuple(cts))  # fmt: skip
        sig = self.identity.sign(payload, b"secagg/encaps")
        self.stage = Stage.ENCAPS
        return [Encaps(round=self.round, recipients=tuple(recipients), ciphertexts=tuple(cts),
                       signature=sig)]  # fmt: skip

    def _on_encaps_relay(self, msg: EncapsRelay) -> list[Message]:
        self._expect(msg, Stage.ENCAPS, EncapsRelay)
        assert self._keys is not None
        if not (len(msg.senders) == len(msg.recipients) == len(msg.ciphertexts)
                == len(msg.signatures)):  # fmt: skip
            raise self._remote("encaps relay has lists of different lengths")
        for u, recips, cts, sig in zip(
            msg.senders, msg.recipients, msg.ciphertexts, msg.signatures, strict=True
        ):
            if u not in self._peer_pub or not u < self.member:
                raise self._remote(f"encapsulation from {u!r}, not a lower-named neighbour")
            if u in self._pair_secret:
                raise self._remote(f"second encapsulation from {u!r}")
            if len(recips) != len(cts):
                raise self._remote(f"{u!r}'s encapsulation lists differ in length")
            self.directory[u].verify(
                sig, encaps_payload(self.consortium, self.round, u, recips, cts), b"secagg/encaps"
            )
            if self.member not in recips:
                raise self._remote(f"{u!r} sent no ciphertext for this member")
            ct = cts[recips.index(self.member)]
            self._pair_secret[u] = self._keys.decapsulate_from(
                self._peer_pub[u], ct, "secagg/pair",
                pair_context(self.consortium, self.round, u, self.member),
            )  # fmt: skip
        # Shamir-share the self-mask seed and every pairwise seed among the neighbours.
        order = self.my_neighbours
        xs = list(range(1, len(order) + 1))
        t = self.threshold
        self_shares = shamir.split(self._self_seed, t, xs)
        seeds = [self._mask_seed(w) if w in self._pair_secret else bytes(SEED_BYTES) for w in order]
        seed_shares = [shamir.split(s, t, xs) for s in seeds]
        recipients, cts = [], []
        for i, v in enumerate(order):
            if v not in self._pair_secret:
                continue  # no channel to v: it dropped before the key exchange finished
            bundle = self_shares[i] + b"".join(s[i] for s in seed_shares)
            recipients.append(v)
            cts.append(
                aead.seal(
                    self._channel_key(self.member, v), bundle,
                    shares_ad(self.consortium, self.round, self.member, v),
                )
            )  # fmt: skip
        self.stage = Stage.SHARES
        return [Shares(round=self.round, recipients=tuple(recipients), ciphertexts=tuple(cts))]

    def _on_shares_relay(self, msg: SharesRelay) -> list[Message]:
        self._expect(msg, Stage.SHARES, SharesRelay)
        if len(msg.senders) != len(msg.ciphertexts) or len(set(msg.senders)) != len(msg.senders):
            raise self._remote("shares relay lists are inconsistent")
        # Masking with fewer than t neighbours would let their shares expose this member.
        if len(msg.senders) < self.threshold:
            raise self._remote(
                f"shares from only {len(msg.senders)} neighbours, threshold {self.threshold}"
            )
        k = shamir.SHARE_BYTES
        for u, ct in zip(msg.senders, msg.ciphertexts, strict=True):
            if u not in self._pair_secret:
                raise self._remote(f"shares from {u!r}, with whom no key was agreed")
            bundle = aead.open_(
                self._channel_key(u, self.member), ct,
                shares_ad(self.consortium, self.round, u, self.member),
            )  # fmt: skip
            expected = k * (1 + len(self.neighbours[u]))
            if len(bundle) != expected:
                raise self._remote(
                    f"share bundle from {u!r} has {len(bundle)} bytes, not {expected}"
                )
            self._received[u] = _Received(self_share=bundle[:k], pair_shares=bundle[k:])
        # Mask with exactly the neighbours whose shares arrived: they completed the exchange,
        # so (with an honest relay) they mask with this member too.
        fp = self.fixed_point
        if self._contribution_error is not None:
            raise self._contribution_error
        mine = self._contribution if self._contribution is not None else self._contribute()
        self._contribution = None
        words, self.clipped, self._commitment = mine.words, mine.clipped, mine.commitment
        n = len(words)
        y = words + expand_mask(self._self_seed, n, fp)
        for w in sorted(self._received):
            m = expand_mask(self._mask_seed(w), n, fp)
            y = y + m if mask_sign(self.member, w) > 0 else y - m
        self.stage = Stage.CONSISTENCY
        self.masked_sent = True
        reply = MaskedInput(
            round=self.round, clipped=self.clipped, masked=y.astype(fp.dtype),
            commitment=self._commitment, proof=mine.proof, signature=mine.signature,
        )  # fmt: skip
        return [reply]

    def _check_sets(self, survivors_t: tuple[str, ...], dropped_t: tuple[str, ...]) -> None:
        survivors, dropped = set(survivors_t), set(dropped_t)
        if len(survivors) != len(survivors_t) or len(dropped) != len(dropped_t):
            raise self._remote("survivor sets list a member twice")
        if survivors & dropped:
            raise self._remote(f"members both survived and dropped: {sorted(survivors & dropped)}")
        if self.member not in survivors:
            raise self._remote("unmask request does not count this member as a survivor")
        if len(survivors) < self.threshold:
            raise self._remote(f"only {len(survivors)} survivors, threshold {self.threshold}")
        if not survivors | dropped <= set(self.participants):
            raise self._remote("survivor or dropped lists name non-participants")

    def _on_consistency(self, msg: ConsistencyCheck) -> list[Message]:
        self._expect(msg, Stage.CONSISTENCY, ConsistencyCheck)
        self._check_sets(msg.survivors, msg.dropped)
        # Sign one view of (S, D) per round; the unmask request must carry this exact view,
        # signed by at least t of this member's neighbours.
        self._view = (msg.survivors, msg.dropped)
        payload = unmask_sets_payload(self.consortium, self.round, msg.survivors, msg.dropped)
        self.stage = Stage.UNMASK
        return [
            ConsistencySignature(
                round=self.round, signature=self.identity.sign(payload, b"secagg/unmask-sets")
            )
        ]

    def _on_unmask(self, msg: UnmaskRequest) -> list[Message]:
        self._expect(msg, Stage.UNMASK, UnmaskRequest)
        if (msg.survivors, msg.dropped) != self._view:
            raise self._remote("unmask request differs from the survivor sets this member signed")
        survivors, dropped = set(msg.survivors), set(msg.dropped)
        if len(msg.signers) != len(msg.signatures) or len(set(msg.signers)) != len(msg.signers):
            raise self._remote("unmask request signer lists are inconsistent")
        payload = unmask_sets_payload(self.consortium, self.round, msg.survivors, msg.dropped)
        vouching = 0
        for signer, sig in zip(msg.signers, msg.signatures, strict=True):
            if signer not in survivors:
                raise self._remote(f"signature from {signer!r}, who is not a survivor")
            self.directory[signer].verify(sig, payload, b"secagg/unmask-sets")
            if signer in self.my_neighbours:
                vouching += 1
        if vouching < self.threshold:
            raise self._remote(
                f"only {vouching} neighbours signed these survivor sets, threshold {self.threshold}"
            )
        self_owners, self_shares, pair_owners, pair_shares = [], [], [], []
        for u in sorted(self._received):
            if u in survivors:
                self_owners.append(u)
                self_shares.append(self._received[u].self_share)
            elif u in dropped:
                pair_owners.append(u)
                pair_shares.append(self._received[u].pair_shares)
        self.stage = Stage.DONE  # answered once: a second request could ask for the other half
        return [UnmaskReply(round=self.round, self_owners=tuple(self_owners),
                            self_shares=tuple(self_shares), pair_owners=tuple(pair_owners),
                            pair_shares=tuple(pair_shares))]  # fmt: skip

    def _on_opening(self, msg: AggregateOpening) -> list[Message]:
        if self.statement is None:
            raise self._remote("an aggregate opening in a round without contribution proofs")
        if msg.round != self.round:
            raise self._remote(f"aggregate opening for round {msg.round} (stale or replayed)")
        if self.verified_total is not None:
            raise self._remote("a second aggregate opening for this round")
        # A member that dropped out after masking (it missed the consistency or unmask stage)
        # is still in the aggregate, and checks the opening like any contributor.
        if not self.masked_sent:
            raise self._remote("an aggregate opening for a round this member did not contribute to")
        if self._view is not None and msg.contributors != self._view[0]:
            raise self._remote("aggregate opening names other contributors than the survivors "
                               "this member signed")  # fmt: skip
        if self.member not in msg.contributors:
            raise self._remote("aggregate opening leaves out this member's contribution")
        if len(msg.commitments) != len(msg.contributors):
            raise self._remote("aggregate opening has a commitment list of another length")
        mine = msg.commitments[msg.contributors.index(self.member)]
        if mine != self._commitment:
            raise self._remote("aggregate opening carries a commitment this member never made")
        self.verified_total = contrib.verify_opening(
            self.consortium, self.directory, self.statement, msg
        )
        self.stage = Stage.DONE
        return []

    def share_point(self, owner: str) -> int:
        """This member's x-coordinate in ``owner``'s sharing."""
        if not hasattr(self, "neighbours"):
            raise LocalProtocolError("no setup yet")
        return self.neighbours[owner].index(self.member) + 1
