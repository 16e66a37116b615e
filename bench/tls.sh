#!/usr/bin/env bash
# Benchmarks `siege load` over TLS against a local nginx with a self-signed certificate (RSA 2048,
# made with openssl), side by side with wrk over TLS, and prints what docs/load.md records:
# requests per CPU-second of each client, i.e. requests / (user + sys CPU seconds of the client
# process), for `wrk -tT -cN` and `siege load -c N --insecure`, same connections and duration,
# alternating which goes first, ROUNDS times; each round's ratio siege/wrk and the median.
# Requests per CPU-second is what a load generator sharing the cores with the server can afford;
# requests/s is printed too but depends on what else the machine runs.
# Installs nginx and wrk from Debian packages when they are missing (needs root; bench/nginx.sh).
#
#   bench/tls.sh                      # defaults below
#   CONNECTIONS=100 DURATION=5 ROUNDS=5 bench/tls.sh
#   SCHEME=http bench/tls.sh          # the same over plain HTTP
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WRK_THREADS=${WRK_THREADS:-1}
# SCHEME=http measures the same over plain HTTP, for comparison.
SCHEME=${SCHEME:-https}

. bench/nginx.sh
start_nginx "$SCHEME"

# Runs a client under GNU time; prints "requests cpu_seconds".
measure() {
    local tool=$1 out="$WORK/$1.out" cpu="$WORK/$1.cpu" requests
    case $tool in
        wrk) /usr/bin/time -f '%U %S' -o "$cpu" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "$URL" > "$out"
             requests=$(awk '/requests in/ {print $1}' "$out") ;;
        siege) /usr/bin/time -f '%U %S' -o "$cpu" "$SIEGE" load "$URL" -c "$CONNECTIONS" -d "${DURATION}s" --insecure --json > "$out"
               requests=$(json 'r["requests"] if sum(r["errors"].values()) == 0 else sys.exit("siege saw errors: %s" % r["errors"])' < "$out") ;;
    esac
    echo "$requests $(awk '{print $1 + $2}' "$cpu")"
}

echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*\///') ($(openssl version | cut -d' ' -f1-2)), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(nproc) cores, $URL"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on the machine skew every figure)"
echo
echo "== $SCHEME, closed model: $CONNECTIONS connections, ${DURATION}s, wrk -t$WRK_THREADS vs siege load -c $CONNECTIONS --insecure"
printf '%-6s %12s %8s %12s %12s %8s %12s %8s\n' round "wrk req/s" "CPU s" "req/CPU-s" "siege req/s" "CPU s" "req/CPU-s" ratio
ratios=()
for round in $(seq "$ROUNDS"); do
    # Alternate which tool goes first so that neither always gets the warmer server.
    if [ $((round % 2)) -eq 1 ]; then w=$(measure wrk); s=$(measure siege); else s=$(measure siege); w=$(measure wrk); fi
    read -r wreq wcpu <<< "$w"
    read -r sreq scpu <<< "$s"
    line=$(python3 -c "
d = $DURATION
w, s = $wreq / $wcpu, $sreq / $scpu
print(f'{$wreq / d:12.0f} {$wcpu:8.2f} {w:12.0f} {$sreq / d:12.0f} {$scpu:8.2f} {s:12.0f} {s / w:8.3f}')")
    ratios+=("$(echo "$line" | awk '{print $7}')")
    printf '%-6s %s\n' "$round" "$line"
done
echo "median ratio of requests per CPU-second, siege/wrk: $(printf '%s\n' "${ratios[@]}" | median)"
