#!/usr/bin/env bash
# Install the Debian packages Cutover needs when they are missing:
#   pkg-config + libmariadb-dev  build mysqlclient (the MySQL provider's driver)
#   mariadb-server               the local MySQL-compatible server the defaults point at
#   redis-server                 the Celery broker of `make airflow-celery` and of the Celery test tier
#   docker-compose               validates docker-compose.yaml in the tests (no engine needed)
#   chromium + chromium-driver   the browser tier (tests/ui) drives Debian's own headless Chromium;
#                                nothing downloads a browser
set -euo pipefail
need=()
for pkg in pkg-config libmariadb-dev docker-compose chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "ensure-system: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
