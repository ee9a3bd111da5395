#!/usr/bin/env bash
# Make sure what the test suite needs is installed and running (Debian/Ubuntu):
# Redis, PostgreSQL, PgBouncer and Chromium from the distribution's packages.
# Installs missing packages when run as root (apt-get), starts Redis and
# PostgreSQL when they are not answering. Idempotent; `make test` calls it.
# `--bench` (make bench) also installs nginx, the benchmark's web server.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
command -v chromium >/dev/null || need+=(chromium)
if [ "${1:-}" = "--bench" ]; then
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test-services: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "test-services: missing ${need[*]}; install them: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
fi

if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "test-services: starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi

if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "test-services: starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi

# The suite connects as postgres without a password over TCP (trust, as on CI).
for _ in $(seq 1 50); do
  if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    exit 0
  fi
  sleep 0.2
done
echo "test-services: Redis or PostgreSQL did not come up" >&2
exit 1
