"""Two "hosts" on one machine: network namespaces joined by a veth pair, and mpirun across them.

Host A (namespace <prefix>a, 10.77.0.1/24) and host B (<prefix>b, 10.77.0.2/24) each have their own
network stack, loopback and UTS hostname; the only path between them is the veth pair. mpirun runs
inside host A; Open MPI starts its daemon on host B through a launch agent (`plm_rsh_agent`) that
does what ssh would do: enter host B (`ip netns exec`) with a clean environment and run the command
line through a shell. The hostfile names the hosts by address, so no /etc/hosts entry is needed and
Open MPI sees 10.77.0.1 as its own node (an address of one of its interfaces) and 10.77.0.2 as remote.
MPI traffic and Open MPI's own out-of-band channel are bound to 10.77.0.0/24 (TCP BTL, no shared
memory), so every byte between the hosts crosses the veth pair.

Names carry the creating process id, so parallel runs never clash; namespaces left by a run that
was SIGKILLed (its pid gone) are removed by the next one. Needs root (CAP_SYS_ADMIN): without it the
constructor raises with the reason instead of skipping.
"""
import os
import re
import signal
import subprocess
import time

SUBNET = "10.77.0.0/24"
ADDR = {"a": "10.77.0.1", "b": "10.77.0.2"}
PREFIX = "dpmh"


def _ip(*args, check=True):
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and p.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def ns_pids(ns):
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=20).stdout
    return [int(p) for p in out.split()]


def _kill_ns(ns):
    """SIGKILL everything in the namespace (bounded), then delete it (which deletes its veth end)."""
    for _ in range(50):
        pids = ns_pids(ns)
        if not pids:
            break
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    _ip("netns", "del", ns, check=False)


def require_root():
    if os.geteuid() != 0:
        raise SystemExit("FAIL: the multi-host tests create network namespaces and veth pairs, which needs root "
                         f"(CAP_SYS_ADMIN, CAP_NET_ADMIN); running as uid {os.geteuid()}")


def remove_stale():
    for line in _ip("netns", "list", check=False).splitlines():
        m = re.match(rf"({PREFIX}(\d+)[ab])\b", line)
        if m and not _pid_alive(int(m.group(2))):
            _kill_ns(m.group(1))


class Hosts:
    """Context manager: creates the two hosts on entry, kills their processes and deletes them on exit
    (also after an exception or SIGTERM/SIGINT, which are turned into SystemExit)."""

    def __init__(self, scratch):
        self.tag = f"{PREFIX}{os.getpid()}"
        self.ns = {h: self.tag + h for h in ADDR}
        self.veth = {h: f"mh{os.getpid()}{h}" for h in ADDR}  # interface names: at most 15 characters
        self.scratch = scratch
        os.makedirs(scratch, exist_ok=True)
        self.agent = os.path.join(scratch, "netns_agent.sh")
        self.hostfile = os.path.join(scratch, "hosts")

    def __enter__(self):
        require_root()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda s, f: (_ for _ in ()).throw(SystemExit(f"FAIL: signal {s}")))
        remove_stale()
        try:
            for h in ADDR:
                _ip("netns", "add", self.ns[h])
            _ip("link", "add", self.veth["a"], "type", "veth", "peer", "name", self.veth["b"])
            for h, addr in ADDR.items():
                _ip("link", "set", self.veth[h], "netns", self.ns[h])
                _ip("-n", self.ns[h], "addr", "add", f"{addr}/24", "dev", self.veth[h])
                _ip("-n", self.ns[h], "link", "set", self.veth[h], "up")
                _ip("-n", self.ns[h], "link", "set", "lo", "up")
        except Exception as e:
            self.__exit__(None, None, None)
            raise SystemExit(f"FAIL: cannot create the test hosts (network namespaces + veth): {e}")
        cases = "\n".join(f"  host-{h}|{ADDR[h]}) ns={self.ns[h]} name=host-{h} ;;" for h in ADDR)
        # Like ssh: options first (none expected), then the host, then one command line for a shell;
        # a clean environment (mpirun forwards what the ranks need with -x).
        with open(self.agent, "w") as f:
            f.write(f"""#!/bin/sh
# Launch agent for mpirun (--mca plm_rsh_agent): "ssh" into a network-namespace host.
while [ "${{1#-}}" != "$1" ]; do shift; done
host=$1; shift
case $host in
{cases}
  *) echo "netns_agent: unknown host $host" >&2; exit 255 ;;
esac
exec env -i PATH="$PATH" HOME=/root ip netns exec $ns unshare --uts /bin/sh -c "hostname $name; $*"
""")
        os.chmod(self.agent, 0o755)
        with open(self.hostfile, "w") as f:
            f.write("".join(f"host-{h} slots=2\n" for h in ADDR))
        return self

    def __exit__(self, *exc):
        for h in ADDR:
            _kill_ns(self.ns[h])
        return False

    def exec_prefix(self, h):
        """Command prefix that runs a program on host h (its namespace and hostname)."""
        return ["ip", "netns", "exec", self.ns[h], "unshare", "--uts", "/bin/sh", "-c",
                f'hostname host-{h} && exec "$@"', "sh"]

    def mpirun(self, np, forward_env=()):
        """mpirun on host A over both hosts, consecutive ranks on one host (ranks 0..np/2-1 on A).

        mpi_yield_when_idle: the hostfile gives each host 2 slots, so Open MPI does not know that all 4
        ranks share this machine's 2 cores and would let waiting ranks spin (a 20x slower decode here);
        real hosts with a core per rank do not need it."""
        cmd = self.exec_prefix("a") + [
            "mpirun", "--allow-run-as-root", "--hostfile", self.hostfile, "-np", str(np), "--map-by", "slot",
            "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1", "--mca", "plm_rsh_agent", self.agent, "--mca", "pml", "ob1",
            "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", SUBNET, "--mca", "oob_tcp_if_include",
            SUBNET,
            # Open MPI's daemons notice a dead link by TCP keepalive on their control connection
            # (default: after 300 s idle, then 9 probes 20 s apart); here after 1 s + 2 probes 1 s apart.
            "--mca", "oob_tcp_keepalive_time", "1", "--mca", "oob_tcp_keepalive_intvl", "1",
            "--mca", "oob_tcp_keepalive_probes", "2"]
        for var in forward_env:
            cmd += ["-x", var]
        return cmd

    def link(self, h, up):
        _ip("-n", self.ns[h], "link", "set", self.veth[h], "up" if up else "down")

    def tx_bytes(self, h):
        """Bytes host h has sent over its veth end (proof that the traffic crossed the link)."""
        import json
        return json.loads(_ip("-j", "-s", "-n", self.ns[h], "link", "show", "dev", self.veth[h]))[0]["stats64"]["tx"]["bytes"]

    def pids(self, h):
        return ns_pids(self.ns[h])
