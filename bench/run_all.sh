#!/usr/bin/env bash
# Runs every benchmark (BENCHMARKS.md explains each) and writes OUT/results.md.
#
#   bench/run_all.sh [--build DIR] [--out DIR] [--smoke] [--parts 1,2,3,4] [--no-build]
#
# --build: a configured build tree (default: build); the benchmark targets are built in it
#          first (with -j2: this is a 2-core machine) unless --no-build.
# --out:   where results go (default: DIR/bench-results).
# --smoke: seconds-long runs of every part, no targets checked (what CI runs).
# Parts 2-4 need root (they load BPF programs and kill their own test processes).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(dirname "$here")"
build="$src/build"
out=""
smoke=()
parts="1,2,3,4"
do_build=1
while (($#)); do
  case "$1" in
    --build) build="$(realpath "$2")"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --smoke) smoke=(--smoke); shift ;;
    --parts) parts="$2"; shift 2 ;;
    --no-build) do_build=0; shift ;;
    *) echo "usage: $0 [--build DIR] [--out DIR] [--smoke] [--parts 1,2,3,4] [--no-build]" >&2; exit 2 ;;
  esac
done
out="$(realpath -m "${out:-$build/bench-results}")"
mkdir -p "$out"
py=/usr/bin/python3  # Debian's python3 (python3-ahocorasick is installed for it)

if ((do_build)); then
  cmake --build "$build" -j2 --target matcher_bench cryptnono-enforcer cryptnono-collector cryptnono-exporter \
    floor_consumer cnb-victim cnb-exit0 exec_latency exec_storm pipeline_tap kill_path hop_bench >&2
fi
if [[ ",$parts," == *,1,* ]] && ! "$py" -c "import ahocorasick" 2>/dev/null; then
  echo "$0: $py cannot import ahocorasick: install python3-ahocorasick (scripts/install-deps.sh)" >&2
  exit 1
fi
if [[ ",$parts," == *,[234],* ]] && ((EUID != 0)); then
  echo "$0: parts 2-4 need root (BPF, kills); skipping them" >&2
  parts="${parts//[234]/}"
  skipped_root=1
fi

"$py" -c "import sys, json; sys.path.insert(0, '$here'); import benchutil; \
json.dump(benchutil.machine(), open('$out/machine.json', 'w'))"

if [[ ",$parts," == *,1,* ]]; then
  rm -f "$out"/matcher*.jsonl "$out"/enforcer-rss.jsonl
  "$py" "$here/matcher/run_matcher.py" --build "$build" --out "$out" "${smoke[@]}"
fi
if [[ ",$parts," == *,[234],* ]]; then
  [[ ",$parts," == *,2,* ]] && rm -f "$out/latency.jsonl" "$out/killpath.jsonl" "$out/hop.jsonl"
  [[ ",$parts," == *,3,* ]] && rm -f "$out/throughput.jsonl"
  [[ ",$parts," == *,4,* ]] && rm -f "$out/cost.jsonl"
  "$py" "$here/pipeline/run_pipeline.py" --build "$build" --out "$out" --parts "$parts" "${smoke[@]}"
fi

"$py" "$here/report.py" "$out" > "$out/results.md"
echo "results: $out/results.md" >&2
# 77: CTest's "skipped" (SKIP_RETURN_CODE) when nothing could run without root.
if [[ -n "${skipped_root:-}" && "$parts" != *1* ]]; then exit 77; fi
