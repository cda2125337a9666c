"""Engines carry protocol messages between parties: in-process (embedded), Flower, HTTP."""
