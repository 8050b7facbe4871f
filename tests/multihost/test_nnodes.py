#!/usr/bin/env python3
"""SGLang-style launch across two "hosts" (network namespaces joined by a veth pair, netns_hosts.py):
`dpserve serve --nnodes 2 --node-rank R --dist-init-addr 10.77.0.1:PORT` started separately on each
host forms one job (no mpirun across hosts, no launch agent: each node runs its own local mpirun and
the jobs join over MPI).

Cases:
  serve   tp=2 (one rank per host), tp=2 dp=2 with DP attention (one rank per host) and tp=4 dp=2
          with DP attention (two ranks per host): a client on host B gets from node 0 (host A,
          10.77.0.1) the single-rank greedy completion; MPI traffic crossed the veth pair both ways;
          SIGTERM to node 0 ends both nodes (exit 0) and nothing is left on either host.
  errors  --node-rank 2 with --nnodes 2; node 1 alone (nothing at --dist-init-addr) with
          --dist-timeout 2; node 1 started with another --dp-size than node 0; node 1 with
          --nnodes 3: each fails non-zero within a bound, with a message naming the flag (and the
          address for the unreachable case), and nothing is left running.

usage: test_nnodes.py DPSERVE_BIN SHARED_DIR SCRATCH_DIR CASE
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns_hosts  # noqa: E402

BIN, SHARED, SCRATCH, CASE = sys.argv[1:5]
CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "client.py")
netns_hosts.require_root()
os.makedirs(SCRATCH, exist_ok=True)
SUBNET = netns_hosts.SUBNET
# What a user sets on a multi-NIC cluster: MPI's data (TCP BTL) and Open MPI's own control channel on
# the hosts' link. mpi_yield_when_idle: all ranks share this machine's 2 cores (see netns_hosts.mpirun).
ENV = dict(os.environ, DPSERVE_SHARED_DIR=SHARED, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_pml="ob1", OMPI_MCA_btl="tcp,self", OMPI_MCA_btl_tcp_if_include=SUBNET,
           OMPI_MCA_oob_tcp_if_include=SUBNET, OMPI_MCA_mpi_yield_when_idle="1")
STORIES = os.path.join(SHARED, "models/stories260K/stories260K.bin")
NODE0 = netns_hosts.ADDR["a"]
RDV, HTTP = 29400, 18080  # inside the namespaces' own network stacks: no clash with other runs


def node_cmd(rank, flags, nnodes=2, extra=()):
    return [BIN, "serve", "--model-path", STORIES, "--threads", "1", *flags, "--nnodes", str(nnodes),
            "--node-rank", str(rank), "--dist-init-addr", f"{NODE0}:{RDV}", "--dist-timeout", "20",
            "--host", "0.0.0.0", "--port", str(HTTP), *extra]


def start(H, host, cmd):
    p = subprocess.Popen(H.exec_prefix(host) + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=ENV, start_new_session=True)
    log = []
    threading.Thread(target=lambda: log.extend(p.stdout), daemon=True).start()
    return p, log


def wait_exit(p, log, bound, what):
    try:
        return p.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        raise SystemExit(f"FAIL: {what}: still running after {bound} s\n" + "".join(log[-40:]))


def nothing_left(H, what):
    for _ in range(50):
        left = {h: H.pids(h) for h in "ab"}
        if not any(left.values()):
            return
        time.sleep(0.2)
    raise SystemExit(f"FAIL: processes left after {what}: {left}")


def single_rank(prompt, n):
    p = subprocess.run([BIN, "generate", "--json", "--model-path", STORIES, "--prompt", prompt, "-n", str(n),
                        "--threads", "1"], capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.splitlines()[0])["text"]


def case_serve(H):
    prompt, n = "Once upon a time", 24
    want = single_rank(prompt, n)
    url = f"http://{NODE0}:{HTTP}"
    for name, flags in [("tp2", ["--tp-size", "2"]),
                        ("tp2_dp2", ["--tp-size", "2", "--dp-size", "2", "--enable-dp-attention"]),
                        ("tp4_dp2", ["--tp-size", "4", "--dp-size", "2", "--enable-dp-attention"])]:
        sent = {h: H.tx_bytes(h) for h in "ab"}
        # Node 1 first: it waits for node 0's rendezvous (the order must not matter).
        n1, log1 = start(H, "b", node_cmd(1, flags))
        time.sleep(0.5)
        n0, log0 = start(H, "a", node_cmd(0, flags))
        try:
            h = subprocess.run(H.exec_prefix("b") + ["/usr/bin/python3", CLIENT, "health", url, "60"], env=ENV,
                               timeout=90)
            if h.returncode != 0:
                raise SystemExit(f"FAIL: {name}: node 0 did not become healthy\nnode 0:\n" + "".join(log0[-30:]) +
                                 "\nnode 1:\n" + "".join(log1[-30:]))
            out = subprocess.run(H.exec_prefix("b") + ["/usr/bin/python3", CLIENT, "complete", url, prompt, str(n)],
                                 capture_output=True, text=True, env=ENV, timeout=90)
            assert out.returncode == 0, out.stderr
            got = json.loads(out.stdout)["choices"][0]["text"]
            if got != want:
                raise SystemExit(f"FAIL: {name}: text differs\n single rank: {want!r}\n 2 nodes: {got!r}")
            ranks = len([l for l in "".join(log0).splitlines() if "hosts: host-a: rank" in l and "host-b: rank" in l])
            assert ranks == 1, f"{name}: no start-up line with ranks on both hosts\n" + "".join(log0[-30:])
        finally:
            os.kill(n0.pid, signal.SIGTERM)  # to the dpserve node 0 started as: drain, stop every rank
            rc0 = wait_exit(n0, log0, 30, f"{name}: node 0 after SIGTERM")
            rc1 = wait_exit(n1, log1, 30, f"{name}: node 1 after node 0 stopped")
        crossed = {h: H.tx_bytes(h) - sent[h] for h in "ab"}
        assert rc0 == 0 and rc1 == 0, f"{name}: exit codes node 0 {rc0}, node 1 {rc1}\n" + "".join(log0[-20:]) + \
            "".join(log1[-20:])
        assert min(crossed.values()) > 20_000, f"{name}: too little traffic over the veth pair: {crossed}"
        nothing_left(H, name)
        print(f"ok {name}: client on host B got the single-rank text from node 0; veth bytes A->B {crossed['a']}, "
              f"B->A {crossed['b']}; both nodes stopped on SIGTERM to node 0")


def expect_failure(H, runs, bound, needles, what):
    procs = [start(H, host, cmd) for host, cmd in runs]
    t0 = time.time()
    codes = [wait_exit(p, log, bound, what) for p, log in procs]
    out = "".join("".join(log) for _, log in procs)
    if all(c == 0 for c in codes):
        raise SystemExit(f"FAIL: {what}: exit 0\n{out[-3000:]}")
    for needle in needles:
        if needle not in out:
            raise SystemExit(f"FAIL: {what}: the output lacks {needle!r}\n{out[-3000:]}")
    nothing_left(H, what)
    print(f"ok {what}: failed in {time.time() - t0:.1f} s: " +
          next(l.strip() for l in out.splitlines() if needles[0] in l))


def case_errors(H):
    tp2 = ["--tp-size", "2"]
    expect_failure(H, [("a", node_cmd(2, tp2))], 20, ["--node-rank 2 is out of range for --nnodes 2"],
                   "bad --node-rank")
    cmd = node_cmd(1, tp2)
    cmd[cmd.index("--dist-timeout") + 1] = "2"
    expect_failure(H, [("b", cmd)], 20, [f"--dist-init-addr {NODE0}:{RDV}", "--dist-timeout"],
                   "nothing at --dist-init-addr")
    expect_failure(H, [("a", node_cmd(0, tp2)),
                       ("b", node_cmd(1, ["--tp-size", "2", "--dp-size", "2", "--enable-dp-attention"]))], 40,
                   ["node 1 was started with --dp-size 2 but node 0 with --dp-size 1"], "mismatched --dp-size")
    expect_failure(H, [("a", node_cmd(0, ["--tp-size", "3"], nnodes=3)),
                       ("b", node_cmd(1, ["--tp-size", "2"]))], 40,
                   ["node 1 was started with --nnodes 2 but node 0 with --nnodes 3"], "mismatched --nnodes")


with netns_hosts.Hosts(SCRATCH) as H:
    {"serve": case_serve, "errors": case_errors}[CASE](H)
print(f"PASS nnodes_{CASE}")
