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
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
AIRFLOW="$VENV/bin/airflow"
[ -x "$AIRFLOW" ] || { echo "airflow-celery: $AIRFLOW is missing (make install)" >&2; exit 1; }

export AIRFLOW_HOME="${CUTOVER_CELERY_HOME:-$ROOT/.data/airflow-celery}"
PORT="${AIRFLOW_PORT:-8080}"
WORKERS="${CUTOVER_CELERY_WORKERS:-2}"
CONCURRENCY="${CUTOVER_CELERY_CONCURRENCY:-2}"
mkdir -p "$AIRFLOW_HOME"

# the connections of `make airflow` (AIRFLOW_CONN_* for every default not already set)
eval "$("$PY" -m cutover env)"

# Airflow's metadata database: `airflow_celery` in the embedded PostgreSQL, created when missing
if [ -z "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" ]; then
  AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="$("$PY" - <<'EOF'
from urllib.parse import quote

import psycopg

from cutover.connections import start_embedded_postgres

server = start_embedded_postgres()
with psycopg.connect(server.pg_conninfo(), autocommit=True) as conn:
    if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow_celery'").fetchone() is None:
        conn.execute("CREATE DATABASE airflow_celery")
print(f"postgresql+psycopg2://{quote(server.login)}@/airflow_celery?host={quote(server.host, safe='/')}")
EOF
)"
fi
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
export AIRFLOW__CELERY__BROKER_URL="${AIRFLOW__CELERY__BROKER_URL:-redis://127.0.0.1:6379/5}"
export AIRFLOW__CELERY__RESULT_BACKEND="${AIRFLOW__CELERY__RESULT_BACKEND:-db+$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN}"
export AIRFLOW__CELERY__WORKER_CONCURRENCY="$CONCURRENCY"
# Airflow 3: task runners on the workers report to the API server's execution API
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://127.0.0.1:$PORT/execution/}"
# one JWT secret for the API server and the scheduler that signs the workers' task tokens
if [ -z "${AIRFLOW__API_AUTH__JWT_SECRET:-}" ]; then
  [ -s "$AIRFLOW_HOME/.jwt_secret" ] || (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$AIRFLOW_HOME/.jwt_secret")
  AIRFLOW__API_AUTH__JWT_SECRET="$(cat "$AIRFLOW_HOME/.jwt_secret")"
  export AIRFLOW__API_AUTH__JWT_SECRET
fi
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$ROOT/dags}"
export AIRFLOW__CORE__PLUGINS_FOLDER="${AIRFLOW__CORE__PLUGINS_FOLDER:-$ROOT/plugins}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export GX_ANALYTICS_ENABLED=false
export PATH="$VENV/bin:$PATH"

broker_ok="$("$PY" -c 'import os, redis; print(redis.Redis.from_url(os.environ["AIRFLOW__CELERY__BROKER_URL"], socket_connect_timeout=3).ping())' 2>/dev/null || true)"
if [ "$broker_ok" != "True" ]; then
  echo "airflow-celery: no Redis at $AIRFLOW__CELERY__BROKER_URL (make services starts the local one)" >&2
  exit 1
fi

echo "airflow-celery: migrating the metadata database"
"$AIRFLOW" db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { tail -n 30 "$AIRFLOW_HOME/db-migrate.log" >&2; exit 1; }

pids=()
names=()
start() {  # start NAME ARGS…: a process in its own process group, logging to $AIRFLOW_HOME/NAME.log
  local name="$1"; shift
  setsid "$@" > "$AIRFLOW_HOME/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
}
stop_all() {
  trap - INT TERM EXIT
  echo "airflow-celery: stopping"
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT

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
set +e
wait -n "${pids[@]}"
status=$?
for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "airflow-celery: ${names[$i]} exited; its log ends:" >&2
    tail -n 20 "$AIRFLOW_HOME/${names[$i]}.log" >&2
  fi
done
exit "$status"
