#!/usr/bin/python3
"""What a LoRA adapter costs the forward pass: the same batches run as the base model and with every
sequence on an adapter, timed side by side (dpserve_forward_probe wall time, loading included).

Writes a bf16 Llama (hidden 1024, 4 layers by default) and a random PEFT adapter (r 16, all seven
projections) into --work, then alternates the runs --repeat times and prints each run's minimum and
the ratio adapter / base. With --probe-b (another build's probe) both probes run in the same
rounds, so an A/B of a change is measured on the same minutes of this shared machine.

  /usr/bin/python3 bench/lora_overhead.py --probe build/bin/dpserve_forward_probe --work /tmp/lora-bench \
      [--probe-b OTHER/bin/dpserve_forward_probe] [--repeat 5] [--seqs 8 --prompt 64 --decode 64]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "model"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "model", "reference"))
import ref_forward as rf  # noqa: E402
from test_lora_reference import make_adapter  # noqa: E402

MAKE = os.path.join(HERE, "..", "tools", "make_hf_model.py")
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def schedule(seqs, prompt, decode, lora, rng, vocab):
    """Every sequence prefills `prompt` tokens in one step, then decodes one token a step."""
    def entry(s, toks):
        e = {"seq": s, "tokens": toks}
        if lora >= 0:
            e["lora"] = lora
        return e
    steps = [{"run": [entry(s, rng.integers(3, vocab, prompt).tolist()) for s in range(seqs)]}]
    for _ in range(decode):
        steps.append({"run": [entry(s, [int(rng.integers(3, vocab))]) for s in range(seqs)]})
    return {"steps": steps}


def run(probe, model, sched_path, adapter, work):
    out = os.path.join(work, "logits.bin")
    t = time.perf_counter()
    p = subprocess.run([probe, "--model-path", model, "--schedule", sched_path, "--out", out, "--lora", adapter],
                       capture_output=True, text=True, timeout=600)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"probe failed: {p.stderr[-1000:]}")
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probe", required=True)
    ap.add_argument("--probe-b", help="a second probe (another build) run in the same rounds")
    ap.add_argument("--work", required=True)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--seqs", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--decode", type=int, default=64)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    model = os.path.join(a.work, "model")
    if not os.path.exists(os.path.join(model, "config.json")):
        subprocess.run([sys.executable, MAKE, "--arch", "llama", "--dtype", "bf16", "--hidden-size", str(a.hidden),
                        "--intermediate-size", str(a.hidden * 11 // 4), "--num-hidden-layers", str(a.layers),
                        "--num-attention-heads", str(a.hidden // 64), "--num-key-value-heads", str(a.hidden // 128),
                        "--no-tokenizer", "--quiet", "--out", model], check=True)
    adapter = os.path.join(a.work, "adapter")
    if not os.path.exists(os.path.join(adapter, "adapter_config.json")):
        make_adapter(adapter, rf.RefModel(model), np.random.default_rng(0), a.rank, 2 * a.rank, MODULES, dtype="BF16")
    with open(os.path.join(model, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    scheds = {}
    for name, lora in (("base", -1), ("adapter", 0)):
        scheds[name] = os.path.join(a.work, f"{name}.json")
        with open(scheds[name], "w") as f:
            json.dump(schedule(a.seqs, a.prompt, a.decode, lora, np.random.default_rng(1), vocab), f)
    probes = {"A": a.probe} | ({"B": a.probe_b} if a.probe_b else {})
    times = {(p, s): [] for p in probes for s in scheds}
    for _ in range(a.repeat):
        for p, path in probes.items():
            for s, sp in scheds.items():
                times[(p, s)].append(run(path, model, sp, adapter, a.work))
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    amx = "yes" if "amx_tile" in open("/proc/cpuinfo").read() else "no"
    print(f"CPU: {cpu}, AMX: {amx}; hidden {a.hidden}, {a.layers} layers, bf16, adapter r {a.rank} on all 7 "
          f"projections; {a.seqs} sequences x {a.prompt}-token prefill + {a.decode} decode steps; "
          f"min of {a.repeat} (probe wall time, load included)")
    for p in probes:
        base, lora = min(times[(p, "base")]), min(times[(p, "adapter")])
        print(f"  probe {p}: base {base:.3f} s, every sequence on the adapter {lora:.3f} s, ratio {lora / base:.3f}")
    if a.probe_b:
        print(f"  adapter runs B / A: {min(times[('B', 'adapter')]) / min(times[('A', 'adapter')]):.3f}")


if __name__ == "__main__":
    main()
