"""A member's Guardians node as a long-lived local service.

In a deployment the member's keys, records and round state live in one process on the
member's machine: this service. Whatever transport carries the consortium's messages (a Flower
ClientApp, started afresh for every message) hands each message's bytes to it over a Unix
socket only the member's account can open, and carries the replies back. The service meters
every byte it lets out (the member's egress record) exactly as the embedded engine does.

Frames: a 4-byte big-endian length, then a deterministic-CBOR map. Requests are
``{"op": "hello"}``, ``{"op": "deliver", "payload": <message bytes>}`` and
``{"op": "egress"}``; replies carry ``"replies"`` (message bytes), ``"member"``, ``"egress"``
or ``"error"`` with ``"error_type"``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import struct
import threading
from pathlib import Path
from typing import Any

import cbor2

from guardians import codec
from guardians.crypto.hashing import frame_all
from guardians.engine.egress import EgressMeter
from guardians.engine.federation import COORDINATOR
from guardians.errors import GuardiansError, RemoteProtocolError
from guardians.node.member import MemberNode

MAX_FRAME = codec.MAX_MESSAGE_BYTES + 4096
BINDING_CONTEXT = b"guardians/node-binding"
NONCE_BYTES = 32


def binding_payload(consortium: str, member: str, node_id: int, nonce: bytes) -> bytes:
    """What a member signs to say "transport node ``node_id`` is me", fresh per ``nonce``."""
    return frame_all(consortium.encode(), member.encode(), node_id.to_bytes(8, "big"), nonce)


_LEN = struct.Struct(">I")


class ServiceError(GuardiansError):
    """The member service could not be reached or answered out of protocol."""


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ServiceError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket) -> dict[str, Any]:
    (n,) = _LEN.unpack(_read_exact(sock, _LEN.size))
    if n > MAX_FRAME:
        raise ServiceError(f"frame of {n} bytes exceeds the {MAX_FRAME}-byte limit")
    try:
        obj = cbor2.loads(_read_exact(sock, n))
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise ServiceError(f"malformed frame: {exc}") from None
    if not isinstance(obj, dict):
        raise ServiceError("malformed frame: expected a map")
    return obj


def write_frame(sock: socket.socket, obj: dict[str, Any]) -> None:
    data = cbor2.dumps(obj, canonical=True)
    sock.sendall(_LEN.pack(len(data)) + data)


class MemberService:
    """The sans-socket core: one request in, one response out."""

    def __init__(self, node: MemberNode, meter: EgressMeter | None = None) -> None:
        self.node = node
        self.meter = meter or EgressMeter()
        self.meter.register_boundary(node.id, node.records)
        # One message at a time: the member's state machines are not re-entrant.
        self._lock = threading.Lock()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "hello":
            # The coordinator's fresh nonce and the transport's node id, signed: binds this
            # node to the member's identity key, so no other node can pose as this member.
            nonce, node_id = request.get("nonce"), request.get("node_id")
            if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
                return {"error": f"hello needs a {NONCE_BYTES}-byte nonce",
                        "error_type": "ServiceError"}  # fmt: skip
            if not isinstance(node_id, int) or not 0 <= node_id < 2**64:
                return {
                    "error": "hello needs the transport's node id",
                    "error_type": "ServiceError",
                }
            if self.node.identity is None:
                return {"error": "this member has no identity key", "error_type": "ServiceError"}
            payload = binding_payload(self.node.consortium, self.node.id, node_id, nonce)
            return {"member": self.node.id,
                    "signature": self.node.identity.sign(payload, BINDING_CONTEXT)}  # fmt: skip
        if op == "egress":
            with self._lock:
                return {"egress": self.meter.summary()}
        if op != "deliver":
            return {"error": f"unknown operation {op!r}", "error_type": "ServiceError"}
        payload = request.get("payload")
        if not isinstance(payload, bytes):
            return {"error": "deliver needs a bytes payload", "error_type": "ServiceError"}
        with self._lock:
            try:
                msg = codec.decode(payload)
                self.meter.record(COORDINATOR, self.node.id, msg.KIND, payload,
                                  classes=codec.classify(msg, len(payload)))  # fmt: skip
                replies = self.node.handle(msg)
            except RemoteProtocolError as exc:
                return {"error": str(exc), "error_type": type(exc).__name__}
            out = []
            for r in replies:
                data = codec.encode(r)
                self.meter.record(self.node.id, COORDINATOR, r.KIND, data,
                                  classes=codec.classify(r, len(data)))  # fmt: skip
                out.append(data)
        return {"replies": out}


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            request = read_frame(self.request)
        except (ServiceError, OSError):
            return  # a broken client: nothing to answer
        try:
            response = self.server.service.handle(request)
        except Exception as exc:  # never leave the client hanging; say what failed
            response = {"error": f"member service failed: {exc}", "error_type": "ServiceError"}
        with contextlib.suppress(OSError):
            write_frame(self.request, response)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, service: MemberService) -> None:
        self.service = service
        super().__init__(path, _Handler)


def serve(service: MemberService, path: str | Path) -> _Server:
    """Bind the member's socket (mode 0600) and return the server; call ``serve_forever``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.exists() or p.is_symlink():
        p.unlink()
    old = os.umask(0o177)
    try:
        server = _Server(str(p), service)
    finally:
        os.umask(old)
    return server


def call(path: str | Path, request: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """One request to the member service at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ServiceError(f"member service at {path} unreachable: {exc}") from None
        write_frame(sock, request)
        return read_frame(sock)
