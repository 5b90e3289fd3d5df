#!/bin/sh
# run_fuzzer.sh FUZZER CORPUS WORKDIR SECONDS
# Runs FUZZER for SECONDS on a fresh copy of CORPUS (new inputs go to WORKDIR/corpus,
# never into the source tree). A crash input is kept in WORKDIR and fails the test.
set -eu
fuzzer=$1 corpus=$2 work=$3 seconds=$4
rm -rf "$work"
mkdir -p "$work/corpus"
cp "$corpus"/* "$work/corpus/"
cd "$work"
# -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a blow-up is a failure.
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus"
