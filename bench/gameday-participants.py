#!/usr/bin/env python3
"""Engine tick lateness with N participants following a run's event stream.

Starts `siege gameday` (a free loopback port, a scratch data directory) with one short lab
scenario, opens N server-sent-event streams on the run (what N participants' pages do), and
reads the run's `second-closed` events back: a second's lateness is the envelope's `t` (when the
engine emitted it, seconds since the load started) minus the end of that second. Prints p50,
p99 and max for N = 0 and for N (default 50).

    bench/gameday-participants.py [--siege target/release/siege] [--participants 50] [--secs 30]
"""
import argparse, json, os, re, signal, subprocess, sys, tempfile, threading, time, urllib.request


def pct(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)]


def follow(url, stop, counts, i):
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            for line in r:
                if line.startswith(b"id:"):
                    counts[i] += 1
                if stop.is_set():
                    return
    except Exception as e:  # a stream cut at the end of the run
        pass


def one(siege, n, secs):
    tmp = tempfile.mkdtemp(prefix="siege-gd-bench-")
    sc = os.path.join(tmp, "bench.yaml")
    with open(sc, "w") as f:
        f.write(
            "name: bench\ntarget: { lab: { service: api, tasks: 3 } }\n"
            f"load: {{ url: /, rate: 50/s, duration: {secs}s, timeout: 2s }}\n"
            "steady_state: { error_rate: \"< 5%\" }\nfaults: [ { type: task-kill, at: 10s, select: 1 } ]\n"
            "recovery: { within: 8s, hold: 2s }\n"
        )
    env = dict(os.environ, SIEGE_HOME=os.path.join(tmp, "home"))
    p = subprocess.Popen([siege, "gameday", sc, "--listen", "127.0.0.1:0", "--data", os.path.join(tmp, "data")],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    lines = [p.stdout.readline() for _ in range(3)]
    link = next(l for l in lines if "instructor:" in l).split("instructor:")[1].strip()
    addr, token = re.match(r"http://([^/]+)/#token=(\w+)", link).groups()
    req = urllib.request.Request(f"http://{addr}/v1/runs", data=json.dumps({"scenario": sc}).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    rid = json.load(urllib.request.urlopen(req))["id"]
    stop, counts = threading.Event(), [0] * n
    threads = [threading.Thread(target=follow, args=(f"http://{addr}/v1/runs/{rid}/events", stop, counts, i), daemon=True)
               for i in range(n)]
    for t in threads:
        t.start()
    while json.load(urllib.request.urlopen(f"http://{addr}/v1/runs/{rid}"))["state"] == "running":
        time.sleep(1)
    stop.set()
    body = urllib.request.urlopen(f"http://{addr}/v1/runs/{rid}/events", timeout=30).read().decode()
    late = []
    for l in body.splitlines():
        if l.startswith("data:"):
            e = json.loads(l[5:])
            if e["event"]["type"] == "second-closed":
                late.append((e["t"] - (e["event"]["window"]["second"] + 1)) * 1000)
    p.send_signal(signal.SIGINT)
    p.wait()
    return late, counts


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--siege", default="target/release/siege")
    a.add_argument("--participants", type=int, default=50)
    a.add_argument("--secs", type=int, default=30)
    o = a.parse_args()
    for n in (0, o.participants):
        late, counts = one(o.siege, n, o.secs)
        got = f", events per stream min {min(counts)} max {max(counts)}" if counts else ""
        print(f"{n:3} participants: {len(late)} seconds, tick lateness p50 {pct(late, .5):.1f} ms, "
              f"p99 {pct(late, .99):.1f} ms, max {max(late):.1f} ms{got}")


if __name__ == "__main__":
    sys.exit(main())
