#!/usr/bin/env bash
# Closed-model throughput of two siege binaries against the same local nginx, alternating, in one
# run: `siege load -c N` for DURATION seconds, ROUNDS times each; prints each round's requests/s,
# the ratio B/A of each round and the median ratio. For a build change that must not slow the
# load driver (e.g. bench/first-run.sh before and after).
#
#   bench/compare-load.sh OLD_SIEGE NEW_SIEGE
#   CONNECTIONS=50 DURATION=10 ROUNDS=5 bench/compare-load.sh a/siege b/siege
#   SCHEME=https bench/compare-load.sh a/siege b/siege   # over TLS (self-signed, --insecure)
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: bench/compare-load.sh A_SIEGE B_SIEGE" >&2; exit 3; }
A=$(realpath "$1")
B=$(realpath "$2")
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
SCHEME=${SCHEME:-http}
SIEGE=$A
. bench/nginx.sh
start_nginx "$SCHEME"

# Only the flags a binary has: one built before TLS support knows no `--insecure` (and needs none
# over plain HTTP), so that any two commits can be compared.
flags() {
    local f=(-c "$CONNECTIONS" -d "${DURATION}s" --json)
    if [ "$SCHEME" = https ]; then
        "$1" load --help 2>&1 | grep -q -- --insecure || { echo "bench: $1 cannot load over TLS" >&2; exit 3; }
        f+=(--insecure)
    fi
    printf '%s\n' "${f[@]}"
}
rps() {
    local list
    list=$(flags "$1") || exit 3
    mapfile -t f <<<"$list"
    "$1" load "$URL" "${f[@]}" | json 'r["rps"]'
}
ratios=()
for round in $(seq 1 "$ROUNDS"); do
    a=$(rps "$A")
    b=$(rps "$B")
    ratio=$(python3 -c "print(f'{$b / $a:.3f}')")
    ratios+=("$ratio")
    printf 'round %d: A %.0f req/s, B %.0f req/s, B/A %s\n' "$round" "$a" "$b" "$ratio"
done
printf 'median B/A: %s\n' "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')"
