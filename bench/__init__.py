"""Benchmarks: each `bench_*.py` module measures something against a baseline taken in the same
run and reports ratios (`python -m bench`, or `make bench`). Not tests: nothing here asserts
wall-clock times."""
