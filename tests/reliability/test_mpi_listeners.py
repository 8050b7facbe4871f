#!/usr/bin/env python3
"""Open MPI's listening sockets stay on loopback on one machine (issue 36).

`dpserve serve --tp-size 2 --host 0.0.0.0` on stories260K: every listening TCP socket of the job's
processes (the launcher, mpirun, the ranks) but the HTTP port is on 127.0.0.1 or ::1 -- Open MPI 4.1 alone binds its TCP BTL
(in each rank) and its out-of-band channel (in mpirun / orted) to 0.0.0.0 and [::]
whatever btl_tcp_if_include / oob_tcp_if_include say -- while the HTTP port stays on 0.0.0.0 as asked,
and the server answers. The same on one rank, an MPI singleton, which has no MPI listener at all and
no orted beside it. With DPSERVE_MPI_LISTEN_ADDRESS=any (dpserve's narrowing off, what the
binary did before) the same check must see wildcard listeners, so the test can fail.

usage: test_mpi_listeners.py DPSERVE_BIN
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

BIN = sys.argv[1]
SHARED = os.environ.get("DPSERVE_SHARED_DIR", os.path.join(os.path.dirname(__file__), "../../../shared"))
MODEL = os.path.join(SHARED, "models/stories260K/stories260K.bin")
LOOPBACK = {"127.0.0.1", "::1"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(root):
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    out, todo = {root}, [root]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p and c not in out:
                out.add(c)
                todo.append(c)
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def listeners(pids):
    ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=20).stdout
    out = []
    for line in ss.splitlines():
        cols = line.split()
        if len(cols) >= 6 and any(f"pid={p}," in cols[5] for p in pids):
            addr, port = cols[3].rsplit(":", 1)
            out.append((addr.strip("[]"), int(port), cols[5].split('"')[1]))
    return out


def run(narrowed, tp):
    port = free_port()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    if narrowed:
        env.pop("DPSERVE_MPI_LISTEN_ADDRESS", None)
    else:
        env["DPSERVE_MPI_LISTEN_ADDRESS"] = "any"
    p = subprocess.Popen([BIN, "serve", "--model-path", MODEL, "--tp-size", str(tp), "--threads", "1", "--host", "0.0.0.0",
                          "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         start_new_session=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if p.poll() is not None or time.time() > deadline:
                raise SystemExit(f"FAIL: server did not become healthy\n{p.stdout.read() if p.poll() is not None else ''}")
            time.sleep(0.3)
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 8}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body,
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert json.load(r)["choices"][0]["text"], "empty completion"
        seen = listeners(descendants(p.pid))
        http = [l for l in seen if l[1] == port]
        assert http and all(l[0] in ("0.0.0.0", "*") for l in http), f"HTTP not on 0.0.0.0 as asked: {seen}"
        mpi = [l for l in seen if l[1] != port]
        if tp == 1:
            # One rank is an MPI singleton with no peers: dpserve starts it isolated (no orted) with only
            # the self transport, so it listens on nothing but its HTTP port. Open MPI alone starts an
            # orted (two listeners) and a TCP transport listener.
            orted = [pid for pid in descendants(p.pid) if comm(pid) == "orted"]
            assert not mpi and not orted, f"one rank: expected no MPI listeners and no orted: {seen}, orted {orted}"
        else:
            assert any(l[2] in ("mpirun", "orted") for l in mpi) and any(l[2] == "dpserve" for l in mpi), \
                f"expected listeners of mpirun and of the ranks: {seen}"
        return mpi
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


for tp in (2, 1):
    mpi = run(narrowed=True, tp=tp)
    wrong = [l for l in mpi if l[0] not in LOOPBACK]
    assert not wrong, f"FAIL: tp {tp}: MPI listeners off loopback: {wrong}"
    print(f"ok tp {tp}: {len(mpi)} MPI listeners, all on loopback: {sorted(set(l[0] for l in mpi))}; HTTP on 0.0.0.0")
wide = [l for l in run(narrowed=False, tp=2) if l[0] not in LOOPBACK]
assert wide, "FAIL: with DPSERVE_MPI_LISTEN_ADDRESS=any Open MPI's own wildcard listeners were expected (the check is blind)"
print(f"ok: with the narrowing off, {len(wide)} wildcard listeners (what Open MPI does alone), e.g. {wide[0]}")
print("PASS")
