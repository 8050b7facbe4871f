#!/usr/bin/python3
"""The serving race: `dpserve serve` against llama.cpp's `llama-server` on the same weights.

For every concurrency C and every round, each server is started alone on the machine (dpserve on
the Hugging Face folder, llama-server on a GGUF file of the same weights with C slots), given one
`dpserve bench serve` load (random prompts sent as token ids, fixed lengths, 2 x C prompts, all
sent at once, at most C in flight, ignore_eos), then stopped; the order of the two flips every
round. Each pair's ratio of output tokens/s is kept, and llama-server's failed streams are counted.

A mid-2026 llama-server ends some /v1/completions streams of random-weight models with HTTP 500
"does not match the expected Content-only format": its chat-output parser (run on completions too)
rejects text that is not valid UTF-8, which a random model makes by sampling byte tokens (pieces
of multi-byte characters) out of order. By default every request of both servers therefore
carries a logit_bias of -100 on the tokens that are not whole UTF-8 by themselves
(--extra-request-body; 128 of the bench models' 32000), so llama-server answers every stream;
--keep-byte-tokens sends plain requests (then llama-server's output tokens/s counts its
successful streams only).

  bench/serve_race.py --dpserve BIN --peer-bin DIR --peer-commit SHA --model HF_DIR --gguf FILE \\
      [--concurrency 8,32] [--rounds 2] [--input-len 128] [--output-len 64] [--threads 2] --out race.json

The peer is only run, never built. Needs only the Python standard library.
"""
import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def log(msg):
    print(f"[serve-race {time.strftime('%H:%M:%S', time.gmtime())}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_cmd(a, who, port, conc):
    if who == "dpserve":
        return [a.dpserve, "serve", "--model-path", a.model, "--port", str(port), "--threads", str(a.threads),
                "--served-model-name", "race"]
    ctx = conc * (a.input_len + a.output_len + 16)
    return [os.path.join(a.peer_bin, "llama-server"), "-m", a.gguf, "--port", str(port), "-t", str(a.threads),
            "-tb", str(a.threads), "-np", str(conc), "-c", str(ctx), "--no-webui", "-a", "race"]


def gpt2_unicode_to_byte():
    """The inverse of GPT-2's byte-level alphabet (each byte shown as one printable character)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def byte_token_bias(model_dir):
    """logit_bias of -100 on every token of the folder's tokenizer.json that is not whole UTF-8 text
    by itself: byte-level BPE pieces whose bytes do not decode, and <0x80>..<0xFF> byte-fallback
    tokens. Any sequence of the others decodes."""
    with open(os.path.join(model_dir, "tokenizer.json")) as f:
        tj = json.load(f)
    vocab = tj["model"]["vocab"]
    if isinstance(vocab, list):  # Unigram: [piece, score] pairs
        vocab = {p[0]: i for i, p in enumerate(vocab)}
    byte_level = "ByteLevel" in json.dumps(tj.get("decoder"))
    u2b = gpt2_unicode_to_byte()
    banned = []
    for t, i in vocab.items():
        if len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            if int(t[3:5], 16) >= 0x80:
                banned.append(i)
            continue
        if byte_level and all(c in u2b for c in t):
            try:
                bytes(u2b[c] for c in t).decode("utf-8")
            except UnicodeDecodeError:
                banned.append(i)
    return {str(i): -100 for i in sorted(banned)}


def load(a, port, conc, tag, out_file):
    cmd = [a.dpserve, "bench", "serve", "--base-url", f"http://127.0.0.1:{port}", "--dataset", "random",
           "--num-prompts", str(2 * conc), "--random-input-len", str(a.input_len), "--random-output-len",
           str(a.output_len), "--random-range-ratio", "1", "--request-rate", "inf", "--max-concurrency", str(conc),
           "--seed", "1", "--model", "race", "--tokenizer-path", a.model, "--prompt-token-ids", "--timeout", "1200",
           "--disable-progress", "--tag", tag, "--output-file", out_file]
    if a.bias:
        cmd += ["--extra-request-body", json.dumps({"logit_bias": a.bias})]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    with open(out_file) as f:
        return json.loads(f.read().strip().splitlines()[-1]), cmd


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dpserve", required=True)
    ap.add_argument("--peer-bin", required=True, help="folder with llama-server")
    ap.add_argument("--peer-commit", default="unknown")
    ap.add_argument("--model", required=True, help="Hugging Face folder (dpserve's side and the tokenizer)")
    ap.add_argument("--gguf", required=True, help="the same weights as a GGUF file (llama-server's side)")
    ap.add_argument("--concurrency", default="8,32")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep-byte-tokens", action="store_true",
                    help="no logit_bias on partial-UTF-8 tokens (llama-server then fails some streams)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    for p in (a.dpserve, os.path.join(a.peer_bin, "llama-server"), os.path.join(a.model, "config.json"), a.gguf):
        if not os.path.exists(p):
            ap.error(f"{p} does not exist")
    a.bias = {} if a.keep_byte_tokens else byte_token_bias(a.model)
    concs = [int(c) for c in a.concurrency.split(",")]
    res = {"peer_commit": a.peer_commit, "threads": a.threads, "input_len": a.input_len, "output_len": a.output_len,
           "byte_tokens_banned": len(a.bias),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_start": open("/proc/loadavg").read().split()[:3], "samples": [], "commands": {}}

    def save():
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)

    tmp = tempfile.mkdtemp(prefix="serve-race-")
    for r in range(a.rounds):
        for conc in concs:
            order = ["llama.cpp", "dpserve"] if r % 2 == 0 else ["dpserve", "llama.cpp"]
            for who in order:
                port = free_port()
                cmd = server_cmd(a, who, port, conc)
                logf = open(os.path.join(tmp, f"{who}-{conc}-{r}.log"), "w")
                proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
                try:
                    wait_ready(f"http://127.0.0.1:{port}/health", proc, 600)
                    j, bench_cmd = load(a, port, conc, who, os.path.join(tmp, "results.jsonl"))
                finally:
                    stop(proc)
                    logf.close()
                res["commands"][f"{who} server"] = shlex.join(cmd)
                res["commands"]["load"] = shlex.join(bench_cmd)
                s = {"round": r + 1, "concurrency": conc, "server": who,
                     "output_tok_s": j.get("output_throughput"), "completed": j.get("completed"),
                     "failed": j.get("failed"), "tpot_ms_p50": j.get("median_tpot_ms"),
                     "ttft_ms_p50": j.get("median_ttft_ms"), "duration_s": j.get("duration")}
                res["samples"].append(s)
                save()
                log(f"round {r + 1} c{conc} {who}: {s['output_tok_s']:.2f} output tok/s, "
                    f"{s['completed']} ok / {s['failed']} failed, TPOT p50 {s['tpot_ms_p50']:.0f} ms")
    res["load_end"] = open("/proc/loadavg").read().split()[:3]
    res["summary"] = {}
    for conc in concs:
        ratios = []
        for r in range(a.rounds):
            v = {s["server"]: s["output_tok_s"] for s in res["samples"] if s["round"] == r + 1 and s["concurrency"] == conc}
            if v.get("llama.cpp"):
                ratios.append(v["dpserve"] / v["llama.cpp"])
        fails = sum(s["failed"] or 0 for s in res["samples"] if s["concurrency"] == conc and s["server"] == "llama.cpp")
        total = sum((s["failed"] or 0) + (s["completed"] or 0) for s in res["samples"]
                    if s["concurrency"] == conc and s["server"] == "llama.cpp")
        res["summary"][str(conc)] = {"ratios": ratios, "median": statistics.median(ratios) if ratios else None,
                                     "peer_failed": fails, "peer_sent": total}
        med = f"{statistics.median(ratios):.2f}" if ratios else "-"
        print(f"c{conc}: dpserve/llama-server output tok/s per round {', '.join(f'{x:.2f}' for x in ratios)} "
              f"(median {med}); llama-server failed {fails} of {total} streams")
    save()


if __name__ == "__main__":
    main()
