#!/usr/bin/env bash
# Start the local MariaDB (127.0.0.1:3306, root, no password) and, if installed, the local
# PostgreSQL cluster when they are down. The embedded PostgreSQL (pgserver) needs no service:
# Cutover starts it on first use under .data/pg.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

mysql_up() { mysqladmin -h 127.0.0.1 -u root --connect-timeout=2 ping >/dev/null 2>&1; }
if ! mysql_up; then
  echo "ensure-services: starting MariaDB"
  $SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
  if [ ! -d /var/lib/mysql/mysql ]; then $SUDO mariadb-install-db --user=mysql >/dev/null; fi
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  for _ in $(seq 1 60); do mysql_up && break; sleep 1; done
  mysql_up || { echo "ensure-services: MariaDB did not start" >&2; exit 1; }
  # root over TCP without a password, as the defaults expect (a fresh install uses unix_socket auth)
  $SUDO mariadb -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket" 2>/dev/null || true
fi

if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    echo "ensure-services: starting the local PostgreSQL cluster"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi
