"""`guardians member ...`: a member's side of a consortium deployed on many machines."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console

from guardians.errors import GuardiansError

console = Console(stderr=True)


def _fail(exc: GuardiansError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False)
    return typer.Exit(code=2)


member_app = typer.Typer(
    help="Run a member's node (its keys, records and round state) next to its data.",
    no_args_is_help=True,
)


@member_app.command("serve")
def member_serve(
    consortium: Annotated[
        Path, typer.Option(help="The consortium's genesis file (consortium.json).")
    ],
    member: Annotated[str, typer.Option(help="This member's id, as named in the genesis.")],
    key: Annotated[Path, typer.Option(help="This member's secret identity key file.")],
    records: Annotated[
        Path,
        typer.Option(
            help="This member's records (.npz archive): what it trains on, and what its "
            "egress is scanned for (with an external model, the records the app trains on)."
        ),
    ],
    socket: Annotated[
        Path,
        typer.Option(
            help="Unix socket the member's Flower ClientApp talks to (give the same path to "
            "the SuperNode as --node-config 'guardians-socket=\"PATH\"')."
        ),
    ],
    socket_group: Annotated[
        str | None,
        typer.Option(
            help="Group that may open the socket (mode 0660): the account the member's "
            "SuperNode runs under, kept apart from the keys and records. Default: owner only."
        ),
    ] = None,
    evidence_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where this member's witness keeps evidence of a log that showed it a split "
            "view or a rewritten history (default: MEMBER-witness-evidence beside the socket)."
        ),
    ] = None,
) -> None:
    """Serve this member's node on a Unix socket (mode 0600) until interrupted.

    The member's records and secret keys stay in this process; the Flower SuperNode's
    ClientApp hands it each message from the coordinator and carries back what it answers.
    Everything it lets out is metered against its records."""
    from guardians.engine.member_service import MemberService, ServiceError, serve
    from guardians.node.deployment import ConsortiumConfig, load_identity, load_records
    from guardians.node.member import MemberNode

    try:
        cfg = ConsortiumConfig.load(consortium)
        if member not in cfg.members:
            raise GuardiansError(f"{member!r} is not a member of {cfg.name} ({consortium})")
        identity = load_identity(key)
        if identity.verify_key.raw.hex() != cfg.directory[member]:
            raise GuardiansError(f"{key} is not {member}'s identity key in {consortium}")
        data = load_records(records, n_features=cfg.n_features)
    except GuardiansError as exc:
        raise _fail(exc) from None

    def new_node(session: str) -> MemberNode:
        """The member's node for one run (fresh round state, bound to the run's name)."""
        rng = np.random.default_rng(int.from_bytes(os.urandom(16), "big"))
        return MemberNode(
            member, data, cfg.new_model(), rng, identity=identity,
            directory=cfg.verify_keys(), consortium=session,
            require_secure=cfg.privacy == "secagg", external_training=cfg.external,
        )  # fmt: skip

    evidence = evidence_dir or socket.parent / f"{member}-witness-evidence"
    service = MemberService(member, data.X, new_node, cfg.name, cfg.digest(),
                            evidence_dir=evidence)  # fmt: skip
    try:
        server = serve(service, socket, group=socket_group)
    except ServiceError as exc:
        raise _fail(exc) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = threading.Thread(target=server.serve_forever, daemon=True)
    worker.start()
    console.print(f"{member}: {len(data.y)} records, serving on {socket}", highlight=False)
    stop.wait()
    server.shutdown()
    server.server_close()
    socket.unlink(missing_ok=True)
