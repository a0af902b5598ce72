#!/usr/bin/env python3
"""History reads per second against a running Nebula server (standard library only).

Registers a user, creates a room, posts --messages messages (half of them edited once, so the
edit history has rows too), then reads pages of `GET /rooms/{id}/messages?limit=100` (and, one
in ten, a message's edit history) from --threads keep-alive connections for --seconds, and
prints requests/s and latency percentiles. Used for the encryption-at-rest cost in
docs/BENCHMARKS.md: run it against the same server build with and without ENCRYPTION_KEYS.
"""

import argparse
import http.client
import json
import random
import threading
import time
import urllib.parse


def request(conn, method, path, token=None, body=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise SystemExit(f"{method} {path}: {response.status} {data[:200]!r}")
    return json.loads(data) if data else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:3838")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    url = urllib.parse.urlparse(args.url)

    def connect():
        return http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)

    conn = connect()
    name = f"hist{random.randrange(10**9)}"
    auth = request(conn, "POST", "/auth/register", body={"username": name, "password": "password-" + name})
    token = auth["token"]
    room = request(conn, "POST", "/rooms", token, {"name": name, "is_private": False})["id"]
    ids = []
    for n in range(args.messages):
        text = f"message {n}: " + "lorem ipsum dolor sit amet " * 4
        message = request(conn, "POST", f"/rooms/{room}/messages", token, {"content": text})
        ids.append(message["id"])
        if n % 2 == 0:
            request(conn, "PATCH", f"/rooms/{room}/messages/{message['id']}", token, {"content": text + " (edited)"})
    last_seq = args.messages

    latencies = []
    lock = threading.Lock()
    deadline = time.monotonic() + args.seconds

    def reader(seed):
        rng = random.Random(seed)
        local = []
        c = connect()
        while time.monotonic() < deadline:
            started = time.perf_counter()
            if rng.random() < 0.1:
                request(c, "GET", f"/rooms/{room}/messages/{rng.choice(ids)}/history", token)
            else:
                before = rng.randrange(101, last_seq + 2)
                page = request(c, "GET", f"/rooms/{room}/messages?before_seq={before}&limit=100", token)
                assert len(page["messages"]) == 100, len(page["messages"])
            local.append(time.perf_counter() - started)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    print(json.dumps({
        "requests": len(latencies),
        "per_second": round(len(latencies) / args.seconds, 1),
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
    }))


if __name__ == "__main__":
    main()
