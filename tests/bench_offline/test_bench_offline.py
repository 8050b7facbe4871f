#!/usr/bin/env python3
"""`dpserve bench offline` reports figures consistent with the batches it was asked to run.

For B requests x K batches of I prompt tokens and O output tokens, the JSON line must count
B*I*K input and B*O*K output tokens, B*(O-1)*K decode tokens, at least O engine steps per batch
(one request's tokens need O steps) and at most O + B + ceil(B*I/512) (requests may join over
several steps, prefill chunks of 512), and every rate must equal its tokens over its seconds.
The command itself fails if any request returns other than exactly O tokens.

usage: test_bench_offline.py DPSERVE_BIN SHARED_DIR CASE
"""
import json
import math
import os
import subprocess
import sys

BIN, SHARED, CASE = sys.argv[1:4]
MODEL = os.path.join(SHARED, "models", "stories260K", "stories260K.bin")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
if not os.path.exists(MODEL):
    raise SystemExit(f"FAIL: {MODEL} is missing (shared dir {SHARED})")

errors = []


def check(cond, what):
    if not cond:
        errors.append(what)


def close(a, b, what, rel=1e-6):
    check(abs(a - b) <= rel * max(abs(a), abs(b), 1e-12), f"{what}: {a} != {b}")


def run_bench(layout, B, I, O, K):
    args = [BIN, "bench", "offline", "--model-path", MODEL, "--batch-size", str(B), "--input-len", str(I),
            "--output-len", str(O), "--num-batches", str(K), "--json", "--threads", "1"] + layout
    p = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=240)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(args)} exited {p.returncode}\n{p.stderr[-3000:]}")
    lines = [line for line in p.stdout.splitlines() if line.strip()]
    if len(lines) != 1:
        raise SystemExit(f"FAIL: expected one JSON line on stdout, got {len(lines)}:\n{p.stdout[-2000:]}")
    return json.loads(lines[0])


def check_result(j, B, I, O, K, world):
    tag = f"B={B} I={I} O={O} K={K}"
    check(j["world_size"] == world, f"{tag}: world_size {j['world_size']} != {world}")
    check((j["batch_size"], j["input_len"], j["output_len"], j["num_batches"]) == (B, I, O, K),
          f"{tag}: shape echoed as {j['batch_size']}, {j['input_len']}, {j['output_len']}, {j['num_batches']}")
    check(j["input_tokens"] == B * I * K, f"{tag}: input_tokens {j['input_tokens']} != {B * I * K}")
    check(j["output_tokens"] == B * O * K, f"{tag}: output_tokens {j['output_tokens']} != {B * O * K}")
    check(j["decode_tokens"] == B * (O - 1) * K, f"{tag}: decode_tokens {j['decode_tokens']}")
    lo, hi = K * O, K * (O + B + math.ceil(B * I / 512))
    check(lo <= j["steps"] <= hi, f"{tag}: steps {j['steps']} outside [{lo}, {hi}]")
    for k in ("prefill_seconds", "decode_seconds", "total_seconds"):
        check(j[k] > 0, f"{tag}: {k} = {j[k]} is not positive")
    close(j["total_seconds"], j["prefill_seconds"] + j["decode_seconds"], f"{tag}: total = prefill + decode")
    close(j["prefill_tok_s"], B * I * K / j["prefill_seconds"], f"{tag}: prefill_tok_s")
    close(j["decode_tok_s"], B * (O - 1) * K / j["decode_seconds"], f"{tag}: decode_tok_s")
    close(j["output_tok_s"], B * O * K / j["total_seconds"], f"{tag}: output_tok_s")
    close(j["total_tok_s"], (B * I + B * O) * K / j["total_seconds"], f"{tag}: total_tok_s")
    close(j["decode_step_ms"], 1e3 * j["decode_seconds"] / (K * (O - 1)), f"{tag}: decode_step_ms")
    check(0 <= j["itl_ms_p50"] <= j["itl_ms_p90"] <= j["itl_ms_p99"],
          f"{tag}: ITL percentiles not ordered: {j['itl_ms_p50']}, {j['itl_ms_p90']}, {j['itl_ms_p99']}")
    # Every inter-token gap lies inside its batch's measured time.
    check(j["itl_ms_p99"] <= 1e3 * j["total_seconds"] + 1e-6, f"{tag}: ITL p99 longer than the whole run")


if CASE == "errors":
    for args, needle in [
        (["--input-len", "500", "--output-len", "100"], "exceeds the model's context"),
        (["--batch-size", "0"], "batch-size"),
    ]:
        p = subprocess.run([BIN, "bench", "offline", "--model-path", MODEL] + args, capture_output=True, text=True,
                           env=ENV, timeout=120)
        check(p.returncode != 0, f"{args}: exit code 0")
        check(needle in p.stderr + p.stdout, f"{args}: no '{needle}' in the message:\n{p.stderr[-1500:]}")
else:
    layout = {"tp1": [], "tp2": ["--tp-size", "2"],
              "tp2_dp2_attn": ["--tp-size", "2", "--dp-size", "2", "--enable-dp-attention"]}[CASE]
    world = 1 if CASE == "tp1" else 2
    for B, I, O, K in [(3, 20, 7, 2), (1, 5, 12, 1), (9, 130, 3, 1)]:
        check_result(run_bench(layout, B, I, O, K), B, I, O, K, world)

if errors:
    print("FAIL:\n  " + "\n  ".join(errors))
    sys.exit(1)
print(f"OK: bench offline {CASE}")
