"""The audit ledger: RFC 9162 Merkle log (more to come: store, checkpoints, witnesses, tiles)."""
