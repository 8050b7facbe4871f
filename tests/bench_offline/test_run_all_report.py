#!/usr/bin/env python3
"""bench/run_all_report.py: the weight bytes its roofline assumes match the real checkpoint, and
rewriting docs/benchmarks.md replaces only the marked section.

1. For random models written by tools/make_hf_model.py (dense Llama; Qwen3-MoE with a dense layer
   between sparse ones), the bytes ModelCost says the whole model streams (every matrix but the
   input embedding) must equal the sum of those matrices' sizes read from the safetensors header,
   and a batch that touches every expert reads all of them.
2. Given a results folder, the report keeps the text outside the run-all markers byte for byte,
   writes exactly one section on a second run, and writes both SVG charts.

usage: test_run_all_report.py REPO_DIR SCRATCH_DIR
"""
import json
import os
import shutil
import struct
import subprocess
import sys

REPO, SCRATCH = sys.argv[1:3]
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(REPO, "bench"))
import run_all_report as rep  # noqa: E402

shutil.rmtree(SCRATCH, ignore_errors=True)
os.makedirs(SCRATCH)
errors = []


def safetensors_matrix_bytes(folder):
    """Bytes of every 2-D tensor except the input embedding, from the files' own headers."""
    total = 0
    for name in os.listdir(folder):
        if not name.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        for tname, t in header.items():
            if tname == "__metadata__" or len(t["shape"]) != 2 or tname.endswith("embed_tokens.weight"):
                continue
            total += t["data_offsets"][1] - t["data_offsets"][0]
    return total


for arch, extra in [("llama", []), ("qwen3_moe", [])]:
    out = os.path.join(SCRATCH, arch)
    subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", arch,
                    "--preset", "tiny", "--dtype", "bf16", "--out", out, "--quiet"] + extra, check=True, timeout=120)
    cfg = json.load(open(os.path.join(out, "config.json")))
    cost = rep.ModelCost(cfg, 2)
    want = safetensors_matrix_bytes(out)
    everything = cost.bytes_per_step(10 ** 6)  # so many tokens that every expert is routed to
    if abs(everything - want) > 1e-6 * want:
        errors.append(f"{arch}: ModelCost reads {everything} bytes for all experts, the checkpoint has {want}")
    if cfg.get("num_experts"):
        one = cost.bytes_per_step(1)
        if not one < everything:
            errors.append(f"{arch}: one token reads {one} bytes, not fewer than all experts ({everything})")
        if cost.sparse_layers != cfg["num_hidden_layers"] - len(cfg.get("mlp_only_layers") or []):
            errors.append(f"{arch}: {cost.sparse_layers} sparse layers for mlp_only_layers {cfg['mlp_only_layers']}")

# Report: markers replaced, the rest kept.
res = os.path.join(SCRATCH, "results")
os.makedirs(res)
model = os.path.join(SCRATCH, "llama")
json.dump({"m": {"path": model, "label": "tiny llama"}}, open(os.path.join(res, "models.json"), "w"))
json.dump({"bandwidth_bytes_s": 40e9, "bf16_flops": 500e9, "threads": 2, "cpu": "test", "quick": True,
           "date": "today", "commit": "abc", "commands": ["dpserve bench offline ..."]},
          open(os.path.join(res, "machine.json"), "w"))
off = {"model_path": model, "tp_size": 1, "dp_size": 1, "enable_dp_attention": False, "batch_size": 2,
       "input_len": 8, "output_len": 4, "prefill_tok_s": 100.0, "decode_tok_s": 10.0, "decode_step_ms": 200.0,
       "output_tok_s": 5.0, "itl_ms_p50": 190.0, "itl_ms_p99": 250.0, "kv_tokens_per_rank": 1000,
       "layout": "x 1.5 KiB/token"}
with open(os.path.join(res, "offline.jsonl"), "w") as f:
    f.write(json.dumps(off) + "\n")
    f.write(json.dumps(dict(off, tp_size=2, dp_size=2, enable_dp_attention=True, decode_tok_s=13.0)) + "\n")
    f.write(json.dumps(dict(off, tp_size=2)) + "\n")
with open(os.path.join(res, "serve.jsonl"), "w") as f:
    for c, tps in [(1, 3.0), (8, 12.0)]:
        f.write(json.dumps({"model_key": "m", "tag": "dpserve tp1", "max_concurrency": c, "num_prompts": 2 * c,
                            "completed": 2 * c, "failed": 0, "duration": 10.0, "total_input_tokens": 16 * c,
                            "total_output_tokens": 8 * c, "output_throughput": tps, "median_ttft_ms": 1.0,
                            "p90_ttft_ms": 2.0, "p99_ttft_ms": 3.0, "median_itl_ms": 4.0, "p90_itl_ms": 5.0,
                            "p99_itl_ms": 6.0, "median_e2e_latency_ms": 7.0}) + "\n")
md = os.path.join(SCRATCH, "docs", "benchmarks.md")
os.makedirs(os.path.dirname(md))
head, tail = "# Benchmarks\n\nhand-written part\n\n", "\n\n## after the section\nmore hand-written text\n"
open(md, "w").write(head + rep.BEGIN + "\nold generated text\n" + rep.END + tail)
for _ in range(2):
    subprocess.run(["/usr/bin/python3", os.path.join(REPO, "bench", "run_all_report.py"), res, md], check=True,
                   timeout=60, capture_output=True)
text = open(md).read()
if not text.startswith(head + rep.BEGIN) or not text.endswith(rep.END + tail):
    errors.append("text outside the markers changed")
if text.count(rep.BEGIN) != 1 or "old generated text" in text:
    errors.append("the marked section was not replaced exactly once")
if "1.30x" not in text:
    errors.append("DP-attention ratio 13.0 / 10.0 = 1.30x missing")
for svg in ("bench-throughput.svg", "bench-latency.svg"):
    p = os.path.join(os.path.dirname(md), svg)
    if not os.path.exists(p) or not open(p).read().startswith("<svg"):
        errors.append(f"{svg} not written")

if errors:
    print("FAIL:\n  " + "\n  ".join(errors))
    sys.exit(1)
print("OK: run_all_report")
