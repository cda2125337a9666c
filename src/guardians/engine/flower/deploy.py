"""A real Flower deployment of a consortium on one machine (loopback only).

:class:`LocalDeployment` starts what each party would run on its own machine:

- the coordinator: ``flower-superlink`` with TLS (a fresh CA and server certificate) and
  SuperNode authentication on, runtime dependency installation off (nothing downloads);
- each member: its Guardians node (``guardians member serve``: keys, records, round state)
  and a ``flower-supernode`` holding its own node-authentication key, registered with the
  SuperLink, pointing its ClientApp at the member node's Unix socket;

then submits the shipped Flower App with ``flwr run``. Every process gets its own Flower home
directory and its own process group (killing a member kills its SuperNode, its SuperExec
and any ClientApp it started). ``docs/deployment.md`` maps this onto separate organizations.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from guardians.engine.flower.workflow import RUN_FILES
from guardians.engine.member_service import MAX_SOCKET_PATH
from guardians.engine.ports import free_port
from guardians.errors import ConfigError, GuardiansError
from guardians.node.deployment import ConsortiumConfig, member_dir, write_secret

APP_DIR = Path(__file__).with_name("flower_app")
CONNECTION = "guardians"


class DeploymentError(GuardiansError):
    """A process of the local deployment failed to start, or a run did not finish."""


def _bin(name: str) -> str:
    """A console script of this environment (Flower's processes start each other by name,
    so this environment's bin directory also goes first on their PATH)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise DeploymentError(f"{name} not found: pip install 'guardians[flower]'")
        return found
    return str(path)


def make_tls(directory: Path, days: int = 30) -> None:
    """A CA and a server certificate for 127.0.0.1/localhost (ECDSA P-256)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Guardians consortium CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
        ]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(cert.public_bytes(pem))
    write_secret(directory / "server.key", key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    # The CA key signs nothing else here; it is not kept.


def make_node_key(path: Path) -> None:
    """A SuperNode's authentication key pair in OpenSSH format (Flower takes NIST curves)."""
    key = ec.generate_private_key(ec.SECP384R1())
    write_secret(path, key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.OpenSSH,
                                         serialization.NoEncryption()))  # fmt: skip
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                        serialization.PublicFormat.OpenSSH)  # fmt: skip
    path.with_suffix(".pub").write_bytes(pub + b"\n")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class LocalDeployment:
    """A consortium (laid out by :func:`~guardians.node.deployment.found_consortium` under
    ``root``) deployed as real Flower processes on loopback."""

    root: Path
    port: int = 0
    # The Flower App `flwr run` submits: Guardians' own, or an existing app that added the
    # Guardians mod and coordinator (see docs/deployment.md).
    app_dir: Path = APP_DIR
    log: Callable[[str], None] = lambda _: None
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.config = ConsortiumConfig.load(self.root / "consortium.json")
        self.flower = self.root / "flower"
        self.tls = self.flower / "tls"
        self.port = self.port or free_port()

    # --- environment ------------------------------------------------------------------------
    def env(self, home: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["FLWR_HOME"] = str(self.flower / "homes" / home)
        env["FLWR_TELEMETRY_ENABLED"] = "0"  # never call home
        env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(self, name: str, cmd: list[str], home: str) -> Proc:
        logs = self.flower / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (self.flower / "homes" / home).mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        with log.open("wb") as f:  # a fresh log per start: readiness is read from it
            popen = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=self.env(home),
                                     cwd=self.flower, start_new_session=True)  # fmt: skip
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def socket_path(self, member: str) -> Path:
        return member_dir(self.root, member) / "node.sock"

    # --- bring-up ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Certificates, node keys and the CLI's connection file (once per deployment)."""
        if not (self.tls / "ca.crt").exists():
            make_tls(self.tls)
        for m in self.config.members:
            key = member_dir(self.root, m) / "supernode.key"
            if not key.exists():
                make_node_key(key)
            path = self.socket_path(m)
            if len(str(path).encode()) > MAX_SOCKET_PATH:
                raise ConfigError(f"socket path {path} is too long for a Unix socket; "
                                  "deploy from a shorter directory")  # fmt: skip
        home = self.flower / "homes" / "cli"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\n'
            f'root-certificates = "{self.tls / "ca.crt"}"\n'
        )

    def start_superlink(self, timeout: float = 60.0) -> None:
        # A fresh SuperLink state: registrations and sessions of an earlier start would make
        # registering again fail, and a crashed SuperNode's old session block its return.
        for old in self.flower.glob("superlink.db*"):
            old.unlink()
        self._spawn("superlink", [
            _bin("flower-superlink"),
            "--ssl-ca-certfile", str(self.tls / "ca.crt"),
            "--ssl-certfile", str(self.tls / "server.pem"),
            "--ssl-keyfile", str(self.tls / "server.key"),
            "--enable-supernode-auth", "--disable-runtime-dependency-installation",
            "--database", str(self.flower / "superlink.db"),
            "--host", "127.0.0.1", "--port", str(self.port),
        ], "superlink")  # fmt: skip
        ctx = ssl.create_default_context(cafile=str(self.tls / "ca.crt"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive("superlink")
            try:
                if httpx.get(f"https://127.0.0.1:{self.port}/health", verify=ctx,
                             timeout=2.0).status_code == 200:  # fmt: skip
                    self.log(f"SuperLink up on 127.0.0.1:{self.port} (TLS)")
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise DeploymentError(f"SuperLink not healthy after {timeout:.0f} s:\n"
                              f"{self.procs['superlink'].tail()}")  # fmt: skip

    def flwr(self, *args: str, timeout: float = 120.0) -> str:
        try:
            proc = subprocess.run([_bin("flwr"), *args], env=self.env("cli"), cwd=self.flower,
                                  capture_output=True, text=True, timeout=timeout)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise DeploymentError(
                f"flwr {' '.join(args)} did not finish in {timeout:.0f} s"
            ) from None
        if proc.returncode != 0:
            raise DeploymentError(f"flwr {' '.join(args)} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")  # fmt: skip
        return proc.stdout

    def register(self, member: str) -> None:
        """Register the member's SuperNode public key with the SuperLink (``flwr`` fails,
        and so does this, if the SuperLink refuses it)."""
        pub = member_dir(self.root, member) / "supernode.pub"
        self.flwr("supernode", "register", str(pub), CONNECTION)

    def start_member(self, member: str) -> None:
        d = member_dir(self.root, member)
        sock = self.socket_path(member)
        sock.unlink(missing_ok=True)
        self._spawn(f"{member}-node", [
            sys.executable, "-m", "guardians", "member", "serve",
            "--consortium", str(self.root / "consortium.json"), "--member", member,
            "--key", str(d / "identity.key"), "--records", str(d / "records.npz"),
            "--socket", str(sock),
        ], f"{member}-node")  # fmt: skip
        self._spawn(f"{member}-supernode", [
            _bin("flower-supernode"), "--superlink", f"127.0.0.1:{self.port}",
            "--root-certificates", str(self.tls / "ca.crt"),
            "--auth-supernode-private-key", str(d / "supernode.key"),
            # The member's records path too, for apps that train on them themselves.
            "--node-config",
            f'guardians-socket="{sock}" guardians-records="{d / "records.npz"}"',
            "--host", "127.0.0.1", "--port", str(free_port()),
        ], f"{member}-supernode")  # fmt: skip

    def wait_members(self, timeout: float = 120.0) -> None:
        """Until every member node listens on its socket and every SuperNode is activated."""
        deadline = time.monotonic() + timeout
        for m in self.config.members:
            while not self.socket_path(m).exists() or "SuperNode ID" not in self._log(
                f"{m}-supernode"
            ):
                self._check_alive(f"{m}-node")
                self._check_alive(f"{m}-supernode")
                if time.monotonic() > deadline:
                    raise DeploymentError(f"{m} not up after {timeout:.0f} s:\n"
                                          f"{self.procs[f'{m}-supernode'].tail()}")  # fmt: skip
                time.sleep(0.2)
        self.log(f"{len(self.config.members)} members up (node + authenticated SuperNode)")

    def _log(self, name: str) -> str:
        try:
            return self.procs[name].log.read_text(errors="replace")
        except OSError:
            return ""

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if not proc.alive():
            raise DeploymentError(f"{name} exited with code {proc.popen.returncode}:\n"
                                  f"{proc.tail()}")  # fmt: skip

    def start(self) -> None:
        self.prepare()
        self.start_superlink()
        for m in self.config.members:
            self.register(m)
        for m in self.config.members:
            self.start_member(m)
        self.wait_members()

    # --- runs -------------------------------------------------------------------------------
    def submit(self, out: Path, rounds: int, **config: Any) -> subprocess.Popen[str]:
        """Start a run of the shipped Flower App (``flwr run``); returns the CLI process,
        which streams the run's log to ``out/flwr-run.log`` until the run ends."""
        out = Path(out).resolve()
        used = [n for n in RUN_FILES if (out / n).exists()]
        if used:
            raise DeploymentError(f"{out} already holds a run ({', '.join(used)}); "
                                  "give each run a new directory")  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        settings = {"consortium": str(self.root / "consortium.json"), "out": str(out),
                    "rounds": rounds, **config}  # fmt: skip
        run_config = " ".join(f"{k}={json.dumps(v)}" for k, v in settings.items())
        with (out / "flwr-run.log").open("w") as log:
            cli = subprocess.Popen(
                [_bin("flwr"), "run", str(self.app_dir), CONNECTION, "--run-config", run_config,
                 "--stream"],
                env=self.env("cli"), cwd=self.flower, stdout=log, stderr=subprocess.STDOUT,
                text=True, start_new_session=True,
            )  # fmt: skip
        self.procs[f"flwr-run-{len(self.procs)}"] = Proc("flwr run", cli, out / "flwr-run.log")
        return cli

    def run(self, out: Path, rounds: int, timeout: float = 3600.0, **config: Any) -> dict[str, Any]:
        """Run ``rounds`` rounds to completion; the coordinator's ``result.json``."""
        cli = self.submit(out, rounds, **config)
        try:
            cli.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()  # the ServerApp goes down with the SuperLink
            raise DeploymentError(f"run did not finish in {timeout:.0f} s") from None
        return read_result(Path(out))

    def kill_member(self, member: str) -> None:
        """SIGKILL the member's SuperNode with everything it started (its SuperExec, any
        ClientApp): to the consortium, the member is gone mid-round. Its node lives on."""
        proc = self.procs[f"{member}-supernode"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait()

    def stop(self) -> None:
        """SuperNodes first (so the SuperLink records them offline), then the rest."""
        order = sorted(self.procs, key=lambda n: (not n.endswith("-supernode"), n == "superlink"))
        for name in order:
            proc = self.procs[name]
            # Even when the group's leader is gone, its children (a SuperExec, a ClientApp)
            # may not be: signal the whole process group regardless.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
            try:
                proc.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
        for proc in self.procs.values():  # stragglers that ignored SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)

    def __enter__(self) -> LocalDeployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_result(out: Path) -> dict[str, Any]:
    """The coordinator's result of a finished run, or the reason it failed."""
    result = out / "result.json"
    if result.exists():
        return dict(json.loads(result.read_text()))
    failure = ""
    progress = out / "progress.jsonl"
    if progress.exists():
        for line in progress.read_text().splitlines():
            event = json.loads(line)
            if event.get("event") == "failed":
                failure = event.get("error", "")
    log = out / "flwr-run.log"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
    raise DeploymentError(f"the run wrote no result{': ' + failure if failure else ''}\n{tail}")
