#!/usr/bin/env python3
"""dpserve vs llama.cpp on the same quantized GGUF files, side by side in one run.

For each GGUF file, alternating which engine goes first: llama-bench (pp512, tg128),
llama-batched-bench (32 sequences of a 16-token prompt, 64 decoded tokens each) and dpserve's
generate_bench (prefill 512, single-stream decode, 32-sequence decode; it also measures the read
bandwidth and prints its bandwidth limit). Prints dpserve / llama.cpp for each, and single-stream
decode against the bandwidth limit (bytes read per token / read bandwidth, both from
generate_bench's same-run measurement).

  # a TinyLlama-1.1B-shape model (random weights) as GGUF, quantized by llama.cpp:
  /usr/bin/python3 tools/make_hf_model.py --preset tinyllama-1.1b --out /tmp/qb/hf
  /usr/bin/python3 tools/hf_to_gguf.py /tmp/qb/hf --outtype bf16 --out /tmp/qb/tl-bf16.gguf
  for t in Q8_0 Q4_0 Q4_K_M; do llama-quantize /tmp/qb/tl-bf16.gguf /tmp/qb/tl-$t.gguf $t 2; done
  python3 bench/quant_vs_llamacpp.py --peer /work/peer/build/bin --bench build/bin/generate_bench \
      /tmp/qb/tl-Q8_0.gguf /tmp/qb/tl-Q4_0.gguf /tmp/qb/tl-Q4_K_M.gguf
"""
import argparse
import json
import os
import re
import subprocess
import sys


def run(cmd, timeout):
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return p.stdout


def llama_bench(peer, gguf, threads, reps):
    out = run([os.path.join(peer, "llama-bench"), "-m", gguf, "-p", "512", "-n", "128", "-t", str(threads), "-r",
               str(reps), "-o", "json"], 900)
    rows = json.loads(out)
    pp = next(r["avg_ts"] for r in rows if r["n_prompt"] == 512 and r["n_gen"] == 0)
    tg = next(r["avg_ts"] for r in rows if r["n_gen"] == 128 and r["n_prompt"] == 0)
    return pp, tg


def llama_batched(peer, gguf, threads, batch, prompt, decode):
    out = run([os.path.join(peer, "llama-batched-bench"), "-m", gguf, "-c", str(batch * (prompt + decode) + 64), "-b",
               "2048", "-ub", "512", "-npp", str(prompt), "-ntg", str(decode), "-npl", str(batch), "-t",
               str(threads), "--output-format", "jsonl"], 900)
    row = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    return row["speed_tg"]


def dpserve_bench(bench, gguf, threads, batch, decode):
    out = run([bench, "--model-path", gguf, "--threads", str(threads), "--prompt-len", "512", "--decode-tokens",
               str(decode), "--batch", str(batch)], 900)
    num = r"([0-9.]+)"
    bw = float(re.search(r"read bandwidth " + num + " GB/s", out).group(1))
    per_tok = float(re.search(num + " GB read per token", out).group(1))
    pp = float(re.search(r"prefill \d+ tokens: " + num, out).group(1))
    tg = float(re.search(r"decode, 1 sequence: " + num, out).group(1))
    bt = float(re.search(r"decode, \d+ sequences: " + num, out).group(1))
    return {"bw": bw, "per_tok": per_tok, "pp": pp, "tg": tg, "batch": bt}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf", nargs="+")
    ap.add_argument("--peer", required=True, help="llama.cpp's build/bin")
    ap.add_argument("--bench", required=True, help="dpserve's generate_bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--decode", type=int, default=64, help="tokens per sequence in the batched decode")
    ap.add_argument("--reps", type=int, default=1, help="llama-bench repetitions")
    a = ap.parse_args()
    rows = []
    for i, g in enumerate(a.gguf):
        order = ["llama", "dpserve"] if i % 2 == 0 else ["dpserve", "llama"]
        got = {}
        for who in order:
            if who == "llama":
                got["l_pp"], got["l_tg"] = llama_bench(a.peer, g, a.threads, a.reps)
                got["l_b"] = llama_batched(a.peer, g, a.threads, a.batch, 16, a.decode)
            else:
                got["d"] = dpserve_bench(a.bench, g, a.threads, a.batch, a.decode)
        d = got["d"]
        limit = d["bw"] / d["per_tok"]  # 0 where generate_bench could not measure the bandwidth
        rows.append((os.path.basename(g), os.path.getsize(g) / 1e9, got, limit))
        print(f"{os.path.basename(g)}: dpserve pp512 {d['pp']:.1f} tg {d['tg']:.2f} b{a.batch} {d['batch']:.1f} | "
              f"llama.cpp pp512 {got['l_pp']:.1f} tg128 {got['l_tg']:.2f} b{a.batch} {got['l_b']:.1f} tok/s", flush=True)
    print()
    print(f"| file | GB | prefill 512 (dpserve / llama.cpp) | decode 1 seq | decode {a.batch} seq | "
          "dpserve decode / bandwidth limit | llama.cpp tg128 / limit |")
    print("|---|---:|---|---|---|---|---|")
    for name, gb, got, limit in rows:
        d = got["d"]
        walls = (f"{100 * d['tg'] / limit:.0f} % of {limit:.1f} ({d['per_tok']:.2f} GB/token, {d['bw']:.1f} GB/s) | "
                 f"{100 * got['l_tg'] / limit:.0f} %") if limit > 0 else "not measured | not measured"
        print(f"| {name} | {gb:.2f} | {d['pp']:.1f} / {got['l_pp']:.1f} = **{d['pp'] / got['l_pp']:.2f}x** | "
              f"{d['tg']:.2f} / {got['l_tg']:.2f} = **{d['tg'] / got['l_tg']:.2f}x** | "
              f"{d['batch']:.1f} / {got['l_b']:.1f} = **{d['batch'] / got['l_b']:.2f}x** | {walls} |")


if __name__ == "__main__":
    main()
