#!/usr/bin/env python3
"""The launchers of a two-node (--nnodes 2) job on one machine's loopback: what they leave behind and
how they name a stopped rank.

  1. tp 2 (one rank per node): node 0's dpserve SIGKILLed. Its ompi-server (a child it started) must end
     with it (it was reparented to init and kept listening), node 1 must end, nothing is left.
  2. A second job: node 0's launcher removes the directory the killed one left (/tmp/dpserve-node-*).
     Node 1's rank (world rank 1, node 1's local rank 0) SIGSTOPped with --watchdog-timeout 4: node 1's
     launcher names it `rank 1 has stopped` (it said `rank 0`, its local number), and both nodes end
     non-zero.

usage: test_nnodes_launcher.py DPSERVE_BIN
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import MPI_ENV, descendants, free_port, kill_all, live, wait_healthy  # noqa: E402

BIN = sys.argv[1]
ENV = dict(os.environ, **MPI_ENV, DPSERVE_DIST_SECRET="nnodes-launcher-test-secret-0123")


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0")]
    except OSError:
        return []


class Job:
    def __init__(self, watchdog):
        self.port, rdv = free_port(), free_port()
        self.nodes, self.logs = [], [[], []]
        for n in (1, 0):
            args = [BIN, "serve", "--tp-size", "2", "--threads", "1", "--port", str(self.port), "--nnodes", "2",
                    "--node-rank", str(n), "--dist-init-addr", f"127.0.0.1:{rdv}", "--watchdog-timeout", str(watchdog)]
            p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                                 start_new_session=True)
            threading.Thread(target=lambda p=p, n=n: self.logs[n].extend(p.stdout), daemon=True).start()
            self.nodes.insert(0, p) if n == 0 else self.nodes.append(p)
        self.procs = [p.pid for p in self.nodes]  # what kill() reaches if the job never becomes healthy
        if not wait_healthy(self.port, 120):
            self.fail("the job did not become healthy")
        self.procs = [self.nodes[0].pid, self.nodes[1].pid] + descendants(self.nodes[0].pid) + \
            descendants(self.nodes[1].pid)

    def out(self, n):
        return "".join(self.logs[n])

    def fail(self, msg):
        self.kill()
        raise SystemExit(f"FAIL: {msg}\n--- node 0\n{self.out(0)[-2000:]}\n--- node 1\n{self.out(1)[-2000:]}")

    def wait(self, n, bound):
        try:
            return self.nodes[n].wait(timeout=bound)
        except subprocess.TimeoutExpired:
            self.fail(f"node {n} still runs {bound} s later")

    def kill(self):
        kill_all(self.procs)


# 1. Node 0's dpserve SIGKILLed: its ompi-server goes with it.
job = Job(600)
server = [p for p in descendants(job.nodes[0].pid) if os.path.basename(cmdline(p)[0]) == "ompi-server"]
if not server:
    job.fail("node 0 has no ompi-server child")
mpirun0 = [p for p in descendants(job.nodes[0].pid) if "--ompi-server" in cmdline(p)]
uri = cmdline(mpirun0[0])[cmdline(mpirun0[0]).index("--ompi-server") + 1]
left_dir = os.path.dirname(uri[len("file:"):])
os.kill(job.nodes[0].pid, signal.SIGKILL)
job.nodes[0].wait()
job.wait(1, 30)
deadline = time.time() + 10
while time.time() < deadline and live([server[0]]):
    time.sleep(0.2)
if live([server[0]]):
    job.fail(f"ompi-server (pid {server[0]}) outlived node 0's dpserve")
time.sleep(1.0)
left = live(job.procs)
if left:
    job.fail(f"processes left behind: {left}")
if not os.path.isdir(left_dir):
    job.fail(f"expected the killed launcher's {left_dir} to be left for the next one")

# 2. The next job cleans it up, and names a stopped rank of node 1 by its world rank.
job = Job(4)
if os.path.exists(left_dir) or f"removed {left_dir}" not in job.out(0):
    job.fail(f"{left_dir}, left by the killed launcher, was not removed")
rank = [p for p in descendants(job.nodes[1].pid) if "OMPI_COMM_WORLD_RANK=0" in open(f"/proc/{p}/environ", "rb")
        .read().decode(errors="replace").split("\0")]
if not rank:
    job.fail("node 1's rank not found")
os.kill(rank[0], signal.SIGSTOP)
rc1, rc0 = job.wait(1, 30), job.wait(0, 30)
if not re.search(r"watchdog: rank 1 has stopped", job.out(1)):
    job.fail("node 1's launcher did not name world rank 1")
if "rank 0 has stopped" in job.out(1):
    job.fail("node 1's launcher named its local rank number")
if rc0 == 0 or rc1 == 0:
    job.fail(f"exit {rc0} / {rc1} after a rank was lost")
time.sleep(1.0)
left = live(job.procs)
if left:
    job.fail(f"processes left behind: {left}")
print(f"PASS: ompi-server ended with node 0's dpserve; {left_dir} removed by the next job; node 1 named "
      f"rank 1; exits {rc0} / {rc1}")
