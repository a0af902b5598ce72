#!/usr/bin/env python3
# History page latency by depth over one keep-alive HTTP/1.1 connection (standard library).
# Usage: history_depth.py HOST PORT ROOM_ID CURSOR[,CURSOR…] REQUESTS
# Registers a user, joins the public room, and for each cursor asks
# GET /rooms/{room}/messages?before_seq=CURSOR&limit=50 (500 warm-up requests, then REQUESTS),
# checking the last page's seqs. Used with scripts/history-10m.sql (docs/BENCHMARKS.md); the
# Rust twin is `cargo run --release -p nebula --example history_depth`.
import http.client, json, sys, time, uuid
host, port, room, cursors, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
c = http.client.HTTPConnection(host, port)
def call(method, path, body=None, token=None):
    h = {"Content-Type": "application/json"}
    if token: h["Authorization"] = "Bearer " + token
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse(); data = r.read(); return r.status, data
name = "py_" + uuid.uuid4().hex[:16]
s, d = call("POST", "/auth/register", {"username": name, "password": "history-depth-password"})
tok = json.loads(d)["token"]
call("POST", f"/rooms/{room}/members", {}, tok)
print("| before_seq | requests | p50 ms | p90 ms | p99 ms | max ms |")
print("|---|---|---|---|---|---|")
for cur in map(int, cursors.split(",")):
    path = f"/rooms/{room}/messages?before_seq={cur}&limit=50"
    for _ in range(500): call("GET", path, token=tok)
    t = []
    for _ in range(n):
        a = time.perf_counter(); s, d = call("GET", path, token=tok); t.append(time.perf_counter() - a)
        assert s == 200
    m = json.loads(d)["messages"]; assert [x["seq"] for x in m] == list(range(max(cur - 50, 1), cur)), cur
    t.sort(); q = lambda p: t[round((len(t) - 1) * p)] * 1000
    print(f"| {cur} | {n} | {q(.5):.2f} | {q(.9):.2f} | {q(.99):.2f} | {q(1):.2f} |")
