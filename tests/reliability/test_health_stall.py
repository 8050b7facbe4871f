#!/usr/bin/env python3
"""/health answers 503 while the engine makes no step with requests pending, and 200 again after.

Starts the real `dpserve serve --tp-size 2 --stall-timeout 2 --watchdog-timeout 0` (no watchdog,
so the job stays up through the stall), checks /health stays 200 while idle for longer than the
stall timeout, starts a streaming request, SIGSTOPs rank 1 (rank 0 is stuck in a collective with
it, its HTTP side answers), and requires /health to turn 503 within the stall timeout plus a few
seconds, saying why. After SIGCONT the engine goes on: /health is 200 again and the request
completes. SIGTERM then drains and every process exits 0.

usage: test_health_stall.py DPSERVE_BIN
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import ServeError, ServeProcess, kill_all, live  # noqa: E402

BIN = sys.argv[1]
STALL = 2.0


def health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def rank_pids(root):
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        kids = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout.split()
        todo += [int(k) for k in kids]
        out += [int(k) for k in kids]
    ranks = {}
    for p in out:
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                for kv in f.read().split(b"\0"):
                    if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
                        ranks[int(kv.split(b"=")[1])] = p
        except OSError:
            pass
    return out, ranks


try:
    srv = ServeProcess(BIN, "--tp-size", "2", "--threads", "1", "--stall-timeout", str(STALL),
                       "--watchdog-timeout", "0", quiet=True)
except ServeError as e:
    raise SystemExit(f"FAIL: {e}")
server, port = srv.proc, srv.port
procs = []
try:
    procs, ranks = rank_pids(server.pid)
    assert 1 in ranks, f"no rank 1 among {procs}"

    # Idle for longer than the stall timeout: no work pending, so not a stall.
    time.sleep(STALL + 1.0)
    code, body = health(port)
    assert code == 200, f"idle server reported {code} {body!r}"

    result = {}

    def stream():
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 60, "stream": True,
                           "ignore_eos": True}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            result["text"] = r.read().decode()

    os.kill(ranks[1], signal.SIGSTOP)
    t0 = time.time()
    client = threading.Thread(target=stream, daemon=True)
    client.start()
    seen = None
    while time.time() - t0 < STALL + 5:
        code, body = health(port)
        if code == 503:
            seen = time.time() - t0
            break
        time.sleep(0.2)
    assert seen is not None, f"/health never turned 503 while the engine was stuck ({code} {body!r})"
    assert "stalled" in body, f"the 503 does not say why: {body!r}"
    assert server.poll() is None, "the job ended (the watchdog is off; only /health should react)"

    os.kill(ranks[1], signal.SIGCONT)
    t1 = time.time()
    recovered = None
    while time.time() - t1 < 10:
        if health(port)[0] == 200:
            recovered = time.time() - t1
            break
        time.sleep(0.2)
    assert recovered is not None, "/health stayed 503 after the engine went on"
    client.join(timeout=30)
    assert not client.is_alive() and "[DONE]" in result.get("text", ""), "the request did not complete"
    assert '"finish_reason":"length"' in result["text"], "the stream did not run to its length"

    rc = srv.stop(timeout=40)
    assert rc == 0, f"exit {rc} after SIGTERM\n" + "".join(srv.output().splitlines(True)[-30:])
    time.sleep(0.5)
    left = live(procs)
    assert not left, f"processes left behind: {left}"
    print(f"PASS: 503 {seen:.1f} s after rank 1 stopped (--stall-timeout {STALL}), 200 again {recovered:.1f} s "
          f"after SIGCONT, the request completed, exit {rc}")
finally:
    kill_all([server.pid] + procs)
