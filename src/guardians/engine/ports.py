"""Loopback ports for the servers a test, a benchmark or a local deployment starts."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (another process may still take it
    before the caller binds: pass a bound socket instead where the server accepts one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
