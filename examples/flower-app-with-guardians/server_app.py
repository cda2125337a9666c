"""The app's ServerApp: its rounds are Guardians secure rounds."""

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from guardians.engine.flower import run_consortium  # Guardians

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    # Guardians: the consortium's genesis names the app's arrays (model "external"); every
    # round is secure aggregation with contribution proofs, checked and logged.
    run_consortium(
        grid,
        str(rc["consortium"]),
        str(rc["out"]),
        rounds=int(rc["rounds"]),
        stage_timeout=float(rc["stage-timeout"]),
    )
