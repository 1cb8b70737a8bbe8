"""Benchmarks (not tests): `make bench` runs them; docs/benchmarks.md quotes the numbers."""
