#!/usr/bin/python3
"""`dpserve bench serve` as a user runs it, against a small real HTTP server in this script that streams
OpenAI completions (each request: exactly max_tokens chunks and a usage chunk) and counts what it receives.

Checks: the table and the --output-file JSON line agree with the requests sent (counts, token totals,
throughput = tokens / duration, percentiles ordered); an --output-file that cannot be written and out-of-range
flags are refused before any request is sent; the /metrics probe before the run honours --timeout.

usage: bench_serve_cli.py DPSERVE_BINARY SCRATCH_DIR [SHARED_DIR]
"""
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from check_tally import check, finish  # noqa: E402

dpserve, scratch = sys.argv[1], sys.argv[2]
# Optional: the shared reference data, for a tokenizer (llama2.c's tok512.bin of stories260K).
tok512 = os.path.join(sys.argv[3], "models", "stories260K", "tok512.bin") if len(sys.argv) > 3 else ""
os.makedirs(scratch, exist_ok=True)


class Completions(http.server.BaseHTTPRequestHandler):
    posts = 0
    input_ids = []  # /generate: the length of each request's input_ids
    prompts = []  # /v1/completions: each text prompt
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_GET(self):  # /metrics without speculative counters
        body = b"# no counters\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        with Completions.lock:
            Completions.posts += 1
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/generate":  # SGLang: cumulative text, meta_info without prompt_tokens
            Completions.input_ids.append(len(req["input_ids"]))
            n = int(req["sampling_params"]["max_new_tokens"])
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for k in range(1, n + 1):
                chunk = {"text": "x" * k, "meta_info": {"completion_tokens": k}}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True
            return
        if isinstance(req.get("prompt"), str):
            Completions.prompts.append(req["prompt"])
        n = int(req["max_tokens"])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for _ in range(n):
            self.wfile.write(b'data: {"choices": [{"index": 0, "text": "x"}]}\n\n')
            self.wfile.flush()
        usage = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        self.close_connection = True


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Completions)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}"


def bench(*args, timeout=60):
    return subprocess.run([dpserve, "bench", "serve", "--base-url", url, *args], capture_output=True, text=True,
                          timeout=timeout)


# A normal run: 12 requests with 1..8 output tokens each, every figure consistent with what was served.
out = os.path.join(scratch, "result.jsonl")
if os.path.exists(out):
    os.remove(out)
Completions.posts = 0
r = bench("--num-prompts", "12", "--random-input-len", "8", "--random-output-len", "8", "--output-file", out,
          "--tag", "t1")
check("run succeeds", r.returncode == 0, r.stderr[-2000:])
check("every request reached the server (and the warm-up)", Completions.posts == 13, str(Completions.posts))
rows = {}
for line in r.stdout.splitlines():
    if ":" in line and not line.startswith("error"):
        k, v = line.rsplit(":", 1)
        rows[k.strip()] = v.strip()
check("table: rate printed as inf", rows.get("Traffic request rate") == "inf", rows.get("Traffic request rate"))
check("table: unlimited concurrency printed as not set", rows.get("Max request concurrency") == "not set",
      rows.get("Max request concurrency"))
lines = open(out).read().splitlines() if os.path.exists(out) else []
check("one JSON line appended", len(lines) == 1, str(lines))
if lines:
    j = json.loads(lines[0])
    for k in ("completed", "failed", "duration", "total_input_tokens", "total_output_tokens", "request_throughput",
              "output_throughput", "total_throughput", "mean_ttft_ms", "median_ttft_ms", "p90_ttft_ms", "p99_ttft_ms",
              "mean_itl_ms", "p99_itl_ms", "mean_tpot_ms", "mean_e2e_latency_ms", "p99_e2e_latency_ms", "num_prompts",
              "tag", "errors"):
        check(f"field {k}", k in j)
    check("counts", (j.get("completed"), j.get("failed"), j.get("num_prompts")) == (12, 0, 12), str(j))
    check("input tokens are the server's usage", j.get("total_input_tokens") == 12 * 7,
          str(j.get("total_input_tokens")))
    check("table and JSON agree on output tokens",
          rows.get("Total generated tokens") == str(j.get("total_output_tokens")))
    d = j.get("duration", 0)
    check("duration positive", d > 0)
    if d > 0:
        for rate, num in (("request_throughput", j["completed"]), ("output_throughput", j["total_output_tokens"]),
                          ("total_throughput", j["total_output_tokens"] + j["total_input_tokens"])):
            check(f"{rate} = count / duration", abs(j[rate] - num / d) <= 1e-6 * max(1.0, j[rate]),
                  f"{j[rate]} {num / d}")
    for m in ("ttft", "itl", "tpot", "e2e_latency"):
        check(f"{m} percentiles ordered", j[f"median_{m}_ms"] <= j[f"p90_{m}_ms"] <= j[f"p99_{m}_ms"], str(j))
    check("tag stored", j.get("tag") == "t1")

# --backend sglang with a tokenizer sends input_ids; a server that reports no prompt_tokens leaves the
# count to the client, which must count the ids it sent (not its decoded text re-encoded).
if tok512:
    Completions.input_ids = []
    out2 = os.path.join(scratch, "sglang.jsonl")
    if os.path.exists(out2):
        os.remove(out2)
    r = bench("--backend", "sglang", "--num-prompts", "6", "--random-input-len", "16", "--random-output-len", "4",
              "--random-range-ratio", "1", "--tokenizer-path", tok512, "--warmup-requests", "0", "--output-file", out2)
    check("sglang run succeeds", r.returncode == 0, r.stderr[-1000:])
    j = json.loads(open(out2).read()) if os.path.exists(out2) else {}
    check("sglang: input tokens = ids sent", j.get("total_input_tokens") == sum(Completions.input_ids) == 6 * 16,
          f"{j.get('total_input_tokens')} vs {Completions.input_ids}")
    check("sglang: output tokens from meta_info", j.get("total_output_tokens") == 6 * 4,
          str(j.get("total_output_tokens")))

# With a ShareGPT file the random dataset cuts its prompts from the file's first turns (as SGLang's does):
# every prompt the server receives is that text's words, repeated to the drawn length.
Completions.prompts = []
src = os.path.join(scratch, "source.json")
with open(src, "w") as f:
    json.dump([{"conversations": [{"from": "human", "value": "red green blue"}, {"from": "gpt", "value": "ok"}]}], f)
r = bench("--num-prompts", "3", "--random-input-len", "5", "--random-output-len", "2", "--random-range-ratio", "1",
          "--warmup-requests", "0", "--dataset-path", src)
check("--dataset-path with random: run succeeds", r.returncode == 0, r.stderr[-300:])
check("--dataset-path with random: prompts cut from the file",
      Completions.prompts == ["red green blue red green"] * 3, str(Completions.prompts))
for args, flag in ((["--dataset-path", os.path.join(scratch, "absent.json")], "absent.json"),
                   (["--sharegpt-output-len", "4"], "--sharegpt-output-len")):
    r = bench("--num-prompts", "2", "--random-input-len", "4", "--random-output-len", "2", *args)
    check(f"random with {args[0]}: refused", r.returncode != 0 and flag in r.stderr, r.stderr[-300:])
r = bench("--dataset", "sharegpt", "--dataset-path", src, "--random-input-len", "4")
check("sharegpt with --random-input-len: refused", r.returncode != 0 and "--random-input-len" in r.stderr,
      r.stderr[-300:])

# An --output-file that cannot be opened is refused before the server sees a request (not after the whole run).
Completions.posts = 0
r = bench("--num-prompts", "4", "--random-input-len", "8", "--random-output-len", "4", "--output-file",
          os.path.join(scratch, "no-such-dir", "x.jsonl"))
check("unwritable --output-file: non-zero exit", r.returncode != 0, r.stderr[-500:])
check("unwritable --output-file: named", "--output-file" in r.stderr, r.stderr[-500:])
check("unwritable --output-file: nothing sent", Completions.posts == 0, f"{Completions.posts} requests sent")

# Out-of-range values: a one-line error naming the flag, non-zero, nothing sent.
for args, flag in ((["--timeout", "inf"], "--timeout"), (["--timeout", "1e300"], "--timeout"),
                   (["--timeout", "0"], "--timeout"), (["--sharegpt-output-len", "-5"], "--sharegpt-output-len"),
                   (["--random-input-len", "-1"], "--random-input-len"), (["--request-rate", "0"], "--request-rate"),
                   (["--dataset", "nope"], "--dataset"), (["--num-prompts", "0"], "--num-prompts")):
    Completions.posts = 0
    r = bench("--num-prompts", "2", *args) if args[0] != "--num-prompts" else bench(*args)
    check(f"{' '.join(args)}: refused", r.returncode != 0 and flag in r.stderr, f"rc={r.returncode} {r.stderr[-300:]}")
    check(f"{' '.join(args)}: nothing sent", Completions.posts == 0)

# A server that accepts connections and never answers: the run ends after about --timeout for the warm-up
# request; the /metrics probe before it must not wait its own 10 s on top.
silent = socket.socket()
silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
silent.bind(("127.0.0.1", 0))
silent.listen(16)
t0 = time.monotonic()
r = subprocess.run([dpserve, "bench", "serve", "--base-url", f"http://127.0.0.1:{silent.getsockname()[1]}",
                    "--num-prompts", "2", "--timeout", "1"], capture_output=True, text=True, timeout=60)
elapsed = time.monotonic() - t0
check("silent server: non-zero exit naming the timeout", r.returncode != 0 and "timed out" in r.stderr, r.stderr[-300:])
check("silent server: bounded by --timeout (probe + warm-up, not 10 s more)", elapsed < 8, f"{elapsed:.1f} s")
silent_port = silent.getsockname()[1]
silent.close()

# A run that fails (nothing listens on that port now) leaves no empty --output-file behind.
fresh = os.path.join(scratch, "never-written.jsonl")
if os.path.exists(fresh):
    os.remove(fresh)
r = subprocess.run([dpserve, "bench", "serve", "--base-url", f"http://127.0.0.1:{silent_port}",
                    "--num-prompts", "2", "--timeout", "5", "--output-file", fresh], capture_output=True, text=True,
                   timeout=60)
check("dead server: non-zero exit", r.returncode != 0, r.stderr[-300:])
check("dead server: no results file created", not os.path.exists(fresh))

server.shutdown()
finish()
