# civimc-audit — every target does its own set-up on a fresh machine (Python 3.11+ and access to
# the package registries are all it needs; MariaDB is found, started or installed by
# `python -m civimc_sandbox.localdb`).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install services demo demo-stop demo-start test lint bench clean

# Quiet: pip's and setuptools' output goes to $(VENV)/install.log, shown only if a step fails.
$(STAMP): pyproject.toml
	@echo "Installing civimc-audit into $(VENV) (log: $(VENV)/install.log) …"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip >$(VENV)/install.log 2>&1 \
		|| { cat $(VENV)/install.log; exit 1; }
	@$(PY) -m pip install --quiet -e '.[dev]' >>$(VENV)/install.log 2>&1 \
		|| { cat $(VENV)/install.log; exit 1; }
	@$(PY) -c "import civimc_audit, duckdb, pymysql, papermill, pytest"
	@$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (civimc-audit)" >/dev/null
	@touch $(STAMP)

install: $(STAMP)

services: install
	@$(PY) -m civimc_sandbox.localdb >/dev/null

# The demo's sandbox stays up: demo-stop stops its emulator (database, accounts and files stay),
# demo-start starts it again where it left off, clean also drops the demo database and accounts.
demo: services
	@$(PY) -m civimc_sandbox.demo

demo-stop:
	@if [ -x $(PY) ]; then $(PY) -m civimc_sandbox.demo --stop; fi

demo-start: install
	@$(PY) -m civimc_sandbox.demo --start

test: services
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: services
	$(PY) -m bench

clean:
	@if [ -x $(PY) ]; then $(PY) -m civimc_sandbox.demo --drop; fi
	rm -rf data/demo data/runs data/.mariadb .pytest_cache
