#!/usr/bin/env bash
# Requests per CPU-second of the load generator: `wrk -t1 -cN` and one or more siege binaries
# (`siege load -c N`) against the same one-worker nginx, in turn, ROUNDS rounds of DURATION
# seconds, the order rotating each round so that no contender always gets the warmest server.
# A generator that shares the machine with the server it loads must spend as little CPU per
# request as it can; requests per second alone hides that (both sides compete for the cores).
# Prints each round's figures, then per contender the median requests per CPU-second and its
# ratio to wrk's median.
#
#   bench/load-cpu.sh                                   # this checkout's release binary
#   bench/load-cpu.sh OLD/siege target/release/siege    # side by side
#   SCHEME=https bench/load-cpu.sh A B                  # over TLS (wrk speaks it too)
#   CONNECTIONS=50 DURATION=6 ROUNDS=5 NGINX_WORKERS=1 bench/load-cpu.sh
#
# CPU time is the generator's user + system time (getrusage of the child). Works with siege
# binaries that lack newer flags: `--insecure` is passed only over TLS, and only to binaries that
# know it.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-5}
SCHEME=${SCHEME:-http}
NGINX_WORKERS=${NGINX_WORKERS:-1}
if [ $# -eq 0 ]; then
    unset SIEGE
    . bench/nginx.sh
    set -- "$SIEGE"
else
    SIEGE=$(realpath "$1")
    . bench/nginx.sh
fi
BINARIES=()
for b in "$@"; do BINARIES+=("$(realpath "$b")"); done
start_nginx "$SCHEME"

echo "nginx ($NGINX_WORKERS worker), $URL, $CONNECTIONS connections, ${DURATION}s x $ROUNDS rounds, $(nproc) cores"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$URL" "$CONNECTIONS" "$DURATION" "$ROUNDS" "$SCHEME" "${BINARIES[@]}" <<'PY'
import json, os, re, resource, statistics, subprocess, sys

url, conns, secs, rounds, scheme = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
binaries = sys.argv[6:]

def siege_cmd(binary):
    cmd = [binary, "load", url, "-c", conns, "-d", f"{secs}s", "--json"]
    if scheme == "https":
        help_text = subprocess.run([binary, "load", "--help"], capture_output=True, text=True).stdout
        if "--insecure" not in help_text:
            sys.exit(f"bench: {binary} cannot load over TLS")
        cmd.append("--insecure")
    return cmd

def run(cmd, requests_of):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    requests = requests_of(out)
    return requests, cpu

def wrk_requests(out):
    return int(re.search(r"(\d+) requests in", out).group(1))

def siege_requests(out):
    return json.loads(out)["requests"]

contenders = [("wrk", ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", url], wrk_requests)]
for i, b in enumerate(binaries):
    name = chr(ord("A") + i) if len(binaries) > 1 else "siege"
    print(f"{name} = {b}")
    contenders.append((name, siege_cmd(b), siege_requests))

per_cpu = {name: [] for name, _, _ in contenders}
print(f"{'round':<6}" + "".join(f"{name + ' req/CPU-s':>18}{name + ' req/s':>14}" for name, _, _ in contenders))
for r in range(rounds):
    order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
    row = {}
    for name, cmd, requests_of in order:
        requests, cpu = run(cmd, requests_of)
        row[name] = (requests / cpu, requests / float(secs))
        per_cpu[name].append(requests / cpu)
    print(f"{r + 1:<6}" + "".join(f"{row[n][0]:>18.0f}{row[n][1]:>14.0f}" for n, _, _ in contenders))
wrk = statistics.median(per_cpu["wrk"])
print("median requests per CPU-second:")
for name, _, _ in contenders:
    m = statistics.median(per_cpu[name])
    print(f"  {name:<6} {m:>10.0f}  {m / wrk:.3f}x wrk")
PY
