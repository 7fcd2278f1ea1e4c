# Developer entry points. The README's two commands are `make demo` and `make test`.
# Everything runs from a project-local virtualenv (.venv), created on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Written after a successful install; the project is re-installed only when
# pyproject.toml is newer than this file.
STAMP := $(VENV)/.installed
PIP_FLAGS ?=

# Plain `=` rather than `?=` on purpose: some shells export HOST or PORT for
# other reasons, and the demo must not silently bind to another interface.
# Override on the command line: make demo HOST=0.0.0.0 PORT=9000
HOST = 127.0.0.1
PORT = 8000

PYTEST_ARGS ?=
# Used by `make test-postgres`; override on the command line or in the environment.
VEIX_TEST_DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
VEIX_TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.PHONY: help install demo test test-postgres lint clean

help:
	@echo "make demo           run the API with demo data on http://$(HOST):$(PORT)/graphql"
	@echo "make test           run the tests (SQLite unless VEIX_TEST_DATABASE_URL is set)"
	@echo "make test-postgres  run the tests on PostgreSQL and Redis"
	@echo "                    ($(VEIX_TEST_DATABASE_URL), $(VEIX_TEST_REDIS_URL))"
	@echo "make lint           ruff, import-linter layer contracts, mypy"
	@echo "make install        create $(VENV) and install the project with its dev extras"
	@echo "make clean          remove $(VENV), caches and local *.db files"
	@echo "Variables: PYTHON=$(PYTHON) HOST=$(HOST) PORT=$(PORT) PYTEST_ARGS=..."

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev]'
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/veix serve --demo --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: $(STAMP)
	VEIX_TEST_DATABASE_URL='$(VEIX_TEST_DATABASE_URL)' VEIX_TEST_REDIS_URL='$(VEIX_TEST_REDIS_URL)' \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .hypothesis \
		build dist *.egg-info .coverage
	rm -f *.db *.db-wal *.db-shm *.db-journal
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
