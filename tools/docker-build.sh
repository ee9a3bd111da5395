# Sourced by tools/image-test.sh and tools/stack-test.sh (after tools/docker-engine.sh):
# build docker/Dockerfile without pulling anything.
#
#   wfcrawl_base IMAGE [PACKAGE...]   a debootstrap base (tools/docker-base.sh), cached
#   wfcrawl_build TAG [docker build options]
#                                     docker/Dockerfile on wfcrawl-base:<suite>, with this
#                                     machine's pip index settings as build arguments
#
# The host network: builds reach the package index and the apt mirror as this machine
# does. Index settings are passed at build time only (never written to the repository).

. /etc/os-release
WFCRAWL_BASE=wfcrawl-base:${VERSION_CODENAME}
PY=${PYTHON:-.venv/bin/python}

wfcrawl_base() {
  bash tools/docker-base.sh "$@"
}

# This machine's pip index settings as --build-arg options (file:// indexes are not
# reachable from inside the build and are left out; a configured CA bundle becomes the
# base image's system bundle, which tools/docker-base.sh gave this machine's local CAs).
wfcrawl_pip_args() {
  "$PY" - <<'PYEOF'
import re, subprocess, sys
out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
found = {}
for line in out.splitlines():
    m = re.match(r"^[^.]*\.(index-url|extra-index-url|trusted-host|cert)='(.*)'$", line)
    if m:
        found[m.group(1)] = m.group(2)  # later lines (the environment) win
for key, value in found.items():
    if key == "cert":
        value = "/etc/ssl/certs/ca-certificates.crt"
    elif key in ("index-url", "extra-index-url"):
        value = " ".join(u for u in value.split() if not u.startswith("file:"))
    if value:
        print(f"--build-arg=PIP_{key.upper().replace('-', '_')}={value}")
PYEOF
}

wfcrawl_build() {
  local tag=$1 log
  shift
  log=$(mktemp /tmp/wfcrawl-docker-build.XXXXXX.log)
  wfcrawl_base "$WFCRAWL_BASE"
  mapfile -t pip_args < <(wfcrawl_pip_args)
  echo "docker build (BASE_IMAGE=$WFCRAWL_BASE) -> $tag"
  local start
  start=$(date +%s)
  if ! docker build --network host -f docker/Dockerfile -t "$tag" --build-arg "BASE_IMAGE=$WFCRAWL_BASE" \
      "${pip_args[@]}" "$@" . >"$log" 2>&1; then
    tail -30 "$log" >&2
    echo "docker build failed (log $log)" >&2
    return 1
  fi
  rm -f "$log"
  echo "built $tag in $(($(date +%s) - start)) s: $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
}
