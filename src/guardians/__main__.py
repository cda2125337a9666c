"""`python -m guardians` runs the command line."""

from guardians.cli import app

app(prog_name="guardians")
