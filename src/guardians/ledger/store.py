"""The log's storage: an append-only SQLite file (WAL) holding entries and Merkle node hashes.

Appends are batched: one transaction inserts the batch's entries, the complete-subtree hashes
they finish, and the new size. An append is acknowledged only after that transaction commits
(``synchronous=FULL``), so an acknowledged entry survives a crash of the writer, and a batch
interrupted mid-way leaves the log at its previous size. Nothing is ever updated or deleted.

Anyone can recompute everything from the ``entries`` table; ``audit`` checks that the stored
hashes, the entries and signed checkpoints agree, so editing, deleting or reordering rows is
detected rather than trusted away.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from guardians.errors import GuardiansError
from guardians.ledger.merkle import MerkleTree, ProofError, leaf_hash

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


class StoreError(GuardiansError):
    """The log file is unreadable, inconsistent or was modified."""


class LogStore:
    """An append-only Merkle log in one SQLite file; one writer at a time.

    ``readonly`` is for those who only read a log (auditors, the portal, the tile server): the
    file must exist already, SQLite opens it read-only (it may still add its ``-wal`` and
    ``-shm`` coordination files beside it), and every write is refused."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.is_file():
            raise StoreError(f"no log file at {self.path}")
        try:
            if readonly:
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self.db = sqlite3.connect(uri, uri=True, isolation_level=None,
                                          check_same_thread=False)  # fmt: skip
            else:
                self.db = sqlite3.connect(self.path, isolation_level=None,
                                          check_same_thread=False)  # fmt: skip
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable log file: {exc}") from None
        try:
            self._open()
            self.tree = self._load()
        except BaseException:
            self.db.close()
            raise

    def _open(self) -> None:
        try:
            if not self.readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(SCHEMA)
                return
            tables = {name for (name,) in self.db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.OperationalError as exc:
            if self.readonly and "readonly" in str(exc):
                # SQLite must create the log's -shm file to read a WAL file, even read-only.
                raise StoreError(f"{self.path}: cannot read this log where it lies (its "
                                 "directory is not writable and it has no -shm file yet): "
                                 "copy the directory and audit the copy") from None  # fmt: skip
            raise StoreError(f"{self.path}: not a usable log file: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable log file: {exc}") from None
        missing = {"entries", "nodes", "meta"} - tables
        if missing:
            raise StoreError(f"{self.path}: not a log file (no {', '.join(sorted(missing))} table)")

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction, so the size and the rows it reads belong to the same state of
        a log another process may be appending to (WAL readers see a fixed snapshot)."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def _writable(self) -> None:
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")

    def _load(self) -> MerkleTree:
        """Rebuild the in-memory node cache from the stored level hashes (no rehashing)."""
        try:
            with self._snapshot():
                return self._load_levels()
        except (sqlite3.Error, TypeError, ValueError, IndexError) as exc:
            raise StoreError(f"{self.path}: corrupted log file: {exc}") from None

    def _load_levels(self) -> MerkleTree:
        size = self.size_on_disk()
        tree = MerkleTree()
        rows = self.db.execute("SELECT level, idx, hash FROM nodes ORDER BY level, idx")
        levels: list[list[bytes]] = []
        for level, idx, h in rows:
            while len(levels) <= level:
                levels.append([])
            if idx != len(levels[level]):
                raise StoreError(f"{self.path}: node table has a gap at level {level}, {idx}")
            if not isinstance(h, bytes) or len(h) != 32:
                raise StoreError(f"{self.path}: node {level}/{idx} is not a 32-byte hash")
            levels[level].append(bytes(h))
        tree.levels = levels or [[]]
        if tree.size != size:
            raise StoreError(
                f"{self.path}: {tree.size} leaf hashes stored for a log of size {size}"
            )
        expected_levels = max(1, size.bit_length())
        if len(tree.levels) != expected_levels:
            raise StoreError(f"{self.path}: {len(tree.levels)} node levels, expected "
                             f"{expected_levels} for size {size}")  # fmt: skip
        for level in range(1, len(tree.levels)):
            if len(tree.levels[level]) != size >> level:
                raise StoreError(f"{self.path}: level {level} is incomplete")
        return tree

    def size_on_disk(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'size'").fetchone()
        if row is None:
            return 0
        if not isinstance(row[0], bytes) or len(row[0]) != 8:
            raise StoreError(f"{self.path}: corrupted size record")
        return int.from_bytes(row[0], "big")

    @property
    def size(self) -> int:
        return self.tree.size

    def get_meta(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    def set_meta(self, key: str, value: bytes) -> None:
        self._writable()
        if key == "size":
            raise StoreError("the size is written by appends only")
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def root(self, size: int | None = None) -> bytes:
        return self.tree.root(size)

    def verify(self) -> None:
        """Recompute every hash from the stored entries; raise StoreError at the first row
        that disagrees (an edited, deleted, inserted or reordered entry or node)."""
        try:
            with self._snapshot():
                self._verify()
        except (sqlite3.Error, TypeError, ValueError, IndexError) as exc:
            raise StoreError(f"{self.path}: corrupted log file: {exc}") from None

    def _verify(self) -> None:
        size = self.size_on_disk()
        fresh = MerkleTree()
        rows = self.db.execute("SELECT idx, data FROM entries ORDER BY idx")
        for expected_idx, (idx, data) in enumerate(rows):
            if idx != expected_idx:
                raise StoreError(f"{self.path}: entry {expected_idx} is missing")
            if not isinstance(data, bytes):
                raise StoreError(f"{self.path}: entry {idx} is not a byte string")
            fresh.append(data)
        if fresh.size != size:
            raise StoreError(f"{self.path}: {fresh.size} entries for a log of size {size}")
        stored = self._load()
        for level, (a, b) in enumerate(zip(fresh.levels, stored.levels, strict=False)):
            for idx, (x, y) in enumerate(zip(a, b, strict=True)):
                if x != y:
                    what = "entry" if level == 0 else f"level-{level} node"
                    raise StoreError(f"{self.path}: {what} {idx} does not match its hash")

    def append_batch(self, entries: Iterable[bytes]) -> tuple[int, int]:
        """Append entries atomically; returns (first index, new size) once durable."""
        self._writable()
        batch = [bytes(e) for e in entries]
        for e in batch:
            # Tile entry bundles length-prefix each entry with a uint16.
            if not 0 < len(e) <= 0xFFFF:
                raise StoreError(f"log entries are 1..65535 bytes, got {len(e)}")
        if not batch:
            return self.size, self.size
        first = self.size
        levels_before = [len(lv) for lv in self.tree.levels]
        for data in batch:
            self.tree.append_hash(leaf_hash(data))
        new_nodes = [
            (level, idx, self.tree.levels[level][idx])
            for level in range(len(self.tree.levels))
            for idx in range(
                levels_before[level] if level < len(levels_before) else 0,
                len(self.tree.levels[level]),
            )
        ]
        try:
            self.db.execute("BEGIN IMMEDIATE")
            if self.size_on_disk() != first:
                raise StoreError(f"{self.path}: another writer appended to the log")
            self.db.executemany(
                "INSERT INTO entries (idx, data) VALUES (?, ?)",
                ((first + i, d) for i, d in enumerate(batch)),
            )
            self.db.executemany("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)", new_nodes)
            self.db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('size', ?)",
                (self.tree.size.to_bytes(8, "big"),),
            )
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            self.tree = self._load()  # forget the uncommitted hashes
            raise
        return first, self.tree.size

    def entry(self, index: int) -> bytes:
        row = self.db.execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise ProofError(f"no entry {index} in a log of size {self.size}")
        return bytes(row[0])

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        end = self.size if end is None else end
        rows = self.db.execute(
            "SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        )
        for idx, data in rows:
            yield int(idx), bytes(data)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return self.tree.inclusion_proof(index, size)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        return self.tree.consistency_proof(old, new)

    def close(self) -> None:
        self.db.close()
