"""The consortium's intel feed: TAXII collections of STIX objects in SQLite (WAL).

Each object version is stored once per collection with the time the server added it, which is
what TAXII's ``added_after`` filters and pages on. Adding is all-or-nothing per request: a bad
object means nothing of that request is stored.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guardians import files
from guardians.errors import GuardiansError
from guardians.intel.stix import IntelFormatError, parse_bundle

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
  id TEXT PRIMARY KEY, title TEXT NOT NULL, description TEXT NOT NULL,
  can_read INTEGER NOT NULL, can_write INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, id TEXT NOT NULL,
  version TEXT NOT NULL, added TEXT NOT NULL, type TEXT NOT NULL, json TEXT NOT NULL,
  UNIQUE (collection, id, version));
CREATE INDEX IF NOT EXISTS objects_added ON objects (collection, added, seq);
CREATE TABLE IF NOT EXISTS statuses (id TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""


class UnknownCollectionError(GuardiansError):
    """No such collection (or not readable/writable as asked)."""


class ReplayError(GuardiansError):
    """An object version the feed already holds was sent again."""


class FloodError(GuardiansError):
    """An anonymous source exceeded its objects per epoch."""


Authenticate = Callable[[dict[str, Any]], tuple[str, str]]


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Page:
    objects: list[dict[str, Any]]
    more: bool
    next: str | None
    first_added: str | None
    last_added: str | None


class IntelStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # --- collections ----------------------------------------------------------------------
    def create_collection(self, title: str, description: str = "", *, can_read: bool = True,
                          can_write: bool = True, id: str | None = None) -> str:  # fmt: skip
        cid = id or str(uuid.uuid4())
        with self._lock:
            self._db.execute("INSERT INTO collections VALUES (?, ?, ?, ?, ?)",
                             (cid, title, description, int(can_read), int(can_write)))  # fmt: skip
        return cid

    def collections(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT id, title, description, can_read, can_write "
                                "FROM collections ORDER BY title").fetchall()  # fmt: skip
        return [{"id": r[0], "title": r[1], "description": r[2], "can_read": bool(r[3]),
                 "can_write": bool(r[4]), "media_types": ["application/stix+json;version=2.1"]}
                for r in rows]  # fmt: skip

    def collection(self, cid: str) -> dict[str, Any]:
        for c in self.collections():
            if c["id"] == cid:
                return c
        raise UnknownCollectionError(f"no collection {cid!r}")

    # --- objects --------------------------------------------------------------------------
    def add(
        self,
        cid: str,
        envelope: bytes | str,
        *,
        max_bytes: int,
        authenticate: Authenticate | None = None,
        per_source: int = 100,
    ) -> dict[str, Any]:
        """Validate, authenticate and store a TAXII envelope's objects; return the TAXII status
        resource. All or nothing: any bad, unsigned, replayed or flooding object and nothing of
        the request is stored."""
        c = self.collection(cid)
        if not c["can_write"]:
            raise UnknownCollectionError(f"collection {cid!r} is not writable")
        raw = envelope.encode() if isinstance(envelope, str) else bytes(envelope)
        try:
            text = raw.decode("utf-8")
            # parse_bundle refuses hostile nesting below; it must not reach the parser here.
            doc = json.loads(text) if files.nesting_depth(text) <= files.MAX_DEPTH else None
        except (ValueError, RecursionError):
            doc = None
        if isinstance(doc, dict) and "objects" in doc and doc.get("type") != "bundle":
            doc = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": doc["objects"]}
            raw = json.dumps(doc).encode()
        objs = parse_bundle(raw, max_bytes=max_bytes)  # raises before anything is stored
        # What is stored is exactly what was sent (and signed): the validated raw objects.
        raw_objs = json.loads(raw)["objects"]
        sources: dict[str, int] = {}
        if authenticate is not None:
            for o in raw_objs:
                kind, who = authenticate(o)  # raises IntelAuthError
                if kind == "anonymous":
                    sources[who] = sources.get(who, 0) + 1
        now = datetime.now(UTC)
        added = _ts(now)
        successes = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for who, n in sources.items():
                    row = self._db.execute("SELECT count FROM sources WHERE source = ?",
                                           (who,)).fetchone()  # fmt: skip
                    total = (row[0] if row else 0) + n
                    if total > per_source:
                        raise FloodError(
                            f"anonymous source {who[:24]}… would have {total} objects this "
                            f"epoch; the limit is {per_source}"
                        )
                    self._db.execute("INSERT OR REPLACE INTO sources VALUES (?, ?)", (who, total))
                for j in raw_objs:
                    # Objects without created/modified (cyber observables) are immutable:
                    # their id alone is their version.
                    version = str(j.get("modified") or j.get("created") or "immutable")
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO objects (collection, id, version, added, type, json)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (cid, j["id"], version, added, j["type"], json.dumps(j)),
                    )
                    if cur.rowcount == 0:
                        raise ReplayError(f"{j['id']} version {version} is already in the feed")
                    successes.append({"id": j["id"], "version": version})
                status = {
                    "id": str(uuid.uuid4()), "status": "complete", "request_timestamp": added,
                    "total_count": len(objs), "success_count": len(objs), "failure_count": 0,
                    "pending_count": 0, "successes": successes,
                }  # fmt: skip
                self._db.execute("INSERT INTO statuses VALUES (?, ?)",
                                 (status["id"], json.dumps(status)))  # fmt: skip
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return status

    def status(self, sid: str) -> dict[str, Any]:
        row = self._db.execute("SELECT json FROM statuses WHERE id = ?", (sid,)).fetchone()
        if row is None:
            raise UnknownCollectionError(f"no status {sid!r}")
        return json.loads(row[0])

    def page(self, cid: str, *, added_after: str | None = None, limit: int = 100,
             next: str | None = None, object_id: str | None = None,
             types: list[str] | None = None) -> Page:  # fmt: skip
        c = self.collection(cid)
        if not c["can_read"]:
            raise UnknownCollectionError(f"collection {cid!r} is not readable")
        q = "SELECT seq, json, added FROM objects WHERE collection = ?"
        args: list[Any] = [cid]
        if added_after:
            try:  # normalize: stored times always carry microseconds
                when = datetime.fromisoformat(added_after.replace("Z", "+00:00"))
            except ValueError:
                raise IntelFormatError(f"added_after {added_after!r} is not a timestamp") from None
            q += " AND added > ?"
            args.append(_ts(when if when.tzinfo else when.replace(tzinfo=UTC)))
        if next:
            try:
                q += " AND seq > ?"
                args.append(int(next))
            except ValueError:
                raise UnknownCollectionError(f"bad next token {next!r}") from None
        if object_id:
            q += " AND id = ?"
            args.append(object_id)
        if types:
            q += f" AND type IN ({','.join('?' * len(types))})"
            args.extend(types)
        q += " ORDER BY seq LIMIT ?"
        args.append(limit + 1)
        rows = self._db.execute(q, args).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            objects=[json.loads(r[1]) for r in rows], more=more,
            next=str(rows[-1][0]) if more else None,
            first_added=rows[0][2] if rows else None, last_added=rows[-1][2] if rows else None,
        )  # fmt: skip

    def manifest(self, cid: str, **kw: Any) -> tuple[list[dict[str, Any]], Page]:
        p = self.page(cid, **kw)
        added = {}
        for row in self._db.execute("SELECT id, version, added FROM objects WHERE collection = ?",
                                    (cid,)):  # fmt: skip
            added[(row[0], row[1])] = row[2]
        items = []
        for o in p.objects:
            v = str(o.get("modified") or o.get("created"))
            items.append({
                "id": o["id"], "date_added": added.get((o["id"], v), p.last_added),
                "version": v, "media_type": "application/stix+json;version=2.1",
            })  # fmt: skip
        return items, p
