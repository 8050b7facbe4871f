#!/usr/bin/python3
"""Time to first token of a long cached prefix after a restart (--kv-cache-dir) against a cold one.

Per round: a server with an empty --kv-cache-dir answers a PROMPT-token prompt (random token ids,
max_tokens 1: the answer's time is the time to first token) -- the cold figure; the same prompt
again -- the in-memory prefix hit; SIGTERM (the drain writes the file); a new server on the same
dir answers the same prompt -- the restart figure. Also prints the file size and the time the
restarted server took to read it (its log line), which is start-up time, not TTFT.

  bench/kv_cache_dir_ttft.py --bin build/bin/dpserve --model /tmp/narrow-8k --tokens 8192 --rounds 3

Without --model it makes one with tools/make_hf_model.py: TinyLlama-1.1B's attention and KV shape
(22 layers, 4 KV heads x 64, bf16 KV: 22 KiB a token) with a narrow hidden size (256, MLP 704) so
an 8k prefill takes seconds on two cores, and max_position_embeddings 8192.
"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402


def start(args, flags, log):
    """A healthy server on the model (its output in `log`)."""
    try:
        return ServeProcess(args.bin, "--model-path", args.model, "--max-total-tokens", str(args.tokens + 1024),
                            "--chunked-prefill-size", str(args.chunk), *flags, log=log, health_timeout=300,
                            quiet=True)
    except ServeError as e:
        raise SystemExit(str(e))


def stop(server):
    rc = server.stop(timeout=300)
    if rc != 0:
        raise SystemExit(f"server exited {rc} after SIGTERM:\n{server.output()[-3000:]}")


def ttft(port, prompt):
    body = json.dumps({"prompt": prompt, "max_tokens": 1, "temperature": 0}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        d = json.load(r)
    return time.perf_counter() - t0, d["usage"]["prompt_tokens_details"]["cached_tokens"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", help="HF folder with max_position_embeddings > --tokens (default: made here)")
    ap.add_argument("--tokens", type=int, default=8192, help="prompt length (the cached prefix is all but < 1 page)")
    ap.add_argument("--chunk", type=int, default=2048, help="--chunked-prefill-size of both servers")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flags", default="", help="more serve flags, e.g. '--kv-cache-dtype int8'")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kvdir-bench-")
    try:
        if not args.model:
            args.model = os.path.join(tmp, "model")
            subprocess.run(["/usr/bin/python3", os.path.join(HERE, "../tools/make_hf_model.py"), "--preset",
                            "tinyllama-1.1b", "--hidden-size", "256", "--intermediate-size", "704",
                            "--num-attention-heads", "4", "--max-position-embeddings", str(args.tokens + 1024),
                            "--out", args.model, "--quiet"], check=True)
        cfg = json.load(open(os.path.join(args.model, "config.json")))
        rng = random.Random(1)
        prompt = [rng.randrange(300, cfg["vocab_size"]) for _ in range(args.tokens)]
        flags = args.flags.split()
        rows = []
        for rnd in range(args.rounds):
            d = os.path.join(tmp, f"cache{rnd}")
            srv = start(args, ["--kv-cache-dir", d, "--kv-cache-write-behind-tokens", "0", *flags],
                        os.path.join(tmp, f"cold{rnd}.log"))
            cold, c0 = ttft(srv.port, prompt)
            mem, c1 = ttft(srv.port, prompt)
            stop(srv)
            size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
            t0 = time.perf_counter()
            srv = start(args, ["--kv-cache-dir", d, "--kv-cache-write-behind-tokens", "0", *flags],
                        os.path.join(tmp, f"restart{rnd}.log"))
            startup = time.perf_counter() - t0
            warm, c2 = ttft(srv.port, prompt)
            stop(srv)
            m = re.search(r"prefix cache loaded .* in ([0-9.]+) s", srv.output())
            load = float(m.group(1)) if m else float("nan")
            row = dict(cold=cold, memory=mem, restart=warm, cached_cold=c0, cached_mem=c1, cached_restart=c2,
                       file_mb=size / 1e6, load_s=load, startup_s=startup)
            rows.append(row)
            print(f"round {rnd}: cold {cold:.3f} s (cached {c0}), in-memory hit {mem:.3f} s (cached {c1}), "
                  f"after restart {warm:.3f} s (cached {c2}); file {size / 1e6:.1f} MB read in {load:.2f} s, "
                  f"server up in {startup:.1f} s", flush=True)
        med = {k: statistics.median(r[k] for r in rows) for k in ("cold", "memory", "restart", "load_s", "file_mb")}
        print(f"median of {len(rows)}: cold TTFT {med['cold']:.3f} s, restart TTFT {med['restart']:.3f} s "
              f"({med['cold'] / med['restart']:.1f}x faster), in-memory {med['memory']:.3f} s; "
              f"file {med['file_mb']:.1f} MB, read in {med['load_s']:.2f} s at start")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
