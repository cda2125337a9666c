"""C2SP tlog-tiles: the log as static resources, and a client that rebuilds and checks it.

Server side: ``<prefix>/checkpoint``, ``<prefix>/tile/<L>/<N>[.p/<W>]`` (256 hashes of level
8·L subtrees per full tile) and ``<prefix>/tile/entries/<N>[.p/<W>]`` (uint16-length-prefixed
entries). Any static web server or CDN can mirror these files.

Client side: :func:`download_log` fetches the checkpoint and every entry bundle and hash tile the
checkpoint requires, recomputes every hash from the entries, and raises :class:`TileError` if a
served tile, or the recomputed root, disagrees with the served entries and checkpoint. It checks
no signature: a consistent fork signed with other keys is caught only by the auditor's pinned
trust (``verify_log_dir(trust=...)``), to which it hands a local copy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from guardians.errors import GuardiansError
from guardians.ledger.checkpoint import Checkpoint
from guardians.ledger.merkle import HASH_BYTES, MerkleTree
from guardians.ledger.note import SignedNote
from guardians.ledger.store import LogStore

TILE_WIDTH = 256
TILE_HEIGHT = 8
MAX_ENTRY_BYTES = 0xFFFF


class TileError(GuardiansError):
    """A tile or entry bundle is missing, malformed, or disagrees with the entries."""


def encode_index(n: int) -> str:
    """Tile index as zero-padded 3-digit path elements, all but the last prefixed with x."""
    parts = []
    while True:
        parts.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    parts.reverse()
    return "/".join([*("x" + p for p in parts[:-1]), parts[-1]])


_INDEX = re.compile(r"(?:x(?:00[1-9]|0[1-9][0-9]|[1-9][0-9]{2})(?:/x[0-9]{3})*/)?[0-9]{3}",
                    re.ASCII)  # fmt: skip


def decode_index(segments: list[str]) -> int:
    """The inverse of :func:`encode_index`; only the one canonical spelling is accepted."""
    path = "/".join(segments)
    if not _INDEX.fullmatch(path):
        raise TileError(f"bad tile index {path!r}")
    return int("".join(s.lstrip("x") for s in segments))


def tile_path(level: int | str, index: int, width: int = TILE_WIDTH) -> str:
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{suffix}"


def parse_tile_path(path: str) -> tuple[int | str, int, int]:
    """(level or "entries", index, width) of a ``tile/...`` path."""
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TileError(f"not a tile path: {path!r}")
    level_s, rest = parts[1], parts[2:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        w = rest[-1]
        if not re.fullmatch(r"[1-9][0-9]{0,2}", w, re.ASCII) or int(w) > 255:
            raise TileError(f"bad partial width in {path!r}")
        width = int(w)
        rest = [*rest[:-2], rest[-2][:-2]]
    if level_s == "entries":
        level: int | str = "entries"
    elif re.fullmatch(r"0|[1-9][0-9]?", level_s, re.ASCII) and int(level_s) <= 63:
        level = int(level_s)
    else:
        raise TileError(f"bad tile level in {path!r}")
    return level, decode_index(rest), width


def tile_bytes(store: LogStore, level: int, index: int, width: int, size: int) -> bytes:
    """The hash tile, as of a tree of ``size`` (only tiles that size justifies exist)."""
    tree_level = TILE_HEIGHT * level
    available = size >> tree_level  # complete subtrees of 256^level leaves
    first = index * TILE_WIDTH
    if width < 1 or first + width > available or (width < TILE_WIDTH and
                                                  first + width != available):  # fmt: skip
        raise TileError(f"no tile {level}/{index} of width {width} at size {size}")
    return b"".join(store.tree.levels[tree_level][first : first + width])


def entry_bundle(store: LogStore, index: int, width: int, size: int) -> bytes:
    first = index * TILE_WIDTH
    if width < 1 or first + width > size or (width < TILE_WIDTH and first + width != size):
        raise TileError(f"no entry bundle {index} of width {width} at size {size}")
    out = bytearray()
    for _, data in store.entries(first, first + width):
        out += len(data).to_bytes(2, "big") + data
    return bytes(out)


def serve(store: LogStore, checkpoint: SignedNote, path: str) -> tuple[bytes, str]:
    """(body, content type) of a tlog-tiles resource, for a server or a static export."""
    if path.strip("/") == "checkpoint":
        return checkpoint.format().encode(), "text/plain; charset=utf-8"
    size = Checkpoint.parse_text(checkpoint.text).size
    level, index, width = parse_tile_path(path)
    if level == "entries":
        return entry_bundle(store, index, width, size), "application/octet-stream"
    return tile_bytes(store, int(level), index, width, size), "application/octet-stream"


def _parse_bundle(data: bytes, expected: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        if i + 2 > len(data):
            raise TileError("entry bundle truncated")
        n = int.from_bytes(data[i : i + 2], "big")
        if i + 2 + n > len(data):
            raise TileError("entry bundle truncated")
        out.append(data[i + 2 : i + 2 + n])
        i += 2 + n
    if len(out) != expected:
        raise TileError(f"entry bundle holds {len(out)} entries, expected {expected}")
    return out


Fetch = Callable[[str], bytes]


def download_log(fetch: Fetch, into: Path) -> tuple[SignedNote, int]:
    """Fetch a tiled log into ``into`` (log.db + checkpoint) and check every served hash tile
    against the entries. Returns the checkpoint note and the number of tiles checked."""
    note = SignedNote.parse(fetch("checkpoint"))
    cp = Checkpoint.parse_text(note.text)
    entries: list[bytes] = []
    for n in range((cp.size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, cp.size - n * TILE_WIDTH)
        entries += _parse_bundle(fetch(tile_path("entries", n, width)), width)
    tree = MerkleTree()
    for e in entries:
        tree.append(e)
    if tree.root(cp.size) != cp.root:
        raise TileError("the served entries do not hash to the checkpoint's root")
    checked = 0
    level = 0
    while (cp.size >> (TILE_HEIGHT * level)) > 0:
        hashes = tree.levels[TILE_HEIGHT * level] if TILE_HEIGHT * level < len(tree.levels) else []
        count = len(hashes)
        for n in range((count + TILE_WIDTH - 1) // TILE_WIDTH):
            width = min(TILE_WIDTH, count - n * TILE_WIDTH)
            served = fetch(tile_path(level, n, width))
            want = b"".join(hashes[n * TILE_WIDTH : n * TILE_WIDTH + width])
            if len(served) != width * HASH_BYTES or served != want:
                raise TileError(
                    f"tile {tile_path(level, n, width)} disagrees with the entries "
                    "(forked or corrupted mirror)"
                )
            checked += 1
        level += 1
    into.mkdir(parents=True, exist_ok=True)
    store = LogStore(into / "log.db")
    try:
        if store.size:
            raise TileError(f"{into} already holds a log")
        for i in range(0, len(entries), 1000):
            store.append_batch(entries[i : i + 1000])
    finally:
        store.close()
    (into / "checkpoint").write_text(note.format())
    return note, checked
