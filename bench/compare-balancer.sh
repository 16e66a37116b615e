#!/usr/bin/env bash
# The lab balancer's added latency with two siege binaries, alternating, in one run: each round
# starts a lab with A, then one with B, and loads each at RATE (open model, latency from the
# scheduled send time) for DURATION seconds through the balancer and straight to one of its
# tasks, with A's load driver both times; prints p50/p99 of both and the difference (what the
# balancer adds), per round, and the medians. For a build change that must not slow the lab
# (e.g. bench/first-run.sh before and after).
#
#   bench/compare-balancer.sh OLD_SIEGE NEW_SIEGE
#   RATE=1000 DURATION=10 ROUNDS=5 bench/compare-balancer.sh a/siege b/siege
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: bench/compare-balancer.sh A_SIEGE B_SIEGE" >&2; exit 3; }
A=$(realpath "$1")
B=$(realpath "$2")

RATE=${RATE:-1000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
HOMES=$(mktemp -d)
cleanup() {
    for h in "$HOMES"/*/; do
        [ -d "$h" ] && SIEGE_HOME=$h "$A" lab down >/dev/null 2>&1 || true
    done
    rm -rf "$HOMES"
}
trap cleanup EXIT

json() { python3 -c "import json,sys; r=json.load(sys.stdin); print($1)"; }
# p50 and p99 of A's open-model load at URL, in ms.
lat() { "$A" load "$1" --rate "$RATE/s" -d "${DURATION}s" --json | json 'r["latency_ms"]["p50"], r["latency_ms"]["p99"]'; }

# Starts a lab with binary $1; prints "balancer_url task_url home".
lab_up() {
    local home
    home=$(mktemp -d -p "$HOMES")
    SIEGE_HOME=$home "$1" lab up --detach >/dev/null
    echo "$(SIEGE_HOME=$home "$1" lab status --json |
        json 'r["balancer_url"] + "/ http://127.0.0.1:" + str(r["service"]["tasks"][0]["port"]) + "/"') $home"
}

echo "$(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg); $RATE requests/s for ${DURATION}s each"
printf '%-6s %-2s %10s %10s %10s %10s %10s %10s\n' round "" "direct p50" "p99" "via p50" "p99" "added p50" "p99"
declare -A added50 added99
for round in $(seq 1 "$ROUNDS"); do
    for which in A B; do
        bin=$A
        [ "$which" = B ] && bin=$B
        read -r via direct home < <(lab_up "$bin")
        sleep 1
        read -r d50 d99 < <(lat "$direct")
        read -r v50 v99 < <(lat "$via")
        SIEGE_HOME=$home "$bin" lab down >/dev/null
        a50=$(python3 -c "print(f'{$v50 - $d50:.3f}')")
        a99=$(python3 -c "print(f'{$v99 - $d99:.3f}')")
        added50[$which]+="$a50 "
        added99[$which]+="$a99 "
        printf '%-6s %-2s %10s %10s %10s %10s %10s %10s\n' "$round" "$which" "$d50" "$d99" "$v50" "$v99" "$a50" "$a99"
    done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for which in A B; do
    printf 'median added latency %s: p50 %s ms, p99 %s ms\n' "$which" \
        "$(echo "${added50[$which]}" | median)" "$(echo "${added99[$which]}" | median)"
done
