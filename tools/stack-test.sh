#!/usr/bin/env bash
# `make stack-test`: the compose stack (docker/compose.yaml) on images built here
# (docker/test/compose.yaml swaps them in: nothing is pulled), brought up, checked by
# tests/test_deploy_stack.py (a launch through the API and a Pub/Sub message to the
# workers write rows to PostgreSQL through PgBouncer), and torn down.
#
# Needs Docker Compose v2 (`docker compose`) or docker-compose 1.29+ (installed from
# Debian when neither is there and this runs as root). Fails when no Docker engine can
# be started.
set -euo pipefail
cd "$(dirname "$0")/.."

. tools/docker-engine.sh
. tools/docker-build.sh

# Compose: v2 if present, else docker-compose >= 1.29 (service_completed_successfully).
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  if ! command -v docker-compose >/dev/null; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
      { echo "stack-test: Docker Compose is missing (v2, or docker-compose 1.29+)" >&2; exit 1; }
    echo "stack-test: installing docker-compose (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
  fi
  version=$(docker-compose version --short)
  if [ "$(printf '%s\n1.29.0\n' "$version" | sort -V | head -n 1)" != 1.29.0 ]; then
    echo "stack-test: docker-compose $version is too old: docker/compose.yaml needs 1.29+ or Compose v2" >&2
    exit 1
  fi
  compose=(docker-compose)
fi
project=wfcrawl-stack-test
dc=("${compose[@]}" -p "$project" -f docker/compose.yaml -f docker/test/compose.yaml)

cleanup() {
  "${dc[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  docker_engine_stop
}
trap cleanup EXIT

# The images: wfcrawl itself, PgBouncer (docker/pgbouncer/Dockerfile) on the same base,
# Debian's services, Google's Pub/Sub emulator as installed here, gcp-storage-emulator.
wfcrawl_build wfcrawl:stack-test
emulator=${WFCRAWL_PUBSUB_EMULATOR_DIR:-}
if [ -z "$emulator" ]; then
  for d in "$(dirname "$(readlink -f "$(command -v gcloud || echo /nonexistent)")")/../platform/pubsub-emulator" \
           /usr/lib/google-cloud-sdk/platform/pubsub-emulator; do
    [ -x "$d/bin/cloud-pubsub-emulator" ] && emulator=$(readlink -f "$d") && break
  done
fi
[ -n "$emulator" ] || { echo "stack-test: no Pub/Sub emulator (tools/test-services.sh installs it)" >&2; exit 1; }
wfcrawl_base wfcrawl-services:"$VERSION_CODENAME" redis-server postgresql openjdk-17-jre-headless
docker tag wfcrawl-services:"$VERSION_CODENAME" wfcrawl-services:stack-test
docker build -q --network host --build-arg "BASE_IMAGE=$WFCRAWL_BASE" -t wfcrawl-pgbouncer:stack-test docker/pgbouncer >/dev/null
ctx=$(mktemp -d)
cp -r "$emulator" "$ctx/pubsub-emulator"
printf 'FROM wfcrawl-services:stack-test\nCOPY pubsub-emulator /opt/pubsub-emulator\n' >"$ctx/Dockerfile"
docker build -q -t wfcrawl-pubsub:stack-test "$ctx" >/dev/null
rm -rf "$ctx"
mapfile -t pip_args < <(wfcrawl_pip_args)
gcs_version=$("$PY" -c 'import importlib.metadata as m; print(m.version("gcp-storage-emulator"))')
printf 'FROM wfcrawl:stack-test\nUSER root\nARG PIP_INDEX_URL\nARG PIP_EXTRA_INDEX_URL\nARG PIP_TRUSTED_HOST\nARG PIP_CERT\nRUN pip install gcp-storage-emulator==%s\nUSER wfcrawl\n' "$gcs_version" |
  docker build -q --network host "${pip_args[@]}" -t wfcrawl-gcs:stack-test - >/dev/null

# Up, with an API key of this run and any free host ports.
key_line=$("$PY" -m wfcrawl.cli api-key stack-test)
export WFCRAWL_API_KEYS=${key_line##* }
key=$(printf '%s\n' "$key_line" | sed -n 's/^API key.*: \(wfk_[^ ]*\)$/\1/p')
export WFCRAWL_API_PORT= WFCRAWL_PGBOUNCER_PORT= WFCRAWL_GCS_PORT= WFCRAWL_PUBSUB_PORT=
start=$(date +%s)
"${dc[@]}" up -d --no-build >/tmp/wfcrawl-stack-up.log 2>&1 ||
  { tail -30 /tmp/wfcrawl-stack-up.log >&2; "${dc[@]}" logs --tail 30 >&2 || true; exit 1; }
port() { "${dc[@]}" port "$1" "$2" | sed 's/.*://'; }
export WFCRAWL_STACK_API=http://127.0.0.1:$(port launcher 8080)
export WFCRAWL_STACK_DATABASE=postgresql://postgres:wfcrawl@127.0.0.1:$(port pgbouncer 6432)/wfcrawl
export WFCRAWL_STACK_PUBSUB=127.0.0.1:$(port pubsub 8085)
export WFCRAWL_STACK_KEY=$key WFCRAWL_STACK_SITE=http://site:8000
echo "stack-test: stack up in $(($(date +%s) - start)) s; API $WFCRAWL_STACK_API"
"$PY" -m pytest -q tests/test_deploy_stack.py || { "${dc[@]}" logs --tail 40 launcher worker >&2; exit 1; }
