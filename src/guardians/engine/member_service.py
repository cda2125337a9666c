"""A member's Guardians node as a long-lived local service.

In a deployment the member's keys, records and round state live in one process on the
member's machine: this service. Whatever transport carries the consortium's messages (a Flower
ClientApp, started afresh for every message) hands each message's bytes to it over a Unix
socket only the member's account can open, and carries the replies back. The service meters
every byte it lets out (the member's egress record) exactly as the embedded engine does.

Frames: a 4-byte big-endian length, then one deterministic-CBOR map and nothing after it.
Every request names the transport's ``run_id``. Requests are ``{"op": "hello", "nonce",
"node_id"}`` (answered with ``"member"`` and a ``"signature"`` binding the node to the member
for this run), ``{"op": "deliver", "payload": <message bytes>}`` (``"replies"``: message bytes)
and ``{"op": "egress"}`` (``"egress"``: the member's egress record); any refusal is
``"error"`` with ``"error_type"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import socketserver
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import numpy as np

from guardians import codec
from guardians.crypto.hashing import frame_all
from guardians.engine.egress import EgressMeter
from guardians.engine.federation import COORDINATOR
from guardians.errors import GuardiansError
from guardians.node.member import MemberNode

MAX_FRAME = codec.MAX_MESSAGE_BYTES + 4096
# sockaddr_un.sun_path holds 108 bytes, terminator included.
MAX_SOCKET_PATH = 107
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
    data = _read_exact(sock, n)
    stream = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(stream).decode()
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise ServiceError(f"malformed frame: {exc}") from None
    if stream.tell() != n:
        raise ServiceError(f"malformed frame: {n - stream.tell()} bytes after the map")
    if not isinstance(obj, dict):
        raise ServiceError("malformed frame: expected a map")
    return obj


def write_frame(sock: socket.socket, obj: dict[str, Any]) -> None:
    data = cbor2.dumps(obj, canonical=True)
    sock.sendall(_LEN.pack(len(data)) + data)


def session_name(consortium: str, genesis: str, run_id: int) -> str:
    """The name every transcript of one run is bound to: the consortium, the digest of the
    genesis both sides hold, and the transport's run. Messages of another run, or from a
    party holding a different genesis, fail every signature and MAC check."""
    return f"{consortium}/{genesis[:16]}/run-{run_id}"


NodeFactory = Callable[[str], MemberNode]


class MemberService:
    """The sans-socket core: one request in, one response out.

    ``factory(session)`` builds the member's node for one run: a ``hello`` naming a run the
    service is not in starts a fresh session (round numbers, keys and round state begin anew,
    bound to that run's name), and messages of any other run are refused. Every response is
    metered as the member's egress, whatever it carries."""

    def __init__(
        self, member: str, records: np.ndarray, factory: NodeFactory, consortium: str,
        genesis: str, meter: EgressMeter | None = None, evidence_dir: Path | None = None,
    ) -> None:  # fmt: skip
        """``evidence_dir``: where this member's witness keeps evidence of a log that showed
        it a split view or a rewritten history (one 0600 JSON file each): the refusal itself
        goes to the coordinator, the party under suspicion, so the member keeps its own copy."""
        self.member = member
        self.evidence_dir = evidence_dir
        self._evidence_saved = 0
        self.factory = factory
        self.consortium = consortium
        self.genesis = genesis
        self.run_id: int | None = None
        self.node: MemberNode | None = None
        self.meter = meter or EgressMeter()
        self.meter.register_boundary(member, records)
        # One message at a time: the member's state machines are not re-entrant.
        self._lock = threading.Lock()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            response = self._handle(request)
            self._keep_evidence()
            # Deliver replies were metered message by message; everything else the member
            # lets out (its signed hello, error texts, its egress record) is metered here.
            if "error" in response or request.get("op") != "deliver":
                kind = "service/" + ("error" if "error" in response else str(request.get("op")))
                self.meter.record(self.member, COORDINATOR, kind,
                                  cbor2.dumps(response, canonical=True))  # fmt: skip
            return response

    def after_reply(self) -> None:
        """With the reply sent, work ahead while the coordinator gathers the other members'
        answers (the next message waits on the lock, so it still sees a finished state)."""
        # A failure here leaves the state as it was: the next message meets it and reports it.
        with self._lock, contextlib.suppress(GuardiansError):
            if self.node is not None:
                self.node.idle()

    def _session(self, run_id: int) -> MemberNode:
        if run_id != self.run_id or self.node is None:
            self.node = self.factory(session_name(self.consortium, self.genesis, run_id))
            self.run_id = run_id
            self._evidence_saved = 0
        return self.node

    def _keep_evidence(self) -> None:
        """Write the witness's new conflict evidence, if any, to the evidence directory."""
        node = self.node
        if node is None or node.witness is None or self.evidence_dir is None:
            return
        found = node.witness.state.evidence[self._evidence_saved :]
        for ev in found:
            data = json.dumps(ev, indent=2, sort_keys=True).encode()
            name = hashlib.sha256(data).hexdigest() + ".json"
            try:
                self.evidence_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                fd = os.open(self.evidence_dir / name, flags, 0o600)
            except FileExistsError:
                continue  # the same evidence again
            except OSError:
                return  # kept in memory; written when the directory is usable
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        self._evidence_saved += len(found)

    def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        run_id = request.get("run_id")
        if op not in ("hello", "deliver", "egress", "trained"):
            return _error(f"unknown operation {op!r}")
        if not isinstance(run_id, int) or not 0 <= run_id < 2**64:
            return _error(f"{op} needs the transport's run id")
        if op == "egress":
            return {"egress": self.meter.summary()}
        if op == "hello":
            # The coordinator's fresh nonce and the transport's node id, signed: binds this
            # node to the member's identity key, so no other node can pose as this member.
            nonce, node_id = request.get("nonce"), request.get("node_id")
            if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
                return _error(f"hello needs a {NONCE_BYTES}-byte nonce")
            if not isinstance(node_id, int) or not 0 <= node_id < 2**64:
                return _error("hello needs the transport's node id")
            node = self._session(run_id)
            if node.identity is None:
                return _error("this member has no identity key")
            payload = binding_payload(node.consortium, self.member, node_id, nonce)
            return {"member": self.member,
                    "signature": node.identity.sign(payload, BINDING_CONTEXT)}  # fmt: skip
        if run_id != self.run_id or self.node is None:
            return _error(f"a message of run {run_id}, but this member is in run {self.run_id}")
        if op == "trained":
            return self._trained(request)
        payload = request.get("payload")
        if not isinstance(payload, bytes):
            return _error("deliver needs a bytes payload")
        node = self.node
        before = node.awaiting
        try:
            msg = codec.decode(payload)
            self.meter.record(COORDINATOR, self.member, msg.KIND, payload,
                              classes=codec.classify(msg, len(payload)))  # fmt: skip
            replies = node.handle(msg)
        except GuardiansError as exc:  # a refusal (RemoteProtocolError) or our own failure
            return {"error": str(exc), "error_type": type(exc).__name__}
        response: dict[str, Any] = {"replies": self._out(replies)}
        if node.awaiting is not None and node.awaiting is not before:
            # This instruction asks for a local update: the transport's app trains. It gets
            # the instruction's parameters and settings (on the member's machine only) and
            # answers with `trained`.
            ev = node.awaiting
            response["train"] = {
                "round": ev.round, "params": ev.params.astype("<f4").tobytes(),
                "layout": [[n, list(shape)] for n, shape in getattr(node.model, "layout", ())],
                "config": {"epochs": ev.config.epochs, "batch_size": ev.config.batch_size,
                           "learning_rate": ev.config.learning_rate,
                           "optimizer": ev.config.optimizer, "proximal": ev.config.proximal},
            }  # fmt: skip
        return response

    def _out(self, replies: list[Any]) -> list[bytes]:
        out = []
        for r in replies:
            data = codec.encode(r)
            self.meter.record(self.member, COORDINATOR, r.KIND, data,
                              classes=codec.classify(r, len(data)))  # fmt: skip
            out.append(data)
        return out

    def _trained(self, request: dict[str, Any]) -> dict[str, Any]:
        """The app's trained parameters for the awaited round: the update goes out as if this
        node had trained (masked, with its proof, under secure aggregation)."""
        assert self.node is not None
        rnd, params = request.get("round"), request.get("params")
        samples, loss = request.get("samples"), request.get("loss")
        if not isinstance(rnd, int) or not isinstance(params, bytes) or len(params) % 4:
            return _error("trained needs a round and float32 parameters")
        if not isinstance(samples, int) or not isinstance(loss, int | float):
            return _error("trained needs an integer sample count and a loss")
        try:
            replies = self.node.take_external_update(
                rnd, np.frombuffer(params, "<f4"), samples, float(loss)
            )
        except GuardiansError as exc:
            return _error(str(exc))
        return {"replies": self._out(replies)}


def _error(why: str) -> dict[str, Any]:
    return {"error": why, "error_type": "ServiceError"}


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
        self.server.service.after_reply()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, service: MemberService) -> None:
        self.service = service
        super().__init__(path, _Handler)


def serve(service: MemberService, path: str | Path, group: str | None = None) -> _Server:
    """Bind the member's socket (mode 0600; 0660 for ``group``, the account its SuperNode
    runs under) and return the server; call ``serve_forever``."""
    p = Path(path)
    if len(str(p).encode()) > MAX_SOCKET_PATH:
        raise ServiceError(f"socket path {p} is too long for a Unix socket (at most "
                           f"{MAX_SOCKET_PATH} bytes)")  # fmt: skip
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        st = p.lstat() if p.exists() or p.is_symlink() else None
        if st is not None:
            # Only a stale socket is replaced: never a file, and never a live service.
            if not stat.S_ISSOCK(st.st_mode):
                raise ServiceError(f"{p} exists and is not a socket; refusing to replace it")
            try:
                call(p, {"op": "egress", "run_id": 0}, timeout=2.0)
            except ServiceError:
                p.unlink()
            else:
                raise ServiceError(f"a member service is already listening on {p}")
        gid = _group_id(group) if group is not None else None
        old = os.umask(0o177)
        try:
            server = _Server(str(p), service)
        finally:
            os.umask(old)
        if gid is not None:
            os.chown(p, -1, gid)
            os.chmod(p, 0o660)
        return server
    except OSError as exc:
        raise ServiceError(f"cannot listen on {p}: {exc.strerror or exc}") from None


def _group_id(group: str) -> int:
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ServiceError(f"no such group {group!r}") from None


def call(path: str | Path, request: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """One request to the member service at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ServiceError(f"member service at {path} unreachable: {exc}") from None
        try:
            write_frame(sock, request)
            return read_frame(sock)
        except OSError as exc:  # includes timeouts
            raise ServiceError(f"member service at {path} failed to answer: {exc}") from None
