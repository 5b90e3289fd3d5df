#!/usr/bin/env bash
# Sets up, builds and runs the whole pipeline on this machine until interrupted:
# collector -> enforcer (execwhacker, embedded default config) -> exporter, three
# processes talking over ipc sockets in a private directory. JSON decision lines go to
# stdout, the stages' own logs to stderr, Prometheus metrics to :12121/metrics.
# Run as root (the collector needs CAP_BPF and CAP_PERFMON to load, then drops them all).
# Extra arguments are passed to the enforcer (e.g. --dry-run, --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >&2
bin=build/bin
dir=$(mktemp -d /tmp/cryptnono-run.XXXXXX)
chmod 700 "$dir"
pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup INT TERM EXIT
"$bin/cryptnono-collector" --bind "ipc://$dir/collector.sock" & pids+=($!)
"$bin/cryptnono-enforcer" --connect "ipc://$dir/collector.sock" --bind "ipc://$dir/execwhacker.sock" "$@" & pids+=($!)
"$bin/cryptnono-exporter" --connect "ipc://$dir/execwhacker.sock" --connect "ipc://$dir/collector.sock" \
  --metrics-address 0.0.0.0:12121 & pids+=($!)
echo "cryptnono: running (sockets in $dir, metrics on :12121/metrics). Try in another shell:" >&2
echo "  sh -c 'sleep 1 && echo beiquatohGa1uay0ahMies9couyahPeiz9xohju3Ahvaik3FaeM7eey1thaish1U'" >&2
# Stop everything when any stage exits, or on Ctrl-C.
wait -n
