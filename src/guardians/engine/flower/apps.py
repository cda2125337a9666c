"""The Flower App Guardians ships: ``guardians.engine.flower.apps:server_app`` and
``:client_app``, referenced by the app project in ``flower_app/`` (what ``flwr run`` takes).

Run config (``flwr run ... --run-config``): ``consortium`` (path of consortium.json on the
SuperLink's machine), ``out`` (where the coordinator writes rounds, models and the ledger),
``rounds``, ``stage-timeout`` and ``join-timeout`` (seconds), ``ledger`` (true/false).
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from guardians.engine.flower.mod import guardians_mod
from guardians.engine.flower.workflow import run_consortium
from guardians.errors import ConfigError

server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    run_consortium(
        grid,
        str(rc["consortium"]),
        str(rc["out"]),
        rounds=int(rc.get("rounds", 3)),
        stage_timeout=float(rc.get("stage-timeout", 120.0)),
        join_timeout=float(rc.get("join-timeout", 300.0)),
        ledger=_flag(rc.get("ledger", True)),
    )


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"run config 'ledger' must be true or false, got {value!r}")


client_app = ClientApp(mods=[guardians_mod])


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    # Only reached by a train message without a Guardians envelope: this app trains nothing
    # itself (each member's node trains on its own records).
    raise ValueError("this ClientApp only carries Guardians messages")
