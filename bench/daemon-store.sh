#!/usr/bin/env bash
# Times the daemon's history store: the first page of `GET /v1/runs` (50 runs, newest first)
# with 10,000 runs in history, 200 queries each unfiltered, by scenario and by verdict; prints
# p50, p99 and max (target for the API: p99 <= 10 ms), from a release build (the debug build
# compiles SQLite without optimisation, to keep the cold debug build short).
#
#   bench/daemon-store.sh
#   RUNS=50000 QUERIES=500 bench/daemon-store.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-release}
export RUNS=${RUNS:-10000} QUERIES=${QUERIES:-200}

echo "$(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg), profile $PROFILE"
cargo build -q --profile "$PROFILE" --example daemon_store_bench
dir=debug
[ "$PROFILE" = dev ] || dir=$PROFILE
"target/$dir/examples/daemon_store_bench"
