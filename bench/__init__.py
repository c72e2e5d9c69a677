"""Benchmarks: each `bench_*.py` module measures something against a baseline taken in the same
run and reports ratios (`python -m bench`, or `make bench`). Not tests: nothing here asserts
wall-clock times."""

# The config of a benchmark store written without CiviCRM or Mailchimp (nothing is read from
# either): `{store}` is the store file, relative to the config.
STORE_ONLY_CONFIG = """[civicrm]
host = "127.0.0.1"
database = "unused"
user = "unused"
group_id = 1

[mailchimp]
list_id = "generated"

[store]
path = "{store}"
runs_dir = "runs"
"""
