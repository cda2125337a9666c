"""The SQLite log store: atomic batches, crash durability, tamper detection."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from guardians import codec
from guardians.ledger.entries import ENTRY_TYPES, Incident, RoundCommitted
from guardians.ledger.merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from guardians.ledger.store import LogStore, StoreError


def entry(i: int) -> bytes:
    return codec.encode(
        RoundCommitted(
            round=i, participants=("a", "b"), rule="fedavg", privacy="secagg",
            model_hash=bytes([i % 256]) * 32, aggregate_hash=bytes(32),
        )
    )  # fmt: skip


def test_append_reopen_and_prove(tmp_path):
    path = tmp_path / "log.db"
    s = LogStore(path)
    assert s.size == 0
    assert s.append_batch([entry(i) for i in range(5)]) == (0, 5)
    assert s.append_batch([entry(i) for i in range(5, 13)]) == (5, 13)
    root = s.root()
    s.close()
    s = LogStore(path)  # reloads node hashes, no rehash
    assert s.size == 13 and s.root() == root
    assert s.root() == MerkleTree([leaf_hash(entry(i)) for i in range(13)]).root()
    verify_inclusion(7, 13, leaf_hash(s.entry(7)), s.inclusion_proof(7), root)
    verify_consistency(5, 13, s.root(5), root, s.consistency_proof(5))
    assert [i for i, _ in s.entries(3, 6)] == [3, 4, 5]
    s.verify()


def test_every_entry_type_encodes_canonically():
    kinds = {t.KIND for t in ENTRY_TYPES}
    assert all(k.startswith("log/") for k in kinds) and len(kinds) == len(ENTRY_TYPES)
    inc = Incident(round=3, member="m1", kind="bad-update", detail="shape", evidence_hash=bytes(32))
    assert codec.decode(codec.encode(inc)).detail == "shape"
    with pytest.raises(ValueError):
        Incident(round=3, member="m1", kind="x", detail="y", evidence_hash=b"short")


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param("UPDATE entries SET data = x'00' WHERE idx = 4", id="edit"),
        pytest.param("DELETE FROM entries WHERE idx = 4", id="delete"),
        pytest.param(
            "UPDATE entries SET data = (SELECT data FROM entries WHERE idx = 5) WHERE idx = 4",
            id="duplicate-over",
        ),
        pytest.param("UPDATE entries SET idx = idx + 100 WHERE idx = 9", id="move"),
        pytest.param("UPDATE nodes SET hash = zeroblob(32) WHERE level = 1 AND idx = 0", id="node"),
    ],
)
def test_editing_rows_is_detected(tmp_path, tamper):
    path = tmp_path / "log.db"
    s = LogStore(path)
    s.append_batch([entry(i) for i in range(10)])
    s.close()
    db = sqlite3.connect(path)
    db.execute(tamper)
    db.commit()
    db.close()
    with pytest.raises(StoreError):
        LogStore(path).verify()


def test_reordering_rows_is_detected(tmp_path):
    path = tmp_path / "log.db"
    s = LogStore(path)
    s.append_batch([entry(i) for i in range(10)])
    s.close()
    db = sqlite3.connect(path)
    a = db.execute("SELECT data FROM entries WHERE idx = 2").fetchone()[0]
    b = db.execute("SELECT data FROM entries WHERE idx = 3").fetchone()[0]
    db.execute("UPDATE entries SET data = ? WHERE idx = 2", (b,))
    db.execute("UPDATE entries SET data = ? WHERE idx = 3", (a,))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="entry 2"):
        LogStore(path).verify()


def test_not_a_log_file(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        LogStore(bad)


def test_readers_open_the_log_read_only(tmp_path):
    path = tmp_path / "log.db"
    w = LogStore(path)
    w.append_batch([entry(i) for i in range(6)])
    ro = LogStore(path, readonly=True)
    assert ro.size == 6 and ro.root() == w.root() and ro.entry(3) == entry(3)
    ro.verify()
    for write in (lambda: ro.append_batch([entry(9)]), lambda: ro.set_meta("k", b"v")):
        with pytest.raises(StoreError, match="read-only"):
            write()
    # Even past our own check, SQLite itself refuses to write through this connection.
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.db.execute("DELETE FROM entries")
    w.append_batch([entry(6)])  # the writer goes on; a fresh reader sees it
    assert LogStore(path, readonly=True).size == 7 and ro.size == 6
    ro.close()
    w.close()
    assert LogStore(path).size == 7


def test_a_reader_sees_one_state_of_a_log_being_appended(tmp_path):
    """The writer commits between the reader's size and its rows: the reader's snapshot
    holds, so a live log never looks corrupted."""
    w = LogStore(tmp_path / "log.db")
    w.append_batch([entry(i) for i in range(7)])
    r = LogStore(tmp_path / "log.db", readonly=True)
    size_on_disk = r.size_on_disk

    def racing() -> int:
        size = size_on_disk()
        w.append_batch([entry(100 + size)])
        return size

    r.size_on_disk = racing  # type: ignore[method-assign]
    r.verify()  # reads the size, then (after the writer's append) every entry and node
    assert r._load().size > 7
    assert LogStore(tmp_path / "log.db", readonly=True).size == w.size > 8


def test_a_reader_never_creates_or_adopts_a_file(tmp_path):
    with pytest.raises(StoreError, match="no log file"):
        LogStore(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"not a log file \(no meta, nodes table\)"):
        LogStore(other, readonly=True)
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        LogStore(bad, readonly=True)
    assert bad.read_bytes() == b"this is not sqlite" * 100


WRITER = textwrap.dedent(
    """
    import sys
    from guardians.ledger.store import LogStore
    s = LogStore(sys.argv[1])
    i = s.size
    while True:
        first, size = s.append_batch([b"entry-%d" % (i + k) for k in range(500)])
        i = size
        print("ACK", size, s.root().hex(), flush=True)
    """
)


def test_acknowledged_appends_survive_killing_the_writer(tmp_path):
    path = tmp_path / "log.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    acks = []
    try:
        for line in proc.stdout:
            _, size, root = line.split()
            acks.append((int(size), root))
            if len(acks) == 20:
                os.kill(proc.pid, signal.SIGKILL)  # mid-way through a later batch
                break
    finally:
        proc.kill()
        proc.wait()
    last_size, last_root = acks[-1]
    s = LogStore(path)
    s.verify()
    assert s.size >= last_size  # nothing acknowledged is lost
    assert s.size % 500 == 0  # and no batch is half-applied
    assert s.root(last_size).hex() == last_root
    assert s.entry(last_size - 1) == b"entry-%d" % (last_size - 1)


def test_entries_must_fit_a_tile_bundle(tmp_path):
    s = LogStore(tmp_path / "log.db")
    with pytest.raises(StoreError, match="65535"):
        s.append_batch([b"x" * 70_000])
    with pytest.raises(StoreError):
        s.append_batch([b""])
    assert s.size == 0


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE entries SET data = 'text, not bytes' WHERE idx = 2",
        "DELETE FROM nodes WHERE level = (SELECT MAX(level) FROM nodes)",
        "UPDATE meta SET value = 'seven' WHERE key = 'size'",
        "UPDATE nodes SET hash = 'x' WHERE level = 0 AND idx = 1",
    ],
)
def test_corrupted_files_raise_typed_errors(tmp_path, tamper):
    path = tmp_path / "log.db"
    s = LogStore(path)
    s.append_batch([entry(i) for i in range(9)])
    s.close()
    db = sqlite3.connect(path)
    db.execute(tamper)
    db.commit()
    db.close()
    with pytest.raises(StoreError):
        LogStore(path).verify()
