# Cutover — `make demo` runs the pipelines end to end, `make test` runs every test tier.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export AIRFLOW_HOME ?= $(CURDIR)/.data/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export GX_ANALYTICS_ENABLED := false
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: help install system services init demo test test-unit test-integration test-dags test-ui test-celery airflow airflow-celery bench lint up down stop-pg clean

help:
	@echo "make demo      seed sample data, run every pipeline end to end, print where the data docs are"
	@echo "make test      every test tier (unit, integration on real MariaDB/PostgreSQL, dags, ui in Chromium, celery)"
	@echo "make airflow   the Airflow UI on http://localhost:8080 with these DAGs, connections and plugin"
	@echo "make airflow-celery  the same under the CeleryExecutor: Redis broker, two workers"
	@echo "make bench     benchmarks side by side with their anchors"
	@echo "make lint      ruff + mypy;  make up / down  docker compose stack"

system:
	@bash scripts/ensure-system.sh

$(VENV)/.installed: requirements.txt pyproject.toml
	@bash scripts/ensure-system.sh
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	@touch $@

install: $(VENV)/.installed

services:
	@bash scripts/ensure-services.sh

init: install services
	$(PY) -m cutover init

demo: install services
	$(PY) -m cutover demo

test: install services
	$(PYTEST) tests

test-unit: install
	$(PYTEST) tests/unit

test-integration: install services
	$(PYTEST) tests/integration

test-dags: install services
	$(PYTEST) tests/dags

# browser tier: the Airflow API server with the plugin, Debian's headless Chromium (screenshots of a
# failing test go to $$CUTOVER_UI_SCREENSHOTS, default a temp folder named in the failure)
test-ui: install services
	$(PYTEST) tests/ui

# Celery tier: scheduler, dag-processor, API server and two Celery workers (Redis broker, metadata in the
# embedded PostgreSQL) run ship_wide_build; the summary goes to .data/celery-ship-wide-summary.txt
test-celery: install services
	$(PYTEST) tests/celery

# Local UI: LocalExecutor, metadata in the embedded PostgreSQL (database airflow; SQLite's scheduler died on
# "database is locked" under a few runs), api-server + scheduler + dag-processor + triggerer, logs in
# .data/airflow/*.log, every user an admin (local use only), Ctrl-C stops all (scripts/airflow-local.sh).
airflow: install services
	@bash scripts/airflow-local.sh

# The same under the CeleryExecutor: Redis broker (127.0.0.1:6379/5), metadata in the embedded PostgreSQL
# (database airflow_celery), two workers; logs in .data/airflow-celery/ (scripts/airflow-celery.sh).
airflow-celery: install services
	@bash scripts/airflow-celery.sh

bench: install services
	@bash scripts/ensure-bench.sh
	@for b in benchmarks/bench_*.py; do echo "=== $$b"; $(PY) $$b || exit 1; done

lint: install
	$(VENV)/bin/ruff check dags include plugins tests benchmarks
	$(VENV)/bin/mypy include/cutover

up:
	docker compose up -d || docker-compose up -d

down:
	docker compose down || docker-compose down

stop-pg: install
	$(PY) -m cutover stop-pg

clean: stop-pg
	CUTOVER_DATA_DIR=$(CURDIR)/.test-data $(PY) -m cutover stop-pg
	rm -rf .data .test-data great_expectations/uncommitted
