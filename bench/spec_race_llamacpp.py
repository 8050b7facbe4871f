#!/usr/bin/env python3
"""Speculative decoding, dpserve against llama.cpp, on the same GGUF files.

Single stream, greedy, EOS ignored, the same text prompt. Rounds alternate the four runs
(dpserve off, dpserve speculating, llama.cpp off, llama.cpp speculating) so the shared machine's
drift falls on all of them; prints each round's decode tok/s, the drafts accepted, and the median
ratios: each engine's speculative / plain, and dpserve / llama.cpp with and without speculation.

--mode draft (default): a draft model. dpserve `--speculative-algorithm STANDALONE
--speculative-draft-model-path D`; llama.cpp `llama-speculative -m T -md D --spec-draft-n-max K
--spec-draft-n-min 0 --spec-draft-p-min 0` (its draft then always proposes K tokens, as dpserve's does).
--mode lookup: drafts from the request's own tokens, no second model. dpserve `--speculative-algorithm
NGRAM`; llama.cpp's lookup decoding `llama-lookup -m T --spec-draft-n-max K` (n-grams of the prompt and
output). Plain decode: `llama-bench -p 0 -n N`. Build llama.cpp outside this repository (its CMake,
GGML_NATIVE=ON; targets llama-bench, llama-speculative, llama-lookup) and pass --llama-bin.

  python3 bench/spec_race_llamacpp.py --target T.gguf --draft D.gguf --llama-bin /path/to/llama.cpp/build/bin
      [--num-steps 4] [--tokens 128] [--rounds 3] [--threads 2] [--prompt TEXT]
  python3 bench/spec_race_llamacpp.py --mode lookup --target T.gguf --llama-bin ... [same options]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPT = ("Once upon a time, in a small town by the sea, there lived an old fisherman who told the "
          "children stories about the lighthouse, the storms and the ships that never came back.")


def sh(cmd, timeout=1800):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return p.stdout + p.stderr


def dpserve(a, spec):
    args = [a.dpserve, "generate", "--model-path", a.target, "--prompt", a.prompt, "-n", str(a.tokens),
            "--ignore-eos", "--temperature", "0", "--threads", str(a.threads)]
    if spec and a.mode == "lookup":
        args += ["--speculative-algorithm", "NGRAM", "--speculative-num-steps", str(a.num_steps)]
    elif spec:
        args += ["--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path", a.draft,
                 "--speculative-num-steps", str(a.num_steps)]
    out = sh(args)
    m = re.search(r"decode: (\d+) tokens in ([\d.]+) s \(([\d.]+) tok/s\)", out)
    acc = re.search(r"speculative[^\n]*", out, re.I)
    return float(m.group(3)), acc.group(0).strip() if acc else ""


def llama_spec(a):
    if a.mode == "lookup":
        cmd = [os.path.join(a.llama_bin, "llama-lookup"), "-m", a.target, "-p", a.prompt, "-n", str(a.tokens),
               "--ignore-eos", "--temp", "0", "-t", str(a.threads), "--spec-draft-n-max", str(a.num_steps), "-c", "2048"]
    else:
        cmd = [os.path.join(a.llama_bin, "llama-speculative"), "-m", a.target, "-md", a.draft, "-p", a.prompt,
               "-n", str(a.tokens), "--ignore-eos", "--temp", "0", "-t", str(a.threads), "-td", str(a.threads),
               "--spec-draft-n-max", str(a.num_steps), "--spec-draft-n-min", "0", "--spec-draft-p-min", "0", "-c", "2048"]
    out = sh(cmd)
    m = re.search(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds, speed:\s+([\d.]+) t/s", out)
    d = re.search(r"n_drafted\s+= (\d+)", out)
    k = re.search(r"n_accept\s+= (\d+)", out)
    if not m:
        sys.exit(f"{os.path.basename(cmd[0])} printed no speed:\n{out[-3000:]}")
    return float(m.group(3)), f"{k.group(1) if k else '?'} of {d.group(1) if d else '?'} drafts accepted"


def llama_plain(a):
    out = sh([os.path.join(a.llama_bin, "llama-bench"), "-m", a.target, "-p", "0", "-n", str(a.tokens),
              "-t", str(a.threads), "-r", "1", "-o", "csv"])
    rows = [l for l in out.splitlines() if l.count(",") > 10 and "avg_ts" not in l]
    head = [l for l in out.splitlines() if "avg_ts" in l][0].split(",")
    vals = rows[-1].split(",")
    return float(vals[head.index("avg_ts")].strip('"')), ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["draft", "lookup"], default="draft")
    ap.add_argument("--target", required=True)
    ap.add_argument("--draft", help="the draft model (--mode draft)")
    ap.add_argument("--llama-bin", required=True)
    ap.add_argument("--dpserve", default=os.path.join(HERE, "..", "build", "bin", "dpserve"))
    ap.add_argument("--num-steps", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default=PROMPT)
    a = ap.parse_args()
    if a.mode == "draft" and not a.draft:
        ap.error("--mode draft needs --draft")
    ours, theirs = ("dpserve NGRAM", "llama.cpp lookup") if a.mode == "lookup" else ("dpserve STANDALONE", "llama.cpp -md")
    runs = {"dpserve off": lambda: dpserve(a, False), ours: lambda: dpserve(a, True),
            "llama.cpp off": lambda: llama_plain(a), theirs: lambda: llama_spec(a)}
    got = {k: [] for k in runs}
    for r in range(a.rounds):
        for name, fn in runs.items():
            tps, note = fn()
            got[name].append(tps)
            print(f"round {r}: {name:20s} {tps:8.2f} tok/s  {note}", flush=True)
    med = lambda xs: statistics.median(xs)
    ratio = lambda x, y: med([p / q for p, q in zip(got[x], got[y])])
    print(f"\nK = {a.num_steps}, {a.tokens} tokens, {a.threads} threads; per-round ratios, median:")
    print(f"  {ours + ' / dpserve off':36s} {ratio(ours, 'dpserve off'):.2f}")
    print(f"  {theirs + ' / llama.cpp off':36s} {ratio(theirs, 'llama.cpp off'):.2f}")
    print(f"  {'dpserve off / llama.cpp off':36s} {ratio('dpserve off', 'llama.cpp off'):.2f}")
    print(f"  {ours + ' / ' + theirs:36s} {ratio(ours, theirs):.2f}")


if __name__ == "__main__":
    main()
