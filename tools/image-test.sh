#!/usr/bin/env bash
# `make image-test`: build docker/Dockerfile and run tests/test_deploy_image.py against the image.
#
# Nothing is pulled: the base is Debian from this machine's apt mirror (tools/docker-base.sh,
# cached in the daemon), passed as BASE_IMAGE. pip inside the build reaches the package
# index the way this machine's pip does (tools/docker-build.sh). Fails when no Docker
# engine can be started (tools/docker-engine.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${WFCRAWL_IMAGE:-wfcrawl:image-test}

. tools/docker-engine.sh
trap docker_engine_stop EXIT
. tools/docker-build.sh

wfcrawl_build "$IMAGE"
WFCRAWL_IMAGE=$IMAGE "$PY" -m pytest -q tests/test_deploy_image.py
