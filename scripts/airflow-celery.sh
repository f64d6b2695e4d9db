#!/usr/bin/env bash
# `make airflow-celery`: Airflow with the CeleryExecutor on this machine, the same DAGs, plugin and
# connections as `make airflow`, but tasks go through a Redis broker to Celery workers (two here; on
# more machines, start `airflow celery worker` on each with the same settings).
#
#   metadata DB      database `airflow_celery` in the embedded PostgreSQL (.data/pg, unix socket);
#                    SQLite cannot serve Celery. Set AIRFLOW__DATABASE__SQL_ALCHEMY_CONN for another.
#   broker           Redis, redis://127.0.0.1:6379/5 (database 5: Cutover's own; the tests use 6);
#                    AIRFLOW__CELERY__BROKER_URL overrides it
#   result backend   the metadata database (db+postgresql)
#   processes        api-server (UI + execution API, http://localhost:$AIRFLOW_PORT), scheduler,
#                    dag-processor, triggerer, and $CUTOVER_CELERY_WORKERS (2) × `airflow celery worker`
#                    named worker-1@<host>, worker-2@<host> …, $CUTOVER_CELERY_CONCURRENCY (2) tasks each
#   AIRFLOW_HOME     .data/airflow-celery (not `make airflow`'s .data/airflow); every process logs to
#                    .data/airflow-celery/<process>.log, task logs are in .data/airflow-celery/logs
#
# Ctrl-C (or any process exiting) stops them all. Every UI user is an admin: local use only.
# shellcheck source=scripts/airflow-env.sh
source "$(dirname "$0")/airflow-env.sh"

WORKERS="${CUTOVER_CELERY_WORKERS:-2}"
CONCURRENCY="${CUTOVER_CELERY_CONCURRENCY:-2}"
# connections, metadata database `airflow_celery`, JWT secret, DAGs, plugin, admins: as `make airflow`
airflow_env airflow-celery "${CUTOVER_CELERY_HOME:-$ROOT/.data/airflow-celery}" airflow_celery
export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
export AIRFLOW__CELERY__BROKER_URL="${AIRFLOW__CELERY__BROKER_URL:-redis://127.0.0.1:6379/5}"
export AIRFLOW__CELERY__RESULT_BACKEND="${AIRFLOW__CELERY__RESULT_BACKEND:-db+$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN}"
export AIRFLOW__CELERY__WORKER_CONCURRENCY="$CONCURRENCY"

broker_ok="$("$PY" -c 'import os, redis; print(redis.Redis.from_url(os.environ["AIRFLOW__CELERY__BROKER_URL"], socket_connect_timeout=3).ping())' 2>/dev/null || true)"
if [ "$broker_ok" != "True" ]; then
  echo "airflow-celery: no Redis at $AIRFLOW__CELERY__BROKER_URL (make services starts the local one)" >&2
  exit 1
fi

airflow_migrate airflow-celery

start api-server "$AIRFLOW" api-server --host 127.0.0.1 --port "$PORT"
start scheduler "$AIRFLOW" scheduler
start dag-processor "$AIRFLOW" dag-processor
start triggerer "$AIRFLOW" triggerer
# every worker runs here and writes its task logs to $AIRFLOW_HOME/logs, which the API server reads
# itself: no worker needs to serve logs (they would all want port 8793)
for i in $(seq 1 "$WORKERS"); do
  start "worker-$i" "$AIRFLOW" celery worker --celery-hostname "worker-$i@%h" --concurrency "$CONCURRENCY" --skip-serve-logs
done

echo "airflow-celery: http://localhost:$PORT — CeleryExecutor, broker $AIRFLOW__CELERY__BROKER_URL," \
     "$WORKERS workers × $CONCURRENCY (worker-1…$WORKERS@$(hostname)); logs in $AIRFLOW_HOME/*.log; Ctrl-C stops all"
run_until_one_exits airflow-celery
