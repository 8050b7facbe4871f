#!/usr/bin/env python3
"""--numa on real launches: the plan printed by the launcher, the mpirun mapping it chose and the
binding each rank reports (read by the rank from the kernel, sched_getaffinity), with greedy
outputs equal to one rank's.

On this 1-NUMA machine --numa auto must leave the ranks unbound (today's behaviour) and say so;
--numa 1 binds each rank to its own core. A synthetic 2-socket topology (HWLOC_SYNTHETIC, honoured
by dpserve's hwloc and by mpirun's; HWLOC_THISSYSTEM=1 lets Open MPI bind on it) whose two PUs are
this machine's CPUs 0 and 1 shows the 2-socket plan really applied: mpirun maps one rank per
NUMA node and the kernel reports rank 1 on CPU 1.

usage: test_numa.py DPSERVE_BIN SHARED_DIR
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402

BIN, SHARED = sys.argv[1:3]
MODEL = os.path.join(SHARED, "models/stories260K/stories260K.bin")
if not os.path.exists(MODEL):
    raise SystemExit(f"FAIL: {MODEL} missing (DPSERVE_SHARED_DIR)")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
for k in ("HWLOC_SYNTHETIC", "HWLOC_XMLFILE", "HWLOC_THISSYSTEM", "DPSERVE_NUMA", "DPSERVE_THREADS"):
    ENV.pop(k, None)
TWO_SOCKETS = dict(ENV, HWLOC_SYNTHETIC="package:2 numa:1 core:1 pu:1", HWLOC_THISSYSTEM="1")
COMMON = ["generate", "--json", "--model-path", MODEL, "--prompt", "Once upon a time", "-n", "16"]


def run(extra, env=ENV, ok=True):
    p = subprocess.run([BIN] + COMMON + extra, capture_output=True, text=True, env=env, timeout=240)
    if ok and p.returncode != 0:
        raise SystemExit(f"FAIL: dpserve {' '.join(extra)} exited {p.returncode}\n{p.stderr[-3000:]}")
    if not ok and p.returncode == 0:
        raise SystemExit(f"FAIL: dpserve {' '.join(extra)} should have failed\n{p.stderr[-3000:]}")
    return p


def tokens(p):
    return [json.loads(l)["output_ids"] for l in p.stdout.splitlines() if l.startswith("{")]


def expect(p, pattern, what):
    if not re.search(pattern, p.stderr, re.M):
        raise SystemExit(f"FAIL: {what}: no line matching {pattern!r} in\n{p.stderr[-4000:]}")


def mpirun_line(p):
    lines = [l for l in p.stderr.splitlines() if "starting" in l and "ranks:" in l]
    if not lines:
        raise SystemExit(f"FAIL: no 'starting N ranks' line\n{p.stderr[-3000:]}")
    return lines[0]


base = tokens(run([]))

# This machine: one NUMA node. auto keeps --bind-to none and says why; the ranks see all CPUs.
p = run(["--tp-size", "2", "--numa", "auto"])
expect(p, r"NUMA: --numa auto, 1 NUMA node on this machine: ranks not bound \(--bind-to none\)", "auto plan")
assert "--bind-to none" in mpirun_line(p), mpirun_line(p)
expect(p, r"rank 0: not bound", "rank 0 binding")
expect(p, r"rank 1: not bound", "rank 1 binding")
assert tokens(p) == base, (tokens(p), base)
print("ok --numa auto on 1 NUMA node: unbound, same tokens")

if (os.cpu_count() or 1) >= 2:
    # --numa 1: both ranks on node 0, one core each; the kernel's affinity says which.
    p = run(["--tp-size", "2", "--numa", "1"])
    line = mpirun_line(p)
    assert "--map-by ppr:2:numa:PE=1 --bind-to core" in line, line
    expect(p, r"rank 0: NUMA node 0, cpus 0, 1 threads pinned", "rank 0 bound to cpu 0")
    expect(p, r"rank 1: NUMA node 0, cpus 1, 1 threads pinned", "rank 1 bound to cpu 1")
    assert tokens(p) == base, (tokens(p), base)
    print("ok --numa 1: one core per rank, same tokens")

    # A synthetic 2-socket machine: one rank per NUMA node, bound by mpirun.
    p = run(["--tp-size", "2"], env=TWO_SOCKETS)  # auto is the default
    line = mpirun_line(p)
    assert "--map-by ppr:1:numa --bind-to numa" in line, line
    expect(p, r"NUMA: --numa auto: 2 ranks over 2 NUMA nodes", "2-socket plan")
    expect(p, r"rank 0: NUMA node 0, cpus 0, 1 threads pinned", "rank 0 on node 0")
    expect(p, r"rank 1: NUMA node 1, cpus 1, 1 threads pinned", "rank 1 on node 1")
    assert tokens(p) == base, (tokens(p), base)
    print("ok synthetic 2 sockets, tp2: ppr:1:numa --bind-to numa, rank r on node r")

    # Four ranks (tp 4, dp 2, DP attention) on it: a DP group (ranks 0-1, 2-3) per NUMA node.
    p = run(["--tp-size", "4", "--dp-size", "2", "--enable-dp-attention"], env=TWO_SOCKETS)
    line = mpirun_line(p)
    # More ranks than cores per node: mpirun maps, each rank binds itself to its node.
    assert "--map-by ppr:2:numa --bind-to none" in line, line
    for r, node in ((0, 0), (1, 0), (2, 1), (3, 1)):
        expect(p, rf"rank {r}: NUMA node {node}, cpus {node}, 1 threads pinned", f"rank {r} on node {node}")
    assert tokens(p) == base, (tokens(p), base)
    print("ok synthetic 2 sockets, tp4 dp2: ranks 0-1 on node 0, 2-3 on node 1")

    # --numa none there: today's behaviour.
    p = run(["--tp-size", "2", "--numa", "none"], env=TWO_SOCKETS)
    assert "--bind-to none" in mpirun_line(p), mpirun_line(p)
    expect(p, r"rank 1: not bound", "--numa none leaves ranks unbound")
    print("ok --numa none on 2 sockets: unbound")


def serve_on_two_sockets():
    """A real `dpserve serve --tp-size 2` on the synthetic 2-socket machine: healthy, answers a
    completion over loopback HTTP, and its log shows the plan and the ranks bound one per node."""
    try:
        srv = ServeProcess(BIN, "--model-path", MODEL, "--tp-size", "2", "--numa", "auto", env=TWO_SOCKETS,
                           quiet=True)
    except ServeError as e:
        raise SystemExit(f"FAIL: serve never became healthy\n{e}")
    try:
        status, body = srv.request("POST", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 4},
                                   timeout=60)
        assert status == 200 and body["usage"]["completion_tokens"] == 4, (status, body)
    finally:
        srv.stop()
    text = srv.output()
    for pattern in (r"starting 2 ranks: .*--map-by ppr:1:numa --bind-to numa",
                    r"rank 0: NUMA node 0, cpus 0, 1 threads pinned", r"rank 1: NUMA node 1, cpus 1, 1 threads pinned"):
        if not re.search(pattern, text):
            raise SystemExit(f"FAIL: serve log has no line matching {pattern!r}\n{text[-3000:]}")
    print("ok serve --tp-size 2 on synthetic 2 sockets: healthy, completion, ranks one per node")


if (os.cpu_count() or 1) >= 2:
    serve_on_two_sockets()

# Start-up errors name the flag.
p = run(["--tp-size", "2", "--numa", "3"], ok=False)
expect(p, r"--numa 3: this machine has 1 NUMA node", "--numa 3 on 1 node")
p = run(["--tp-size", "2", "--numa", "two"], ok=False)
expect(p, r"--numa two", "--numa two")
p = run(["--tp-size", "3", "--numa", "2"], env=TWO_SOCKETS, ok=False)
expect(p, r"--numa 2: the 3 ranks of this machine cannot be spread evenly over 2 NUMA nodes", "uneven ranks")
print("ok errors name --numa")
