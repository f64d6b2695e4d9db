#!/usr/bin/env bash
# Start the local MariaDB (127.0.0.1:3306, root, no password), Redis (127.0.0.1:6379) and, if
# installed, the local PostgreSQL cluster when they are down. The embedded PostgreSQL (pgserver) needs no service:
# Cutover starts it on first use under .data/pg.
#
# MariaDB runs with the binary log in ROW format with full row images and full row metadata (column
# names, charsets, ENUM/SET values in the log), which the change reader (cutover.binlog, the sync
# stage) needs. A MariaDB that is already up without the binary log is restarted with it; one that
# has it but with another format is switched at run time (SET GLOBAL). Quiet when all is well.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

# --log-bin: the binary log, files /var/lib/mysql/mysql-bin.NNNNNN (a fixed name, not the host name);
# --binlog-expire-logs-seconds: keep 3 days of log, so a reader can resume after a long pause.
MARIADB_BINLOG_OPTS=(--log-bin=mysql-bin --server-id=1 --binlog-format=ROW --binlog-row-image=FULL
                     --binlog-row-metadata=FULL --binlog-expire-logs-seconds=259200)

mysql_up() { mysqladmin -h 127.0.0.1 -u root --connect-timeout=2 ping >/dev/null 2>&1; }
mysql_value() { mariadb -h 127.0.0.1 -u root --connect-timeout=2 -N -B -e "$1" 2>/dev/null; }
mariadbd_running() { start-stop-daemon --status --exec /usr/sbin/mariadbd >/dev/null 2>&1; }

start_mariadb() {
  $SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
  if [ ! -d /var/lib/mysql/mysql ]; then $SUDO mariadb-install-db --user=mysql >/dev/null; fi
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql \
    "${MARIADB_BINLOG_OPTS[@]}"
  for _ in $(seq 1 60); do mysql_up && break; sleep 1; done
  mysql_up || { echo "ensure-services: MariaDB did not start" >&2; exit 1; }
}

if ! mysql_up; then
  echo "ensure-services: starting MariaDB"
  start_mariadb
  # root over TCP without a password, as the defaults expect (a fresh install uses unix_socket auth)
  $SUDO mariadb -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket" 2>/dev/null || true
elif [ "$(mysql_value 'SELECT @@log_bin')" = "0" ]; then
  echo "ensure-services: restarting MariaDB with the binary log (ROW format)"
  mariadb-admin -h 127.0.0.1 -u root shutdown 2>/dev/null || mysqladmin -h 127.0.0.1 -u root shutdown
  for _ in $(seq 1 60); do { mysql_up || mariadbd_running; } || break; sleep 1; done
  if mysql_up || mariadbd_running; then echo "ensure-services: MariaDB did not stop" >&2; exit 1; fi
  start_mariadb
fi

# The binary log is on; its format is dynamic: fix it at run time when someone changed it.
settings="$(mysql_value 'SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata')" || true
if [ "$settings" != "$(printf '1\tROW\tFULL\tFULL')" ]; then
  if [ "${settings%%$'\t'*}" != "1" ]; then
    echo "ensure-services: MariaDB has no binary log (@@log_bin, format, image, metadata: ${settings:-?})" >&2
    exit 1
  fi
  echo "ensure-services: setting MariaDB's binlog_format=ROW, binlog_row_image=FULL, binlog_row_metadata=FULL"
  mariadb -h 127.0.0.1 -u root -e "SET GLOBAL binlog_format='ROW'; SET GLOBAL binlog_row_image='FULL'; SET GLOBAL binlog_row_metadata='FULL'"
fi

if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    echo "ensure-services: starting the local PostgreSQL cluster"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi

# Redis, the Celery broker of `make airflow-celery` (database 5) and of the Celery test tier (database
# 6): a server already answering on 127.0.0.1:6379 is used as it is. Otherwise Debian's service is
# started, or where there is no service manager, redis-server itself as a broker only (no snapshots,
# its log in .data/redis/). Without Redis only those two need it: a warning, not a failure.
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! redis_up; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "ensure-services: redis-server is not installed (make system); make airflow-celery and the Celery tests need it" >&2
  else
    echo "ensure-services: starting Redis (127.0.0.1:6379)"
    $SUDO service redis-server start >/dev/null 2>&1 || true
    for _ in $(seq 1 10); do redis_up && break; sleep 0.5; done
    if ! redis_up; then
      redis_dir="$(cd "$(dirname "$0")/.." && pwd)/.data/redis"
      mkdir -p "$redis_dir"
      redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no \
        --dir "$redis_dir" --logfile "$redis_dir/redis.log" >/dev/null || true
      for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
    fi
    redis_up || echo "ensure-services: Redis did not start; make airflow-celery and the Celery tests need it" >&2
  fi
fi
