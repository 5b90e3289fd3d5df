#!/usr/bin/env bash
# Makes the Dockerfile's base image, docker.io/library/debian:bookworm-slim, without a
# registry: debootstrap a minimal Debian 12 from the machine's own apt mirror and
# `podman import` it under that name. Skips the work when the image already exists.
# Usage: deploy/make-base-image.sh [IMAGE]   (run as root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/podman/containers.conf}
image=${1:-docker.io/library/debian:bookworm-slim}
if podman image exists "$image"; then
  exit 0
fi

# The mirror and suites apt already uses here (deb822 or one-line format).
sources=/etc/apt/sources.list.d/debian.sources
if [[ -f $sources ]]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' "$sources")
else
  sources=/etc/apt/sources.list
  mirror=$(awk '$1 == "deb" {print $2; exit}' "$sources")
fi
mirror=${mirror:-http://deb.debian.org/debian}

root=$(mktemp -d /var/tmp/cryptnono-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
# Same apt sources as the host (bookworm-updates and security too), so the builder
# stage gets the same package versions as a developer's machine.
if [[ $sources == *.sources ]]; then
  rm -f "$root/etc/apt/sources.list"
  cp "$sources" "$root/etc/apt/sources.list.d/debian.sources"
else
  cp "$sources" "$root/etc/apt/sources.list"
fi
# What the official slim image leaves out: apt lists, caches, docs and man pages.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/*
tar -C "$root" -c . | podman import --change 'CMD ["bash"]' - "$image" >/dev/null
echo "imported $image"
