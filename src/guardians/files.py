"""Reading files another party controls (a log operator's checkpoint, anchor record or trust
file): regular files only, of bounded size, opened without blocking, so a pipe, a device or a
huge sparse file in their place fails the read instead of hanging or exhausting the reader."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np

SMALL = 1 << 20  # trust files, state files
NOTE = 16 << 20  # checkpoints: a line per cosignature, an ML-DSA-44 one about 3.3 kB
RECORD = 64 << 20  # append-only JSON records that grow with the log (anchors)


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is (or links to) a regular file of at most ``limit`` bytes;
    OSError otherwise (EINVAL: not a regular file, EFBIG: too large)."""
    p = Path(path)
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once, then fails below
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{p.name} is not a regular file")
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"{p.name} is {st.st_size} bytes, over {limit}")
        chunks, got = [], 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:  # grew while being read
            raise OSError(errno.EFBIG, f"{p.name} is over {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | Path, limit: int = SMALL) -> str:
    """:func:`read_regular` as UTF-8 (UnicodeDecodeError, a ValueError, if it is not)."""
    return read_regular(path, limit).decode("utf-8")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


MAX_DEPTH = 64  # our files nest a few levels; the C parser can overflow its stack far deeper
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in ``text`` (brackets inside strings ignored)."""
    bare = np.frombuffer(_STRING.sub('""', text).encode(), dtype=np.uint8)
    step = np.zeros(len(bare), dtype=np.int64)
    step[(bare == ord("[")) | (bare == ord("{"))] = 1
    step[(bare == ord("]")) | (bare == ord("}"))] = -1
    return int(np.cumsum(step).max(initial=0))


def read_json(path: str | Path, limit: int = SMALL) -> Any:
    """Strict JSON from :func:`read_text`: no NaN or infinities, at most :data:`MAX_DEPTH`
    levels deep (checked before parsing: a hostile nesting crashes CPython's parser)."""
    text = read_text(path, limit)
    if nesting_depth(text) > MAX_DEPTH:
        raise ValueError(f"{Path(path).name}: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"{Path(path).name}: JSON nested too deeply") from None
