"""Signed checkpoints, witnesses (split view, rollback) and the client quorum rule."""

import base64

import pytest

from guardians.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    ConflictError,
    TransparencyLog,
    Witness,
    accept_checkpoint,
)
from guardians.ledger.merkle import MerkleTree
from guardians.ledger.note import (
    EM_DASH,
    Cosigner,
    NoteError,
    NoteSigner,
    SignedNote,
    key_id,
)
from guardians.ledger.store import LogStore

ORIGIN = "guardians.example/log"


@pytest.fixture
def log(tmp_path):
    store = LogStore(tmp_path / "log.db")
    return TransparencyLog(store, ORIGIN, NoteSigner(ORIGIN))


@pytest.fixture
def witnesses(log):
    cos = [Cosigner(f"member-{i}.example/witness") for i in range(3)]
    return [Witness(c, {ORIGIN: log.signer.verifier()}) for c in cos]


def cosign_all(log, witnesses, note, old_size):
    proof = log.store.consistency_proof(old_size) if old_size else []
    for w in witnesses:
        note = w.add_checkpoint(old_size, proof, note, timestamp=1_700_000_000)
    return note


def test_checkpoint_text_round_trip_and_signed_note_format(log):
    log.store.append_batch([b"a", b"b", b"c"])
    note = log.checkpoint()
    text = note.format()
    lines = text.split("\n")
    assert lines[0] == ORIGIN and lines[1] == "3"
    assert base64.b64decode(lines[2]) == MerkleTree([]).root() or len(lines[2]) == 44
    assert lines[3] == "" and lines[4].startswith(EM_DASH + " " + ORIGIN + " ")
    parsed = SignedNote.parse(text)
    assert parsed == note
    cp = Checkpoint.parse_text(parsed.text)
    assert (cp.size, cp.root) == (3, log.store.root())
    blob = base64.b64decode(lines[4].split(" ")[2])
    assert blob[:4] == key_id(ORIGIN, 0x01, log.signer.public_key)


def test_quorum_of_cosignatures_is_required(log, witnesses):
    log.store.append_batch([b"x%d" % i for i in range(10)])
    note = cosign_all(log, witnesses, log.checkpoint(), 0)
    keys = [w.cosigner.key for w in witnesses]
    cp = accept_checkpoint(note, log.signer.verifier(), keys, quorum=3, origin=ORIGIN)
    assert cp.size == 10
    with pytest.raises(CheckpointError, match="quorum 4 impossible with 3 witnesses"):
        accept_checkpoint(note, log.signer.verifier(), keys, quorum=4)
    # Listing a witness twice does not let it count twice.
    with pytest.raises(CheckpointError, match="quorum 4 impossible with 3 witnesses"):
        accept_checkpoint(note, log.signer.verifier(), [*keys, keys[0]], quorum=4)
    # Strip one witness's lines: below quorum.
    stripped = SignedNote(note.text, tuple(s for s in note.signatures
                                            if s.name != witnesses[0].cosigner.name))  # fmt: skip
    with pytest.raises(CheckpointError):
        accept_checkpoint(stripped, log.signer.verifier(), keys, quorum=3)
    # A forged cosignature is an error, not just a missing one.
    bad = list(note.signatures)
    i = next(k for k, s in enumerate(bad) if s.name == witnesses[1].cosigner.name)
    sig = bytearray(bad[i].signature)
    sig[-1] ^= 1
    bad[i] = type(bad[i])(bad[i].name, bad[i].key_id, bytes(sig))
    with pytest.raises(CheckpointError, match="does not verify"):
        accept_checkpoint(SignedNote(note.text, tuple(bad)), log.signer.verifier(), keys, 1)


def test_witnesses_follow_an_honest_log(log, witnesses):
    log.store.append_batch([b"a"] * 5)
    cosign_all(log, witnesses, log.checkpoint(), 0)
    log.store.append_batch([b"b"] * 7)
    note = cosign_all(log, witnesses, log.checkpoint(), 5)
    assert all(w.latest[ORIGIN].size == 12 for w in witnesses)
    accept_checkpoint(note, log.signer.verifier(), [w.cosigner.key for w in witnesses], 3)


def test_split_view_is_detected_and_kept_as_evidence(tmp_path, log, witnesses):
    log.store.append_batch([b"a"] * 5)
    cosign_all(log, witnesses, log.checkpoint(), 0)
    # The operator forks: a second store with different history, signed with the same key.
    fork = TransparencyLog(LogStore(tmp_path / "fork.db"), ORIGIN, log.signer)
    fork.store.append_batch([b"a"] * 4 + [b"EVIL"] + [b"b"] * 3)
    forked = fork.checkpoint()
    w = witnesses[0]
    with pytest.raises(ConflictError) as exc:
        w.add_checkpoint(5, fork.store.consistency_proof(5), forked, timestamp=1)
    assert w.latest[ORIGIN].size == 5  # still the honest view
    assert exc.value.evidence["presented"] == forked.text and w.evidence


def test_a_huge_size_cannot_jam_a_witness(log, witnesses):
    log.store.append_batch([b"a"] * 3)
    w = witnesses[0]
    huge = Checkpoint(ORIGIN, 2**64, bytes(32)).text()
    with pytest.raises(CheckpointError, match="uint64"):
        w.add_checkpoint(0, [], SignedNote(huge, (log.signer.sign(huge),)), timestamp=1)
    empty = Checkpoint(ORIGIN, 0, b"\x01" * 32).text()
    with pytest.raises(CheckpointError, match="empty root"):
        w.add_checkpoint(0, [], SignedNote(empty, (log.signer.sign(empty),)), timestamp=1)
    w.add_checkpoint(0, [], log.checkpoint(), timestamp=1)  # honest checkpoints still work
    assert w.latest[ORIGIN].size == 3


def test_rollback_is_detected(log, witnesses):
    log.store.append_batch([b"a"] * 6)
    old = log.checkpoint()
    log.store.append_batch([b"b"] * 6)
    cosign_all(log, witnesses, log.checkpoint(), 0)
    with pytest.raises(ConflictError, match="shrank"):
        witnesses[0].add_checkpoint(12, [], old, timestamp=1)


def test_witness_rejects_unknown_logs_bad_signatures_and_stale_sizes(log, witnesses):
    log.store.append_batch([b"a"] * 3)
    note = log.checkpoint()
    w = witnesses[0]
    other = NoteSigner("evil.example/log")
    fake = SignedNote(note.text, (other.sign(note.text),))
    with pytest.raises(CheckpointError, match="not signed"):
        w.add_checkpoint(0, [], fake, timestamp=1)
    with pytest.raises(CheckpointError, match="old size"):
        w.add_checkpoint(2, [], note, timestamp=1)
    unknown = NoteSigner("elsewhere.example/log")
    t = Checkpoint("elsewhere.example/log", 1, bytes(32)).text()
    with pytest.raises(CheckpointError, match="unknown log"):
        w.add_checkpoint(0, [], SignedNote(t, (unknown.sign(t),)), timestamp=1)


def test_log_refuses_to_sign_inconsistent_checkpoints(log, tmp_path):
    log.store.append_batch([b"a"] * 4)
    log.checkpoint()
    log.store = LogStore(tmp_path / "other.db")  # history replaced under the log's feet
    log.store.append_batch([b"z"] * 6)
    with pytest.raises(ConflictError, match="refusing to sign"):
        log.checkpoint()


@pytest.mark.parametrize(
    "raw",
    [
        "no newline at end",
        "origin\n3\nAAAA\n",  # no signatures
        "origin\n3\nAAAA\n\n— name !!!notbase64\n",
        "origin\n3\nAAAA\n\n- name AAAAAAA=\n",  # hyphen, not em dash
        "a\x01b\n\n— n AAAAAAA=\n",
    ],
)
def test_malformed_notes_are_rejected(raw):
    with pytest.raises(NoteError):
        SignedNote.parse(raw)


@pytest.mark.parametrize(
    "text",
    ["o\n", "o\n01\n" + "A" * 43 + "=\n", "o\n1\nAAAA\n", "\n1\n" + "A" * 43 + "=\n",
     "o\n1\n" + "A" * 43 + "=\n\n", "o\n\u0661\u0662\n" + "A" * 43 + "=\n",
     "o\n\u00b2\n" + "A" * 43 + "=\n", "o\n" + "9" * 5000 + "\n" + "A" * 43 + "=\n"],
)  # fmt: skip
def test_malformed_checkpoints_are_rejected(text):
    with pytest.raises(CheckpointError):
        Checkpoint.parse_text(text)


def test_witness_state_survives_a_restart(tmp_path, log, witnesses):
    log.store.append_batch([b"a"] * 5)
    cosign_all(log, witnesses, log.checkpoint(), 0)
    w = witnesses[0]
    w.save(tmp_path / "witness.json")
    restarted = Witness(w.cosigner, w.logs)
    restarted.load(tmp_path / "witness.json")
    assert restarted.latest[ORIGIN] == w.latest[ORIGIN]
    # A fork presented after the restart is still caught.
    fork = TransparencyLog(LogStore(tmp_path / "fork.db"), ORIGIN, log.signer)
    fork.store.append_batch([b"b"] * 8)
    with pytest.raises(ConflictError):
        restarted.add_checkpoint(5, fork.store.consistency_proof(5), fork.checkpoint(), 2)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CheckpointError):
        restarted.load(tmp_path / "bad.json")


def test_log_remembers_what_it_signed_across_restarts(tmp_path):
    path = tmp_path / "log.db"
    signer = NoteSigner(ORIGIN)
    log = TransparencyLog(LogStore(path), ORIGIN, signer)
    log.store.append_batch([b"a"] * 4)
    log.checkpoint()
    log.store.close()
    again = TransparencyLog(LogStore(path), ORIGIN, signer)
    assert again.last_signed is not None and again.last_signed.size == 4
