"""Nodes: the parties of a consortium, each owning its own state (data, model, keys)."""
