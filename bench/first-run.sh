#!/usr/bin/env bash
# What a new user waits for: on a fresh clone of this repository, times
#   1. the cold release build (`cargo build --release --locked`, empty target directory),
#   2. the README's first command (`cargo run --release -- run scenarios/task-kill.yaml`, built
#      already by step 1): seconds to the first request and to the written report,
# ROUNDS times, and prints each round and the median. The build uses the cargo registry cache
# of this machine (downloads are not what is measured); nothing else runs beside it on a quiet
# machine.
#
#   bench/first-run.sh              # 2 rounds
#   ROUNDS=1 SKIP_RUN=1 KEEP=/tmp/siege-new bench/first-run.sh
#   REPO=/path/to/other/checkout bench/first-run.sh   # measure another commit
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-2}
SKIP_RUN=${SKIP_RUN:-0}
REPO=${REPO:-$PWD}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now() { date +%s.%N; }

cargo fetch --locked --quiet
builds=() firsts=() reports=()
for round in $(seq 1 "$ROUNDS"); do
    rm -rf "$WORK/clone"
    git clone --quiet "$REPO" "$WORK/clone"
    cd "$WORK/clone"
    t0=$(now)
    cargo build --release --locked --quiet
    t1=$(now)
    build=$(awk "BEGIN {printf \"%.1f\", $t1 - $t0}")
    builds+=("$build")
    line="round $round: cold release build ${build}s"
    if [ "$SKIP_RUN" != 1 ]; then
        t0=$(now)
        first=
        while IFS= read -r l; do
            case "$l" in
                *"load started"*) [ -z "$first" ] && first=$(awk "BEGIN {printf \"%.1f\", $(now) - $t0}") ;;
                *"report: "*) report=$(awk "BEGIN {printf \"%.1f\", $(now) - $t0}") ;;
            esac
        done < <(SIEGE_HOME="$WORK/home" cargo run --release --locked --quiet -- run scenarios/task-kill.yaml 2>&1 || true)
        firsts+=("$first")
        reports+=("$report")
        line+=", first request after ${first}s, report written after ${report}s"
    fi
    echo "$line"
    # KEEP=PATH keeps the binary the last round built (for bench/compare-load.sh).
    [ -n "${KEEP:-}" ] && cp target/release/siege "$KEEP"
    cd "$REPO"
done
echo "median: cold release build $(printf '%s\n' "${builds[@]}" | median)s"
if [ "$SKIP_RUN" != 1 ]; then
    echo "median: first request $(printf '%s\n' "${firsts[@]}" | median)s, report $(printf '%s\n' "${reports[@]}" | median)s (after the build)"
fi
