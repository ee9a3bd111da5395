# Sourced by tools/image-test.sh and tools/stack-test.sh: make sure a Docker engine
# answers, or fail loudly. Installs Debian's docker.io when `docker` is missing
# (root + apt-get), starts dockerd when none answers (overlay2, else vfs where the
# kernel or the backing filesystem cannot do overlay), and stops the dockerd it
# started when the calling script calls docker_engine_stop (in its EXIT trap). Images stay in /var/lib/docker, so the
# next run finds its cached base images.
#
# Sets DOCKER_STARTED=1 when it started the daemon.

docker_engine_fail() {
  echo "docker-engine: $*" >&2
  echo "docker-engine: no Docker engine: the target needs one (see docs/deploy.md#testing-the-image-and-the-stack)" >&2
  exit 1
}

docker_engine_up() {
  docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

docker_engine_stop() {
  if [ "${DOCKER_STARTED:-0}" = 1 ] && [ -f /var/run/docker.pid ]; then
    kill "$(cat /var/run/docker.pid)" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -f /var/run/docker.pid ] || break; sleep 0.1; done
  fi
}

docker_engine_start() {
  local driver=$1 log=/var/log/wfcrawl-dockerd.log
  echo "docker-engine: starting dockerd (storage driver $driver; log $log)"
  dockerd --storage-driver "$driver" >"$log" 2>&1 &
  DOCKER_STARTED=1
  for _ in $(seq 1 300); do
    docker_engine_up && return 0
    kill -0 $! 2>/dev/null || break
    sleep 0.1
  done
  kill $! 2>/dev/null || true
  wait $! 2>/dev/null || true
  tail -5 "$log" >&2
  return 1
}

# A docker client alone (some machines have one, with no engine) is not enough: the engine
# (dockerd) is what the targets need.
if ! docker_engine_up && ! command -v dockerd >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "docker-engine: installing docker.io (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null ||
      docker_engine_fail "apt-get install docker.io failed"
  else
    docker_engine_fail "no Docker engine is installed (Debian: sudo apt-get install docker.io)"
  fi
fi

DOCKER_STARTED=0
if ! docker_engine_up; then
  [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null ||
    docker_engine_fail "the Docker daemon does not answer and cannot be started here (start it: sudo systemctl start docker)"
  docker_engine_start overlay2 || docker_engine_start vfs ||
    docker_engine_fail "dockerd did not start with overlay2 nor vfs"
fi
# Legacy builder: no buildx plugin needed, nothing pulled for a frontend.
export DOCKER_BUILDKIT=0
