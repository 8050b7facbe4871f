#!/usr/bin/env python3
"""A rank that dies or stops must end the job loudly, never hang it.

Starts the real `dpserve serve` (dpserve launches mpirun itself) with LAYOUT (tp2: --tp-size 2;
tp4dp2: --tp-size 4 --dp-size 2 --enable-dp-attention), keeps clients sending requests, then
SIGKILLs (case kill) or SIGSTOPs (case stop) world rank RANK. Case stop_idle SIGSTOPs the rank of an
idle server, then sends one request. Requires: within 10 s (plus the 3 s watchdog for a stop) the
server has exited non-zero or /health answers 503, and it exits within a further bound; its output
names the failed rank (kill) or the watchdog (stop; for rank 0, the watchdog of another rank naming
rank 0: a stopped process cannot report itself); every client request ends (a response or an error,
none hangs); no process is left behind. A request ended by the watchdog is a server error (a 500 or
an error event of type server_error), never a 400. Under the dpserve launcher, a stopped rank other
than 0 is killed by the launcher after it told rank 0: every open request ends as an engine_fault
naming the rank (not drained by mpirun's SIGTERM: "the engine stopped", or a 200 "abort").

usage: test_faults.py DPSERVE_BIN CASE [LAYOUT [RANK]]
"""
import http.client
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import MPI_ENV, descendants, free_port, kill_all, live, wait_healthy, world_rank  # noqa: E402

BIN, CASE = sys.argv[1], sys.argv[2]
LAYOUT = sys.argv[3] if len(sys.argv) > 3 else "tp2"
RANK = int(sys.argv[4]) if len(sys.argv) > 4 else 1
LAYOUTS = {"tp2": ["--tp-size", "2"],
           "tp4dp2": ["--tp-size", "4", "--dp-size", "2", "--enable-dp-attention"],
           # Started by mpirun directly (as on many machines): no dpserve launcher watches the ranks,
           # so a stopped rank 0 must be noticed by the other ranks themselves.
           "tp2_mpirun": ["--tp-size", "2"]}
ENV = dict(os.environ, **MPI_ENV)


port = free_port()
args = [BIN, "serve", *LAYOUTS[LAYOUT], "--port", str(port), "--threads", "1"]
if LAYOUT.endswith("_mpirun"):
    args = ["mpirun", "-np", LAYOUTS[LAYOUT][1], "--oversubscribe", "--allow-run-as-root", "--bind-to", "none"] + args
STOP = CASE in ("stop", "stop_idle")
if STOP:
    args += ["--watchdog-timeout", "3"]
server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                          start_new_session=True)
log = []
threading.Thread(target=lambda: log.extend(server.stdout), daemon=True).start()
procs = []
try:
    if not wait_healthy(port, 120, server):
        raise SystemExit("FAIL: server did not become healthy\n" + "".join(log))
    procs = descendants(server.pid)
    victim = [p for p in procs if world_rank(p) == RANK]
    assert victim, f"no rank {RANK} among {procs}"

    # Clients that keep sending until the server goes away; each request must end.
    stop_clients = threading.Event()
    outcomes, hung, fault_events, whole_faults = [], [], [], []
    other_events, other_whole, aborted = [], [], []  # error events / answers not naming the watchdog

    def one_request(i):
        """False when the request hung (no byte for 30 s). Client 3 does not stream."""
        stream = i != 3
        body = json.dumps({"prompt": f"Once upon a time {i}", "max_tokens": 200, "stream": stream}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                try:
                    text = r.read().decode(errors="replace")
                except http.client.IncompleteRead as e:  # cut mid-stream: keep what came
                    text = e.partial.decode(errors="replace")
                    outcomes.append("IncompleteRead")
                else:
                    outcomes.append("ok")
                    if not stream and '"abort"' in text:
                        aborted.append(text)
            # A stream the engine ended because of a fault carries the reason in a final error event.
            events = [l[6:] for l in text.splitlines() if l.startswith("data: ") and '"error"' in l]
            fault_events.extend(e for e in events if "watchdog" in e)
            other_events.extend(e for e in events if "watchdog" not in e and e.startswith('{"error"'))
        except urllib.error.HTTPError as e:  # a whole (non-streamed) answer that is an error
            try:
                text = e.read().decode(errors="replace")
            except Exception:  # the connection went mid-answer
                text = ""
            outcomes.append(f"HTTP {e.code}")
            if "watchdog" in text:
                whole_faults.append((e.code, text))
            elif "the engine stopped" in text:  # a drained request (new ones get 503 "not ready": fine)
                other_whole.append((e.code, text))
            time.sleep(0.05)
        except socket.timeout:
            hung.append(i)
            return False
        except Exception as e:  # refused / reset / 503: the request ended with an error
            outcomes.append(type(e).__name__)
            time.sleep(0.05)
        return True

    def client(i):
        while not stop_clients.is_set() and one_request(i):
            pass

    clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(0 if CASE == "stop_idle" else 4)]
    for c in clients:
        c.start()
    if CASE == "stop_idle":
        # Idle for more than twice the watchdog: rank 0's heartbeats keep the other ranks' watchdog quiet.
        time.sleep(6.5)
        assert server.poll() is None, "an idle server ended on its own\n" + "".join(log[-40:])
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200
    else:
        time.sleep(1.0)
    what = "killed" if CASE == "kill" else "stopped"
    os.kill(victim[0], signal.SIGKILL if CASE == "kill" else signal.SIGSTOP)
    t0 = time.time()
    if CASE == "stop_idle":
        # A request sent to the frozen server: it must end once the job does (connection closed).
        late = threading.Thread(target=one_request, args=(99,), daemon=True)
        late.start()
        clients.append(late)

    # The promise: within 10 s the job is gone (non-zero) or says it is unhealthy. The watchdog
    # case is given its timeout on top, since detecting a silent rank is what the timeout is for.
    bound = 10 + (3 if STOP else 0)
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
        if RANK == 0:
            assert "rank 0 has stopped" in out, f"rank 0 is not named\n{out[-3000:]}"
        if RANK == 0 and LAYOUT.endswith("_mpirun"):
            assert "no control message from rank 0" in out, f"the other rank did not notice\n{out[-3000:]}"
        if RANK != 0 and LAYOUT.endswith("_mpirun"):
            # No launcher kills the stopped rank: rank 0's own watchdog fires, and its open streams end
            # with an error event giving the reason before the process exits.
            assert fault_events, f"no stream got the watchdog's error event ({outcomes})\n{out[-2000:]}"
            # The engine failed, not the request: a server error clients may retry, never a 400
            # invalid_request_error (issue 36).
            for e in fault_events:
                err = json.loads(e)["error"]
                assert err["type"] == "server_error" and err["code"] == "engine_fault", \
                    f"the watchdog's error event is not a server_error: {e}"
            for code, text in whole_faults:  # a non-streamed request the watchdog ended, if it got its answer
                assert code == 500 and json.loads(text)["error"]["type"] == "server_error", \
                    f"a non-streamed request ended by the watchdog got {code}: {text}"
        if RANK != 0 and not LAYOUT.endswith("_mpirun") and CASE == "stop":
            # The launcher kills the stopped rank, and mpirun then SIGTERMs rank 0: rank 0 used to drain,
            # so open streams got "the engine stopped" (503 engine_unavailable) and a waiting non-streamed
            # request a 200 "abort" with cut text. The launcher tells rank 0 first: every open request
            # ends as an engine fault naming the rank, as under a plain mpirun.
            assert f"rank {RANK} has stopped" in out, f"the launcher did not name rank {RANK}\n{out[-3000:]}"
            assert fault_events, f"no stream got the fault's error event ({outcomes})\n{out[-2000:]}"
            for e in fault_events:
                err = json.loads(e)["error"]
                assert err["type"] == "server_error" and err["code"] == "engine_fault" and \
                    f"rank {RANK} has stopped" in err["message"], f"the error event does not name the fault: {e}"
            assert not other_events, f"streams ended with another error than the fault: {other_events}"
            assert not other_whole and not aborted, \
                f"non-streamed requests got other answers than the fault's 500: {other_whole} {aborted[:1]}"
            for code, text in whole_faults:
                assert code == 500 and json.loads(text)["error"]["code"] == "engine_fault", f"{code}: {text}"
    assert not hung and not any(c.is_alive() for c in clients), f"client requests hung: {hung}"
    time.sleep(1.0)
    left = live(procs)
    assert not left, f"processes left behind: {left}"
    print("\n".join(l.rstrip() for l in log if "rank" in l.lower())[-1500:])
    print(f"PASS {CASE} rank {RANK} ({LAYOUT}): {signalled} {t_signal:.1f} s after the fault, job ended "
          f"{time.time() - t0:.1f} s after it, exit {rc}; "
          f"{len(outcomes)} client requests ended ({outcomes.count('ok')} ok, {len(fault_events)} with the fault's "
          f"error event, {len(whole_faults)} non-streamed with its 500)")
finally:
    kill_all([server.pid] + procs)
