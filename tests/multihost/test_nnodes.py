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
  lost    tp=2, one rank per host, clients on host B streaming from node 0: node 1's rank SIGKILLed ->
          both nodes end within 30 s (the watchdog is 600 s), the open streams end with an error event
          naming the lost node; then node 0's rank 0 SIGKILLed -> node 1 ends within 30 s; then
          SIGTERM to node 1's dpserve -> the whole job drains and both nodes exit 0.
  mismatch  node 1 loads other weights of the same shape (stories260K with its last bytes changed), runs
          another --kv-cache-dtype (also fp32 against auto on a tiny DeepSeek-V2, whose latent both hold
          in fp32 but whose long prompts' decompressed keys and values differ) or another
          --max-running-requests: both nodes stop before serving, naming what differs.
  link_down  tp=2, clients on host A streaming from node 0, --dist-heartbeat-timeout 3 (by its
          environment variable): the veth goes down (no connection closes, nothing is sent): both
          nodes end within 25 s and the open streams end with an error event naming node 1.
  loopback  both nodes on host A with --dist-init-addr 127.0.0.1 and no Open MPI interface variables:
          they join and serve the single-rank text, and every TCP connection of their ranks is on
          127.0.0.1 (the --dist-init-addr network), none on host A's other interface 10.77.0.1.
  listen  tp=2 over the veth pair with no Open MPI interface variables, HTTP on 0.0.0.0: the client on
          host B gets the single-rank text, and every listening TCP socket of the job's processes
          (mpirun, ompi-server, the ranks) but the HTTP and rendezvous ports is on the host's own
          10.77.0.x address or loopback (Open MPI 4.1 alone binds them to 0.0.0.0 and [::]); the HTTP
          port stays on 0.0.0.0 as asked. The loopback case checks the same on 127.0.0.1.
  stranger  node 0 waiting for node 1; a stranger on host B with the old protocol and no secret can
          neither read the ompi-server address nor overwrite the MPI port, and 40 idle connections
          held open do not keep node 1 out; a node with another secret is refused with a message
          naming --dist-secret-file; no secret at all is a start-up error naming it.

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
SECRET = "multihost-test-secret-0123456789"
ENV = dict(os.environ, DPSERVE_SHARED_DIR=SHARED, DPSERVE_DIST_SECRET=SECRET, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_pml="ob1", OMPI_MCA_btl="tcp,self", OMPI_MCA_btl_tcp_if_include=SUBNET,
           OMPI_MCA_oob_tcp_if_include=SUBNET, OMPI_MCA_mpi_yield_when_idle="1")
STORIES = os.path.join(SHARED, "models/stories260K/stories260K.bin")
MAKE_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "make_hf_model.py")
NODE0 = netns_hosts.ADDR["a"]
RDV, HTTP = 29400, 18080  # inside the namespaces' own network stacks: no clash with other runs


def node_cmd(rank, flags, nnodes=2, extra=()):
    return [BIN, "serve", "--model-path", STORIES, "--threads", "1", *flags, "--nnodes", str(nnodes),
            "--node-rank", str(rank), "--dist-init-addr", f"{NODE0}:{RDV}", "--dist-timeout", "20",
            "--host", "0.0.0.0", "--port", str(HTTP), *extra]


def start(H, host, cmd, env=None):
    p = subprocess.Popen(H.exec_prefix(host) + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env or ENV, start_new_session=True)
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


def rank_pids(H, host):
    """The MPI ranks (children of mpirun, not the dpserve launcher) running dpserve on a host."""
    out = []
    for pid in H.pids(host):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                exe = f.read().split(b"\0")[0].decode()
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{ppid}/comm") as f:
                parent = f.read().strip()
        except OSError:
            continue
        if os.path.basename(exe) == os.path.basename(BIN) and parent == "mpirun":
            out.append(pid)
    return out


def start_pair(H, flags, name, env=None):
    n1, log1 = start(H, "b", node_cmd(1, flags), env)
    n0, log0 = start(H, "a", node_cmd(0, flags), env)
    h = subprocess.run(H.exec_prefix("b") + ["/usr/bin/python3", CLIENT, "health", f"http://{NODE0}:{HTTP}", "60"],
                       env=ENV, timeout=90)
    if h.returncode != 0:
        for p in (n0, n1):
            os.killpg(p.pid, signal.SIGKILL)
        raise SystemExit(f"FAIL: {name}: node 0 did not become healthy\nnode 0:\n" + "".join(log0[-30:]) +
                         "\nnode 1:\n" + "".join(log1[-30:]))
    return (n0, log0), (n1, log1)


def case_lost(H):
    tp2 = ["--tp-size", "2"]
    url = f"http://{NODE0}:{HTTP}"
    # 1. Node 1's rank dies while clients stream from node 0.
    (n0, log0), (n1, log1) = start_pair(H, tp2, "kill node 1's rank")
    stream = subprocess.Popen(H.exec_prefix("b") + ["/usr/bin/python3", CLIENT, "stream", url, "2", "60"],
                              stdout=subprocess.PIPE, text=True, env=ENV)
    time.sleep(3)
    victims = rank_pids(H, "b")
    assert len(victims) == 1, f"expected one rank on host B, found {victims}: " + str(
        [open(f"/proc/{p}/cmdline").read().replace(chr(0), " ")[:80] for p in H.pids("b")])
    t0 = time.time()
    os.kill(victims[0], signal.SIGKILL)
    rc0 = wait_exit(n0, log0, 30, "node 0 after node 1's rank was SIGKILLed")
    t_end = time.time() - t0
    rc1 = wait_exit(n1, log1, 30, "node 1 after its rank was SIGKILLed")
    summary = json.loads(stream.communicate(timeout=60)[0].splitlines()[-1])
    out0 = "".join(log0)
    assert rc0 != 0 and rc1 != 0, f"exit codes node 0 {rc0}, node 1 {rc1}: a lost node is a failure"
    assert "node 1 of the --nnodes 2 job is lost" in out0, "node 0 does not say node 1 is lost\n" + out0[-3000:]
    assert summary["error_events"] and summary["hung"] == 0 and summary["still_running"] == 0, \
        f"the open streams did not end with an error event: {summary}"
    assert any("node 1" in e for e in summary["error_events"]), f"the error event does not name node 1: {summary}"
    nothing_left(H, "node 1's rank killed")
    print(f"ok node 1's rank SIGKILLed: node 0 ended in {t_end:.1f} s (exit {rc0}), node 1 exit {rc1}; streams: "
          f"{summary['ok']} ok, {len(summary['error_events'])} error events, the last: {summary['error_events'][-1][:200]}")

    # 2. Node 0's rank 0 dies: node 1 must not wait for the watchdog.
    (n0, log0), (n1, log1) = start_pair(H, tp2, "kill node 0's rank")
    victims = rank_pids(H, "a")
    assert len(victims) == 1, f"expected one rank on host A, found {victims}"
    t0 = time.time()
    os.kill(victims[0], signal.SIGKILL)
    rc1 = wait_exit(n1, log1, 30, "node 1 after node 0's rank was SIGKILLed")
    t_end = time.time() - t0
    rc0 = wait_exit(n0, log0, 30, "node 0 after its rank was SIGKILLed")
    assert rc0 != 0 and rc1 != 0, f"exit codes node 0 {rc0}, node 1 {rc1}"
    assert "node 0 of the --nnodes 2 job is lost" in "".join(log1), "node 1 does not say node 0 is lost\n" + \
        "".join(log1[-30:])
    nothing_left(H, "node 0's rank killed")
    print(f"ok node 0's rank SIGKILLed: node 1 ended in {t_end:.1f} s (exit {rc1}), node 0 exit {rc0}")

    # 3. SIGTERM to node 1 (not the HTTP node): the whole job drains and exits cleanly.
    (n0, log0), (n1, log1) = start_pair(H, tp2, "SIGTERM to node 1")
    t0 = time.time()
    os.kill(n1.pid, signal.SIGTERM)
    rc0 = wait_exit(n0, log0, 40, "node 0 after SIGTERM to node 1")
    rc1 = wait_exit(n1, log1, 40, "node 1 after SIGTERM to it")
    assert rc0 == 0 and rc1 == 0, f"exit codes node 0 {rc0}, node 1 {rc1}\n" + "".join(log0[-20:]) + "".join(log1[-20:])
    nothing_left(H, "SIGTERM to node 1")
    print(f"ok SIGTERM to node 1: both nodes drained and exited 0 in {time.time() - t0:.1f} s")

    # 4. Node 1's dpserve itself SIGKILLed: its link closes; its mpirun follows it (no orphans).
    (n0, log0), (n1, log1) = start_pair(H, tp2, "kill node 1's dpserve")
    launcher = [p for p in H.pids("b") if p not in rank_pids(H, "b") and
                open(f"/proc/{p}/comm").read().strip() == os.path.basename(BIN)[:15]]
    assert len(launcher) == 1, f"expected one dpserve launcher on host B, found {launcher}"
    t0 = time.time()
    os.kill(launcher[0], signal.SIGKILL)
    rc0 = wait_exit(n0, log0, 30, "node 0 after node 1's dpserve was SIGKILLed")
    t_end = time.time() - t0
    assert rc0 != 0, f"node 0 exit {rc0}"
    assert "node 1 of the --nnodes 2 job is lost" in "".join(log0), "".join(log0[-30:])
    nothing_left(H, "node 1's dpserve killed")
    print(f"ok node 1's dpserve SIGKILLed: node 0 ended in {t_end:.1f} s (exit {rc0}); nothing left on host B")


def rdv_ask(H, line, expect_reply=True):
    """A stranger on host B: one line to the rendezvous, the first line back (or '')."""
    code = ("import socket,sys\ns=socket.create_connection((sys.argv[1],int(sys.argv[2])),5)\ns.settimeout(6)\n"
            "s.sendall(sys.argv[3].encode()+b'\\n')\ntry:\n  print(s.makefile().readline().strip())\n"
            "except Exception: print('')\n")
    p = subprocess.run(H.exec_prefix("b") + ["/usr/bin/python3", "-c", code, NODE0, str(RDV), line],
                       capture_output=True, text=True, timeout=30)
    return p.stdout.strip()


def case_stranger(H):
    tp2 = ["--tp-size", "2"]
    n0, log0 = start(H, "a", node_cmd(0, tp2))
    try:
        for _ in range(100):
            got = rdv_ask(H, "GET ompi_server")
            if got and got != "WAIT":
                break
            time.sleep(0.2)
        # Whatever the greeting, the old protocol must not hand out or take anything.
        assert not got.startswith("OK "), f"a stranger read the ompi-server address: {got!r}"
        for line in ("GET mpi_port", "SET mpi_port 123.0;tcp://10.77.0.2:1+123.1;tcp://10.77.0.2:2:300",
                     "SET ompi_server 1.0;tcp://10.77.0.2:1"):
            got = rdv_ask(H, line)
            assert not got.startswith("OK"), f"a stranger's {line!r} was answered {got!r}"
        print(f"ok a stranger without the secret reads and sets nothing (answer: {got!r})")
        # 40 idle connections held open from host B while node 1 joins.
        holder = subprocess.Popen(H.exec_prefix("b") + ["/usr/bin/python3", "-c",
                                  "import socket,sys,time\n"
                                  "c=[socket.create_connection((sys.argv[1],int(sys.argv[2])),5) for _ in range(40)]\n"
                                  "print('held',flush=True)\ntime.sleep(60)\n", NODE0, str(RDV)],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        n1, log1 = start(H, "b", node_cmd(1, tp2))
        h = subprocess.run(H.exec_prefix("b") + ["/usr/bin/python3", CLIENT, "health", f"http://{NODE0}:{HTTP}", "40"],
                           env=ENV, timeout=60)
        holder.kill()
        if h.returncode != 0:
            raise SystemExit("FAIL: node 1 could not join beside 40 idle connections\nnode 0:\n" +
                             "".join(log0[-30:]) + "\nnode 1:\n" + "".join(log1[-30:]))
        out = subprocess.run(H.exec_prefix("b") + ["/usr/bin/python3", CLIENT, "complete", f"http://{NODE0}:{HTTP}",
                                                   "Once upon a time", "8"], capture_output=True, text=True,
                             env=ENV, timeout=90)
        assert out.returncode == 0, out.stderr
        print(f"ok node 1 joined and served in {time.time() - t0:.1f} s beside 40 idle connections and the stranger")
        os.kill(n0.pid, signal.SIGTERM)
        assert wait_exit(n0, log0, 40, "node 0 after SIGTERM") == 0
        assert wait_exit(n1, log1, 40, "node 1 after the job stopped") == 0
    finally:
        if n0.poll() is None:
            os.killpg(n0.pid, signal.SIGKILL)
    nothing_left(H, "stranger")
    # Another secret on node 1 (from a file): refused, named.
    bad = os.path.join(SCRATCH, "other-secret")
    with open(bad, "w") as f:
        f.write("not-the-same-secret-at-all\n")
    # Node 0 then waits for a node that never joins: a short --dist-timeout ends it.
    n0_cmd = node_cmd(0, tp2)
    n0_cmd[n0_cmd.index("--dist-timeout") + 1] = "5"
    expect_failure(H, [("a", n0_cmd), ("b", node_cmd(1, tp2, extra=["--dist-secret-file", bad]))], 40,
                   ["refused this node's shared secret", "--dist-secret-file"], "node 1 with another secret")
    env = dict(ENV)
    del env["DPSERVE_DIST_SECRET"]
    p = subprocess.run(H.exec_prefix("a") + node_cmd(0, tp2), capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode != 0 and "--dist-secret-file" in p.stderr and "DPSERVE_DIST_SECRET" in p.stderr, \
        f"no secret: exit {p.returncode}\n{p.stderr[-2000:]}"
    print("ok no secret: " + next(l for l in p.stderr.splitlines() if "secret" in l).strip()[:200])


def case_mismatch(H):
    tp2 = ["--tp-size", "2"]
    other = os.path.join(SCRATCH, "other-weights")
    os.makedirs(other, exist_ok=True)
    src = os.path.dirname(STORIES)
    for name in ("stories260K.bin", "tok512.bin"):
        with open(os.path.join(src, name), "rb") as f:
            data = bytearray(f.read())
        if name == "stories260K.bin":  # same header and size, other numbers at the end (a "fine-tune")
            for i in range(len(data) - 4096, len(data)):
                data[i] ^= 0x01
        with open(os.path.join(other, name), "wb") as f:
            f.write(data)
    cmd = node_cmd(1, tp2)
    cmd[cmd.index("--model-path") + 1] = os.path.join(other, "stories260K.bin")
    expect_failure(H, [("a", node_cmd(0, tp2)), ("b", cmd)], 60,
                   ["node 1 does not run the same model and layout as node 0", "model weights digest"],
                   "node 1 with other weights")
    expect_failure(H, [("a", node_cmd(0, tp2)), ("b", node_cmd(1, tp2, extra=["--kv-cache-dtype", "bf16"]))], 60,
                   ["node 1 does not run the same model and layout as node 0", "--kv-cache-dtype"],
                   "node 1 with another --kv-cache-dtype")
    # An MLA model holds its latent in fp32 under auto as under fp32, but auto's long prompts take
    # bf16 decompressed keys and values (a bf16 model): the two nodes' heads would round differently.
    mla = os.path.join(SCRATCH, "tiny-deepseek-bf16")
    if not os.path.exists(os.path.join(mla, "config.json")):
        subprocess.run(["/usr/bin/python3", MAKE_MODEL, "--arch", "deepseek_v2", "--preset", "tiny", "--dtype", "bf16",
                        "--out", mla, "--quiet"], check=True, timeout=120)
    mla_cmds = [node_cmd(r, tp2, extra=["--kv-cache-dtype", "fp32"] if r else []) for r in (0, 1)]
    for c in mla_cmds:
        c[c.index("--model-path") + 1] = mla
    expect_failure(H, [("a", mla_cmds[0]), ("b", mla_cmds[1])], 60,
                   ["node 1 does not run the same model and layout as node 0", "MLA's decompressed keys and values"],
                   "MLA: node 1 with --kv-cache-dtype fp32 against auto")
    # Each rank of a group schedules on its own: other scheduling flags would split its batches.
    expect_failure(H, [("a", node_cmd(0, tp2)), ("b", node_cmd(1, tp2, extra=["--max-running-requests", "3"]))], 60,
                   ["node 1 does not run the same model and layout as node 0", "--max-running-requests"],
                   "node 1 with another --max-running-requests")


def case_link_down(H):
    env = dict(ENV, DPSERVE_DIST_HEARTBEAT_TIMEOUT="3")
    url = f"http://{NODE0}:{HTTP}"
    (n0, log0), (n1, log1) = start_pair(H, ["--tp-size", "2"], "link down", env)
    stream = subprocess.Popen(H.exec_prefix("a") + ["/usr/bin/python3", CLIENT, "stream", url, "2", "60"],
                              stdout=subprocess.PIPE, text=True, env=ENV)
    time.sleep(3)
    t0 = time.time()
    H.link("a", False)
    rc0 = wait_exit(n0, log0, 25, "node 0 after the link to node 1 went down")
    t0_end = time.time() - t0
    rc1 = wait_exit(n1, log1, 25, "node 1 after the link to node 0 went down")
    t1_end = time.time() - t0
    H.link("a", True)
    summary = json.loads(stream.communicate(timeout=60)[0].splitlines()[-1])
    assert rc0 != 0 and rc1 != 0, f"exit codes node 0 {rc0}, node 1 {rc1}"
    assert "no heartbeat" in "".join(log0) and "no heartbeat" in "".join(log1), \
        "a node does not say it missed the other's heartbeat\n" + "".join(log0[-20:]) + "".join(log1[-20:])
    assert any("node 1" in e for e in summary["error_events"]) and summary["hung"] == 0, \
        f"the open streams did not end with an error event naming node 1: {summary}"
    nothing_left(H, "link down")
    print(f"ok link down: node 0 ended in {t0_end:.1f} s, node 1 in {t1_end:.1f} s (heartbeat timeout 3 s); "
          f"streams: {summary['ok']} ok, last error event: {summary['error_events'][-1][:160]}")


def sigterm_node0(node0, node1):
    """SIGTERM to node 0's dpserve (drain, then every rank stops): both nodes' exit codes."""
    os.kill(node0[0].pid, signal.SIGTERM)
    return (wait_exit(*node0, 40, "node 0 after SIGTERM"), wait_exit(*node1, 40, "node 1 after node 0 stopped"))


def job_listeners(H, host):
    """(address, port, process) of every listening TCP socket of the processes in a host's namespace."""
    ss = subprocess.run(H.exec_prefix(host) + ["ss", "-ltnpH"], capture_output=True, text=True, timeout=20).stdout
    pids = set(H.pids(host))
    out = []
    for line in ss.splitlines():
        cols = line.split()
        if len(cols) < 6 or not any(f"pid={p}," in cols[5] for p in pids):
            continue
        addr, port = cols[3].rsplit(":", 1)
        out.append((addr.strip("[]"), int(port), cols[5].split('"')[1]))
    return out


def check_listeners(H, host, allowed, wildcard_ports=()):
    """Every listener of the job on `host` is on an address in `allowed`, except `wildcard_ports`
    (HTTP on 0.0.0.0 as the user asked), which must stay on the wildcard; returns what was seen."""
    seen = job_listeners(H, host)
    mpi = [l for l in seen if l[1] not in (HTTP, RDV)]
    assert any(l[2] in ("mpirun", "dpserve") for l in mpi), f"host {host}: no MPI listener found: {seen}"
    wrong = [l for l in mpi if l[0] not in allowed]
    assert not wrong, f"host {host}: MPI listeners not on {allowed}: {wrong} (all: {seen})"
    for port in wildcard_ports:
        assert any(l[1] == port and l[0] in ("0.0.0.0", "*") for l in seen), f"HTTP port {port} not on 0.0.0.0: {seen}"
    return seen


def case_listen(H):
    env = {k: v for k, v in ENV.items() if not k.startswith(("OMPI_MCA_btl", "OMPI_MCA_oob", "OMPI_MCA_pml"))}
    prompt, n = "Once upon a time", 16
    want = single_rank(prompt, n)
    (n0, log0), (n1, log1) = start_pair(H, ["--tp-size", "2"], "listen", env)
    try:
        out = subprocess.run(H.exec_prefix("b") + ["/usr/bin/python3", CLIENT, "complete", f"http://{NODE0}:{HTTP}",
                                                   prompt, str(n)], capture_output=True, text=True, env=env, timeout=90)
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)["choices"][0]["text"]
        assert got == want, f"text differs\n single rank: {want!r}\n 2 nodes: {got!r}"
        a = check_listeners(H, "a", {netns_hosts.ADDR["a"], "127.0.0.1", "::1"}, wildcard_ports=(HTTP,))
        b = check_listeners(H, "b", {netns_hosts.ADDR["b"], "127.0.0.1", "::1"})
        print(f"ok listen: single-rank text over the veth pair; host A's {len(a)} and host B's {len(b)} listening "
              f"sockets: MPI's on the host's own address, HTTP on 0.0.0.0")
    finally:
        rc0, rc1 = sigterm_node0((n0, log0), (n1, log1))
    assert rc0 == 0 and rc1 == 0, f"exit codes node 0 {rc0}, node 1 {rc1}"
    nothing_left(H, "listen")


def case_loopback(H):
    env = {k: v for k, v in ENV.items() if not k.startswith(("OMPI_MCA_btl", "OMPI_MCA_oob", "OMPI_MCA_pml"))}
    prompt, n = "Once upon a time", 16
    want = single_rank(prompt, n)
    tp2 = ["--tp-size", "2"]
    procs = []
    for rank in (0, 1):
        cmd = node_cmd(rank, tp2)
        cmd[cmd.index("--dist-init-addr") + 1] = f"127.0.0.1:{RDV}"
        cmd[cmd.index("--host") + 1] = "127.0.0.1"
        p = subprocess.Popen(H.exec_prefix("a") + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env, start_new_session=True)
        log = []
        threading.Thread(target=lambda p=p, log=log: log.extend(p.stdout), daemon=True).start()
        procs.append((p, log))
    (n0, log0), (n1, log1) = procs
    url = f"http://127.0.0.1:{HTTP}"
    try:
        h = subprocess.run(H.exec_prefix("a") + ["/usr/bin/python3", CLIENT, "health", url, "60"], env=env, timeout=90)
        if h.returncode != 0:
            raise SystemExit("FAIL: two nodes on one host's loopback did not become healthy\nnode 0:\n" +
                             "".join(log0[-30:]) + "\nnode 1:\n" + "".join(log1[-30:]))
        out = subprocess.run(H.exec_prefix("a") + ["/usr/bin/python3", CLIENT, "complete", url, prompt, str(n)],
                             capture_output=True, text=True, env=env, timeout=90)
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)["choices"][0]["text"]
        assert got == want, f"text differs\n single rank: {want!r}\n 2 nodes: {got!r}"
        ranks = rank_pids(H, "a")
        assert len(ranks) == 2, f"expected two ranks on host A, found {ranks}"
        ss = subprocess.run(H.exec_prefix("a") + ["ss", "-tnpH", "state", "established"], capture_output=True,
                            text=True, timeout=20).stdout
        mine = [l for l in ss.splitlines() if any(f"pid={p}," in l for p in ranks)]
        assert mine, f"no established connection of the ranks {ranks}:\n{ss}"
        off = [l for l in mine if netns_hosts.ADDR["a"] in l]
        assert not off, "ranks' connections on 10.77.0.1, not the --dist-init-addr network:\n" + "\n".join(off)
        check_listeners(H, "a", {"127.0.0.1", "::1"})
        print(f"ok two nodes on 127.0.0.1 joined and served the single-rank text; the ranks' {len(mine)} TCP "
              f"connections are all on 127.0.0.1")
    finally:
        rc0, rc1 = sigterm_node0((n0, log0), (n1, log1))
    assert rc0 == 0 and rc1 == 0, f"exit codes node 0 {rc0}, node 1 {rc1}"
    nothing_left(H, "loopback")


with netns_hosts.Hosts(SCRATCH) as H:
    {"serve": case_serve, "errors": case_errors, "lost": case_lost, "stranger": case_stranger,
     "mismatch": case_mismatch, "loopback": case_loopback, "listen": case_listen,
     "link_down": case_link_down}[CASE](H)
print(f"PASS nnodes_{CASE}")
