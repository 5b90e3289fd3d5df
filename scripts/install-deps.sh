#!/usr/bin/env bash
# Installs every build and test dependency of cryptnono from Debian 12 packages.
# Idempotent; run as root. Nothing is downloaded from anywhere but apt.
#   scripts/install-deps.sh               build + test dependencies
#   scripts/install-deps.sh --build-only  what compiling needs (the image's builder stage)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  build-essential cmake pkg-config git ca-certificates curl
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev
  libzmq3-dev cppzmq-dev capnproto libcapnp-dev
  libspdlog-dev libfmt-dev prometheus-cpp-dev libcivetweb-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libre2-dev libvectorscan-dev libexpected-dev libcli11-dev nlohmann-json3-dev
  libcap-dev python3 procps iproute2 ccache
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
)
if [[ "${1:-}" != "--build-only" ]]; then
  pkgs+=(
    python3-ahocorasick                       # the benchmark's Python reference matcher
    libclang-rt-14-dev                        # libFuzzer and the sanitizers (scripts/fuzz.sh)
    containerd runc busybox-static docker.io  # the runtime tier (tests/runtime)
  )
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
