"""The coordinator side of a secure-aggregation round (sans-I/O).

Drives the stages, relays what members send each other (it cannot read shares, nor forge or
substitute keys: members verify signatures against their own directory), and in the end learns
only the weighted sum of the survivors' updates. Interface shared with the plaintext round:
``start()``, ``receive()``, ``drop()``, ``pending``, ``advance()`` (the next stage's messages, or
None when done) and ``finish()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from guardians import codec
from guardians.codec import Message
from guardians.crypto import shamir
from guardians.crypto.errors import CryptoError
from guardians.crypto.hashing import tagged_hash
from guardians.crypto.hybrid import HybridPublic
from guardians.crypto.sign import VerifyKey
from guardians.crypto.zk import norm
from guardians.errors import (
    ConfigError,
    LocalProtocolError,
    RemoteProtocolError,
    RoundAbortedError,
)
from guardians.learning.aggregate.momentum import ServerMomentum
from guardians.learning.preprocess import FeatureStats, Standardizer
from guardians.learning.train import TrainConfig
from guardians.protocol.messages import StatsRequest, StatsResult, TrainInstruction
from guardians.protocol.round import (
    RoundResult,
    Send,
    _apply_delta,
    global_model,
    server_step_fields,
)
from guardians.protocol.secagg import contrib
from guardians.protocol.secagg.client import (
    advertise_payload,
    encaps_payload,
    expand_mask,
    mask_sign,
    unmask_sets_payload,
)
from guardians.protocol.secagg.graph import default_degree, neighbourhoods
from guardians.protocol.secagg.messages import (
    Advertise,
    AggregateOpening,
    ConsistencyCheck,
    ConsistencySignature,
    ContributionEvidence,
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

STAGES = ("advertise", "encaps", "shares", "masked", "consistency", "unmask")
_EXPECTS: dict[str, type[Message]] = {
    "advertise": Advertise,
    "encaps": Encaps,
    "shares": Shares,
    "masked": MaskedInput,
    "consistency": ConsistencySignature,
    "unmask": UnmaskReply,
}


def default_threshold(degree: int) -> int:
    """More than half of a neighbourhood must cooperate to unmask anything."""
    return degree // 2 + 1


class SecureRound:
    def __init__(
        self,
        *,
        consortium: str,
        round: int,
        selected: Sequence[str],
        directory: Mapping[str, VerifyKey],
        global_params: np.ndarray,
        train: TrainConfig,
        fixed_point: FixedPoint | None = None,
        degree: int | None = None,
        threshold: int | None = None,
        server_opt: ServerMomentum | None = None,
        max_weight: int = 1 << 24,
        purpose: str = "train",
        norm_bound: float | None = None,
    ) -> None:
        """``purpose="train"`` aggregates model updates (weighted by sample counts);
        ``"count"`` sums members' 0/1 vectors of length ``len(global_params)`` into counts (how
        many members set each entry: sightings for k-anonymous intel release);
        ``"stats"`` sums members' feature statistics (count, Σx, Σx²) into the standardizer,
        ``global_params`` then only giving the feature count (its length). ``norm_bound``
        turns on contribution proofs: each member proves ‖update‖₂ ≤ norm_bound, and the
        unmasked aggregate must open the product of the accepted members' commitments."""
        if purpose not in ("train", "stats", "count"):
            raise LocalProtocolError(f"unknown secure-round purpose {purpose!r}")
        self.purpose = purpose
        if len(set(selected)) != len(selected) or len(selected) < 2:
            raise LocalProtocolError("secure aggregation needs at least two distinct members")
        self.consortium = consortium
        self.round = round
        self.selected = tuple(sorted(selected))
        self.directory = directory
        self.global_params = np.asarray(global_params, dtype=np.float32).copy()
        self.train = train
        self.fp = fixed_point or FixedPoint()
        self.fp.check_capacity(max_weight * len(selected))
        self.max_weight = max_weight
        self.degree = degree or default_degree(len(selected))
        self.threshold = threshold or default_threshold(self.degree)
        if not self.degree / 2 < self.threshold <= self.degree:
            raise ConfigError(
                f"threshold {self.threshold} must exceed half the neighbourhood ({self.degree}) "
                "and not exceed it"
            )
        self.graph = neighbourhoods(consortium, round, self.selected, self.degree)
        self.server_opt = server_opt
        self.server_step = server_opt.step if server_opt is not None else _apply_delta
        self.n_features = self.global_params.shape[0]
        self.dim = 1 + 2 * self.n_features if purpose == "stats" else self.n_features
        self.norm_bound = float(norm_bound or 0.0)
        self.statement: norm.NormStatement | None = None
        if self.norm_bound > 0:
            if purpose != "train":
                raise ConfigError("contribution proofs apply to model updates only")
            self.statement = contrib.statement(self.dim, self.norm_bound, self.fp, max_weight)
        self.words = self.dim + 1 + (contrib.LIMBS if self.statement else 0)
        self._proofs: dict[str, norm.NormProof] = {}
        self.rejected: dict[str, str] = {}
        self.evidence: dict[str, bytes] = {}
        self.opening: AggregateOpening | None = None
        self.stage_index = 0
        self.alive: set[str] = set(self.selected)
        self.dropped: dict[str, str] = {}
        self.replies: dict[str, Message] = {}
        self.adverts: dict[str, Advertise] = {}
        self.encaps: dict[str, Encaps] = {}
        self.shares: dict[str, Shares] = {}
        self.masked: dict[str, MaskedInput] = {}
        self.signed: dict[str, ConsistencySignature] = {}
        self.unmask: dict[str, UnmaskReply] = {}
        self.started = False
        self.finished = False

    # --- stage bookkeeping ------------------------------------------------------------------
    @property
    def stage(self) -> str:
        return STAGES[self.stage_index] if self.stage_index < len(STAGES) else "done"

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(self.alive - set(self.replies))

    def drop(self, member: str, reason: str) -> None:
        if member not in self.selected:
            raise LocalProtocolError(f"{member!r} is not part of round {self.round}")
        if member in self.alive:
            self.alive.discard(member)
            self.dropped.setdefault(member, f"{self.stage}: {reason}")

    def _exclude(self, member: str, text: str) -> RemoteProtocolError:
        self.drop(member, text)
        return RemoteProtocolError(text, peer=member)

    def receive(self, sender: str, msg: Message) -> None:
        if not self.started or self.finished:
            raise LocalProtocolError("round is not collecting")
        if sender not in self.selected:
            raise RemoteProtocolError(f"{sender!r} is not part of round {self.round}", peer=sender)
        if sender not in self.alive:
            raise RemoteProtocolError(f"{sender!r} already left round {self.round}", peer=sender)
        if sender in self.replies:
            raise RemoteProtocolError(f"{sender!r} sent a second {msg.KIND}", peer=sender)
        expected = _EXPECTS[self.stage]
        if not isinstance(msg, expected):
            raise self._exclude(sender, f"{sender!r} sent {msg.KIND} in stage {self.stage}")
        if msg.round != self.round:  # type: ignore[attr-defined]
            raise RemoteProtocolError(
                f"{sender!r} sent {msg.KIND} for round {msg.round} (stale or replayed)",  # type: ignore[attr-defined]
                peer=sender,
            )
        try:
            self._validate(sender, msg)
        except CryptoError as exc:
            raise self._exclude(sender, f"{sender!r}: {type(exc).__name__}: {exc}") from None
        except RemoteProtocolError as exc:
            raise self._exclude(sender, str(exc)) from None
        self.replies[sender] = msg

    def _validate(self, sender: str, msg: Message) -> None:
        def bad(text: str) -> RemoteProtocolError:
            return RemoteProtocolError(f"{sender!r}: {text}", peer=sender)

        if isinstance(msg, Advertise):
            pub = HybridPublic(msg.x25519, msg.mlkem)
            self.directory[sender].verify(
                msg.signature, advertise_payload(self.consortium, self.round, sender, pub),
                b"secagg/advertise",
            )  # fmt: skip
        elif isinstance(msg, Encaps):
            higher = {v for v in self.graph[sender] if v > sender and v in self.adverts}
            if set(msg.recipients) != higher or len(msg.recipients) != len(msg.ciphertexts):
                raise bad("encapsulations do not match its higher-named live neighbours")
            self.directory[sender].verify(
                msg.signature,
                encaps_payload(self.consortium, self.round, sender, msg.recipients,
                               msg.ciphertexts),
                b"secagg/encaps",
            )  # fmt: skip
        elif isinstance(msg, Shares):
            # Neighbours with whom it agreed a key (a higher one may since have dropped).
            allowed = set(self.graph[sender]) & set(self.adverts)
            if not set(msg.recipients) <= allowed or len(msg.recipients) != len(msg.ciphertexts):
                raise bad("share ciphertexts for members outside its live neighbourhood")
        elif isinstance(msg, MaskedInput):
            if msg.masked.shape != (self.words,) or msg.masked.dtype != self.fp.dtype:
                raise bad(
                    f"masked input of shape {msg.masked.shape} and dtype {msg.masked.dtype}, "
                    f"expected ({self.words},) {self.fp.dtype}"
                )
            if not 0 <= msg.clipped <= self.dim:
                raise bad(f"implausible clipped count {msg.clipped}")
            if self.statement is not None:
                self.directory[sender].verify(
                    msg.signature,
                    contrib.signed_payload(self.consortium, self.round, sender, msg.commitment,
                                           contrib.proof_digest(msg.proof), self.statement),
                    contrib.SIGNATURE_CONTEXT,
                )  # fmt: skip
                # Parsed now (cheap), verified for all members at once when the stage closes.
                self._proofs[sender] = norm.NormProof.from_bytes(msg.proof, self.statement)
            elif msg.commitment or msg.proof or msg.signature:
                raise bad("contribution proof in a round without contribution proofs")
        elif isinstance(msg, ConsistencySignature):
            self.directory[sender].verify(
                msg.signature,
                unmask_sets_payload(self.consortium, self.round, self._survivors(),
                                    self._dropped()),
                b"secagg/unmask-sets",
            )  # fmt: skip
        elif isinstance(msg, UnmaskReply):
            k = shamir.SHARE_BYTES
            if len(msg.self_owners) != len(msg.self_shares) or len(msg.pair_owners) != len(
                msg.pair_shares
            ):
                raise bad("unmask reply lists differ in length")
            if set(msg.self_owners) & set(msg.pair_owners):
                raise bad("revealed both kinds of share for one member")
            for o, s in zip(msg.self_owners, msg.self_shares, strict=True):
                if o not in self.masked or sender not in self.graph[o] or len(s) != k:
                    raise bad(f"unexpected self-mask share of {o!r}")
            for o, s in zip(msg.pair_owners, msg.pair_shares, strict=True):
                if o not in self._dropped_after_sharing() or sender not in self.graph[o]:
                    raise bad(f"unexpected pairwise shares of {o!r}")
                if len(s) != k * len(self.graph[o]):
                    raise bad(f"pairwise shares of {o!r} have the wrong length")

    def _dropped_after_sharing(self) -> set[str]:
        return set(self.shares) - set(self.masked)

    def _survivors(self) -> tuple[str, ...]:
        return tuple(sorted(self.masked))

    def _dropped(self) -> tuple[str, ...]:
        return tuple(sorted(self._dropped_after_sharing()))

    # --- stages -----------------------------------------------------------------------------
    def start(self) -> list[Send]:
        if self.started:
            raise LocalProtocolError("round already started")
        self.started = True
        t = self.train
        instr: Message = TrainInstruction(
            round=self.round, epochs=t.epochs, batch_size=t.batch_size,
            learning_rate=t.learning_rate, optimizer=t.optimizer, momentum=t.momentum,
            proximal=t.proximal,
            params=self.global_params, aggregation="secagg",
            **server_step_fields(self.server_opt),
        )  # fmt: skip
        if self.purpose in ("stats", "count"):
            # The members already hold their vectors; the request only opens the round.
            instr = StatsRequest(round=self.round, aggregation="secagg")
        setup = SecAggSetup(
            round=self.round, participants=self.selected, degree=self.degree,
            threshold=self.threshold, modulus_bits=self.fp.modulus_bits,
            scale_bits=self.fp.scale_bits, clip=self.fp.clip, dim=self.dim,
            max_weight=self.max_weight, norm_bound=self.norm_bound,
        )  # fmt: skip
        return [s for m in self.selected for s in (Send(m, instr), Send(m, setup))]

    def _close_stage(self) -> None:
        for m in self.pending:
            self.drop(m, "no reply")
        store = {
            "advertise": self.adverts, "encaps": self.encaps, "shares": self.shares,
            "masked": self.masked, "consistency": self.signed, "unmask": self.unmask,
        }[self.stage]  # fmt: skip
        store.update(self.replies)  # type: ignore[arg-type]
        self.replies = {}
        if self.stage == "masked" and self.statement is not None:
            self._verify_contributions()
        if len(store) < self.threshold:
            self.finished = True
            raise RoundAbortedError(
                f"round {self.round}: {len(store)} members completed stage {self.stage}, "
                f"threshold {self.threshold}; no aggregate released"
            )

    def advance(self) -> list[Send] | None:
        """Close the current stage and return the next stage's messages (None: unmasking done)."""
        if not self.started or self.finished:
            raise LocalProtocolError("round is not collecting")
        self._close_stage()
        stage = self.stage
        self.stage_index += 1
        if stage == "advertise":
            sends = []
            for m in self.adverts:
                nb = [v for v in self.graph[m] if v in self.adverts]
                a = [self.adverts[v] for v in nb]
                sends.append(Send(m, Keys(
                    round=self.round, members=tuple(nb), x25519=tuple(x.x25519 for x in a),
                    mlkem=tuple(x.mlkem for x in a), signatures=tuple(x.signature for x in a),
                )))  # fmt: skip
            return sends
        if stage == "encaps":
            sends = []
            for v in self.encaps:
                lower = [u for u in self.graph[v] if u < v and u in self.encaps]
                e = [self.encaps[u] for u in lower]
                sends.append(Send(v, EncapsRelay(
                    round=self.round, senders=tuple(lower),
                    recipients=tuple(x.recipients for x in e),
                    ciphertexts=tuple(x.ciphertexts for x in e),
                    signatures=tuple(x.signature for x in e),
                )))  # fmt: skip
            return sends
        if stage == "shares":
            inbox: dict[str, list[tuple[str, bytes]]] = {v: [] for v in self.shares}
            for u, sh in self.shares.items():
                for v, ct in zip(sh.recipients, sh.ciphertexts, strict=True):
                    if v in inbox:
                        inbox[v].append((u, ct))
            return [
                Send(v, SharesRelay(round=self.round, senders=tuple(u for u, _ in items),
                                    ciphertexts=tuple(c for _, c in items)))
                for v, items in inbox.items()
            ]  # fmt: skip
        if stage == "masked":
            req = ConsistencyCheck(round=self.round, survivors=self._survivors(),
                                   dropped=self._dropped())  # fmt: skip
            return [Send(m, req) for m in req.survivors]
        if stage == "consistency":
            signers = tuple(sorted(self.signed))
            unmask = UnmaskRequest(
                round=self.round, survivors=self._survivors(), dropped=self._dropped(),
                signers=signers, signatures=tuple(self.signed[m].signature for m in signers),
            )  # fmt: skip
            return [Send(m, unmask) for m in signers]
        return None  # unmask replies are in

    def _verify_contributions(self) -> None:
        """Check every contribution proof (one batched MSM); exclude the members whose proof
        fails. Their masked input is discarded and, like a dropout's, their pairwise masks are
        recovered — their self-mask never is, so the update stays hidden."""
        assert self.statement is not None
        names = sorted(self.masked)
        items = [(contrib.proof_context(self.consortium, self.round, m),
                  self.masked[m].commitment, self._proofs[m]) for m in names]  # fmt: skip
        for i, reason in norm.verify_batch(self.statement, items).items():
            m = names[i]
            digest = contrib.proof_digest(self.masked[m].proof).hex()
            com = self.masked[m].commitment.hex()
            self.rejected[m] = (
                f"contribution proof rejected ({reason}); commitment {com}, proof digest {digest}"
            )
            mi, st = self.masked[m], self.statement
            self.evidence[m] = codec.encode(ContributionEvidence(
                round=self.round, member=m, reason=reason, dim=st.dim, bound_sq=st.bound_sq,
                weight_bits=st.weight_bits, projections=st.projections,
                commitment=mi.commitment, proof=mi.proof, signature=mi.signature,
            ))  # fmt: skip
            del self.masked[m]
            self.drop(m, self.rejected[m])

    # --- unmasking ----------------------------------------------------------------------------
    def _reconstruct(self, owner: str, points: list[tuple[int, bytes]], what: str) -> bytes:
        if len(points) < self.threshold:
            self.finished = True
            raise RoundAbortedError(
                f"round {self.round}: {len(points)} shares of {owner}'s {what}, "
                f"threshold {self.threshold}; no aggregate released"
            )
        return shamir.combine(points, self.threshold)

    def unmasked_sum(self) -> np.ndarray:
        """Σ survivors' encoded updates mod 2^b, after removing every mask."""
        n = self.words
        fp = self.fp
        total = np.zeros(n, dtype=fp.dtype)
        for mi in self.masked.values():
            total += mi.masked
        for s in self.masked:
            pts = [
                (self.graph[s].index(w) + 1, r.self_shares[r.self_owners.index(s)])
                for w, r in self.unmask.items()
                if s in r.self_owners
            ]
            total -= expand_mask(self._reconstruct(s, pts, "self-mask seed"), n, fp)
        k = shamir.SHARE_BYTES
        for d in sorted(self._dropped_after_sharing()):
            nb = self.graph[d]
            bundles = [
                (nb.index(w) + 1, r.pair_shares[r.pair_owners.index(d)])
                for w, r in self.unmask.items()
                if d in r.pair_owners
            ]
            # Survivors that masked with d: those d sent shares to (they received them).
            for x in self.shares[d].recipients:
                if x not in self.masked:
                    continue
                j = nb.index(x)
                pts = [(xc, b[j * k : (j + 1) * k]) for xc, b in bundles]
                seed = self._reconstruct(d, pts, f"pairwise seed with {x}")
                m = expand_mask(seed, n, fp)
                # x added sign(x, d) * mask: take it back out.
                total = total - m if mask_sign(x, d) > 0 else total + m
        return total

    def _aggregate(self) -> tuple[np.ndarray, int]:
        if self.stage != "done":
            raise LocalProtocolError(f"round {self.round} is in stage {self.stage}")
        self.finished = True
        try:
            total = self.unmasked_sum()
        except CryptoError as exc:
            raise RoundAbortedError(f"round {self.round}: unmasking failed: {exc}") from None
        # Masks that failed to cancel (a withheld share, a bad share, a lying member) leave
        # uniform noise in the weight word: check it against what honest weights can sum to.
        if self.statement is not None:
            names = tuple(sorted(self.masked))
            m = [self.masked[x] for x in names]
            self.opening = AggregateOpening(
                round=self.round, contributors=names, commitments=tuple(x.commitment for x in m),
                proof_digests=tuple(contrib.proof_digest(x.proof) for x in m),
                signatures=tuple(x.signature for x in m), total=total.astype(np.uint64),
            )  # fmt: skip
            try:
                contrib.verify_opening(self.consortium, self.directory, self.statement,
                                       self.opening)  # fmt: skip
            except (norm.AggregateMismatchError, CryptoError) as exc:
                raise RoundAbortedError(
                    f"round {self.round}: the unmasked aggregate does not open the contributors' "
                    f"commitments (a member masked other words than it committed to, or a share "
                    f"was wrong): {exc}; no aggregate released"
                ) from None
            total = total[: self.dim + 1]
        weight = int(total[-1])
        if not len(self.masked) <= weight <= self.max_weight * len(self.masked):
            raise RoundAbortedError(
                f"round {self.round}: the unmasked total weight {weight} is impossible for "
                f"{len(self.masked)} members (masks did not cancel, or a weight is out of range); "
                "no aggregate released"
            )
        return self.fp.decode_sum(total)

    def finish(self, recipients: Iterable[str]) -> tuple[Any, list[Send]]:
        """Training: (RoundResult, GlobalModel sends). Stats: (Standardizer, StatsResult sends)."""
        if self.purpose == "stats":
            return self._finish_stats(recipients)
        if self.purpose == "count":
            mean, weight = self._aggregate()
            return np.rint(mean * weight).astype(np.int64), []
        mean, weight = self._aggregate()
        with np.errstate(over="ignore", invalid="ignore"):
            params = self.server_step(self.global_params, mean.astype(np.float32))
        if not np.all(np.isfinite(params)):
            raise RoundAbortedError(f"round {self.round}: the aggregate is not finite")
        result = RoundResult(
            round=self.round,
            params=params,
            contributors=tuple(sorted(self.masked)),
            samples=weight,
            mean_loss=float("nan"),  # individual losses stay private too
            dropped=dict(self.dropped),
            clipped=self.clipped,
            rejected=dict(self.rejected),
            evidence=dict(self.evidence),
            verified=self.opening is not None,
            aggregate_digest=tagged_hash("secagg/aggregate-opening", codec.encode(self.opening))
            if self.opening
            else b"",
        )
        gm = global_model(self.round, params, self.server_opt)
        sends = [Send(m, self.opening) for m in self.opening.contributors] if self.opening else []
        return result, sends + [Send(m, gm) for m in recipients]

    def _finish_stats(self, recipients: Iterable[str]) -> tuple[Standardizer, list[Send]]:
        mean, weight = self._aggregate()
        sums = mean * weight  # each member's vector had weight 1: back to plain sums
        d = self.n_features
        stats = FeatureStats(count=round(sums[0]), sum=sums[1 : 1 + d], sumsq=sums[1 + d :])
        if stats.count < 1:
            raise RoundAbortedError(f"round {self.round}: the summed statistics hold no records")
        std = Standardizer.from_stats(stats)
        if not (np.all(np.isfinite(std.mean)) and np.all(np.isfinite(std.scale))):
            raise RoundAbortedError(f"round {self.round}: summed statistics are not finite")
        result = StatsResult(round=self.round, mean=std.mean, scale=std.scale)
        return std, [Send(m, result) for m in recipients]

    @property
    def clipped(self) -> int:
        return sum(m.clipped for m in self.masked.values())
