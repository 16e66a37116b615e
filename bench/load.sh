#!/usr/bin/env bash
# Benchmarks `siege load` against a local nginx, side by side with wrk, and prints the figures
# that docs/load.md records:
#   1. closed model: requests/s of `wrk -t1 -cN` and `siege load -c N` against the same nginx,
#      same connections and duration, alternating, ROUNDS times; the ratio of each round and the
#      median ratio;
#   2. open model: achieved rate, p99 and missed requests at 5,000 and 20,000 requests/s;
#   3. memory: peak RSS of a 10 s and a 60 s open-model run (skip with SKIP_RSS=1).
# Installs nginx and wrk from Debian packages when they are missing (needs root; bench/nginx.sh).
#
#   bench/load.sh                     # defaults below
#   CONNECTIONS=100 DURATION=5 bench/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
RATES=${RATES:-"5000 20000"}
RSS_RATE=${RSS_RATE:-5000}

. bench/nginx.sh
start_nginx http

echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(nproc) cores, $URL"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on the machine skew every figure)"
echo
echo "== closed model: $CONNECTIONS connections, ${DURATION}s, wrk -t1 vs siege load -c $CONNECTIONS"
printf '%-6s %14s %14s %8s\n' round "wrk req/s" "siege req/s" ratio
ratios=()
for round in $(seq "$ROUNDS"); do
    run_wrk() { wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$URL" | awk '/Requests\/sec/ {print $2}'; }
    run_siege() { "$SIEGE" load "$URL" -c "$CONNECTIONS" -d "${DURATION}s" --json | json 'r["rps"]'; }
    # Alternate which tool goes first so that neither always gets the warmer server.
    if [ $((round % 2)) -eq 1 ]; then w=$(run_wrk); s=$(run_siege); else s=$(run_siege); w=$(run_wrk); fi
    ratio=$(python3 -c "print(f'{$s / $w:.3f}')")
    ratios+=("$ratio")
    printf '%-6s %14.0f %14.0f %8s\n' "$round" "$w" "$s" "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | median)
echo "median ratio siege/wrk: $median"

echo
echo "== open model: fixed rate, ${DURATION}s"
printf '%10s %12s %9s %10s %10s %14s %8s %8s\n' "target/s" "achieved/s" "off" "p99" "max" "uncorr. p99" missed errors
for rate in $RATES; do
    "$SIEGE" load "$URL" --rate "$rate/s" -d "${DURATION}s" --json > "$WORK/rate.json"
    json "'%10d %12.1f %8.2f%% %8.2fms %8.2fms %12.2fms %8d %8d' % ($rate, r['rps'], 100 * (r['rps'] - $rate) / $rate, r['latency_ms']['p99'], r['latency_ms']['max'], r['uncorrected_latency_ms']['p99'], r['missed'], sum(r['errors'].values()))" < "$WORK/rate.json"
done

if [ -z "${SKIP_RSS:-}" ]; then
    echo
    echo "== memory: peak RSS at $RSS_RATE/s"
    for secs in 10 60; do
        "$SIEGE" load "$URL" --rate "$RSS_RATE/s" -d "${secs}s" --json > "$WORK/rss.json" &
        pid=$!
        peak=0
        while kill -0 "$pid" 2>/dev/null; do
            hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
            [ -n "$hwm" ] && peak=$hwm
            sleep 0.5
        done
        wait "$pid"
        printf '%4ss run: peak RSS %6d KiB, %s requests\n' "$secs" "$peak" "$(json 'r["requests"]' < "$WORK/rss.json")"
    done
fi
