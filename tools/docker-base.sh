#!/usr/bin/env bash
# Build a Debian base image without pulling anything from a registry: debootstrap
# this machine's Debian release from the mirror its apt sources name, then
# `docker import`. Used where no registry can be reached (make image-test,
# make stack-test); users build on the public python:3.11-slim instead.
#
#   tools/docker-base.sh IMAGE [PACKAGE...]
#
# IMAGE gets python3 + python3-venv + ca-certificates (what docker/Dockerfile needs
# of its base) plus PACKAGEs. It is kept in the daemon: when IMAGE exists the
# script does nothing (delete it to rebuild: docker rmi IMAGE).
#
# The mirror is read from /etc/apt/sources.list(.d) at run time. Local CA
# certificates of this machine (/usr/local/share/ca-certificates) are added to the
# image, so apt and pip inside builds trust what the machine trusts (a proxy's CA).
set -euo pipefail

image=${1:?usage: tools/docker-base.sh IMAGE [PACKAGE...]}
shift
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "docker-base: $image exists (cached in the daemon)"
  exit 0
fi

. /etc/os-release
suite=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}

# The first Debian source of this machine for $suite (deb822 .sources, then one-line .list).
mirror=$(
  for f in /etc/apt/sources.list.d/*.sources; do if [ -f "$f" ]; then cat "$f"; echo; fi; done |
    awk -v suite="$suite" '
      found != "" { next }  # read to the end: an early exit would break the pipe (pipefail)
      /^[[:space:]]*$/ { if (uris != "" && has) found = uris; uris = ""; has = 0; next }
      /^URIs:/ { uris = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) has = 1 }
      END { if (found == "" && uris != "" && has) found = uris; if (found != "") print found }'
)
if [ -z "$mirror" ]; then
  mirror=$({ cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
    awk -v suite="$suite" 'found == "" && $1 == "deb" { for (i = 2; i <= NF; i++) if ($i == suite) found = $(i - 1) }
                           END { if (found != "") print found }')
fi
[ -n "$mirror" ] || { echo "docker-base: no apt source for $suite in /etc/apt" >&2; exit 1; }

command -v debootstrap >/dev/null || {
  echo "docker-base: installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

packages=python3,python3-venv,ca-certificates
for p in "$@"; do packages="$packages,$p"; done

root=$(mktemp -d /var/tmp/wfcrawl-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "docker-base: debootstrap $suite ($packages) from the machine's Debian mirror"
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 ||
  { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# As Debian's docker images are: apt sources, no caches, no man pages.
printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$suite" "$mirror" "$suite" >"$root/etc/apt/sources.list"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/man/* "$root"/usr/share/doc/* "$root"/var/cache/debconf/*-old

tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  -c 'CMD ["bash"]' - "$image" >/dev/null
echo "docker-base: $image built ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
