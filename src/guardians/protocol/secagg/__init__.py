"""Secure aggregation (SecAgg+, Bell et al. CCS 2020) with hybrid post-quantum keys.

See docs/secagg.md for the design and its security argument.
"""
