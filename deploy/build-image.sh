#!/usr/bin/env bash
# Builds the cryptnono image with podman, from the repository root, as
# localhost/cryptnono:<chart appVersion> (the chart's default image) unless IMAGE is
# given. Makes the Debian base image first when it is missing (no registry needed).
# Usage: deploy/build-image.sh [IMAGE]       (run as root; see deploy/README.md)
# Environment: CRYPTNONO_APT_CACHE=DIR  apt archive cache bind-mounted into the builder
#   stage (default /var/cache/apt/archives when it exists; "none" to disable). The
#   packages are the same either way; the cache only saves downloading them again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/podman/containers.conf}
version=$(awk '/^appVersion:/ {gsub(/"/, "", $2); print $2}' "$here/helm/cryptnono/Chart.yaml")
image=${1:-localhost/cryptnono:$version}

"$here/make-base-image.sh"

cache=${CRYPTNONO_APT_CACHE:-/var/cache/apt/archives}
volumes=()
if [[ $cache != none && -d $cache ]]; then
  volumes=(--volume "$cache:/var/cache/apt/archives")
fi
podman build --network=host "${volumes[@]}" \
  --ignorefile "$here/Dockerfile.dockerignore" \
  -f "$here/Dockerfile" -t "$image" "$repo"
