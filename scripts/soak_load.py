#!/usr/bin/env python3
"""HTTP load for scripts/soak.sh: N worker threads GET a URL in a loop until told
to stop (the file STOP appears) or the duration ends; prints a JSON summary:
requests sent, failed, the longest gap without any successful response, the
highest counter a success returned, and for each kill time listed in the file
KILLS (one epoch time a line, written by soak.sh) the requests in flight at
that instant (on any host: an upper bound for the killed one) and the failed
requests that were in flight then or started within 2 s after.
Standard library only; loopback targets only."""
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse


def main():
    url, duration, workers, stop_file = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    kills_file = sys.argv[5] if len(sys.argv) > 5 else None
    spans = []  # (start, end, ok), wall-clock times
    u = urllib.parse.urlparse(url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("soak_load.py only targets loopback addresses")
    lock = threading.Lock()
    stats = {"sent": 0, "failed": 0, "last_ok": time.monotonic(), "longest_gap": 0.0, "max_count": 0}
    end = time.monotonic() + duration

    def worker():
        conn = None
        while time.monotonic() < end and not os.path.exists(stop_file):
            ok = False
            began = time.time()
            count = 0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
                conn.request("GET", u.path or "/")
                r = conn.getresponse()
                body = r.read()
                ok = r.status == 200
                if ok:
                    count = json.loads(body).get("count", 0)
            except Exception:
                conn = None
            now = time.monotonic()
            with lock:
                spans.append((began, time.time(), ok))
                stats["max_count"] = max(stats["max_count"], count)
                stats["sent"] += 1
                if ok:
                    stats["longest_gap"] = max(stats["longest_gap"], now - stats["last_ok"])
                    stats["last_ok"] = now
                else:
                    stats["failed"] += 1
            if not ok:
                time.sleep(0.01)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    now = time.monotonic()
    stats["longest_gap"] = max(stats["longest_gap"], now - stats["last_ok"])
    del stats["last_ok"]
    stats["successes"] = stats["sent"] - stats["failed"]
    stats["kills"] = []
    if kills_file and os.path.exists(kills_file):
        for line in open(kills_file):
            t = float(line)
            in_flight = sum(1 for b, e, _ in spans if b <= t < e)
            failed = sum(1 for b, e, ok in spans if not ok and (b <= t < e or t <= b < t + 2))
            stats["kills"].append({"in_flight": in_flight, "failed": failed})
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
