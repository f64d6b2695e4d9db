# Sourced by scripts/airflow-local.sh (`make airflow`) and scripts/airflow-celery.sh (`make airflow-celery`):
# what both local Airflows share. Not run on its own.
#
#   airflow_env HOME DATABASE   export the settings: AIRFLOW_HOME=HOME, the connections of `make demo`
#                               (AIRFLOW_CONN_* for every default not already set), the metadata database
#                               DATABASE in the embedded PostgreSQL (.data/pg; created when missing;
#                               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN set beforehand wins), one JWT secret for
#                               the API server and the scheduler, the execution API on 127.0.0.1:$PORT,
#                               these DAGs and plugin, every UI user an admin (local use only)
#   airflow_migrate TAG         `airflow db migrate`, its log in HOME/db-migrate.log (shown when it fails)
#   start NAME CMD…             a process in its own process group, logging to HOME/NAME.log
#   run_until_one_exits TAG     wait; when any process exits (or on Ctrl-C) stop them all, show its log
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
AIRFLOW="$VENV/bin/airflow"
PORT="${AIRFLOW_PORT:-8080}"

airflow_env() {
  local tag="$1" home="$2" database="$3"
  [ -x "$AIRFLOW" ] || { echo "$tag: $AIRFLOW is missing (make install)" >&2; exit 1; }
  export AIRFLOW_HOME="$home"
  mkdir -p "$AIRFLOW_HOME"
  eval "$("$PY" -m cutover env)"
  if [ -z "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" ]; then
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="$("$PY" -m cutover.airflow_metadata "$database")"
  fi
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  # Airflow 3: task runners report to the API server's execution API
  export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://127.0.0.1:$PORT/execution/}"
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
}

airflow_migrate() {
  local tag="$1"
  echo "$tag: migrating the metadata database"
  "$AIRFLOW" db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { tail -n 30 "$AIRFLOW_HOME/db-migrate.log" >&2; exit 1; }
}

pids=()
names=()
start() {
  local name="$1"; shift
  setsid "$@" > "$AIRFLOW_HOME/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
}

_stop_all() {
  trap - INT TERM EXIT
  echo "$1: stopping"
  local pid alive
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}

run_until_one_exits() {
  local tag="$1" status i
  # shellcheck disable=SC2064  # the tag is fixed now
  trap "_stop_all $tag; exit 130" INT TERM
  # shellcheck disable=SC2064
  trap "_stop_all $tag" EXIT
  set +e
  wait -n "${pids[@]}"
  status=$?
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "$tag: ${names[$i]} exited; its log ends:" >&2
      tail -n 20 "$AIRFLOW_HOME/${names[$i]}.log" >&2
    fi
  done
  exit "$status"
}
