#!/usr/bin/python3
"""dpserve against llama.cpp on the same GGUF files (tests/model/fixtures/gguf, made by
tests/model/gguf/make_fixtures.py; see the README there).

For each case and variant: the F32 file is rebuilt with our writer and must hash to what
llama.cpp read; quantized files are the committed llama-quantize outputs. dpserve_forward_probe
runs llama.cpp's prompts and its greedy continuations twice (one sequence at a time, and all
sequences batched in each step) and every logit row is compared with llama.cpp's; then
`dpserve generate` must reproduce llama.cpp's greedy ids. DeepSeek and gpt-oss cases also load the
Hugging Face folder the GGUF came from (DeepSeek also the older single-attn_kv_b layout): the logits
must be equal.

Tolerances (`scale` = standard deviation of llama.cpp's logits of the case):
  F32: max 1e-4 x scale, rms 2e-5 x scale. Both run fp32 activations, fp32 KV (the fixtures were
       made with an f32 KV cache) and fp32 accumulation; only summation order differs (measured
       ~2e-6 / 4e-7).
  quantized: both quantize the activations to int8 blocks before each quantized matmul; see
       TOLERANCE below for what differs and how much.

usage: test_gguf_llamacpp.py --probe BIN --dpserve BIN --shared DIR --work DIR [--cases a,b] [--break NAME]
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gguf"))
import cases  # noqa: E402

FIX = os.path.join(HERE, "fixtures", "gguf")

# (max, rms) as fractions of `scale`. Quantized weights: llama.cpp rounds the activations to 8
# bits (Q8_0 / Q8_K blocks) before each quantized matmul; how far dpserve may differ depends on
# what its kernels do with activations (see docs/models.md), and must stay far below the error
# the quantization itself makes (manifest "llamacpp_vs_f32": rms 0.017 x scale for Q8_0, up to
# 0.19 for Q4_0), or a wrong decoder would pass.
TOLERANCE = {
    "F32": (1e-4, 2e-5),
    # K types: llama.cpp's activation blocks (Q8_K) keep an fp32 scale, as dpserve's do: measured
    # max 1.3e-6 / rms 1.9e-7 x scale (llama, qwen2, qwen3moe); qwen3 max 2.0e-2 / rms 9.0e-4 (two
    # rows where one activation code lands a step apart at a rounding boundary). The quantization
    # itself moves the logits by rms 0.045-0.14 x scale.
    "Q4_K_M": (0.05, 0.005),
    "Q5_K_M": (0.05, 0.005),
    "Q6_K": (0.05, 0.005),
    # Q8_0 / Q4_0: llama.cpp's activation blocks (Q8_0) store each 32-element block's scale as f16,
    # and dpserve's do too: measured max 1.9e-2 / rms 6.9e-4 (llama Q8_0), 3.6e-2 / 1.4e-3 (llama
    # Q4_0), 1.5e-6 / 1.6e-7 (qwen3moe Q4_0); the few larger rows are activation codes a step apart
    # at a rounding boundary (the K types' qwen3 case). With fp32 scales instead the difference was
    # rms 0.009-0.0105, so these bounds catch that too. The quantization's own error is rms 0.017
    # (Q8_0) to 0.19 (Q4_0) x scale: a wrong decoder, layout or scale is far outside.
    "Q8_0": (0.05, 0.005),
    "Q4_0": (0.05, 0.005),
    # MXFP4_MOE: experts MXFP4, the other matrices Q8_0. llama.cpp multiplies MXFP4 by Q8_0 activation
    # blocks (f16 scales), weight scale 2^(e - 128) times the doubled e2m1 codes; dpserve loads the
    # same values as Q8_0 blocks and runs its Q8_0 kernels, the same products in another order. So
    # Q8_0's bounds hold; the quantization's own error (manifest) is far larger.
    "MXFP4_MOE": (0.05, 0.005),
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(cmd, timeout=300):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stderr[-3000:]}")
    return p.stdout


def probe(args, gguf, steps, work, tag, vocab, threads=2):
    sched = os.path.join(work, f"{tag}.sched.json")
    out = os.path.join(work, f"{tag}.logits")
    with open(sched, "w") as f:
        json.dump({"steps": steps}, f)
    info = json.loads(run([args.probe, "--model-path", gguf, "--schedule", sched, "--out", out, "--threads",
                           str(threads), "--page-size", "8"]))
    assert info["vocab_size"] == vocab, info["vocab_size"]
    return np.fromfile(out, dtype="<f4").reshape(-1, vocab), info


def reference_rows(prompts, greedy, logits):
    """llama.cpp's rows keyed by (prompt index, position)."""
    rows, k = {}, 0
    for i, (p, g) in enumerate(zip(prompts, greedy)):
        for pos in range(len(p) + len(g)):
            rows[(i, pos)] = logits[k]
            k += 1
    assert k == logits.shape[0]
    return rows


def schedules(prompts, greedy):
    """One sequence at a time (prefill then one step per greedy token), and every sequence in
    each step (a ragged prefill batch, then batched decodes): the same rows either way."""
    seq = []
    for i, (p, g) in enumerate(zip(prompts, greedy)):
        seq.append({"run": [{"seq": i, "tokens": p}]})
        seq += [{"run": [{"seq": i, "tokens": [t]}]} for t in g]
    batched = [{"run": [{"seq": i, "tokens": p} for i, p in enumerate(prompts)]}]
    for s in range(len(greedy[0])):
        batched.append({"run": [{"seq": i, "tokens": [g[s]]} for i, g in enumerate(greedy)]})
    return {"sequential": seq, "batched": batched}


def compare(name, ours, info, ref_rows, scale, tol):
    got = {(r["seq"], r["pos"]): ours[k] for k, r in enumerate(info["rows"])}
    assert set(got) == set(ref_rows), f"{name}: rows differ from llama.cpp's"
    keys = sorted(ref_rows)
    a = np.stack([got[k] for k in keys]).astype(np.float64)
    b = np.stack([ref_rows[k] for k in keys]).astype(np.float64)
    err = np.abs(a - b)
    mx, rms = err.max() / scale, np.sqrt((err ** 2).mean()) / scale
    # argmax where llama.cpp's top two are clearly apart
    top2 = np.sort(b, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * tol[0] * scale
    wrong = int(((a.argmax(1) != b.argmax(1)) & clear).sum())
    ok = mx <= tol[0] and rms <= tol[1] and wrong == 0
    print(f"{'ok' if ok else 'FAIL'} {name}: {len(keys)} rows, max err {mx:.2e} x scale (tol {tol[0]:.0e}), "
          f"rms {rms:.2e} (tol {tol[1]:.0e}), argmax differs on {wrong} of {int(clear.sum())} clear rows")
    return ok, mx


def check_greedy(args, name, gguf, prompts, greedy, ref_rows, max_err, scale):
    """dpserve generate's greedy ids against llama.cpp's. Up to a divergence both histories are
    the same, so every logit differs by at most the measured max error: a step whose top two
    llama.cpp logits are more than 2.5 x that apart must pick the same token. A closer step may
    pick another one; the comparison of that prompt stops there (later tokens follow another
    history). At least half of all tokens must be compared."""
    ok, compared, total = True, 0, 0
    for i, (p, g) in enumerate(zip(prompts, greedy)):
        # The max error was measured by the probe with an fp32 KV cache: generate keeps that cache
        # too (auto would pick bf16 for a GGUF, whose rounding the measured error does not cover).
        out = run([args.dpserve, "generate", "--json", "--model-path", gguf, "--prompt-ids", ",".join(map(str, p)),
                   "-n", str(len(g)), "--temperature", "0", "--ignore-eos", "--threads", "2",
                   "--kv-cache-dtype", "fp32"])
        ids = json.loads(out.strip().splitlines()[-1])["output_ids"]
        total += len(g)
        for s, t in enumerate(g):
            if s < len(ids) and ids[s] == t:
                compared += 1
                continue
            row = ref_rows[(i, len(p) + s - 1)]
            gap = np.diff(np.sort(row)[-2:])[0]
            if gap >= 2.5 * max_err * scale:
                ok = False
                print(f"FAIL {name}: greedy prompt {i} step {s} (llama.cpp's top-2 gap {gap / scale:.3f} x scale): "
                      f"dpserve {ids[:len(g)]} llama.cpp {g}")
            break
    ok = ok and compared * 2 >= total
    rest = " (the rest follow a near-tie that went the other way)" if ok and compared < total else ""
    print(f"{'ok' if ok else 'FAIL'} {name}: greedy ids equal llama.cpp's on {compared} of {total} tokens{rest}")
    return ok


def same_as_hf(args, name, ours, steps, vocab):
    """The GGUF holds the Hugging Face folder's own f32 weights (nothing permuted: the deepseek2
    converter keeps the pairwise RoPE layout; gpt-oss's stacked experts are only split and
    transposed), so dpserve must compute the very same logits from either, bit for bit; also with
    1 or 3 threads instead of 2 (the MLA attention is split over the thread team by rows and by
    heads; no value may depend on the split), and for deepseek2 from the older layout with one
    attn_kv_b (--kv-b joined)."""
    hf = os.path.join(args.work, f"hf-{name}")
    runs = [("hf", hf, 2), ("1 thread", hf, 1), ("3 threads", hf, 3)]
    if cases.CASES[name].get("kv_b_joined"):
        joined = os.path.join(args.work, f"{name}-F32-joined.gguf")
        if not os.path.exists(joined):
            cases.make_f32(name, args.work, args.shared, ["--kv-b", "joined"], tag="F32-joined")
        runs.insert(1, ("joined", joined, 2))
    ok = True
    for tag, model, threads in runs:
        got, _ = probe(args, model, steps, args.work, f"{name}-{tag.replace(' ', '')}", vocab, threads)
        diff = float(np.abs(got.astype(np.float64) - ours).max())
        good = got.shape == ours.shape and diff == 0.0
        print(f"{'ok' if good else 'FAIL'} {name}: {tag} logits {'equal' if good else 'differ from'} the GGUF's "
              f"(max difference {diff:.3g})")
        ok &= good
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", required=True)
    ap.add_argument("--dpserve", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--cases", help="comma-separated case names (default all)")
    ap.add_argument("--variants", choices=["float", "quantized", "all"], default="all")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    manifest = json.load(open(os.path.join(FIX, "manifest.json")))
    names = a.cases.split(",") if a.cases else list(manifest["cases"])
    failed = []
    for name in names:
        entry = manifest["cases"][name]
        for var, v in entry["variants"].items():
            if (var == "F32" and a.variants == "quantized") or (var != "F32" and a.variants == "float"):
                continue
            if var == "F32":
                gguf = cases.make_f32(name, a.work, a.shared)
            else:
                gguf = os.path.join(FIX, v["file"])
            if sha256(gguf) != v["sha256"]:
                raise SystemExit(f"FAIL {name} {var}: {gguf} is not the file llama.cpp read (sha256 differs); "
                                 "our writer changed: remake the fixtures (tests/model/gguf/make_fixtures.py)")
            ref = np.load(os.path.join(FIX, v["logits"])).astype(np.float32)
            prompts, greedy = entry["prompts"], v["greedy"]
            ref_rows = reference_rows(prompts, greedy, ref)
            scale = float(ref.astype(np.float64).std())
            tol = cases.CASES[name].get("tolerance", {}).get(var, TOLERANCE[var])  # gemma3: see cases.py
            case_ok, worst = True, 0.0
            for sname, steps in schedules(prompts, greedy).items():
                ours, info = probe(a, gguf, steps, a.work, f"{name}-{var}-{sname}", entry["vocab"])
                ok, mx = compare(f"{name} {var} {sname}", ours, info, ref_rows, scale, tol)
                case_ok &= ok
                worst = max(worst, mx)
                if var == "F32" and cases.CASES[name].get("same_as_hf"):
                    case_ok &= same_as_hf(a, name, ours, steps, entry["vocab"])
            case_ok &= check_greedy(a, f"{name} {var}", gguf, prompts, greedy, ref_rows, worst, scale)
            if not case_ok:
                failed.append(f"{name} {var}")
    if failed:
        raise SystemExit(f"FAIL: {', '.join(failed)}")
    print("PASS")


if __name__ == "__main__":
    main()
