#!/usr/bin/python3
"""The converted weight matrices sit on 2 MiB pages, small ones (a MoE's experts) included.

A decode step reads every matrix it uses once. From 4 KiB pages every new page is a TLB miss, and
on a virtual machine each miss is a two-level page walk: with every matrix allocated on its own,
only matrices of 2 MiB or more were given huge pages, and a Qwen3-MoE-like model's experts
(768 x 1024 bf16, 1.5 MiB each) decoded 2-5x slower than from huge pages (docs/benchmarks.md,
"MoE decode from huge pages"). Now every converted matrix goes into one region advised for huge
pages.

The test makes a Qwen3-MoE model whose matrices are all 2 MiB or smaller (32 experts of
256 x 1024 bf16, 512 KiB each, the attention projections 0.5-2 MiB, a 1000-token vocabulary),
starts `dpserve serve` on it and reads, from the kernel's own accounting (/proc/PID/smaps_rollup,
AnonHugePages, summed over the server's processes), how much of its memory is on huge pages. At
least three quarters of the weight bytes the server reports must be (measured: all of them; before
the change 10 %: only the 2 MiB q and o projections and the output layer). It needs transparent huge
pages set to `madvise` or `always` (/sys/kernel/mm/transparent_hugepage/enabled), as Debian ships.

  /usr/bin/python3 tests/model/test_weight_huge_pages.py --dpserve DPSERVE --make-model tools/make_hf_model.py --work DIR
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def descendants(root):
    """root and every process below it."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def huge_mib(pids):
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("AnonHugePages:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dpserve", required=True)
    ap.add_argument("--make-model", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    mode = re.search(r"\[(\w+)\]", open(THP).read()).group(1)
    if mode == "never":
        sys.exit(f"FAIL: transparent huge pages are off on this machine ({THP}: never); the test needs madvise or always")
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    model = os.path.join(a.work, "moe")
    cmd = [sys.executable, a.make_model, "--arch", "qwen3_moe", "--dtype", "bf16", "--hidden-size", "1024",
           "--num-attention-heads", "16", "--num-key-value-heads", "4", "--head-dim", "64", "--num-experts", "32",
           "--num-experts-per-tok", "4", "--moe-intermediate-size", "256", "--intermediate-size", "256",
           "--num-hidden-layers", "4", "--vocab-size", "1000", "--max-position-embeddings", "512", "--no-tokenizer",
           "--quiet", "--out", model]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stderr[-2000:]}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(os.path.join(a.work, "server.log"), "w+")
    srv = subprocess.Popen([a.dpserve, "serve", "--model-path", model, "--skip-tokenizer-init", "--port", str(port),
                            "--threads", "2", "--max-total-tokens", "4096"],
                           stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    try:
        deadline = time.time() + 300
        while True:
            if srv.poll() is not None:
                log.seek(0)
                sys.exit(f"FAIL: the server exited {srv.returncode}\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("FAIL: the server did not answer /health within 300 s")
            time.sleep(0.5)
        log.seek(0)
        text = log.read()
        m = re.search(r"weights: \d+ bf16 / f16 matrices repacked into 16-row groups in huge pages \(([\d.]+) MB\)", text)
        if not m:
            sys.exit(f"FAIL: no 'weights: ... bf16 / f16 matrices repacked' line in the server's log\n{text[-3000:]}")
        weights = float(m.group(1)) * 1e6 / 2**20
        huge = huge_mib(descendants(srv.pid))
        ok = huge >= 0.75 * weights
        print(f"{'ok  ' if ok else 'FAIL'} transparent huge pages: {mode}; weights {weights:.1f} MiB, "
              f"on 2 MiB pages {huge:.1f} MiB ({100 * huge / weights:.0f} %; at least 75 % wanted)")
        if not ok:
            sys.exit(1)
    finally:
        try:
            os.killpg(srv.pid, 15)
        except ProcessLookupError:
            pass
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(srv.pid, 9)
            srv.wait()
    shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
