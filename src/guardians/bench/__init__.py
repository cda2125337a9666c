"""Benchmarks behind `guardians bench ...`: each compares against its anchor in the same run."""
