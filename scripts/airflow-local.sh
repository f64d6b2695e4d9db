#!/usr/bin/env bash
# `make airflow`: Airflow on this machine with the LocalExecutor, these DAGs, plugin and connections —
# what `airflow standalone` gave, but on PostgreSQL: under a few runs at once, standalone's SQLite
# metadata database died on `database is locked` (scheduler, dag-processor and triggerer) within minutes.
#
#   metadata DB      database `airflow` in the embedded PostgreSQL (.data/pg, unix socket), created when
#                    missing; `make demo` writes its runs there too, so they show in this UI.
#                    Set AIRFLOW__DATABASE__SQL_ALCHEMY_CONN for another.
#   executor         LocalExecutor, $CUTOVER_LOCAL_PARALLELISM (4) tasks at once (AIRFLOW__CORE__PARALLELISM wins)
#   processes        api-server (UI + execution API, http://localhost:$AIRFLOW_PORT, default 8080),
#                    scheduler (runs the tasks), dag-processor, triggerer
#   AIRFLOW_HOME     .data/airflow (the Makefile's, or yours); every process logs to $AIRFLOW_HOME/<process>.log,
#                    task logs are in $AIRFLOW_HOME/logs
#
# One command, Ctrl-C (or any process exiting) stops them all. Every UI user is an admin (no login):
# local use only.
# shellcheck source=scripts/airflow-env.sh
source "$(dirname "$0")/airflow-env.sh"

airflow_env airflow "${AIRFLOW_HOME:-$ROOT/.data/airflow}" airflow
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-${CUTOVER_LOCAL_PARALLELISM:-4}}"
airflow_migrate airflow

start api-server "$AIRFLOW" api-server --host 127.0.0.1 --port "$PORT"
start scheduler "$AIRFLOW" scheduler
start dag-processor "$AIRFLOW" dag-processor
start triggerer "$AIRFLOW" triggerer

echo "airflow: http://localhost:$PORT — LocalExecutor ($AIRFLOW__CORE__PARALLELISM tasks at once), metadata in" \
     "the embedded PostgreSQL; logs in $AIRFLOW_HOME/*.log; every user is an admin (no login); Ctrl-C stops all"
run_until_one_exits airflow
