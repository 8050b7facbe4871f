#!/usr/bin/env python3
"""The Batch API against the same requests sent by concurrent clients, one server, rounds alternated
so that the shared machine's drift falls on every variant. Each variant runs N chat requests of T
tokens (ignore_eos, greedy); each run's prompts are new (a run number in them), so the prefix cache
favours none. Prints each run's wall time (a batch: from the upload to the output file read back)
and, per variant, the median ratio of its time to the batch's (above 1: the batch is faster).

  /usr/bin/python3 bench/batch_throughput.py --model-path /tmp/qwen3-1b-shape \
      --tokenizer-path ../shared/tokenizers/qwen3 [--requests 32] [--tokens 16] [--clients 8,32] \
      [--rounds 2] [--threads 2] [--extra '...']
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import threading
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402


def call(port, method, path, body=None, content_type="application/json"):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, {"Content-Type": content_type},
                                 method=method)
    with urllib.request.urlopen(req, timeout=3600) as r:
        raw = r.read()
    return raw if path.endswith("/content") else json.loads(raw)


def bodies(run, n, tokens):
    return [{"messages": [{"role": "user", "content": f"Run {run}, request {i}: tell me about the sea."}],
             "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
             "chat_template_kwargs": {"enable_thinking": False}} for i in range(n)]


def by_clients(port, reqs, clients):
    """Wall time of the requests sent by `clients` threads, each taking the next request."""
    next_i, lock, failed = [0], threading.Lock(), []

    def worker():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= len(reqs):
                return
            out = call(port, "POST", "/v1/chat/completions", reqs[i])
            if out["usage"]["completion_tokens"] != reqs[i]["max_tokens"]:
                failed.append(i)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        sys.exit(f"requests {failed} wrote fewer tokens than asked")
    return time.perf_counter() - t0


def by_batch(port, reqs):
    """Wall time from the upload to the output file read back."""
    t0 = time.perf_counter()
    text = "".join(json.dumps({"custom_id": str(i), "method": "POST", "url": "/v1/chat/completions", "body": b}) + "\n"
                   for i, b in enumerate(reqs)).encode()
    boundary = uuid.uuid4().hex
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
            f"Content-Type: application/jsonl\r\n\r\n").encode() + text + f"\r\n--{boundary}--\r\n".encode()
    f = call(port, "POST", "/v1/files", form, f"multipart/form-data; boundary={boundary}")
    b = call(port, "POST", "/v1/batches",
             {"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    while b["status"] not in ("completed", "failed", "cancelled", "expired"):
        time.sleep(0.02)
        b = call(port, "GET", f"/v1/batches/{b['id']}")
    if b["status"] != "completed" or b["request_counts"]["completed"] != len(reqs):
        sys.exit(f"the batch ended {b['status']} with {b['request_counts']}")
    out = call(port, "GET", f"/v1/files/{b['output_file_id']}/content").decode().split("\n")
    elapsed = time.perf_counter() - t0
    for line in filter(None, out):
        usage = json.loads(line)["response"]["body"]["usage"]
        if usage["completion_tokens"] != reqs[0]["max_tokens"]:
            sys.exit("a batch line wrote fewer tokens than asked")
    for fid in (f["id"], b["output_file_id"]):
        call(port, "DELETE", f"/v1/files/{fid}")
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-path", required=True)
    ap.add_argument("--tokenizer-path", default=None)
    ap.add_argument("--dpserve", default=os.path.join(HERE, "..", "build", "bin", "dpserve"))
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--clients", default="8,32", help="client counts to compare with, comma-separated")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--extra", default="", help="more dpserve serve flags")
    a = ap.parse_args()
    flags = ["--model-path", a.model_path, "--threads", str(a.threads)] + shlex.split(a.extra)
    if a.tokenizer_path:
        flags += ["--tokenizer-path", a.tokenizer_path]
    clients = [int(c) for c in a.clients.split(",")]
    try:
        server = ServeProcess(a.dpserve, *flags, health_timeout=600, quiet=True)
    except ServeError as e:
        sys.exit(str(e))
    try:
        by_clients(server.port, bodies("warm-up", 2, 2), 2)
        print(f"model {a.model_path}, {a.requests} requests of {a.tokens} tokens, {a.rounds} rounds, "
              f"threads {a.threads}, {a.extra or 'no extra flags'}")
        run = 0
        times = {c: [] for c in clients}
        batch = []
        for r in range(a.rounds):
            for c in clients:
                run += 1
                times[c].append(by_clients(server.port, bodies(run, a.requests, a.tokens), c))
                print(f"  round {r + 1}: {c:3d} clients {times[c][-1]:7.2f} s", flush=True)
            run += 1
            batch.append(by_batch(server.port, bodies(run, a.requests, a.tokens)))
            print(f"  round {r + 1}: batch       {batch[-1]:7.2f} s", flush=True)
        for c in clients:
            ratios = [t / b for t, b in zip(times[c], batch)]
            print(f"{c} clients / batch time: median {statistics.median(ratios):.2f} "
                  f"(rounds {', '.join(f'{x:.2f}' for x in ratios)})")
    finally:
        server.stop(timeout=120)


if __name__ == "__main__":
    main()
