#!/usr/bin/env bash
# Install what the benchmarks' anchors need when it is missing (make bench calls this):
#   pgloader   the MySQL → PostgreSQL anchor of benchmarks/bench_mysql_to_postgres.py (Debian's package)
set -euo pipefail
need=()
command -v pgloader >/dev/null 2>&1 || need+=(pgloader)
if [ ${#need[@]} -gt 0 ]; then
  echo "ensure-bench: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
