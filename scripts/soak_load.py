#!/usr/bin/env python3
"""HTTP load for scripts/soak.sh: N worker threads GET a URL in a loop until told
to stop (the file STOP appears) or the duration ends; prints a JSON summary:
requests sent, failed, and the longest gap without any successful response.
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
    u = urllib.parse.urlparse(url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("soak_load.py only targets loopback addresses")
    lock = threading.Lock()
    stats = {"sent": 0, "failed": 0, "last_ok": time.monotonic(), "longest_gap": 0.0}
    end = time.monotonic() + duration

    def worker():
        conn = None
        while time.monotonic() < end and not os.path.exists(stop_file):
            ok = False
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
                conn.request("GET", u.path or "/")
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except Exception:
                conn = None
            now = time.monotonic()
            with lock:
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
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
