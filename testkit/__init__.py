"""Helpers that start and probe the real local stack, for the tests and the benchmarks (never shipped to AWS)."""
