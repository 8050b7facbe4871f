"""tools/serve_process.py, the way Python tests and benches start `dpserve serve`, against the real
binary: a port taken between choosing and binding it is retried, a server that cannot start is a
ServeError carrying its own error line, SIGTERM stops it with 0, kill() leaves no process of a
tp 2 job behind (the launcher, mpirun and both ranks), and a tp 2 job whose port is taken ends at once
naming it. The retry case fails without the retry (checked
with port_tries=1); the kill case also passes when only the launcher is killed, because dpserve's
launcher takes its ranks down itself: it guards the whole, not the process-group kill alone.

usage: serve_process_check.py DPSERVE_BIN"""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import serve_process as sp  # noqa: E402

BIN = sys.argv[1]


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        kids = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True, text=True).stdout.split()
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# 1. The first port offered is already taken: the server says so, the helper moves to another.
busy = socket.socket()
busy.bind(("127.0.0.1", 0))
busy.listen(1)
offered = [busy.getsockname()[1]]
real_free_port = sp.free_port
sp.free_port = lambda: offered.pop() if offered else real_free_port()
srv = sp.ServeProcess(BIN, "--threads", "1", quiet=True)
sp.free_port = real_free_port
assert srv.port != busy.getsockname()[1], "started on the taken port"
status, body = srv.request("POST", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 2})
assert status == 200 and body["usage"]["completion_tokens"] == 2, (status, body)
rc = srv.stop()
assert rc == 0, f"exit {rc} after SIGTERM"
busy.close()
print("ok a taken port is retried; SIGTERM stops with 0")

# 2. A server that cannot start: ServeError with the server's own reason, no waiting for the timeout.
t0 = time.time()
try:
    sp.ServeProcess(BIN, "--context-length", "999999", quiet=True)
    raise SystemExit("FAIL: a server with an impossible --context-length was reported healthy")
except sp.ServeError as e:
    assert "--context-length" in str(e) and time.time() - t0 < 60, str(e)[-500:]
print("ok a failed start is a ServeError naming the server's reason")

# 3. kill(): mpirun and both ranks of a tp 2 job are gone.
srv = sp.ServeProcess(BIN, "--tp-size", "2", "--threads", "1", quiet=True)
procs = [srv.proc.pid] + descendants(srv.proc.pid)
assert len(procs) >= 3, f"expected the launcher and two ranks, found {procs}"
srv.kill()
deadline = time.time() + 10
while any(alive(p) for p in procs) and time.time() < deadline:
    time.sleep(0.2)
left = [p for p in procs if alive(p)]
assert not left, f"processes left after kill(): {left}"
assert "rank" in srv.output(), "the output was not kept"
print(f"ok kill() ended all {len(procs)} processes of a tp 2 job")
# 4. A tp 2 job whose rank 0 cannot listen (its port taken): it ends at once, with the reason, and
#    leaves no process. Rank 0's error used to unwind into MPI_Finalize, which waited for rank 1, itself
#    waiting in the step loop for rank 0: the job hung, silent, until /health gave up (checked: this
#    case then fails on its 90 s).
busy = socket.socket()
busy.bind(("127.0.0.1", 0))
busy.listen(1)
taken = busy.getsockname()[1]
offered = [taken]
sp.free_port = lambda: offered.pop() if offered else real_free_port()
t0 = time.time()
try:
    srv = sp.ServeProcess(BIN, "--tp-size", "2", "--threads", "1", quiet=True, port_tries=1, health_timeout=90)
    srv.kill()
    raise SystemExit("FAIL: a tp 2 server on a taken port was reported healthy")
except sp.ServeError as e:
    took, msg = time.time() - t0, str(e)
    assert f"cannot listen on 127.0.0.1:{taken}" in msg and "exited" in msg and took < 60, (took, msg[-800:])
finally:
    sp.free_port = real_free_port
time.sleep(1)
pg = subprocess.run(["pgrep", "-f", "--", f"--port {taken} "], capture_output=True, text=True)
assert pg.returncode in (0, 1), pg.stderr  # 1: none matched
assert not pg.stdout.split(), f"processes left: {pg.stdout.split()}"
busy.close()
print(f"ok a tp 2 job whose port is taken ends in {took:.1f} s naming it, leaving no process")
print("PASS")
