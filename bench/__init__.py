"""Benchmarks (not timed tests): `python -m bench` runs them and prints ratios."""
