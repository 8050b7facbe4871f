#!/usr/bin/python3
"""Ctrl-C / SIGTERM stop `dpserve generate` and `dpserve bench offline` promptly, with the exit status a
signalled command has in a shell (130 for SIGINT, 143 for SIGTERM): one rank (the process itself dies of the
signal) and two ranks (the dpserve launcher forwards it to the mpirun job and answers for it).

usage: offline_signals.py DPSERVE_BINARY SHARED_DIR SCRATCH_DIR
"""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from check_tally import check, finish  # noqa: E402

dpserve, shared, scratch = sys.argv[1:4]
os.makedirs(scratch, exist_ok=True)
model = os.path.join(shared, "models", "stories260K", "stories260K.bin")
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
prompts = os.path.join(scratch, "prompts.txt")
with open(prompts, "w") as f:
    f.write("Once upon a time\n" * 400)


# Work that takes far longer than the test waits: the signal, not the end of the work, stops it.
commands = {
    "generate": ["generate", "--prompts-file", prompts, "-n", "500", "--ignore-eos", "--json"],
    "bench offline": ["bench", "offline", "--batch-size", "64", "--input-len", "200", "--output-len", "300",
                      "--num-batches", "1000"],
}
ready_marks = {"generate": "model:", "bench offline": "bench offline:"}

for name, args in commands.items():
    for layout in ([], ["--tp-size", "2"]):
        for sig in (signal.SIGINT, signal.SIGTERM):
            tag = f"{name} {' '.join(layout) or 'one rank'} {sig.name}"
            p = subprocess.Popen([dpserve, *args, "--model-path", model, "--threads", "1", *layout],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            err, ready = [], threading.Event()

            def read(p=p, err=err, ready=ready, mark=ready_marks[name]):
                for line in p.stderr:
                    err.append(line)
                    if mark in line:
                        ready.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            if not ready.wait(120):
                p.kill()
                p.wait()
                check(f"{tag}: started", False, "".join(err)[-1500:])
                continue
            time.sleep(1)  # inside the step loop
            p.send_signal(sig)
            try:
                rc = p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = None
            reader.join(10)
            want = 128 + sig.value
            # One rank dies of the signal itself (Popen's -sig); the launcher exits as a shell reports that.
            check(f"{tag}: stopped with status {want}", rc in (want, -sig.value), f"rc={rc}\n{''.join(err)[-1500:]}")

finish()
