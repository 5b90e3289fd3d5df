#!/usr/bin/env bash
# Installs the Debian dependencies (if missing) and builds everything into ./build.
# Usage: scripts/build.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRYPTNONO_WERROR=ON "$@" >/dev/null
cmake --build build -j"$(nproc)"
