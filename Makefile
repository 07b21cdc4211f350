# Two commands on any fresh clone, with nothing installed by hand: `make demo` and `make test`.
# Each creates the virtual environment .venv when it is missing (so it works on Debian's and Ubuntu's
# system Python too, where `pip install` outside a venv is refused: PEP 668) and installs Steward into it
# again whenever pyproject.toml changes.
#
#   make demo                                        generate an organisation and print its digest
#   make test                                        the whole test suite (SQLite; PostgreSQL too with TEST_DATABASE_URL)
#   make test PYTEST_ARGS="tests/e2e/test_config_and_cli.py -x"   some of it
#   make test PYTEST_ARGS=tests/rules                 one layer: tests/rules, tests/listeners or tests/e2e
#   make test PYTEST_WORKERS=0                      in one process (pytest-xdist off)
#   make lint                                        ruff (lint and format check) and import-linter's layer contracts, as CI runs them
#   make format                                      ruff format and ruff's safe fixes
#   make PYTHON=python3.12 test                      another interpreter (3.11 or newer)

PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 4
DEMO_ARGS ?=
PY := $(VENV)/bin/python

.PHONY: demo test lint format install clean

demo: $(VENV)/.installed
	$(PY) -m bot demo $(DEMO_ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

install: $(VENV)/.installed

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Steward needs Python 3.11 or newer, and $(PYTHON) is " + sys.version.split()[0] + ": run make PYTHON=python3.11 (or newer)")'
	@echo "creating $(VENV) with $$($(PYTHON) --version)"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "could not create $(VENV) with $(PYTHON). On Debian or Ubuntu install the venv module first: sudo apt install python3-venv"; exit 1; }

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) *.egg-info
