#!/usr/bin/env python3
"""Signals to the processes of a multi-rank job: who gets them, and what the job does.

Cases (tp 2 on one machine, the dpserve launcher starting mpirun unless said):
  group_int, group_term  SIGINT (Ctrl-C: the kernel signals the terminal's foreground process group)
          or SIGTERM to the launcher's whole process group while clients stream: the job drains and
          exits 0, every request completes. mpirun used to share the launcher's group, got the signal
          itself and killed the ranks at once (exit 1, streams cut).
  drain_stuck  --watchdog-timeout 0 --shutdown-timeout 2: rank 1 SIGSTOPped, then SIGTERM to the
          launcher: the job ends non-zero within 60 s, the launcher naming rank 1 as the rank that did
          not stop (it used to wait for rank 1 forever, rank 0 inside a broadcast).
  drain_stuck_mpirun  the same under a plain mpirun, SIGTERM to rank 0: rank 0 ends the job itself
          (--shutdown-timeout + 7 s, or 5 s after its step loop ended if MPI_Finalize waits for rank 1),
          saying its drain did not end.
  repeated_term  SIGTERM to the launcher every 50 ms until it exits (a supervisor repeating its stop):
          the job drains once and exits 0, every request completes, the repeats are said. The launcher
          used to forward each repeat to mpirun as SIGUSR2; one landing while mpirun tore the job down
          (its handler gone) killed mpirun, and the launcher exited 140 after a clean drain.
  stray_term  SIGTERM to rank 1 is ignored (only rank 0 drains) with one line saying where to send it;
          the server still serves. Then SIGTERM to mpirun: the job ends (mpirun does not drain) and
          the output says mpirun was signalled.

usage: test_launcher_signals.py DPSERVE_BIN CASE
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import MPI_ENV, descendants, free_port, kill_all, live, wait_healthy, world_rank  # noqa: E402

BIN, CASE = sys.argv[1], sys.argv[2]
ENV = dict(os.environ, **MPI_ENV)


def is_mpirun(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"mpirun" in f.read().split(b"\0")[0]
    except OSError:
        return False


port = free_port()
args = [BIN, "serve", "--tp-size", "2", "--port", str(port), "--threads", "1"]
if CASE.startswith("drain_stuck"):
    args += ["--watchdog-timeout", "0", "--shutdown-timeout", "2"]
MPIRUN = CASE.endswith("_mpirun")
if MPIRUN:
    args = ["mpirun", "-np", "2", "--oversubscribe", "--allow-run-as-root", "--bind-to", "none"] + args
# A session of its own: the launcher leads its process group, as a shell's foreground job does.
server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                          start_new_session=True)
log = []
threading.Thread(target=lambda: log.extend(server.stdout), daemon=True).start()
procs = []


def out():
    return "".join(log)


def fail(msg):
    raise SystemExit(f"FAIL {CASE}: {msg}\n{out()[-3000:]}")


def request(i, results, max_tokens):
    body = json.dumps({"prompt": f"Once upon a time {i}", "max_tokens": max_tokens, "ignore_eos": True,
                       "stream": i != 0}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read().decode(errors="replace")
            ok = r.status == 200 and "[DONE]" in text if i != 0 else '"length"' in text
            results.append("ok" if ok and '"error"' not in text else f"bad: {text[-300:]}")
    except Exception as e:
        results.append(f"{type(e).__name__}: {e}")


try:
    if not wait_healthy(port, 120, server):
        fail("server did not become healthy")
    procs = descendants(server.pid)
    ranks = {world_rank(p): p for p in procs if world_rank(p) is not None}
    mpirun = server.pid if MPIRUN else next(p for p in procs if is_mpirun(p))
    assert 0 in ranks and 1 in ranks, f"ranks not found among {procs}"

    if CASE in ("group_int", "group_term"):
        results = []
        clients = [threading.Thread(target=request, args=(i, results, 300), daemon=True) for i in range(3)]
        for c in clients:
            c.start()
        time.sleep(1.0)
        os.killpg(server.pid, signal.SIGINT if CASE == "group_int" else signal.SIGTERM)
        try:
            rc = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            fail("the job still runs 60 s after the signal")
        for c in clients:
            c.join(timeout=30)
        if rc != 0:
            fail(f"exit {rc} after a signal to the process group: the job was not drained")
        if "draining" not in out():
            fail("rank 0 did not drain")
        if results != ["ok"] * 3:
            fail(f"requests in flight did not complete: {results}")
        detail = f"exit 0, {len(results)} requests completed"
    elif CASE == "repeated_term":
        results = []
        clients = [threading.Thread(target=request, args=(i, results, 200), daemon=True) for i in range(3)]
        for c in clients:
            c.start()
        time.sleep(1.0)
        t0, rc = time.time(), None
        while rc is None and time.time() - t0 < 60:
            try:
                os.kill(server.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            time.sleep(0.05)
            rc = server.poll()
        if rc is None:
            fail("the job still runs 60 s into the repeated SIGTERMs")
        for c in clients:
            c.join(timeout=30)
        if rc != 0:
            fail(f"exit {rc} after repeated SIGTERMs (want 0: one drain)")
        if out().count("received signal") != 1 or "the drain is already under way" not in out():
            fail("not one drain with the repeats said")
        if results != ["ok"] * 3:
            fail(f"requests in flight did not complete: {results}")
        detail = f"exit 0 after {int((time.time() - t0) / 0.05)} SIGTERMs, {len(results)} requests completed"
    elif CASE.startswith("drain_stuck"):
        results = []
        clients = [threading.Thread(target=request, args=(i, results, 300), daemon=True) for i in range(2)]
        for c in clients:
            c.start()
        time.sleep(1.0)
        os.kill(ranks[1], signal.SIGSTOP)
        time.sleep(0.5)
        os.kill(ranks[0] if MPIRUN else server.pid, signal.SIGTERM)
        t0 = time.time()
        try:
            rc = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            fail("the job still runs 60 s after SIGTERM with rank 1 stopped")
        for c in clients:
            c.join(timeout=30)
        if rc == 0:
            fail("exit 0 although rank 1 never stopped")
        if MPIRUN:
            # In a step waiting for rank 1, or past the loop in MPI_Finalize (no request was running).
            if "rank 0: drain: " not in out():
                fail("rank 0 did not say why it ended the job")
        elif "rank 1 did not stop" not in out():
            fail("the launcher did not name rank 1")
        detail = f"exit {rc} {time.time() - t0:.1f} s after SIGTERM"
    elif CASE == "stray_term":
        os.kill(ranks[1], signal.SIGTERM)
        time.sleep(2.0)
        if "signal 15 ignored: only rank 0 drains" not in out():
            fail("SIGTERM to rank 1 was not reported")
        results = []
        request(1, results, 16)
        if results != ["ok"] or server.poll() is not None:
            fail(f"the server stopped serving after SIGTERM to rank 1: {results}")
        os.kill(mpirun, signal.SIGTERM)
        try:
            rc = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            fail("the job still runs 60 s after SIGTERM to mpirun")
        if "came from mpirun" not in out() or "mpirun itself was signalled" not in out():
            fail("nothing says mpirun was signalled")
        detail = f"exit {rc} after SIGTERM to mpirun"
    else:
        fail(f"unknown case {CASE}")
    time.sleep(1.0)
    left = live(procs)
    if left:
        fail(f"processes left behind: {left}")
    print(f"PASS {CASE}: {detail}")
finally:
    kill_all([server.pid] + procs)
