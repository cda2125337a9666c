"""`guardians audit verify` on a witnessed log, and on every kind of tampering."""

import shutil
import sqlite3

import numpy as np
import pytest

from guardians.engine.audit import AuditTrail, LocalWitnesses
from guardians.ledger.audit import verify_log_dir
from guardians.ledger.note import SignedNote
from guardians.protocol.round import RoundResult

MEMBERS = [f"member-{i}" for i in range(4)]


def make_log(path, rounds=6, seed=0):
    trail = AuditTrail(path, "test.example/log", MEMBERS)
    witnesses = LocalWitnesses("test", MEMBERS)
    trail.admit({m: k.verify_key.raw for m, k in witnesses.identities.items()})
    rng = np.random.default_rng(seed)
    for r in range(1, rounds + 1):
        res = RoundResult(round=r, params=rng.normal(size=10).astype(np.float32),
                          contributors=tuple(MEMBERS), samples=100, mean_loss=0.1)  # fmt: skip
        trail.record_round(res, rule="fedavg", privacy="secagg")
        witnesses.checkpoint(trail, timestamp=1_700_000_000 + r)
    trail.close()
    return path


@pytest.fixture
def logdir(tmp_path):
    return make_log(tmp_path / "ledger")


def failed(report):
    return [name for name, ok, _ in report.checks if not ok]


def test_an_honest_log_verifies(logdir, tmp_path):
    state = tmp_path / "auditor.state"
    rep = verify_log_dir(logdir, trust=logdir / "trust.json", state=state)
    assert rep.ok, rep.checks
    assert rep.model_versions == 6 and rep.size == 4 + 12
    assert rep.kinds == {"log/member-admitted": 4, "log/model-promoted": 6,
                         "log/round-committed": 6}  # fmt: skip
    assert verify_log_dir(
        logdir, trust=logdir / "trust.json", state=state
    ).ok  # and again, consistent with itself


def _sql(logdir, *stmts):
    db = sqlite3.connect(logdir / "log.db")
    for s in stmts:
        db.execute(s)
    db.commit()
    db.close()


@pytest.mark.parametrize(
    "stmts",
    [
        pytest.param(["UPDATE entries SET data = x'a0' WHERE idx = 5"], id="edit-row"),
        pytest.param(["DELETE FROM entries WHERE idx = 15"], id="delete-last-row"),
        pytest.param(["DELETE FROM entries WHERE idx = 3"], id="delete-row"),
    ],
)
def test_editing_or_deleting_rows_fails(logdir, stmts):
    _sql(logdir, *stmts)
    rep = verify_log_dir(logdir, trust=logdir / "trust.json")
    assert not rep.ok and "log entries" in failed(rep)


def test_reordering_rows_fails(logdir):
    db = sqlite3.connect(logdir / "log.db")
    a, b = (db.execute("SELECT data FROM entries WHERE idx = ?", (i,)).fetchone()[0]
            for i in (6, 7))  # fmt: skip
    db.execute("UPDATE entries SET data = ? WHERE idx = 6", (b,))
    db.execute("UPDATE entries SET data = ? WHERE idx = 7", (a,))
    db.commit()
    db.close()
    assert not verify_log_dir(logdir, trust=logdir / "trust.json").ok


def test_rewriting_entries_and_hashes_consistently_is_caught_by_the_checkpoint(logdir, tmp_path):
    # An operator who rewrites history and recomputes every hash still cannot match the
    # cosigned checkpoint.
    other = make_log(tmp_path / "other", rounds=6, seed=1)
    shutil.copy(other / "log.db", logdir / "log.db")
    rep = verify_log_dir(logdir, trust=logdir / "trust.json")
    assert not rep.ok and "checkpoint root" in failed(rep)


def test_forged_or_under_cosigned_checkpoint_fails(logdir):
    note = SignedNote.parse((logdir / "checkpoint").read_text())
    text = note.text.replace("\n16\n", "\n15\n")
    (logdir / "checkpoint").write_text(SignedNote(text, note.signatures).format())
    rep = verify_log_dir(logdir, trust=logdir / "trust.json")
    assert "checkpoint signatures" in failed(rep)
    log_sig_only = SignedNote(note.text, note.signatures[:1])
    (logdir / "checkpoint").write_text(log_sig_only.format())
    rep = verify_log_dir(logdir, trust=logdir / "trust.json")
    assert "checkpoint signatures" in failed(rep)


def test_a_fork_served_after_an_audit_is_caught(logdir, tmp_path):
    state = tmp_path / "auditor.state"
    assert verify_log_dir(logdir, trust=logdir / "trust.json", state=state).ok
    # The operator now serves a different, longer history, signed and witnessed by keys it
    # controls, with the auditor's pinned trust file unchanged.
    fork = make_log(tmp_path / "fork", rounds=8, seed=2)
    rep = verify_log_dir(fork, trust=logdir / "trust.json", state=state)
    assert "checkpoint signatures" in failed(rep)
    # ... and even with trust replaced, the history does not extend what the auditor saw.
    rep = verify_log_dir(fork, trust=fork / "trust.json", state=state)
    assert "consistency with last seen" in failed(rep)


def test_missing_files_fail_cleanly(tmp_path):
    assert not verify_log_dir(tmp_path, trust=tmp_path / "trust.json").ok
    assert list(tmp_path.iterdir()) == []  # the auditor created nothing in the log's directory


def test_auditing_never_writes_the_log(logdir, tmp_path):
    before = (logdir / "log.db").read_bytes()
    assert verify_log_dir(logdir, trust=logdir / "trust.json").ok
    assert (logdir / "log.db").read_bytes() == before
    gone = tmp_path / "gone"
    gone.mkdir()
    for name in ("checkpoint", "trust.json"):
        (gone / name).write_bytes((logdir / name).read_bytes())
    rep = verify_log_dir(gone, trust=gone / "trust.json")
    assert "log entries" in failed(rep) and not (gone / "log.db").exists()
    (tmp_path / "trust.json").write_text("{not json")
    assert "trust configuration" in failed(verify_log_dir(tmp_path, trust=tmp_path / "trust.json"))


def test_a_log_is_never_trusted_on_its_own_say_so(logdir, tmp_path):
    # Without pinned trust the verdict fails: the trust.json beside a log is the operator's
    # own claim, and a forged log would come with a forged one.
    rep = verify_log_dir(logdir)
    assert not rep.ok and failed(rep) == ["trust configuration"]
    forged = make_log(tmp_path / "forged", rounds=3, seed=9)
    assert verify_log_dir(forged, trust=forged / "trust.json").ok  # its own keys: fine
    assert not verify_log_dir(forged, trust=logdir / "trust.json").ok  # the real consortium's


def test_a_failed_audit_does_not_overwrite_the_auditors_state(logdir, tmp_path):
    state = tmp_path / "auditor.state"
    assert verify_log_dir(logdir, trust=logdir / "trust.json", state=state).ok
    before = state.read_text()
    fork = make_log(tmp_path / "fork", rounds=9, seed=3)
    assert not verify_log_dir(fork, trust=fork / "trust.json", state=state).ok
    assert state.read_text() == before
