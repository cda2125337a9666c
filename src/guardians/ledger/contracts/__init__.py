"""Smart contracts (Vyper source), compiled at first use."""
