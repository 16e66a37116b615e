#!/usr/bin/env bash
# The daemon's figures, from a release build, through its HTTP API on loopback:
#   1. idle RSS of `siege daemon` with an empty history (target <= 20 MiB), and with 10,000 runs;
#   2. `GET /v1/runs` (the first page, 50 runs, newest first) with 10,000 runs in history:
#      p50/p99 over HTTP, unfiltered and by scenario (target p99 <= 10 ms);
#   3. schedule lateness over 50 firings of an `every: 1s` schedule (target p99 <= 1 s): the
#      first firing starts a run on a lab started with `siege lab up --detach`, the later ones
#      find that target busy and are recorded as skipped, each with its due and recorded time;
#   4. the lateness of the engine's one-second tick (a `second-closed` event's `t` minus the end
#      of its second) over a 30 s run started by the API, with no SSE client and with 50 clients
#      streaming the run's events (target: unchanged).
#
#   bench/daemon.sh
#   RUNS=50000 CLIENTS=100 bench/daemon.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-10000}
CLIENTS=${CLIENTS:-50}
FIRINGS=${FIRINGS:-50}
WORK=$(mktemp -d)
export SIEGE_HOME="$WORK/home"
daemon_pid=
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    target/release/siege lab down >/dev/null 2>&1 || true
    jobs -p | xargs -r kill 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "$(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build -q --release --locked --bin siege --example daemon_store_bench
siege=target/release/siege

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
mib() { awk "BEGIN {printf \"%.1f MiB\", $1 / 1024}"; }

# start_daemon DATA [CONFIG]: starts the daemon on a free port, waits for /healthz.
start_daemon() {
    port=$(free_port)
    base="http://127.0.0.1:$port"
    local args=(daemon --listen "127.0.0.1:$port" --data "$1")
    [ -n "${2:-}" ] && args+=(--config "$2")
    "$siege" "${args[@]}" >>"$WORK/daemon.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 1 100); do
        curl -fs "$base/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "the daemon did not answer /healthz; its log:" >&2
    cat "$WORK/daemon.log" >&2
    exit 1
}
stop_daemon() {
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || true
    daemon_pid=
}

# Percentiles of the numbers on stdin (one per line): "p50 p99 max".
percentiles() {
    python3 -c '
import sys, math
v = sorted(float(x) for x in sys.stdin if x.strip())
if not v: print("no samples"); sys.exit()
p = lambda q: v[max(0, math.ceil(len(v) * q) - 1)]
print(f"n={len(v)} p50={p(0.5):.1f} p99={p(0.99):.1f} max={v[-1]:.1f}")'
}

echo
echo "== 1. idle RSS"
start_daemon "$WORK/empty"
sleep 2
echo "idle, empty history: $(mib "$(rss_kib "$daemon_pid")")"
stop_daemon

echo
echo "== 2. GET /v1/runs with $RUNS runs in history"
mkdir -p "$WORK/full"
RUNS=$RUNS QUERIES=1 KEEP_DB="$WORK/full/history.db" target/release/examples/daemon_store_bench >"$WORK/seed.out"
head -1 "$WORK/seed.out"
start_daemon "$WORK/full"
sleep 1
echo "idle, $RUNS runs: $(mib "$(rss_kib "$daemon_pid")")"
for query in "" "?scenario=scenario-7" "?verdict=failed"; do
    # One connection, back to back (closed model): the latency of each request alone.
    "$siege" load -c 1 -d 5s --json "$base/v1/runs$query" >"$WORK/load.json"
    python3 - "$query" "$WORK/load.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[2]))
lat = r["latency_ms"]
print(f"GET /v1/runs{sys.argv[1] or '':<22} {r['requests']:>6} requests, {sum(r['errors'].values())} errors, "
      f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, max {lat['max']:.2f} ms")
EOF
done
echo "after the queries: $(mib "$(rss_kib "$daemon_pid")")"
stop_daemon

echo
echo "== 3. schedule lateness over $FIRINGS firings"
"$siege" lab up --detach --tasks 2 >"$WORK/lab.out"
control=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["control_url"])' "$SIEGE_HOME/lab.json")
cat >"$WORK/busy.yaml" <<EOF
name: bench-busy
target:
  lab: { tasks: 2, control: "$control" }
load: { url: /, rate: 20/s, duration: $((FIRINGS + 30))s }
steady_state: { error_rate: "< 50%" }
recovery: { within: 10s }
EOF
cat >"$WORK/daemon.yaml" <<EOF
schedules:
  - { name: every-second, scenario: busy.yaml, every: 1s }
EOF
start_daemon "$WORK/sched" "$WORK/daemon.yaml"
while [ "$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from schedule_firings").fetchone()[0])' "$WORK/sched/history.db")" -lt "$FIRINGS" ]; do
    sleep 1
done
stop_daemon
python3 - "$WORK/sched/history.db" "$FIRINGS" <<'EOF' | percentiles
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for (late,) in db.execute("select recorded_ms - due_ms from schedule_firings order by due_ms limit ?", (int(sys.argv[2]),)):
    print(late)
EOF
python3 -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print("firings by outcome:", dict(db.execute("select outcome, count(*) from schedule_firings group by outcome").fetchall()))' "$WORK/sched/history.db"
echo "(lateness in ms: recorded time minus due time)"
"$siege" lab down >/dev/null

echo
echo "== 4. engine tick lateness, 30 s run started by the API"
cat >"$WORK/tick.yaml" <<'EOF'
name: bench-tick
target:
  lab: { tasks: 3 }
load: { url: /, rate: 100/s, duration: 30s }
steady_state: { error_rate: "< 1%", p95: "< 250ms" }
recovery: { within: 10s }
EOF
start_daemon "$WORK/tick"
token=$(cat "$WORK/tick/token")
tick_run() {
    local clients=$1 id
    id=$(curl -fs -H "Authorization: Bearer $token" -H 'Content-Type: application/yaml' \
        --data-binary @"$WORK/tick.yaml" "$base/v1/runs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    for i in $(seq 1 "$clients"); do
        curl -sN "$base/v1/runs/$id/events" >"$WORK/client-$i.sse" 2>/dev/null &
    done
    local peak=0 r
    while curl -fs "$base/v1/runs/$id" | grep -q '"state":"running"'; do
        r=$(rss_kib "$daemon_pid"); [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.5
    done
    wait_clients
    # The replay of the finished run: the events as stored.
    curl -s --max-time 10 "$base/v1/runs/$id/events" >"$WORK/replay.sse"
    printf '%3d SSE clients: tick lateness ms ' "$clients"
    python3 - "$WORK/replay.sse" <<'EOF' | percentiles | tr '\n' ' '
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("data:"):
        e = json.loads(line[5:])
        if e["event"]["type"] == "second-closed":
            print((e["t"] - (e["event"]["window"]["second"] + 1)) * 1000)
EOF
    echo ", daemon peak RSS $(mib "$peak")"
    if [ "$clients" -gt 0 ]; then
        # Every client saw every event of the run, in order.
        python3 - "$WORK/replay.sse" "$WORK"/client-*.sse <<'EOF'
import sys
seqs = lambda f: [l.split(":", 1)[1].strip() for l in open(f) if l.startswith("id:")]
want = seqs(sys.argv[1])
bad = [f for f in sys.argv[2:] if seqs(f) != want]
print(f"    {len(sys.argv) - 2 - len(bad)} of {len(sys.argv) - 2} clients received all {len(want)} events in order")
EOF
    fi
}
wait_clients() {
    # The streams of a finished run end by themselves; give them a moment.
    for _ in $(seq 1 50); do
        [ -z "$(jobs -pr | grep -v "^$daemon_pid$")" ] && return
        sleep 0.1
    done
    jobs -pr | grep -v "^$daemon_pid$" | xargs -r kill 2>/dev/null || true
}
tick_run 0
tick_run "$CLIENTS"
stop_daemon
