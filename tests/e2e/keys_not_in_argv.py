"""Keys given as flags to a multi-rank `dpserve serve` stay out of the ranks' command lines and the
log (run by run_e2e.sh: DPSERVE_URL, DPSERVE_PID, DPSERVE_LOG in the environment).

The launcher keeps its own argv (the user typed it); every process it starts (mpirun, the ranks)
gets the keys through its environment instead, and the keys still work."""
import os
import sys
import urllib.error
import urllib.request

KEYS = ["e2e-argv-key-one", "e2e-argv-key-two", "e2e-argv-admin-key"]
url, launcher, log = os.environ["DPSERVE_URL"], int(os.environ["DPSERVE_PID"]), os.environ["DPSERVE_LOG"]


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


text = open(log, errors="replace").read()
for k in KEYS:
    if k in text:
        fail(f"the server log shows key {k}")
if "starting 2 ranks" not in text:
    fail("the launcher did not start 2 ranks (this test needs a multi-rank server)")

# Every process below the launcher: mpirun, orted, the ranks.
children = {}
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        stat = open(f"/proc/{pid}/stat").read()
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        continue
    children.setdefault(ppid, []).append((int(pid), cmd))
below, todo = [], [launcher]
while todo:
    for pid, cmd in children.get(todo.pop(), []):
        below.append((pid, cmd))
        todo.append(pid)
ranks = [c for _, c in below if " serve " in c and "mpirun" not in c]
if len(ranks) < 2:
    fail(f"expected 2 rank processes below the launcher, found {len(ranks)}: {below}")
for pid, cmd in below:
    for k in KEYS:
        if k in cmd:
            fail(f"process {pid} has key {k} on its command line: {cmd}")


def status(key):
    req = urllib.request.Request(url + "/v1/models")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        return urllib.request.urlopen(req, timeout=30).status
    except urllib.error.HTTPError as e:
        return e.code


if status(None) != 401 or status("wrong-key") != 401:
    fail("a request without a valid key was let in")
for k in KEYS:
    if status(k) != 200:
        fail(f"key {k} no longer works once moved to the environment")
print(f"ok: no key in the log or on the command lines of {len(below)} processes; all {len(KEYS)} keys work")
