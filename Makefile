# civimc-audit — every target does its own set-up on a fresh machine (Python 3.11+ and access to
# the package registries are all it needs; MariaDB is found, started or installed by
# `python -m civimc_sandbox.localdb`).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install services demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install --quiet -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import civimc_audit, duckdb, pymysql, papermill, pytest"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (civimc-audit)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

services: install
	@$(PY) -m civimc_sandbox.localdb >/dev/null

demo: services
	$(PY) -m civimc_sandbox.demo

test: services
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: services
	$(PY) -m bench

clean:
	rm -rf data/demo data/runs data/.mariadb .pytest_cache
