#!/usr/bin/env bash
# Sets up, builds and runs the whole pipeline on this machine until interrupted:
# collector -> enforcers (execwhacker on the embedded default config, and monero, which
# cryptnono's documentation turns on for every hub) -> exporter, processes talking over
# ipc sockets in a private directory. JSON decision lines go to
# stdout, the stages' own logs to stderr, Prometheus metrics to :12121/metrics.
# Run as root (the collector needs CAP_BPF and CAP_PERFMON to load, then drops them all).
# Extra arguments are passed to the execwhacker enforcer (e.g. --dry-run, --config FILE).
# The exporter asks containerd/Docker for pod labels only if their sockets exist.
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
"$bin/cryptnono-collector" --bind "ipc://$dir/collector.sock" --probes exec,fpu & pids+=($!)
"$bin/cryptnono-enforcer" --connect "ipc://$dir/collector.sock" --bind "ipc://$dir/execwhacker.sock" "$@" & pids+=($!)
"$bin/cryptnono-enforcer" --detector monero --connect "ipc://$dir/collector.sock" --bind "ipc://$dir/monero.sock" \
  & pids+=($!)
cri=unix:///run/containerd/containerd.sock
docker=unix:///var/run/docker.sock
[[ -S /run/containerd/containerd.sock ]] || cri=""
[[ -S /var/run/docker.sock ]] || docker=""
"$bin/cryptnono-exporter" --connect "ipc://$dir/execwhacker.sock" --connect "ipc://$dir/monero.sock" \
  --connect "ipc://$dir/collector.sock" --cri-socket "$cri" --docker-socket "$docker" \
  --metrics-address 0.0.0.0:12121 & pids+=($!)
echo "cryptnono: running (sockets in $dir, metrics on :12121/metrics). Try in another shell:" >&2
echo "  sh -c 'sleep 1 && echo beiquatohGa1uay0ahMies9couyahPeiz9xohju3Ahvaik3FaeM7eey1thaish1U'" >&2
# Stop everything when any stage exits, or on Ctrl-C.
wait -n
