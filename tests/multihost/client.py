#!/usr/bin/env python3
"""HTTP client run on one of the test hosts (inside its network namespace, by test_multihost.py).

  client.py health URL SECONDS            wait until URL/health answers 200; exit 1 after SECONDS
  client.py complete URL PROMPT N         one greedy completion; prints the response JSON
  client.py stream URL WORKERS SECONDS    WORKERS clients stream completions until the server goes
                                          away or SECONDS pass; prints one JSON summary line

Every request has a timeout, so a hung server shows up as "hung" instead of hanging the test.
"""
import http.client
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

MODE, URL = sys.argv[1], sys.argv[2]


def post(body, timeout):
    req = urllib.request.Request(f"{URL}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=timeout)


if MODE == "health":
    deadline = time.time() + float(sys.argv[3])
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{URL}/health", timeout=2).status == 200:
                sys.exit(0)
        except Exception:
            time.sleep(0.2)
    sys.exit(1)
elif MODE == "complete":
    with post({"prompt": sys.argv[3], "max_tokens": int(sys.argv[4]), "temperature": 0}, 60) as r:
        print(r.read().decode())
elif MODE == "stream":
    workers, seconds = int(sys.argv[3]), float(sys.argv[4])
    end = time.time() + seconds
    lock = threading.Lock()
    summary = {"ok": 0, "cut": 0, "error": 0, "hung": 0, "error_events": []}

    def one(i):
        """False once the server is gone or the request hung (no byte for 20 s)."""
        try:
            with post({"prompt": f"Once upon a time {i}", "max_tokens": 200, "stream": True}, 20) as r:
                try:
                    text, kind = r.read().decode(errors="replace"), "ok"
                except http.client.IncompleteRead as e:  # cut mid-stream
                    text, kind = e.partial.decode(errors="replace"), "cut"
            events = [l[6:] for l in text.splitlines() if l.startswith("data: ") and '"error"' in l]
            with lock:
                summary[kind] += 1
                summary["error_events"] += events
            return not events
        except socket.timeout:
            with lock:
                summary["hung"] += 1
            return False
        except (urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as e:
            with lock:
                summary["error"] += 1
            # Refused or reset: the server is gone. A 503 may be a fault being reported: try again.
            return isinstance(e, urllib.error.HTTPError)

    def worker(i):
        while time.time() < end and one(i):
            pass

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, end - time.time()) + 25)
    summary["still_running"] = sum(t.is_alive() for t in threads)
    print(json.dumps(summary))
