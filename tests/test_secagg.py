"""Secure aggregation (SecAgg+): exactness of the unmasked sum under dropouts, privacy of what the
coordinator and colluders see, and refusal of tampered, replayed or out-of-place messages.

Every message travels through the wire codec (encode → decode), as it would on the network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from guardians import codec
from guardians.crypto import shamir
from guardians.crypto.errors import DecryptionError, ShareError, SignatureError
from guardians.crypto.hybrid import HybridKeyPair, HybridPublic
from guardians.crypto.sign import SigningKey
from guardians.errors import (
    ConfigError,
    GuardiansError,
    LocalProtocolError,
    RemoteProtocolError,
    RoundAbortedError,
)
from guardians.learning.train import TrainConfig
from guardians.protocol.messages import TrainInstruction
from guardians.protocol.round import Send
from guardians.protocol.secagg.client import SecAggMember, advertise_payload, expand_mask
from guardians.protocol.secagg.graph import default_degree, neighbourhoods
from guardians.protocol.secagg.messages import (
    Advertise,
    ConsistencyCheck,
    Encaps,
    EncapsRelay,
    Keys,
    SecAggSetup,
    SharesRelay,
    UnmaskReply,
    UnmaskRequest,
)
from guardians.protocol.secagg.quantize import ClippingError, FixedPoint
from guardians.protocol.secagg.server import STAGES, SecureRound

NAMES = tuple(f"m{i:02d}" for i in range(16))
FP64 = FixedPoint()  # 64-bit words, 2^-20 resolution, clip 8
FP32 = FixedPoint(modulus_bits=32, scale_bits=8, clip=1.0)
MAX_WEIGHT = 100
NEVER = len(STAGES)  # a drop stage meaning "stays to the end"


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    """Identity keys, generated once (an ML-DSA key pair costs milliseconds)."""
    return {m: SigningKey.generate() for m in (*NAMES, "outsider")}


def wire(msg: codec.Message) -> codec.Message:
    return codec.decode(codec.encode(msg))


def flip(data: bytes, i: int = 0) -> bytes:
    b = bytearray(data)
    b[i] ^= 1
    return bytes(b)


class Run:
    """A coordinator and its members, driven stage by stage through the codec."""

    def __init__(
        self,
        keys: dict[str, SigningKey],
        n: int,
        d: int = 6,
        *,
        fp: FixedPoint = FP64,
        degree: int | None = None,
        threshold: int | None = None,
        round: int = 1,
        consortium: str = "c",
        seed: int = 0,
        vectors: dict[str, np.ndarray] | None = None,
        weights: dict[str, int] | None = None,
    ) -> None:
        self.ids = NAMES[:n]
        self.fp = fp
        self.directory = {m: keys[m].verify_key for m in self.ids}
        rng = np.random.default_rng(seed)
        # some coordinates beyond the clipping range, so clipping is part of what is summed
        self.vectors = vectors or {m: rng.normal(0, 0.6 * fp.clip, d) for m in self.ids}
        self.weights = weights or {m: int(rng.integers(1, MAX_WEIGHT + 1)) for m in self.ids}
        self.server = SecureRound(
            consortium=consortium,
            round=round,
            selected=self.ids,
            directory=self.directory,
            global_params=np.zeros(d, np.float32),
            train=TrainConfig(),
            fixed_point=fp,
            degree=degree,
            threshold=threshold,
            max_weight=MAX_WEIGHT,
        )
        self.members = {
            m: SecAggMember(
                member=m,
                consortium=consortium,
                identity=keys[m],
                directory=self.directory,
                vector=self.vectors[m],
                weight=self.weights[m],
                rng=np.random.default_rng(NAMES.index(m)),
            )
            for m in self.ids
        }
        self.sends: list[Send] | None = self._strip(self.server.start())
        self.all_replies: list[tuple[str, codec.Message]] = []

    @staticmethod
    def _strip(sends: list[Send] | None) -> list[Send] | None:
        # SecureRound.start() also instructs members to train; a bare SecAggMember skips that.
        if sends is None:
            return None
        return [s for s in sends if not isinstance(s.message, TrainInstruction)]

    @property
    def t(self) -> int:
        return self.server.threshold

    @property
    def graph(self) -> dict[str, tuple[str, ...]]:
        return self.server.graph

    def message_for(self, member: str) -> codec.Message:
        assert self.sends is not None
        (msg,) = [s.message for s in self.sends if s.to == member]
        return msg

    def replies(self, skip: Iterable[str] = ()) -> list[tuple[str, codec.Message]]:
        """Deliver the pending messages to members (except ``skip``) and collect their replies."""
        assert self.sends is not None
        skip = set(skip)
        out = []
        for s in self.sends:
            if s.to in skip:
                continue
            try:
                replies = self.members[s.to].receive(wire(s.message))
            except RemoteProtocolError:
                if not self.tolerate_refusals:
                    raise
                continue  # the member refused and left the round: a dropout to the coordinator
            for r in replies:
                out.append((s.to, wire(r)))
        self.all_replies += out
        return out

    def submit(self, replies: list[tuple[str, codec.Message]]) -> None:
        for m, r in replies:
            self.server.receive(m, r)

    def advance(self) -> list[Send] | None:
        self.sends = self._strip(self.server.advance())
        return self.sends

    def step(self, skip: Iterable[str] = ()) -> list[Send] | None:
        self.submit(self.replies(skip))
        return self.advance()

    def steps(self, k: int) -> None:
        for _ in range(k):
            self.step()

    tolerate_refusals = False

    def run(self, drop: dict[str, int] | None = None) -> np.ndarray:
        """The whole round; member m stops answering from stage index drop[m] on. A member
        that receives fewer than t share bundles refuses to mask, which is a dropout too."""
        drop = drop or {}
        self.tolerate_refusals = True
        for i in range(len(STAGES)):
            assert self.server.stage == STAGES[i]
            self.step(skip={m for m, s in drop.items() if s <= i})
        assert self.sends is None
        return self.server.unmasked_sum()

    def encoded(self, m: str) -> np.ndarray:
        """m's quantized words, reproduced with the rng the member was given."""
        words, _ = self.fp.encode(
            self.vectors[m], self.weights[m], np.random.default_rng(NAMES.index(m))
        )
        return words

    def expected_sum(self, members: Iterable[str]) -> np.ndarray:
        total = np.zeros(len(next(iter(self.vectors.values()))) + 1, dtype=self.fp.dtype)
        for m in members:
            total += self.encoded(m)  # unsigned arithmetic: wraps mod 2^b
        return total


def expected_contributors(
    graph: dict[str, tuple[str, ...]], t: int, ids: Iterable[str], drop: dict[str, int]
) -> set[str] | None:
    """What an honest round must give: the members whose input is in the sum, or None if it
    must abort (some stage completed by fewer than t, or some seed with fewer than t shares)."""
    alive = [{m for m in ids if drop.get(m, NEVER) > i} for i in range(len(STAGES))]
    sharing = alive[2]
    # A member masks only with at least t neighbours' share bundles; otherwise it leaves.
    masked = {x for x in alive[3] if len(set(graph[x]) & sharing) >= t}
    signers = alive[4] & masked
    # A signer releases shares only if at least t of its neighbours signed the same sets.
    replying = {x for x in alive[5] & signers if len(set(graph[x]) & signers) >= t}
    if any(len(a) < t for a in (alive[0], alive[1], sharing, masked, signers, replying)):
        return None
    for s in masked:  # the self-mask seed of every contributor
        if len(set(graph[s]) & replying) < t:
            return None
    for d in sharing - masked:  # pair seeds of a member who shared then dropped
        if set(graph[d]) & masked and len(set(graph[d]) & replying) < t:
            return None
    return masked


# --- the unmasked sum is exact --------------------------------------------------------------------
@st.composite
def scenarios(draw):
    n = draw(st.integers(4, 16))
    bits = draw(st.sampled_from([32, 64]))
    degree = draw(
        st.one_of(st.none(), st.integers(1, (n - 1) // 2).map(lambda h: 2 * h), st.just(n - 1))
    )
    k = degree or default_degree(n)
    threshold = draw(st.one_of(st.none(), st.integers(k // 2 + 1, k)))
    d = draw(st.integers(1, 300))
    order = draw(st.permutations(NAMES[:n]))
    # mostly a few dropouts (the round should survive them), sometimes many (it should abort)
    ndrop = draw(st.one_of(st.integers(1, max(1, n // 3)), st.integers(0, n)))
    stages = draw(st.lists(st.integers(0, len(STAGES) - 1), min_size=ndrop, max_size=ndrop))
    drop = dict(zip(order, stages, strict=False))
    seed = draw(st.integers(0, 2**32 - 1))
    return n, bits, degree, threshold, d, drop, seed


@settings(deadline=None, max_examples=25)
@given(scenarios())
def test_unmasked_sum_is_exact_or_round_aborts(keys, scenario):
    n, bits, degree, threshold, d, drop, seed = scenario
    fp = FP32 if bits == 32 else FP64
    run = Run(keys, n, d, fp=fp, degree=degree, threshold=threshold, seed=seed)
    expected = expected_contributors(run.graph, run.t, run.ids, drop)
    if expected is None:
        event("aborted")
        with pytest.raises(RoundAbortedError):
            run.run(drop)
        assert run.server.finished
        with pytest.raises((RoundAbortedError, LocalProtocolError)):
            run.server.finish(run.ids)  # nothing is released afterwards either
        return
    event(f"completed with {n - len(expected)} dropped")
    total = run.run(drop)
    assert set(run.server.masked) == expected
    assert total.dtype == fp.dtype
    np.testing.assert_array_equal(total, run.expected_sum(expected))
    for reply in run.server.unmask.values():  # never both kinds of share of one member
        assert not set(reply.self_owners) & set(reply.pair_owners)


@pytest.mark.parametrize("fp", [FP64, FP32], ids=["64bit", "32bit"])
@pytest.mark.parametrize("stage", [*STAGES, None])
def test_one_dropout_at_each_stage(keys, stage, fp):
    run = Run(keys, 8, 5, fp=fp)
    drop = {} if stage is None else {"m03": STAGES.index(stage)}
    total = run.run(drop)
    contributors = [m for m in run.ids if drop.get(m, NEVER) > STAGES.index("masked")]
    assert sorted(run.server.masked) == contributors
    np.testing.assert_array_equal(total, run.expected_sum(contributors))
    result, sends = run.server.finish(run.ids)
    assert result.contributors == tuple(contributors)
    assert result.samples == sum(run.weights[m] for m in contributors)
    w = np.array([run.weights[m] for m in contributors], dtype=np.float64)
    x = np.array([np.clip(run.vectors[m], -fp.clip, fp.clip) for m in contributors])
    mean = (w[:, None] * x).sum(axis=0) / w.sum()
    np.testing.assert_allclose(result.params, mean, atol=2.0**-fp.scale_bits + 1e-6)
    assert len(sends) == len(run.ids)
    if stage is not None:
        assert "m03" in result.dropped


def test_dropouts_that_leave_a_seed_unrecoverable_abort(keys):
    run = Run(keys, 6, 3, degree=4, threshold=3)
    target = "m00"
    # all but two of m00's neighbours vanish after sending their masked input
    drop = dict.fromkeys(run.graph[target][:2], STAGES.index("unmask"))
    assert expected_contributors(run.graph, run.t, run.ids, drop) is None
    with pytest.raises(RoundAbortedError):
        run.run(drop)
    with pytest.raises(RoundAbortedError):
        run.server.finish(run.ids)


def test_too_few_advertisers_abort_at_once(keys):
    run = Run(keys, 5, 3)
    with pytest.raises(RoundAbortedError):
        run.step(skip=run.ids[: 5 - run.t + 1])
    assert run.server.finished
    with pytest.raises(LocalProtocolError):
        run.server.advance()
    with pytest.raises(LocalProtocolError):
        run.server.finish(run.ids)


# --- what the coordinator sees --------------------------------------------------------------------
def masked_of(run: Run, member: str) -> np.ndarray:
    run.steps(3)  # advertise, encaps, shares
    run.step()  # masked inputs in
    return run.server.masked[member].masked


def top_byte_pvalue(words: np.ndarray) -> float:
    shift = np.array(words.dtype.itemsize * 8 - 8, dtype=words.dtype)
    counts = np.bincount((words >> shift).astype(np.int64), minlength=256)
    expected = len(words) / 256
    return float(chi2.sf(((counts - expected) ** 2 / expected).sum(), 255))


def bit_mean(words: np.ndarray) -> float:
    return float(np.unpackbits(np.ascontiguousarray(words).view(np.uint8)).mean())


@pytest.mark.parametrize("fp", [FP64, FP32], ids=["64bit", "32bit"])
def test_masked_input_looks_uniform(keys, fp):
    d = 4095
    zeros = {m: np.zeros(d) for m in NAMES[:4]}
    run = Run(keys, 4, d, fp=fp, vectors=zeros, weights=dict.fromkeys(NAMES[:4], 1))
    plain = run.encoded("m00")
    # the checks below do fail on the unmasked encoding
    assert abs(bit_mean(plain) - 0.5) > 0.4
    assert top_byte_pvalue(plain) < 1e-6
    y = masked_of(run, "m00")
    assert y.dtype == fp.dtype
    assert y.shape == (d + 1,)
    assert abs(bit_mean(y) - 0.5) < 0.01
    assert top_byte_pvalue(y) > 1e-6
    # the weight word is masked too
    assert y[-1] != 1


def test_same_input_gives_fresh_masks(keys):
    a = masked_of(Run(keys, 4, 300, seed=5), "m01")
    b = masked_of(Run(keys, 4, 300, seed=5), "m01")
    assert np.count_nonzero(a == b) <= 1


def test_coordinator_sees_no_share_in_the_clear(keys):
    run = Run(keys, 6, 2)
    run.steps(4)
    relayed = b"".join(
        c
        for _, r in run.all_replies
        if hasattr(r, "ciphertexts")
        for c in r.ciphertexts
        if isinstance(c, bytes)
    )
    assert len(relayed) > 6 * shamir.SHARE_BYTES
    for m in run.ids:
        assert run.members[m]._received
        for held in run.members[m]._received.values():
            assert held.self_share not in relayed
            assert held.pair_shares[: shamir.SHARE_BYTES] not in relayed


def test_t_minus_1_colluding_neighbours_learn_no_seed(keys):
    run = Run(keys, 8, 2)
    run.steps(4)  # shares are distributed and opened
    t = run.t
    assert 2 * t > len(run.graph["m00"])
    for target in ("m00", "m05"):
        owner = run.members[target]
        holders = run.graph[target]
        for colluders in (holders[: t - 1], holders[-(t - 1) :]):
            pts = [
                (run.members[c].share_point(target), run.members[c]._received[target].self_share)
                for c in colluders
            ]
            try:
                guess = shamir.combine(pts, t - 1)
            except ShareError:
                guess = None
            assert guess != owner._self_seed
            # with one more holder the seed does come out (the test would see a leak)
            extra = next(h for h in holders if h not in colluders)
            pts.append(
                (
                    run.members[extra].share_point(target),
                    run.members[extra]._received[target].self_share,
                )
            )
            assert shamir.combine(pts, t) == owner._self_seed
            # the same for its pairwise seed with an honest neighbour
            j = holders.index(extra)
            peer = extra
            k = shamir.SHARE_BYTES
            pair_pts = [
                (
                    run.members[c].share_point(target),
                    run.members[c]._received[target].pair_shares[j * k : (j + 1) * k],
                )
                for c in colluders
            ]
            try:
                guess = shamir.combine(pair_pts, t - 1)
            except ShareError:
                guess = None
            assert guess != owner._mask_seed(peer)


def test_equivocating_coordinator_cannot_get_both_halves(keys):
    """Telling some neighbours of u that u survived and the others that it dropped: each member
    signs the sets it was shown, and releases shares only when at least t of its neighbours
    signed the very same sets. With t > k/2, neither view gathers enough signatures."""
    run = Run(keys, 8, 2)
    run.steps(4)  # masked inputs in; consistency checks pending
    u = "m00"
    nb = run.graph[u]
    survivors = tuple(sorted(run.server.masked))
    half = len(nb) // 2
    views = {w: (survivors, ()) for w in nb[:half]}
    views |= {w: (tuple(s for s in survivors if s != u), (u,)) for w in nb[half:]}
    sigs: dict[tuple, dict[str, bytes]] = {}
    for w, (S, D) in views.items():
        (reply,) = run.members[w].receive(ConsistencyCheck(round=1, survivors=S, dropped=D))
        sigs.setdefault((S, D), {})[w] = reply.signature
    released = 0
    for w, (S, D) in views.items():
        signers = tuple(sorted(sigs[(S, D)]))
        req = UnmaskRequest(round=1, survivors=S, dropped=D, signers=signers,
                            signatures=tuple(sigs[(S, D)][x] for x in signers))  # fmt: skip
        try:
            run.members[w].receive(req)
            released += 1
        except RemoteProtocolError as exc:
            assert "signed these survivor sets" in str(exc)
    assert released == 0


def _coordinator_view_of(run: Run, x: str, relay_to_x: SharesRelay | None) -> np.ndarray | None:
    """Run the round from the shares relay on, optionally replacing x's relay; then do what a
    curious coordinator can: rebuild x's self-mask seed from the unmask replies (x ∈ S) and
    strip PRG(b_x) from y_x. None if x refused to go on."""
    replies = []
    for s in run.sends:
        msg = relay_to_x if s.to == x and relay_to_x is not None else s.message
        try:
            replies += [(s.to, wire(r)) for r in run.members[s.to].receive(wire(msg))]
        except RemoteProtocolError:
            assert s.to == x
            return None
    run.submit(replies)
    run.advance()
    run.step()  # consistency
    run.step()  # unmask
    pts = [
        (run.graph[x].index(w) + 1, r.self_shares[r.self_owners.index(x)])
        for w, r in run.server.unmask.items()
        if x in r.self_owners
    ]
    seed = shamir.combine(pts, run.t)
    y = run.server.masked[x].masked
    return y - expand_mask(seed, len(y), run.fp)


def test_self_mask_alone_does_not_expose_a_survivor(keys):
    """Honest relay: even knowing b_x (released for x ∈ S), y_x - PRG(b_x) is still hidden by
    x's pairwise masks."""
    run = Run(keys, 8, 4)
    run.steps(3)
    view = _coordinator_view_of(run, "m00", None)
    assert view is not None
    assert np.count_nonzero(view == run.encoded("m00")) <= 1


def test_withholding_shares_does_not_expose_a_member(keys):
    run = Run(keys, 8, 4)
    run.steps(3)
    x = "m00"
    # x refuses to mask with fewer than t neighbours' shares, so it never sends an input.
    assert _coordinator_view_of(run, x, SharesRelay(round=1, senders=(), ciphertexts=())) is None


# --- members' unmasking rules ---------------------------------------------------------------------
@pytest.fixture
def at_check(keys) -> Run:
    run = Run(keys, 8, 2)
    run.steps(4)  # consistency checks pending
    return run


@pytest.fixture
def at_unmask(keys) -> Run:
    run = Run(keys, 8, 2)
    run.steps(5)  # signed unmask requests pending
    return run


def test_unmask_request_accepted_once(at_unmask):
    run = at_unmask
    m = "m02"
    req = run.message_for(m)
    assert isinstance(req, UnmaskRequest)
    (reply,) = run.members[m].receive(wire(req))
    assert isinstance(reply, UnmaskReply)
    assert set(reply.self_owners) == set(run.graph[m])
    assert reply.pair_owners == ()
    with pytest.raises(RemoteProtocolError):
        run.members[m].receive(wire(req))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda r, m: dataclasses.replace(
                r, dropped=(r.survivors[-1],), survivors=r.survivors[:-1]
            ),
            id="other-sets",
        ),
        pytest.param(
            lambda r, m: dataclasses.replace(r, signers=r.signers[:2], signatures=r.signatures[:2]),
            id="too-few-signatures",
        ),
        pytest.param(
            lambda r, m: dataclasses.replace(
                r, signatures=(flip(r.signatures[0], 5), *r.signatures[1:])
            ),
            id="forged-signature",
        ),
        pytest.param(
            lambda r, m: dataclasses.replace(r, signers=(*r.signers[1:], r.signers[0])),
            id="signatures-shuffled",
        ),
    ],
)
def test_unmask_request_must_carry_the_signed_sets(at_unmask, change):
    run = at_unmask
    m = "m02"
    with pytest.raises(RemoteProtocolError):
        run.members[m].receive(change(run.message_for(m), m))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda s, m, o: (s, (o,)), id="survived-and-dropped"),
        pytest.param(lambda s, m, o: (tuple(x for x in s if x != m), ()), id="not-a-survivor"),
        pytest.param(lambda s, m, o: ((m, o), ()), id="below-threshold"),
        pytest.param(lambda s, m, o: ((*s, o), ()), id="survivor-twice"),
        pytest.param(lambda s, m, o: (tuple(x for x in s if x != o), (o, o)), id="dropped-twice"),
        pytest.param(lambda s, m, o: ((*s, "stranger"), ()), id="non-participant"),
    ],
)
def test_unsafe_survivor_sets_are_refused(at_check, make):
    run = at_check
    m = "m02"
    other = run.graph[m][0]
    survivors, dropped = make(tuple(sorted(run.server.masked)), m, other)
    with pytest.raises(RemoteProtocolError):
        run.members[m].receive(ConsistencyCheck(round=1, survivors=survivors, dropped=dropped))


def test_member_stops_after_a_refused_request(at_check):
    run = at_check
    m = "m02"
    with pytest.raises(RemoteProtocolError):
        run.members[m].receive(ConsistencyCheck(round=1, survivors=(m,), dropped=()))
    with pytest.raises(RemoteProtocolError):
        run.members[m].receive(wire(run.message_for(m)))


# --- tampering, substitution and replay --------------------------------------------------------
def intercept(run: Run, who: str, change: Callable[[codec.Message], codec.Message]) -> None:
    """Deliver the current stage, replacing ``who``'s reply by ``change(reply)``; the altered
    reply must be refused and ``who`` excluded; everyone else's goes through."""
    replies = run.replies()
    for m, r in replies:
        if m == who:
            with pytest.raises(RemoteProtocolError):
                run.server.receive(m, wire(change(r)))
            assert m not in run.server.alive
            assert m in run.server.dropped
        else:
            run.server.receive(m, r)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda a: dataclasses.replace(a, signature=flip(a.signature)), id="sig"),
        pytest.param(lambda a: dataclasses.replace(a, signature=flip(a.signature, 100)), id="ml"),
        pytest.param(lambda a: dataclasses.replace(a, x25519=flip(a.x25519, 3)), id="x25519"),
        pytest.param(lambda a: dataclasses.replace(a, mlkem=flip(a.mlkem, 9)), id="mlkem"),
        pytest.param(lambda a: dataclasses.replace(a, mlkem=a.mlkem[:-1]), id="short-key"),
    ],
)
def test_forged_advertise_is_rejected_by_the_coordinator(keys, change):
    run = Run(keys, 6, 2)
    intercept(run, "m01", change)
    run.advance()
    assert "m01" not in run.server.adverts
    assert all("m01" not in msg.members for msg in (s.message for s in run.sends))


def test_advertise_signed_by_someone_else_is_rejected(keys):
    run = Run(keys, 6, 2)
    replies = dict(run.replies())
    a = replies["m01"]
    # m02 signs m01's keys as if it were m01's advertisement
    payload = advertise_payload("c", 1, "m01", HybridPublic(a.x25519, a.mlkem))
    forged = dataclasses.replace(a, signature=keys["m02"].sign(payload, b"secagg/advertise"))
    with pytest.raises(RemoteProtocolError):
        run.server.receive("m01", wire(forged))
    with pytest.raises(RemoteProtocolError):  # another member's own advertisement, replayed
        run.server.receive("m03", replies["m02"])


def test_second_advertise_is_refused(keys):
    run = Run(keys, 6, 2)
    replies = run.replies()
    run.submit(replies)
    sender, advert = replies[0]
    with pytest.raises(RemoteProtocolError):
        run.server.receive(sender, advert)
    with pytest.raises(RemoteProtocolError):
        run.server.receive("outsider", advert)


def substitute(keys_msg: Keys, i: int, **fields: bytes) -> Keys:
    lists = {f: list(getattr(keys_msg, f)) for f in ("x25519", "mlkem", "signatures")}
    for f, v in fields.items():
        lists[f][i] = v
    return dataclasses.replace(keys_msg, **{f: tuple(v) for f, v in lists.items()})


@pytest.mark.parametrize("field", ["x25519", "mlkem", "both", "signature"])
def test_member_detects_key_substitution(keys, field):
    run = Run(keys, 6, 2)
    run.step()
    v = "m02"
    msg = run.message_for(v)
    assert isinstance(msg, Keys)
    attacker = HybridKeyPair().public
    new = {
        "x25519": {"x25519": attacker.x25519},
        "mlkem": {"mlkem": attacker.mlkem},
        "both": {"x25519": attacker.x25519, "mlkem": attacker.mlkem},
        "signature": {"signatures": flip(msg.signatures[0], 5)},
    }[field]
    with pytest.raises(RemoteProtocolError) as info:
        run.members[v].receive(wire(substitute(msg, 0, **new)))
    assert isinstance(info.value.__cause__, SignatureError)
    with pytest.raises(RemoteProtocolError):  # the member has left the round
        run.members[v].receive(wire(msg))


@pytest.mark.parametrize(("round", "consortium"), [(2, "c"), (1, "other")])
def test_advertisement_from_another_round_is_refused(keys, round, consortium):
    old = Run(keys, 6, 2, round=round, consortium=consortium)
    old_adverts = dict(old.replies())
    run = Run(keys, 6, 2)
    run.step()
    v = "m02"
    msg = run.message_for(v)
    u = msg.members[0]
    a = old_adverts[u]
    with pytest.raises(RemoteProtocolError) as info:
        run.members[v].receive(
            wire(substitute(msg, 0, x25519=a.x25519, mlkem=a.mlkem, signatures=a.signature))
        )
    assert isinstance(info.value.__cause__, SignatureError)
    # the coordinator refuses it too, whether or not the round field is rewritten
    run2 = Run(keys, 6, 2, round=round + 10, consortium=consortium)
    with pytest.raises(RemoteProtocolError):
        run2.server.receive(u, a)
    assert u in run2.server.alive  # a stale message is dropped, not held against the member
    with pytest.raises(RemoteProtocolError):
        run2.server.receive(u, dataclasses.replace(a, round=round + 10))
    assert u not in run2.server.alive


@pytest.mark.parametrize("stage", range(1, len(STAGES)))
def test_member_refuses_messages_for_another_round(keys, stage):
    run = Run(keys, 6, 2)
    run.steps(stage)
    v = "m02"
    msg = run.message_for(v)
    for other in (0, 2, 2**40):
        with pytest.raises(RemoteProtocolError):
            run.members[v].receive(wire(dataclasses.replace(msg, round=other)))


def test_member_refuses_out_of_stage_messages(keys):
    run = Run(keys, 6, 2)
    setup = run.message_for("m02")
    run.step()
    with pytest.raises(RemoteProtocolError):
        run.members["m03"].receive(setup)  # a second setup
    with pytest.raises(RemoteProtocolError):
        run.members["m04"].receive(
            UnmaskRequest(round=1, survivors=run.ids, dropped=(), signers=(), signatures=())
        )
    (advert,) = [r for m, r in run.all_replies if m == "m01"]
    with pytest.raises(RemoteProtocolError):  # a member-to-coordinator message
        run.members["m05"].receive(advert)


@pytest.mark.parametrize("stage", STAGES)
def test_coordinator_refuses_replies_for_another_round(keys, stage):
    run = Run(keys, 6, 2)
    run.steps(STAGES.index(stage))
    (m, reply), *rest = run.replies()
    for other in (0, 2):
        with pytest.raises(RemoteProtocolError):
            run.server.receive(m, wire(dataclasses.replace(reply, round=other)))
    assert m in run.server.alive  # stale, not held against the member
    run.submit([(m, reply), *rest])
    assert run.server.pending == frozenset()


def test_keys_for_a_non_neighbour_or_twice_are_refused(keys):
    run = Run(keys, 8, 2, degree=4)
    run.step()
    v = "m02"
    msg = run.message_for(v)
    stranger = next(m for m in run.ids if m != v and m not in run.graph[v])
    stranger_keys = run.message_for(run.graph[stranger][0])
    i = stranger_keys.members.index(stranger)
    bad = Keys(
        round=1,
        members=(*msg.members, stranger),
        x25519=(*msg.x25519, stranger_keys.x25519[i]),
        mlkem=(*msg.mlkem, stranger_keys.mlkem[i]),
        signatures=(*msg.signatures, stranger_keys.signatures[i]),
    )
    with pytest.raises(RemoteProtocolError):
        run.members[v].receive(wire(bad))
    v = "m03"  # a member that has not seen a bad message yet
    msg = run.message_for(v)
    twice = Keys(
        round=1,
        members=(*msg.members, msg.members[0]),
        x25519=(*msg.x25519, msg.x25519[0]),
        mlkem=(*msg.mlkem, msg.mlkem[0]),
        signatures=(*msg.signatures, msg.signatures[0]),
    )
    with pytest.raises(RemoteProtocolError):
        run.members[v].receive(wire(twice))


def relay_with_a_lower_sender(run: Run) -> tuple[str, EncapsRelay]:
    for s in run.sends:
        if isinstance(s.message, EncapsRelay) and s.message.senders:
            return s.to, s.message
    raise AssertionError("no member has a lower-named neighbour")


def _tamper_ct(r: EncapsRelay, v: str) -> EncapsRelay:
    j = r.recipients[0].index(v)
    cts = list(r.ciphertexts[0])
    cts[j] = flip(cts[j], 77)
    return dataclasses.replace(r, ciphertexts=(tuple(cts), *r.ciphertexts[1:]))


def _fresh_ct(r: EncapsRelay, v: str, run: Run) -> EncapsRelay:
    # the coordinator encapsulates to v itself: it would know the ML-KEM half of the secret
    ct, _ = HybridKeyPair().encapsulate_to(run.members[v]._keys.public, "secagg/pair", b"")
    j = r.recipients[0].index(v)
    cts = list(r.ciphertexts[0])
    cts[j] = ct
    return dataclasses.replace(r, ciphertexts=(tuple(cts), *r.ciphertexts[1:]))


@pytest.mark.parametrize("how", ["ciphertext", "fresh-ciphertext", "signature", "recipients"])
def test_member_detects_tampered_encapsulation(keys, how):
    run = Run(keys, 6, 2)
    run.steps(2)
    v, relay = relay_with_a_lower_sender(run)
    if how == "ciphertext":
        bad = _tamper_ct(relay, v)
    elif how == "fresh-ciphertext":
        bad = _fresh_ct(relay, v, run)
    elif how == "signature":
        bad = dataclasses.replace(
            relay, signatures=(flip(relay.signatures[0], 3), *relay.signatures[1:])
        )
    else:  # claim the lower neighbour also sent a ciphertext to someone else
        extra = next(m for m in run.ids if m not in relay.recipients[0])
        bad = dataclasses.replace(
            relay,
            recipients=((*relay.recipients[0], extra), *relay.recipients[1:]),
            ciphertexts=((*relay.ciphertexts[0], relay.ciphertexts[0][0]), *relay.ciphertexts[1:]),
        )
    with pytest.raises(RemoteProtocolError) as info:
        run.members[v].receive(wire(bad))
    assert isinstance(info.value.__cause__, SignatureError)


def test_coordinator_rejects_tampered_encaps(keys):
    run = Run(keys, 6, 2)
    run.step()
    senders = [m for m in run.ids if any(v > m for v in run.graph[m])]
    who = senders[0]

    def change(e: Encaps) -> Encaps:
        return dataclasses.replace(e, ciphertexts=(flip(e.ciphertexts[0], 1), *e.ciphertexts[1:]))

    intercept(run, who, change)


@pytest.mark.parametrize("how", ["ciphertext", "swap-senders", "misdirected"])
def test_member_detects_tampered_shares(keys, how):
    run = Run(keys, 6, 2)
    run.steps(3)
    v = "m02"
    relay = run.message_for(v)
    assert isinstance(relay, SharesRelay)
    assert len(relay.senders) >= 2
    cts = list(relay.ciphertexts)
    if how == "ciphertext":
        cts[1] = flip(cts[1], 40)
        bad = dataclasses.replace(relay, ciphertexts=tuple(cts))
    elif how == "swap-senders":
        bad = dataclasses.replace(relay, ciphertexts=(cts[1], cts[0], *cts[2:]))
    else:  # a ciphertext addressed to another member, passed off as this member's
        w = next(m for m in run.ids if m != v and relay.senders[0] in run.graph[m])
        other = run.message_for(w)
        ct = other.ciphertexts[other.senders.index(relay.senders[0])]
        bad = dataclasses.replace(relay, ciphertexts=(ct, *cts[1:]))
    with pytest.raises(RemoteProtocolError) as info:
        run.members[v].receive(wire(bad))
    assert isinstance(info.value.__cause__, DecryptionError)


def test_coordinator_rejects_shares_outside_the_neighbourhood(keys):
    run = Run(keys, 8, 2, degree=4)
    run.steps(2)
    who = "m00"
    stranger = next(m for m in run.ids if m != who and m not in run.graph[who])

    def change(s):
        return dataclasses.replace(
            s, recipients=(*s.recipients, stranger), ciphertexts=(*s.ciphertexts, s.ciphertexts[0])
        )

    intercept(run, who, change)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda m: dataclasses.replace(m, masked=m.masked[:-1]), id="short"),
        pytest.param(
            lambda m: dataclasses.replace(m, masked=np.append(m.masked, m.masked[:1])), id="long"
        ),
        pytest.param(
            lambda m: dataclasses.replace(m, masked=m.masked.astype(np.uint32)), id="dtype"
        ),
        pytest.param(lambda m: dataclasses.replace(m, clipped=10**6), id="clipped-count"),
    ],
)
def test_malformed_masked_input_excludes_the_member(keys, change):
    run = Run(keys, 8, 4)
    run.steps(3)
    intercept(run, "m04", change)
    run.advance()
    run.step()  # consistency
    run.step()  # unmask: m04 counts as dropped after sharing
    assert run.sends is None
    survivors = [m for m in run.ids if m != "m04"]
    assert sorted(run.server.masked) == survivors
    np.testing.assert_array_equal(run.server.unmasked_sum(), run.expected_sum(survivors))


def _add_self(r: UnmaskReply, owner: str, share: bytes) -> UnmaskReply:
    return dataclasses.replace(
        r, self_owners=(*r.self_owners, owner), self_shares=(*r.self_shares, share)
    )


def _add_pair(r: UnmaskReply, owner: str, share: bytes) -> UnmaskReply:
    return dataclasses.replace(
        r, pair_owners=(*r.pair_owners, owner), pair_shares=(*r.pair_shares, share)
    )


@pytest.mark.parametrize(
    "what", ["self-of-stranger", "self-of-dropped", "pair-of-survivor", "both", "short", "lists"]
)
def test_unmask_reply_with_shares_it_should_not_have_is_refused(keys, what):
    run = Run(keys, 8, 2, degree=4)
    gone = "m07"
    run.steps(3)
    run.step(skip=[gone])  # m07 shared, then dropped before masking
    run.step()  # consistency
    who = next(m for m in run.graph[gone] if m in run.server.masked)
    stranger = next(m for m in run.server.masked if m != who and who not in run.graph[m])
    survivor_nb = next(m for m in run.graph[who] if m in run.server.masked)
    k = shamir.SHARE_BYTES

    def change(r: UnmaskReply) -> UnmaskReply:
        if what == "self-of-stranger":
            return _add_self(r, stranger, bytes(k))
        if what == "self-of-dropped":  # instead of its pairwise shares
            i = r.pair_owners.index(gone)
            r = dataclasses.replace(
                r,
                pair_owners=r.pair_owners[:i] + r.pair_owners[i + 1 :],
                pair_shares=r.pair_shares[:i] + r.pair_shares[i + 1 :],
            )
            return _add_self(r, gone, bytes(k))
        if what == "pair-of-survivor":
            return _add_pair(r, survivor_nb, bytes(k * len(run.graph[survivor_nb])))
        if what == "both":
            return _add_self(r, gone, bytes(k))
        if what == "short":
            i = r.self_owners.index(survivor_nb)
            shares = list(r.self_shares)
            shares[i] = shares[i][:-1]
            return dataclasses.replace(r, self_shares=tuple(shares))
        return dataclasses.replace(r, self_shares=r.self_shares[:-1])

    intercept(run, who, change)


# --- neighbourhoods -------------------------------------------------------------------------------
@settings(deadline=None, max_examples=60)
@given(st.integers(2, 40).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n - 1))))
def test_neighbourhoods_are_a_symmetric_regular_graph(case):
    n, degree = case
    names = [f"p{i:03d}" for i in range(n)]
    if degree % 2 and n % 2:
        with pytest.raises(ConfigError, match="odd degree"):
            neighbourhoods("c", 7, names, degree)
        return
    g = neighbourhoods("c", 7, names, degree)
    assert set(g) == set(names)
    for u, nb in g.items():
        assert u not in nb
        assert list(nb) == sorted(set(nb))
        for v in nb:
            assert u in g[v]
        if degree % 2 == 0 or n % 2 == 0:
            assert len(nb) == degree
    assert neighbourhoods("c", 7, list(reversed(names)), degree) == g  # order of listing


def test_neighbourhoods_depend_on_round_and_consortium():
    names = [f"p{i:03d}" for i in range(20)]
    g = neighbourhoods("c", 1, names, 4)
    assert neighbourhoods("c", 1, names, 4) == g
    assert any(neighbourhoods("c", r, names, 4) != g for r in range(2, 6))
    assert neighbourhoods("c", 2, names, 4) != g
    assert neighbourhoods("d", 1, names, 4) != g


def test_complete_graph_when_degree_is_n_minus_1():
    for n in (2, 3, 4, 7, 10):
        names = [f"p{i}" for i in range(n)]
        g = neighbourhoods("c", 1, names, n - 1)
        assert all(set(nb) == set(names) - {u} for u, nb in g.items())


def test_neighbourhoods_reject_bad_arguments():
    with pytest.raises(ConfigError):
        neighbourhoods("c", 1, ["a", "b", "a"], 1)
    with pytest.raises(ConfigError):
        neighbourhoods("c", 1, ["a", "b", "c"], 3)
    with pytest.raises(ConfigError):
        neighbourhoods("c", 1, ["a", "b", "c"], 0)


def test_default_degree():
    assert default_degree(1) == 0
    assert default_degree(2) == 1
    assert default_degree(4) == 3
    assert default_degree(5) == 4
    assert default_degree(8) == 6
    assert default_degree(16) == 8
    assert default_degree(17) == 10
    assert default_degree(1000) == 20
    for n in range(2, 300):
        k = default_degree(n)
        assert 1 <= k <= n - 1
        assert k % 2 == 0 or k == n - 1
        # the graph it gives really has that degree
        if n <= 40:
            g = neighbourhoods("c", 1, [f"p{i}" for i in range(n)], k)
            assert {len(nb) for nb in g.values()} == {k}


# --- fixed-point encoding -------------------------------------------------------------------------
@settings(deadline=None, max_examples=50)
@given(
    st.sampled_from([FP64, FP32, FixedPoint(scale_bits=0, clip=3.0)]),
    st.lists(st.floats(-1, 1), min_size=1, max_size=50),
    st.integers(1, 100),
    st.integers(0, 2**32),
)
def test_fixed_point_round_trip(fp, xs, weight, seed):
    x = np.array(xs) * fp.clip
    words, clipped = fp.encode(x, weight, np.random.default_rng(seed))
    assert clipped == 0
    assert words.dtype == fp.dtype
    assert words.shape == (len(x) + 1,)
    assert int(words[-1]) == weight
    mean, total = fp.decode_sum(words)
    assert total == weight
    assert np.all(np.abs(mean - x) <= 2.0**-fp.scale_bits + 1e-6 * fp.clip)


def test_fixed_point_sum_of_members_decodes_to_the_weighted_mean():
    fp = FP32
    rng = np.random.default_rng(1)
    xs = [rng.uniform(-1, 1, 20) for _ in range(5)]
    ws = [3, 1, 7, 2, 9]
    total = sum(
        (fp.encode(x, w, rng)[0] for x, w in zip(xs, ws, strict=True)), np.zeros(21, fp.dtype)
    )
    mean, weight = fp.decode_sum(total)
    assert weight == sum(ws)
    expect = sum(w * x for x, w in zip(xs, ws, strict=True)) / sum(ws)
    np.testing.assert_allclose(mean, expect, atol=2.0**-fp.scale_bits)


def test_negative_values_are_twos_complement():
    fp = FixedPoint(modulus_bits=32, scale_bits=4, clip=2.0)
    words, _ = fp.encode(np.array([-1.0, 1.0, 0.0]), 1, np.random.default_rng(0))
    assert words.tolist() == [2**32 - 16, 16, 0, 1]


def test_stochastic_rounding_is_unbiased():
    fp = FixedPoint(modulus_bits=64, scale_bits=2, clip=4.0)
    x = 0.25 + 0.3 * 0.25  # 0.3 of a quantum above a representable value
    n = 20_000
    words, _ = fp.encode(np.full(n, x), 1, np.random.default_rng(3))
    values = words[:-1].view(np.int64) / 4.0
    assert set(values.tolist()) == {0.25, 0.5}
    # bias of always rounding down would be 0.075; the standard error here is ~0.0016
    assert abs(values.mean() - x) < 0.01


def test_clipping_is_counted_and_applied():
    fp = FixedPoint(modulus_bits=64, scale_bits=10, clip=1.0)
    x = np.array([0.5, 3.0, -2.0, -1.0, 1.0, 9.0])
    words, clipped = fp.encode(x, 1, np.random.default_rng(0))
    assert clipped == 3  # |x| exactly at the clip is not clipped
    mean, _ = fp.decode_sum(words)
    np.testing.assert_array_equal(mean, [0.5, 1.0, -1.0, -1.0, 1.0, 1.0])
    with pytest.raises(ClippingError):
        dataclasses.replace(fp, policy="reject").encode(x, 1, np.random.default_rng(0))
    _, c = dataclasses.replace(fp, policy="reject").encode(
        x[[0, 3, 4]], 1, np.random.default_rng(0)
    )
    assert c == 0


def test_nan_is_not_silently_encoded():
    fp = FixedPoint(policy="reject")
    x = np.array([0.5, np.nan])
    for policy in ("reject", "clip"):
        with pytest.raises(GuardiansError, match="non-finite"):
            dataclasses.replace(fp, policy=policy).encode(x, 1, np.random.default_rng(0))


def test_check_capacity():
    fp = FP32  # 2^31 / (1.0 * 2^8) = 2^23 units of weight
    fp.check_capacity(2**23 - 1)
    with pytest.raises(ConfigError):
        fp.check_capacity(2**23)
    FP64.check_capacity(2**39 - 1)  # 2^63 / (8 * 2^20)
    with pytest.raises(ConfigError):
        FP64.check_capacity(2**40)
    # at the capacity limit the extreme sums really do not wrap
    w = 2**23 - 1
    words, _ = fp.encode(np.array([-1.0, 1.0]), w, np.random.default_rng(0))
    mean, total = fp.decode_sum(words)
    np.testing.assert_array_equal(mean, [-1.0, 1.0])
    assert total == w


def test_secure_round_checks_capacity(keys):
    with pytest.raises(ConfigError):
        SecureRound(
            consortium="c",
            round=1,
            selected=NAMES[:4],
            directory={m: keys[m].verify_key for m in NAMES[:4]},
            global_params=np.zeros(3, np.float32),
            train=TrainConfig(),
            fixed_point=FP32,
        )


def test_fixed_point_rejects_bad_configuration():
    for kwargs in (
        {"modulus_bits": 16},
        {"modulus_bits": 32, "scale_bits": 30},
        {"scale_bits": -1},
        {"clip": 0.0},
        {"policy": "wrap"},
    ):
        with pytest.raises(ConfigError):
            FixedPoint(**kwargs)


def test_setup_message_is_as_sent(keys):
    run = Run(keys, 5, 3, fp=FP32)
    setup = run.message_for("m00")
    assert isinstance(setup, SecAggSetup)
    assert (setup.modulus_bits, setup.scale_bits, setup.clip, setup.dim) == (32, 8, 1.0, 3)
    assert setup.participants == run.ids
    (advert,) = run.members["m00"].receive(wire(setup))
    assert isinstance(advert, Advertise)
    assert advert.round == 1


# --- integrity: masks that do not cancel are caught ----------------------------------------------
def test_withheld_share_bundle_makes_the_round_abort_not_lie(keys):
    """Dropping one authentic bundle from one member's relay (it still has >= t) makes that
    member skip one pairwise mask its neighbour applies: the sum would be garbage. The weight
    word exposes it and no aggregate is released."""
    run = Run(keys, 8, 4)
    run.steps(3)  # shares relays pending
    x = "m00"
    relay = run.message_for(x)
    assert isinstance(relay, SharesRelay) and len(relay.senders) > run.t
    cut = SharesRelay(round=1, senders=relay.senders[1:], ciphertexts=relay.ciphertexts[1:])
    run.sends = [Send(s.to, cut) if s.to == x else s for s in run.sends]
    run.step()  # masked inputs
    run.step()  # consistency
    run.step()  # unmask
    assert run.sends is None
    with pytest.raises(RoundAbortedError, match="impossible"):
        run.server.finish(run.ids)


def test_member_refuses_a_weight_above_the_declared_maximum(keys):
    ids = NAMES[:4]
    directory = {m: keys[m].verify_key for m in ids}
    member = SecAggMember(
        member="m00", consortium="c", identity=keys["m00"], directory=directory,
        vector=np.zeros(3, np.float32), weight=5000,
    )  # fmt: skip
    setup = SecAggSetup(round=1, participants=ids, degree=2, threshold=2, modulus_bits=64,
                        scale_bits=20, clip=8.0, dim=3, max_weight=1000)  # fmt: skip
    with pytest.raises(RemoteProtocolError, match="weight 5000"):
        member.receive(setup)


def test_clipped_coordinates_are_reported_in_the_round_result(keys):
    vectors = {m: np.zeros(4) for m in NAMES[:6]}
    vectors["m02"] = np.array([0.0, 100.0, -100.0, 0.5])  # two beyond the ±8 clip
    run = Run(keys, 6, 4, vectors=vectors)
    run.run()
    result, _ = run.server.finish(run.ids)
    assert result.clipped == 2
