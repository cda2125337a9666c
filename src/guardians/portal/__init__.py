"""The transparency portal: a web page served by a node showing the consortium, its members,
rounds, model versions and their inclusion in the log, the latest cosigned checkpoint, the
Ethereum anchor, incidents and the intel feed, read from a demo output directory.

The server verifies checkpoints, log hashes and anchors with :mod:`guardians.ledger`; the page
verifies every model version's inclusion proof itself (WebCrypto SHA-256). See docs/portal.md.
"""

from guardians.portal.app import create_app
from guardians.portal.snapshot import Portal, PortalError, check_demo_dir

__all__ = ["Portal", "PortalError", "check_demo_dir", "create_app"]
