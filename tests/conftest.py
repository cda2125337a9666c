import os
import subprocess
import sys
from pathlib import Path

from hypothesis import settings

# CI runs the same examples every time (a failure there is reproducible); local runs explore.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _audit_state_in_tmp(tmp_path_factory, monkeypatch):
    """Auditors' default state files go to a temporary directory, never the user's home."""
    monkeypatch.setenv("GUARDIANS_STATE_DIR", str(tmp_path_factory.mktemp("audit-state")))


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory) -> Path:
    """One `guardians demo --quick --members 4` run (~100 s), shared by the CLI and portal
    tests. Tests must not modify it: copy it first."""
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "guardians", "demo", "--quick", "--members", "4", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return out
