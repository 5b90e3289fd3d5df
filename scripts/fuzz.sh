#!/bin/bash
# Builds the libFuzzer targets with clang in their own build directory (build-fuzz) and
# runs each for a short fixed time on its committed corpus (ctest label fuzz).
#   scripts/fuzz.sh [SECONDS]      default 20 s per fuzzer (CI); longer runs find more
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
build=${CRYPTNONO_FUZZ_BUILD:-build-fuzz}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCRYPTNONO_FUZZ=ON -DCRYPTNONO_TESTS=OFF -DCRYPTNONO_BENCH=OFF -DCRYPTNONO_FUZZ_SECONDS="$seconds" \
  "${launcher[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_cmdline fuzz_config fuzz_wire
ctest --test-dir "$build" -L fuzz --output-on-failure
