"""A `dpserve serve` child process for tests and benchmarks: started on a free loopback port, ready
once /health answers 200, stopped with SIGTERM (its drain) and killed with its whole process group
(mpirun and the ranks) when it does not stop in time. Its output goes to a file or is kept in
memory. Import it with sys.path.insert(0, <repo>/tools)."""
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

# Open MPI refuses to run as root without these; oversubscribe lets 4 ranks share 2 cores.
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}


class ServeError(Exception):
    """The server exited or never became healthy; the message ends with its output."""


def free_port():
    """A port nothing listens on now (another process may still take it first: ServeProcess retries)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    """Every process below `pid` (children, theirs, ...), found with pgrep -P; [] once they are gone."""
    out, todo = [], [pid]
    while todo:
        try:
            kids = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True, text=True).stdout.split()
        except OSError:
            kids = []
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def world_rank(pid):
    """The MPI world rank of process `pid` (OMPI_COMM_WORLD_RANK in its environment), or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for kv in f.read().split(b"\0"):
                if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
                    return int(kv.split(b"=")[1])
    except OSError:
        pass
    return None


def wait_healthy(port, timeout=120, server=None):
    """True once http://127.0.0.1:port/health answers 200, False after `timeout` seconds or as soon as
    `server` (a Popen, optional) has exited: for tests that start `dpserve serve` themselves."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server is not None and server.poll() is not None:
            return False
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


# The sanitizer job (scripts/sanitize.sh) runs the tests under ASan, whose quarantine keeps freed blocks resident
# and whose redzones grow every block: a bound on a server's peak RSS in multiples of its input means nothing there.
UNDER_ASAN = "ASAN_OPTIONS" in os.environ


def proc_bytes(pid, key):
    """A /proc/PID/status memory field in bytes ("VmHWM", "VmRSS", ...); 0 when absent."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def live(pids):
    """Those of `pids` still running (zombies, which only wait for their parent to reap them, are not)."""
    left = []
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                # The state follows the command name, which is in parentheses and may hold spaces.
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    left.append(p)
        except (OSError, IndexError):
            pass
    return left


def kill_all(pids):
    """SIGKILL every one of `pids` that still exists: the cleanup after a test that signals ranks itself."""
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


class ServeProcess:
    """`binary serve --host 127.0.0.1 --port P *flags`, healthy when the constructor returns.

    log: a file path for the output (kept there), or None to keep it in memory (`output()`).
    env: the environment (default os.environ), with MPI_ENV added. A port taken between choosing it and
    the server's bind ("cannot listen" in the output) is retried with another, `port_tries` times."""

    def __init__(self, binary, *flags, log=None, env=None, health_timeout=120, port_tries=3, quiet=False):
        self.binary, self.flags, self.log_path = binary, [str(f) for f in flags], log
        self.env = dict(os.environ if env is None else env, **MPI_ENV)
        for attempt in range(port_tries):
            self._start(quiet)
            try:
                self._wait_healthy(health_timeout)
                return
            except ServeError:
                if "cannot listen" in self.output() and attempt + 1 < port_tries:
                    print(f"  port {self.port} taken, retrying", flush=True)
                    continue
                raise

    def _start(self, quiet):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [self.binary, "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.flags]
        if not quiet:
            print("start:", " ".join(self.cmd), flush=True)
        self._lines = []
        if self.log_path:
            self._log = open(self.log_path, "w")
            out = self._log
        else:
            self._log, out = None, subprocess.PIPE
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=self.env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self._reader = None
        if self._log is None:
            self._reader = threading.Thread(target=lambda: self._lines.extend(self.proc.stdout), daemon=True)
            self._reader.start()

    def _wait_healthy(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self._finish_output()
                raise ServeError(f"the server exited ({self.proc.returncode}) before /health answered 200:\n"
                                 + self.output()[-4000:])
            try:
                if self.request("GET", "/health", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.kill()
        raise ServeError(f"/health did not answer 200 within {timeout} s:\n" + self.output()[-4000:])

    def output(self):
        """What the server printed so far."""
        if self.log_path:
            if self._log is not None and not self._log.closed:
                self._log.flush()
            with open(self.log_path, errors="replace") as f:
                return f.read()
        return "".join(self._lines)

    def request(self, method, path, body=None, headers=None, timeout=120):
        """(status, parsed JSON or raw bytes) of one request on its own connection."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            h = dict(headers or {})
            data = None
            if body is not None:
                data = body if isinstance(body, (bytes, str)) else json.dumps(body)
                h.setdefault("Content-Type", "application/json")
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
            try:
                return r.status, json.loads(raw)
            except ValueError:
                return r.status, raw
        finally:
            c.close()

    def stop(self, timeout=60):
        """SIGTERM and wait; the exit code, or None when it had to be killed after `timeout` s."""
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            rc = self.proc.returncode
        self._finish_output()
        return rc

    def kill(self):
        """SIGKILL to the whole process group (mpirun and every rank)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self._finish_output()

    def _finish_output(self):
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._log is not None and not self._log.closed:
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
