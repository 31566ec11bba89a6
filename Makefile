# Two commands on a fresh machine:  make demo   and   make test
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3

# No telemetry, no network but the systems configured; Prefect's state lives in the project.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_HOME := $(CURDIR)/.syncline/prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE := 200
export PREFECT_RESULTS_PERSIST_BY_DEFAULT := true
export PREFECT_LOGGING_EXTRA_LOGGERS := syncline
# The sandbox's demo credentials (the sandbox is the configured system of the demo).
export SYNCLINE_SERVICENOW_USER ?= admin
export SYNCLINE_SERVICENOW_PASSWORD ?= sandbox

.PHONY: venv demo test lint format up down bench clean

venv: $(VENV)/.installed
	@mkdir -p $(PREFECT_HOME)  # also after `make clean`, which keeps the virtualenv

$(VENV)/.installed: pyproject.toml
	mkdir -p $(PREFECT_HOME)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: venv
	$(PY) -m syncline_app.demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest

up: venv
	$(BIN)/syncline up

down: venv
	$(BIN)/syncline down

bench: venv
	$(PY) bench/sync_bench.py

clean:
	rm -rf .syncline
