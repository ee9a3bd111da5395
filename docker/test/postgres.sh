#!/bin/bash
# PostgreSQL from Debian's package for docker/test/compose.yaml: a throw-away cluster in
# $PGDATA with the database wfcrawl, trusting the stack's network (PgBouncer in front
# authenticates the clients, as docker/pgbouncer.ini says).
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
"$bin/initdb" -D "$PGDATA" -U postgres --auth=trust >/dev/null
echo "host all all 0.0.0.0/0 trust" >>"$PGDATA/pg_hba.conf"
echo "CREATE DATABASE wfcrawl;" | "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp
