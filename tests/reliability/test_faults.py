#!/usr/bin/env python3
"""A rank that dies or stops under load must end the job loudly, never hang it.

Starts the real `dpserve serve` (dpserve launches mpirun itself) with LAYOUT (tp2: --tp-size 2;
tp4dp2: --tp-size 4 --dp-size 2 --enable-dp-attention), keeps clients sending requests, then
SIGKILLs (case kill) or SIGSTOPs (case stop) world rank RANK. Requires: within 10 s the server
has exited non-zero or /health answers 503, and it exits within a further bound; its output names
the failed rank (kill) or the watchdog (stop); every client request ends (a response or an
error, none hangs); no process is left behind.

usage: test_faults.py DPSERVE_BIN CASE [LAYOUT [RANK]]
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

BIN, CASE = sys.argv[1], sys.argv[2]
LAYOUT = sys.argv[3] if len(sys.argv) > 3 else "tp2"
RANK = int(sys.argv[4]) if len(sys.argv) > 4 else 1
LAYOUTS = {"tp2": ["--tp-size", "2"],
           "tp4dp2": ["--tp-size", "4", "--dp-size", "2", "--enable-dp-attention"]}
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout.split()
        except Exception:
            kids = []
        for k in kids:
            out.append(int(k))
            todo.append(int(k))
    return out


def world_rank(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for kv in f.read().split(b"\0"):
                if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
                    return int(kv.split(b"=")[1])
    except OSError:
        pass
    return None


port = free_port()
args = [BIN, "serve", *LAYOUTS[LAYOUT], "--port", str(port), "--threads", "1"]
if CASE == "stop":
    args += ["--watchdog-timeout", "3"]
server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                          start_new_session=True)
log = []
threading.Thread(target=lambda: log.extend(server.stdout), daemon=True).start()
procs = []
try:
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200:
                break
        except Exception:
            time.sleep(0.3)
    else:
        raise SystemExit("FAIL: server did not become healthy\n" + "".join(log))
    procs = descendants(server.pid)
    victim = [p for p in procs if world_rank(p) == RANK]
    assert victim, f"no rank {RANK} among {procs}"

    # Clients that keep sending until the server goes away; each request must end.
    stop_clients = threading.Event()
    outcomes, hung = [], []

    def client(i):
        while not stop_clients.is_set():
            body = json.dumps({"prompt": f"Once upon a time {i}", "max_tokens": 200, "stream": True}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read()
                outcomes.append("ok")
            except socket.timeout:
                hung.append(i)
                return
            except Exception as e:  # refused / reset / 503: the request ended with an error
                outcomes.append(type(e).__name__)
                time.sleep(0.05)

    clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
    for c in clients:
        c.start()
    time.sleep(1.0)
    what = "killed" if CASE == "kill" else "stopped"
    os.kill(victim[0], signal.SIGKILL if CASE == "kill" else signal.SIGSTOP)
    t0 = time.time()

    # The promise: within 10 s the job is gone (non-zero) or says it is unhealthy. The watchdog
    # case is given its timeout on top, since detecting a silent rank is what the timeout is for.
    bound = 10 + (3 if CASE == "stop" else 0)
    signalled = None
    while time.time() - t0 < bound and signalled is None:
        if server.poll() is not None:
            signalled = f"exited {server.returncode}"
            break
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
        except urllib.error.HTTPError as e:
            if e.code == 503:
                signalled = "health 503"
        except Exception:
            pass  # refused / timed out: keep polling until the process exits or the bound passes
        time.sleep(0.2)
    if signalled is None:
        raise SystemExit(f"FAIL: {bound} s after rank {RANK} was {what} the job neither exited nor "
                         f"reported 503 on /health\n" + "".join(log[-40:]))
    t_signal = time.time() - t0
    try:
        rc = server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"FAIL: the job still runs {time.time() - t0:.0f} s after rank {RANK} was "
                         f"{what}\n" + "".join(log[-40:]))
    stop_clients.set()
    for c in clients:
        c.join(timeout=35)
    out = "".join(log)
    assert rc != 0, f"server exited 0 after losing rank {RANK}\n{out[-3000:]}"
    if CASE == "kill":
        assert f"rank {RANK}" in out, f"the output does not name rank {RANK}\n{out[-3000:]}"
    else:
        assert "watchdog" in out, f"the watchdog did not report\n{out[-3000:]}"
    assert not hung and not any(c.is_alive() for c in clients), f"client requests hung: {hung}"
    time.sleep(1.0)
    left = [p for p in procs if os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"]
    assert not left, f"processes left behind: {left}"
    print("\n".join(l.rstrip() for l in log if "rank" in l.lower())[-1500:])
    print(f"PASS {CASE} rank {RANK} ({LAYOUT}): {signalled} {t_signal:.1f} s after the fault, job ended "
          f"{time.time() - t0:.1f} s after it, exit {rc}; "
          f"{len(outcomes)} client requests ended ({outcomes.count('ok')} ok)")
finally:
    for p in [server.pid] + procs:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
