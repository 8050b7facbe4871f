#!/usr/bin/env python3
"""Measure collective costs across two "hosts" (network namespaces joined by a veth pair, the
tests/multihost harness) and, for contrast, on one host over TCP loopback; writes the CSV that
bench/netcost_model.py fits. Needs root (namespaces) and a built build/bench/netcost_bench.

  sudo nice -n 19 /usr/bin/python3 bench/netcost_measure.py build/bench/netcost_bench bench/netcost_data.csv

Configurations (every byte between ranks over TCP, no shared memory):
  veth   2 ranks = 1 per host; 4 ranks = 2 per host (ranks 0-1 on host A, 2-3 on host B)
  lo     2 and 4 ranks on host A only, TCP over its loopback
"""
import datetime
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "multihost"))
import netns_hosts  # noqa: E402

BENCH, OUT = sys.argv[1], sys.argv[2]
REPS = os.environ.get("NETCOST_REPS", "7")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return [l for l in p.stdout.splitlines() if l and not l.startswith("collective,")]


rows = []
with netns_hosts.Hosts(os.path.join("/tmp", f"netcost{os.getpid()}")) as H:
    for np_ in (2, 4):
        if np_ == 2:  # one rank per host: its own hostfile with one slot each
            hf = os.path.join(H.scratch, "hosts1")
            with open(hf, "w") as f:
                f.write("host-a slots=1\nhost-b slots=1\n")
            cmd = H.mpirun(2)
            cmd[cmd.index(H.hostfile)] = hf
        else:
            cmd = H.mpirun(4)
        rows += [f"veth,{l}" for l in run(cmd + [BENCH, "--reps", REPS])]
        lo = H.exec_prefix("a") + ["mpirun", "--allow-run-as-root", "-np", str(np_), "--oversubscribe", "--bind-to",
                                   "none", "--mca", "mpi_yield_when_idle", "1", "--mca", "pml", "ob1", "--mca", "btl",
                                   "tcp,self", "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo"]
        rows += [f"lo,{l}" for l in run(lo + [BENCH, "--reps", REPS])]
        print(f"done {np_} ranks", file=sys.stderr)

load = open("/proc/loadavg").read().split()[:3]
with open(OUT, "w") as f:
    f.write(f"# bench/netcost_measure.py {datetime.datetime.utcnow():%Y-%m-%d %H:%MZ}, Open MPI TCP BTL (pml ob1, btl tcp,self),"
            f" {os.cpu_count()} cores shared by all ranks, load average {' '.join(load)} at the end;"
            " link=veth: two network namespaces joined by a veth pair (tests/multihost/netns_hosts.py),"
            " link=lo: one namespace, TCP loopback. Times: slowest rank, min / median over rounds.\n")
    f.write("link,collective,ranks,bytes,min_us,median_us\n")
    f.write("\n".join(rows) + "\n")
print(f"wrote {len(rows)} rows to {OUT}")
