#!/usr/bin/env bash
# Make sure what the test suite needs is installed and running (Debian/Ubuntu):
# Redis, PostgreSQL, PgBouncer and Chromium from the distribution's packages, and
# Google's Pub/Sub emulator (google-cloud-cli-pubsub-emulator, from Google's Cloud SDK
# apt repository, which is added when apt does not know the package) with a Java 17
# runtime, and iproute2 and nftables for the fleet tests (network namespaces). Installs missing packages when run as root (apt-get), starts Redis and
# PostgreSQL when they are not answering; the tests start the Pub/Sub emulator
# themselves (tests/pubsub_emulator.py). Idempotent; `make test` calls it.
# `--bench` (make bench) also installs nginx, the benchmark's web server.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
command -v chromium >/dev/null || need+=(chromium)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
# The fleet tests (tests/test_fleet.py, root only): network namespaces and drop rules.
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || need+=(nftables)
emulator=/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator
if ! [ -x "$emulator" ] && ! { command -v gcloud >/dev/null &&
     [ -x "$(dirname "$(readlink -f "$(command -v gcloud)")")/../platform/pubsub-emulator/bin/cloud-pubsub-emulator" ]; }; then
  need+=(google-cloud-cli-pubsub-emulator)
fi
if [ "${1:-}" = "--bench" ]; then
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test-services: installing ${need[*]}"
    apt-get update -qq
    if [[ " ${need[*]} " == *" google-cloud-cli-pubsub-emulator "* ]] &&
       ! apt-cache show google-cloud-cli-pubsub-emulator >/dev/null 2>&1; then
      # Not a Debian package: Google's apt repository, as https://cloud.google.com/sdk/docs/install#deb says.
      echo "test-services: adding Google's Cloud SDK apt repository (for google-cloud-cli-pubsub-emulator)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl gnupg ca-certificates >/dev/null
      curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg |
        gpg --dearmor --yes -o /usr/share/keyrings/cloud.google.gpg
      echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
        >/etc/apt/sources.list.d/google-cloud-sdk.list
      apt-get update -qq
    fi
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
