"""Reading files another party controls: bounded, regular files only, never blocking."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from guardians import files
from guardians.ledger.audit import verify_log_dir
from tests.test_ledger_audit import failed, make_log


def test_regular_files_are_read_and_everything_else_refused(tmp_path):
    ok = tmp_path / "ok"
    ok.write_bytes(b"x" * 100)
    assert files.read_regular(ok, 100) == b"x" * 100
    with pytest.raises(OSError, match="over 99"):
        files.read_regular(ok, 99)
    sparse = tmp_path / "sparse"
    with sparse.open("wb") as f:
        f.truncate(1 << 40)  # a terabyte of nothing: refused by its size, never read
    with pytest.raises(OSError, match="over"):
        files.read_regular(sparse, files.NOTE)
    (tmp_path / "zero").symlink_to("/dev/zero")
    with pytest.raises(OSError, match="not a regular file"):
        files.read_regular(tmp_path / "zero", files.NOTE)
    with pytest.raises(OSError, match="not a regular file"):
        files.read_regular(tmp_path, files.NOTE)
    with pytest.raises(FileNotFoundError):
        files.read_regular(tmp_path / "missing", 10)


def test_a_fifo_fails_at_once_instead_of_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # In a child process, so that a reader which blocked would fail this test, not hang it.
    code = (f"from guardians import files\ntry:\n    files.read_regular({str(fifo)!r}, 10)\n"
            "except OSError as e:\n    print('refused', e)\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert "refused" in out.stdout and "not a regular file" in out.stdout, out.stderr


def test_strict_json(tmp_path):
    p = tmp_path / "t.json"
    for text in ('{"q": Infinity}', '{"q": NaN}', "[" * 100_000 + "]" * 100_000):
        p.write_text(text)
        with pytest.raises(ValueError):
            files.read_json(p)
    p.write_bytes(b"\xff")
    with pytest.raises(ValueError):
        files.read_json(p)


@pytest.fixture
def logdir(tmp_path):
    return make_log(tmp_path / "ledger", rounds=2)


def test_audit_fails_cleanly_on_a_checkpoint_that_is_no_file(logdir):
    cp = logdir / "checkpoint"
    cp.unlink()
    cp.symlink_to("/dev/zero")
    rep = verify_log_dir(logdir, trust=logdir / "trust.json")
    assert "checkpoint signatures" in failed(rep)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("quorum", True),
        ("quorum", "3"),
        ("quorum", 3.5),
        ("quorum", None),
        ("anchor", "x"),
        ("origin", 5),
    ],
)
def test_trust_file_fields_must_have_their_types(logdir, key, value):
    trust = json.loads((logdir / "trust.json").read_text())
    trust[key] = value
    (logdir / "trust.json").write_text(json.dumps(trust))
    rep = verify_log_dir(logdir, trust=logdir / "trust.json")
    assert "trust configuration" in failed(rep)


def test_a_pinned_contract_with_no_anchor_does_not_pass(logdir):
    trust = json.loads((logdir / "trust.json").read_text())
    trust["anchor"] = {"contract": "0xabc"}
    (logdir / "trust.json").write_text(json.dumps(trust))
    (logdir / "anchor.json").write_text(json.dumps({"contract": "0xabc", "anchored": []}))
    rep = verify_log_dir(logdir, trust=logdir / "trust.json")
    assert "anchored checkpoints" in failed(rep)
    for bad in ([{"size": -5, "root": "00" * 32}], [{"size": 1.5, "root": "00" * 32}]):
        (logdir / "anchor.json").write_text(json.dumps({"contract": "0xabc", "anchored": bad}))
        assert "anchored checkpoints" in failed(verify_log_dir(logdir, trust=logdir / "trust.json"))
    (logdir / "anchor.json").write_text('{"contract": "0xabc", "anchored": [{"size": Infinity}]}')
    assert "anchored checkpoints" in failed(verify_log_dir(logdir, trust=logdir / "trust.json"))


def test_a_state_that_cannot_be_written_is_reported_not_raised(logdir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rep = verify_log_dir(logdir, trust=logdir / "trust.json", state=blocker / "state")
    assert failed(rep) == ["auditor state"]
    bad_state = tmp_path / "state"
    bad_state.write_bytes(b"\xff\xfe")
    rep = verify_log_dir(logdir, trust=logdir / "trust.json", state=bad_state)
    assert "consistency with last seen" in failed(rep)
    assert bad_state.read_bytes() == b"\xff\xfe"  # a failed audit leaves the state alone
