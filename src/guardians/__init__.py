"""Guardians: decentralized AI security for consortia that will not pool their data."""

__version__ = "0.1.0"
