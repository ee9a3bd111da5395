#!/bin/bash
# Startup script of the PgBouncer VM on Compute Engine (docs/deploy.md, step 3):
# Debian's PgBouncer with the pgbouncer.ini and userlist.txt passed as instance
# metadata (pgbouncer-ini, pgbouncer-users). Runs at every boot; idempotent.
set -euo pipefail
attribute() {
  curl -fsS -H 'Metadata-Flavor: Google' \
    "http://metadata.google.internal/computeMetadata/v1/instance/attributes/$1"
}
if ! command -v pgbouncer >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer
fi
attribute pgbouncer-ini >/etc/pgbouncer/pgbouncer.ini
attribute pgbouncer-users >/etc/pgbouncer/userlist.txt
chown postgres:postgres /etc/pgbouncer/pgbouncer.ini /etc/pgbouncer/userlist.txt
chmod 640 /etc/pgbouncer/userlist.txt
# Many client connections: the open-files limit must exceed max_client_conn.
mkdir -p /etc/systemd/system/pgbouncer.service.d
printf '[Service]\nLimitNOFILE=65536\n' >/etc/systemd/system/pgbouncer.service.d/limits.conf
systemctl daemon-reload
systemctl restart pgbouncer
