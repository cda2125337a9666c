"""The ServerApp: a Guardians coordinator (guardians.engine.flower.apps)."""

import guardians.engine.flower.apps as _apps

app = _apps.server_app
