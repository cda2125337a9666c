import os

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
