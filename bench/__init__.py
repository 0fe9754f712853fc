"""Benchmarks of myapp's sessions against the usual alternatives (not part of the tests)."""
