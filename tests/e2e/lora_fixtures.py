"""Test fixtures for the LoRA e2e tests: a tiny random Qwen3 folder (f32, Qwen3 tokenizer), random PEFT
adapters for it written with numpy (adapter_config.json + adapter_model.safetensors, r 4, alpha 2, on
q/k/v/o/gate/up/down of every layer), and for each adapter the independent reference: the base folder with
the adapter merged into its weights as PEFT documents it, W' = W + (alpha / r) B @ A."""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

LAYERS, HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM = 2, 64, 128, 2, 1, 32
RANK, ALPHA = 4, 2.0
TARGETS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
           "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
PROMPTS = ["Once upon a time", "The capital of France is", "1, 2, 3, 4,", "def fibonacci(n):"]


# ---- safetensors by hand: 8-byte little-endian header length, JSON header, raw little-endian data ----

def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        assert h["dtype"] == "F32", f"{name}: {h['dtype']} (the test writes f32 models)"
        b, e = h["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(h["shape"]).copy()
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        raw = np.ascontiguousarray(t, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def make_base(tmp, make_model, tokenizer):
    """The base folder tmp/m and its weights {name: array}."""
    base = os.path.join(tmp, "m")
    subprocess.run([sys.executable, make_model, "--arch", "qwen3", "--dtype", "f32", "--quiet", "--out", base,
                    "--vocab-size", "151936", "--hidden-size", str(HIDDEN), "--intermediate-size", str(FFN),
                    "--num-hidden-layers", str(LAYERS), "--num-attention-heads", str(HEADS),
                    "--num-key-value-heads", str(KV_HEADS), "--head-dim", str(HEAD_DIM),
                    "--max-position-embeddings", "1024", "--bos-token-id", "151643", "--eos-token-id", "151645",
                    "--tokenizer-dir", tokenizer], check=True)
    weights = {}
    for f in os.listdir(base):
        if f.endswith(".safetensors"):
            weights.update(read_safetensors(os.path.join(base, f)))
    return base, weights


def make_adapter(tmp, name, base, weights, seed):
    """A random adapter tmp/NAME and the base merged with it, tmp/NAME-merged: (adapter, merged)."""
    rng = np.random.default_rng(seed)
    adapter = os.path.join(tmp, name)
    os.makedirs(adapter)
    lora, merged = {}, dict(weights)
    for layer in range(LAYERS):
        for proj, block in TARGETS.items():
            w = f"model.layers.{layer}.{block}.{proj}.weight"
            out_dim, in_dim = weights[w].shape
            a = rng.normal(0, 1 / np.sqrt(in_dim), (RANK, in_dim)).astype(np.float32)
            b = rng.normal(0, 1 / np.sqrt(RANK), (out_dim, RANK)).astype(np.float32)
            prefix = f"base_model.model.model.layers.{layer}.{block}.{proj}"
            lora[prefix + ".lora_A.weight"] = a
            lora[prefix + ".lora_B.weight"] = b
            merged[w] = (weights[w].astype(np.float64) + (ALPHA / RANK) * (b.astype(np.float64) @ a)).astype(np.float32)
    write_safetensors(os.path.join(adapter, "adapter_model.safetensors"), lora)
    with open(os.path.join(adapter, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base, "r": RANK,
                   "lora_alpha": ALPHA, "lora_dropout": 0.0, "target_modules": sorted(TARGETS), "bias": "none",
                   "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "modules_to_save": None}, f)

    merged_dir = os.path.join(tmp, name + "-merged")
    shutil.copytree(base, merged_dir, ignore=shutil.ignore_patterns("*.safetensors", "*.safetensors.index.json"))
    write_safetensors(os.path.join(merged_dir, "model.safetensors"), merged)
    return adapter, merged_dir
