#!/usr/bin/python3
"""DeepSeek (deepseek2) GGUF files whose attn_k_b / attn_v_b are block-quantized: decode's absorbed
MLA multiplies by those blocks as stored (W_UK^T and W_UV of each head are row slices of them),
while prefill's decompressed form reads kv_b_proj rebuilt from them in Q8_0 (blocks along
kv_lora_rank; model/gguf_loader.cpp, model/mla_attention.cpp).

A tiny random DeepSeek-V2-like folder (f32; kv_lora_rank 64, qk_nope 32, v_head_dim 32, so the
split parts are whole 32-element blocks) goes through tools/hf_to_gguf.py as Q8_0 and as Q5_0
(which loads as the same numbers in Q8_0). For each file the same schedule (two prompts in one
ragged batch, then five decode steps) runs with every sequence forced to each form
(dpserve_forward_probe --mla-path):

  * absorbed against decompressed on the same file: the same weights, but each form quantizes its
    products' inputs (q_nope, the latent output; the cached latents) to int8 per 32 elements, as
    every block-quantized product does (and as llama.cpp multiplies the same blocks), and the
    decompressed form's kv_b_proj is the parts requantized along the other axis. Measured max
    0.16 / 0.18 x the logits' standard deviation, rms 0.032 (with an fp32 rebuild: 0.14 / 0.16,
    0.029; fp32 copies on both sides: 0.0). Required: max 0.25 (the
    tolerance the bf16 folders' two forms have, model_reference_hf) and rms 0.06. One head's
    W_UK^T taken from the next head moves them to max 4.2, rms 0.90.
  * both forms stay the model: rms within 0.08 (Q8_0) / 0.3 (Q5_0) x std of the f32 folder's
    logits (decompressed measured 0.037 / 0.21).
  * the product really is the quantized one: absorbed and decompressed differ by more than fp32
    rounding (1e-4 x std; the fp32 copy's form was within 2.4e-6 on the folder); and the split
    file's weights as run are the joined file's plus exactly its parts in Q8_0 (the probe's
    weight_bytes), so prefill's rebuilt kv_b_proj is Q8_0, not fp32.
  * the older joined attn_kv_b (--kv-b joined) of the same types passes the same checks: its W_UK^T,
    whose blocks run along the wrong axis, is decoded and requantized to Q8_0 at load
    (model/mla_attention.cpp); and decode reads exactly the attention bytes the split file's do
    (the probe's attention_weight_bytes; the fp32 copy it replaced read 3.8x those of W_UK^T).
  * two ranks (--tp-size 2 --ep-size 2, each rank its two heads' row slices) generate the same greedy ids as one.

usage: test_gguf_mla_quantized.py --probe BIN --dpserve BIN --work DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
PY = "/usr/bin/python3"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
KV_LORA, QK_NOPE, V_DIM = 64, 32, 32
LAYERS = HEADS = 0  # from the generated folder's config.json
PROMPTS = [[5, 17, 33, 101, 7, 250, 3, 64, 99, 120], [11, 12, 13, 200, 300, 45, 8]]
failures = []
attn_bytes = {}  # probe tag -> the attention weights' bytes a decode step reads
all_bytes = {}  # probe tag -> the weights' bytes as run


def check(ok, what):
    print(("ok " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(cmd, timeout=240):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return p.stdout


def probe_logits(a, model, path, tag):
    steps = [{"run": [{"seq": i, "tokens": p} for i, p in enumerate(PROMPTS)]}]
    steps += [{"run": [{"seq": i, "tokens": [20 + 7 * s + 11 * i]} for i in range(len(PROMPTS))]} for s in range(5)]
    sched = os.path.join(a.work, tag + ".sched.json")
    with open(sched, "w") as f:
        json.dump({"steps": steps}, f)
    out = os.path.join(a.work, tag + ".logits")
    meta = json.loads(run([a.probe, "--model-path", model, "--schedule", sched, "--out", out, "--threads", "2",
                           "--mla-path", path]))
    attn_bytes[tag] = int(meta["attention_weight_bytes"])
    all_bytes[tag] = int(meta["weight_bytes"])
    return np.fromfile(out, "<f4").reshape(-1, int(meta["vocab_size"])).astype(np.float64)


def greedy(a, model, layout):
    pfile = os.path.join(a.work, "prompts.txt")
    with open(pfile, "w") as f:
        f.write("".join(",".join(map(str, p)) + "\n" for p in PROMPTS))
    out = run([a.dpserve, "generate", "--json", "--model-path", model, "--prompts-file", pfile, "--prompts-are-ids",
               "-n", "10", "--ignore-eos", "--temperature", "0", "--threads", "1", "--kv-cache-dtype", "fp32"] + layout)
    return [json.loads(line)["output_ids"] for line in out.splitlines() if line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", required=True)
    ap.add_argument("--dpserve", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    hf = os.path.join(a.work, "hf-deepseek-v2")
    subprocess.run([PY, os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", "deepseek_v2", "--dtype", "f32",
                    "--kv-lora-rank", str(KV_LORA), "--qk-nope-head-dim", str(QK_NOPE), "--v-head-dim", str(V_DIM),
                    "--qk-rope-head-dim", "16", "--seed", "51", "--quiet", "--out", hf], check=True, timeout=300)
    with open(os.path.join(hf, "config.json")) as f:
        cfg = json.load(f)
    global LAYERS, HEADS
    LAYERS, HEADS = cfg["num_hidden_layers"], cfg["num_attention_heads"]
    folder = probe_logits(a, hf, "decompressed", "hf")
    for outtype, to_folder in (("q8_0", 0.08), ("q5_0", 0.3)):
        for kv_b in ("split", "joined"):
            tag = outtype if kv_b == "split" else outtype + "-joined"
            gguf = os.path.join(a.work, f"deepseek-v2-{tag}.gguf")
            subprocess.run([PY, os.path.join(REPO, "tools", "hf_to_gguf.py"), hf, "--outtype", outtype, "--kv-b", kv_b,
                            "--out", gguf], check=True, timeout=300, capture_output=True)
            dec = probe_logits(a, gguf, "decompressed", tag + "-dec")
            ab = probe_logits(a, gguf, "absorbed", tag + "-abs")
            scale = dec.std()
            mx, rms = np.abs(ab - dec).max() / scale, np.sqrt(np.mean((ab - dec) ** 2)) / scale
            check(mx <= 0.25 and rms <= 0.06,
                  f"{tag}: absorbed (quantized parts) vs decompressed: max {mx:.3g}, rms {rms:.3g} x std "
                  "(tolerance 0.25, 0.06)")
            check(mx > 1e-4, f"{tag}: the absorbed form ran on the quantized parts (differs by {mx:.3g} x std > 1e-4)")
            for name, got in (("decompressed", dec), ("absorbed", ab)):
                e = np.sqrt(np.mean((got - folder) ** 2)) / folder.std()
                check(e <= to_folder, f"{tag}: {name} within rms {e:.3g} x std of the f32 folder's (tolerance {to_folder})")
        # The joined attn_kv_b holds the same quantized matrices: W_UK^T requantized to Q8_0 at load
        # (the split attn_k_b is Q8_0, or loads as it), W_UV row slices of kv_b as attn_v_b's are.
        # Its fp32 W_UK^T copy read H x 64 x 32 x (4 - 34/32) bytes more a layer.
        split_b, joined_b = attn_bytes[outtype + "-abs"], attn_bytes[outtype + "-joined-abs"]
        check(joined_b == split_b > 0, f"{outtype}: decode reads the same attention bytes from the joined attn_kv_b as "
              f"from the split parts ({joined_b} vs {split_b})")
        # The kv_b_proj rebuilt from the split parts for prefill is Q8_0 as the joined file's (Q5_0
        # loads as Q8_0): the split file holds exactly its parts more, W_UK^T [r, nope] and W_UV [vd, r]
        # of every head in Q8_0 (34 bytes a 32), where an fp32 rebuild held 4 bytes an element.
        extra = LAYERS * HEADS * (KV_LORA * QK_NOPE + V_DIM * KV_LORA) // 32 * 34
        got = all_bytes[outtype + "-abs"] - all_bytes[outtype + "-joined-abs"]
        check(got == extra, f"{outtype}: the split file's weights as run are the joined file's plus its Q8_0 parts "
              f"({got} bytes more, expected {extra}): prefill's kv_b_proj is Q8_0")
    gguf = os.path.join(a.work, "deepseek-v2-q8_0.gguf")
    one, tp2 = greedy(a, gguf, []), greedy(a, gguf, ["--tp-size", "2", "--ep-size", "2"])
    check(one == tp2, "q8_0: greedy ids on 2 ranks (--tp-size 2 --ep-size 2: 2 heads each) equal 1 rank's"
          + ("" if one == tp2 else f"\n   1 rank {one}\n   tp2    {tp2}"))
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("all passed")


if __name__ == "__main__":
    main()
