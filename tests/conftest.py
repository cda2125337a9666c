import os

from hypothesis import settings

# CI runs the same examples every time (a failure there is reproducible); local runs explore.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
