"""The ClientApp: hands Guardians messages to the member's node (guardians.engine.flower.apps)."""

import guardians.engine.flower.apps as _apps

app = _apps.client_app
