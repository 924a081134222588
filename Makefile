# Ferry. `make run`: the whole platform on this machine. `make test`: the test suite on real PostgreSQL and
# Redis. Both make or refresh .venv first (scripts/venv: only when missing or pyproject.toml changed).
# PYTHON=/path/to/python3.11 picks the interpreter; PYTEST_ARGS passes options to pytest.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
export PYTHON
PYTEST_ARGS ?=

.PHONY: help run test venv

help:
	@echo "make run    start Ferry on http://127.0.0.1:8000/ (SQLite + embedded Redis unless DATABASE_URL/REDIS_URL)"
	@echo "make test   run the test suite against a throwaway PostgreSQL and Redis (PYTEST_ARGS='-k name -x')"
	@echo "make venv   only make or refresh .venv"

venv:
	scripts/venv

run:
	scripts/venv
	scripts/run

test:
	scripts/venv test
	.venv/bin/python -m pytest $(PYTEST_ARGS)
