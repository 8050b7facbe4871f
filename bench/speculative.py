#!/usr/bin/env python3
"""Single-stream decode with and without speculative decoding (NGRAM, or a draft model with --spec), same model, same prompt,
rounds alternated (off, on, off, on, ...) so the shared machine's drift falls on both; prints each
round's decode tok/s, the acceptance of the speculating run, and the median ratio on / off.

Workloads (token-id prompts, greedy, EOS ignored):
  repeat   a prompt that repeats a 24-token phrase: the output of most models (and the loops of a
           random-weight model's greedy decoding) recur, which n-gram drafts predict;
  random   pseudo-random ids with no repeat: drafts come only if the output itself repeats, so this
           is where adaptivity must keep speculation from costing anything.

  serve8   serving: `dpserve bench serve` at --concurrency (8) streams of random prompts against a
           server with and without speculation (output tok/s, and the server's acceptance).

  python3 bench/speculative.py --model-path /tmp/tinyllama [--tokens 128] [--rounds 3] [--threads 2]
      [--workloads repeat,random,serve8] [--num-steps 4] [--extra '--quantization q8_0']
      [--spec '--speculative-algorithm STANDALONE --speculative-draft-model-path /tmp/tinyllama
               --speculative-draft-model-quantization q4_0']
"""
import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402


def prompt_ids(kind, vocab, n=96):
    ids, x = [], 777
    period = 24 if kind == "repeat" else 0
    for i in range(n):
        if period and i >= period:
            ids.append(ids[i - period])
            continue
        x = (x * 1103515245 + 12345) % (1 << 31)
        ids.append(3 + x % (vocab - 3))
    return ",".join(map(str, ids))


def run(binary, args):
    p = subprocess.run([binary, "generate", "--json"] + args, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        sys.exit(f"dpserve generate failed:\n{p.stderr[-3000:]}")
    m = re.search(r"decode: (\d+) tokens in ([\d.]+) s \(([\d.]+) tok/s\)", p.stderr)
    t = re.search(r"first token after ([\d.]+) s", p.stderr)
    out = json.loads(p.stdout.splitlines()[0])
    out["ttft"] = float(t.group(1))  # a draft model reads the prompt too: its cost shows here
    return float(m.group(3)), out


def serve_round(binary, a, spec_flags):
    """One server, one `bench serve` run against it: (output tok/s, acceptance line or '')."""
    try:
        server = ServeProcess(binary, "--model-path", a.model_path, "--threads", a.threads, *shlex.split(a.extra),
                              *spec_flags, health_timeout=300, quiet=True)
    except ServeError as e:
        sys.exit(str(e))
    port = server.port
    try:
        p = subprocess.run([binary, "bench", "serve", "--base-url", f"http://127.0.0.1:{port}", "--num-prompts",
                            str(2 * a.concurrency), "--max-concurrency", str(a.concurrency), "--random-input-len",
                            "128", "--random-output-len", str(a.tokens), "--random-range-ratio", "1",
                            "--disable-progress", "--seed", "3"], capture_output=True, text=True, timeout=1800)
        m = re.search(r"Output token throughput \(tok/s\):\s+([\d.]+)", p.stdout)
        if not m:
            sys.exit(f"bench serve failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
        acc = re.search(r"Speculative decoding.*", p.stdout)
        return float(m.group(1)), acc.group(0) if acc else ""
    finally:
        server.stop(timeout=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-path", required=True)
    ap.add_argument("--dpserve", default=os.path.join(HERE, "..", "build", "bin", "dpserve"))
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workloads", default="repeat,random")
    ap.add_argument("--num-steps", type=int, default=4)
    ap.add_argument("--extra", default="", help="more dpserve flags for both runs")
    ap.add_argument("--spec", default="--speculative-algorithm NGRAM",
                    help="the speculating run's flags (--num-steps is added)")
    ap.add_argument("--concurrency", type=int, default=8, help="serve8: streams at once")
    a = ap.parse_args()
    cfg = os.path.join(a.model_path, "config.json")
    vocab = json.load(open(cfg))["vocab_size"] if os.path.isdir(a.model_path) else 32000
    base = ["--model-path", a.model_path, "-n", str(a.tokens), "--ignore-eos", "--temperature", "0",
            "--threads", str(a.threads)] + shlex.split(a.extra)
    spec = shlex.split(a.spec) + ["--speculative-num-steps", str(a.num_steps)]
    print(f"model {a.model_path}, {a.tokens} tokens, {a.rounds} rounds, threads {a.threads}, {a.extra or 'no extra flags'}; "
          f"speculation: {' '.join(spec)}")
    for w in a.workloads.split(","):
        if w == "serve8":
            ratios = []
            for r in range(a.rounds):
                off, _ = serve_round(a.dpserve, a, [])
                on, acc = serve_round(a.dpserve, a, spec)
                ratios.append(on / off)
                print(f"  serve c{a.concurrency} round {r + 1}: off {off:7.2f} tok/s  on {on:7.2f} tok/s  "
                      f"ratio {on / off:5.2f}  {acc}")
            print(f"serve c{a.concurrency}: median ratio on/off {statistics.median(ratios):.2f} "
                  f"(rounds {', '.join(f'{x:.2f}' for x in ratios)})")
            continue
        args = base + ["--prompt-ids", prompt_ids(w, vocab)]
        ratios, ttft, acc = [], [], None
        for r in range(a.rounds):
            off, o_off = run(a.dpserve, args)
            on, o_on = run(a.dpserve, args + spec)
            if o_on["output_ids"] != o_off["output_ids"]:
                sys.exit(f"{w}: outputs differ with speculation (a bug): {o_off['output_ids'][:20]} vs {o_on['output_ids'][:20]}")
            ratios.append(on / off)
            ttft.append(o_on["ttft"] / o_off["ttft"])
            acc = (o_on.get("spec_accepted_tokens", 0), o_on.get("spec_draft_tokens", 0), o_on.get("spec_verify_ct", 0))
            print(f"  {w:7s} round {r + 1}: off {off:7.2f} tok/s  on {on:7.2f} tok/s  ratio {on / off:5.2f}  "
                  f"accepted {acc[0]}/{acc[1]} drafted in {acc[2]} verifications; "
                  f"time to first token on/off {ttft[-1]:.2f}")
        tokens_per_verify = 1 + acc[0] / acc[2] if acc[2] else 0
        print(f"{w}: median ratio on/off {statistics.median(ratios):.2f} (rounds {', '.join(f'{x:.2f}' for x in ratios)}); "
              f"acceptance {acc[0]}/{acc[1]} = {acc[0] / acc[1] if acc[1] else 0:.2f}, "
              f"{tokens_per_verify:.2f} tokens per verification; time to first token on/off "
              f"{statistics.median(ttft):.2f}")


if __name__ == "__main__":
    main()
