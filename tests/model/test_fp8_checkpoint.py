#!/usr/bin/env python3
"""Fp8 checkpoints (quantization_config quant_method "fp8", as DeepSeek-V3 and the Qwen3 FP8 releases
are published): F8_E4M3 linear weights with one fp32 scale per block in "<name>_scale_inv".

Each case writes a tiny model (tools/make_hf_model.py, f32), quantizes its linear weights to fp8 here
(e4m3 codes from the OCP format's definition, one amax / 448 scale per weight_block_size block, as
DeepSeek's quantizer chooses it) and writes two folders: the fp8 checkpoint, and its bf16 cast (every
fp8 weight replaced by bf16(code * scale), the fp32 product rounded to nearest even, which is what
DeepSeek's fp8_cast_bf16.py and llama.cpp's converter produce). Then:

  * dpserve on the fp8 folder gives the cast folder's logits bit for bit: one rank, both MLA forms,
    --quantization q8_0, and tensor parallel over two MPI ranks (shards cut through scale blocks);
  * those logits are within the bf16 tolerance of the float64 reference (ref_forward.py) of the cast;
  * malformed checkpoints (a missing or misshapen scale, fp8 without its config, another fmt, static
    activation scales, per-tensor scales, an unknown quant_method or key) are start-up errors naming
    the tensor or field.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
sys.path.insert(0, HERE)
import ref_forward as rf  # noqa: E402
import test_hf_reference as th  # noqa: E402

MAKE = os.path.join(HERE, "..", "..", "tools", "make_hf_model.py")
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}

# name, make_hf_model args, seed, scales (weight_block_size [rows, cols] of quant_method fp8, or compressed-tensors'
# strategy "channel" / "tensor"), tolerance key, ranks to check
CASES = [
    # The published block size: every matrix of this model is one partial 128 x 128 block or a few.
    ("qwen3_fp8_128", ["--arch", "qwen3"], 19, [128, 128], "bf16", False),
    # MLA (kv_b_proj's heads sliced out of fp8 rows, absorbed and decompressed), routed and shared experts;
    # 16 x 24 blocks, so heads, experts and tensor-parallel shards start inside blocks.
    # Its multi-token-prediction layer (fp8 too, as DeepSeek-V3's) is compared under NEXTN.
    ("deepseek_v3_fp8_16x24", ["--arch", "deepseek_v3", "--num-nextn-predict-layers", "1"], 44, [16, 24],
     "bf16_mla", True),
    # compressed-tensors (llm-compressor's FP8-dynamic / FP8 checkpoints): a scale per output row ("<weight>_scale"
    # [rows, 1]; tensor parallel cuts q/k/v and gate/up by rows), and one per tensor ([1]).
    ("qwen3_ct_channel", ["--arch", "qwen3"], 19, "channel", "bf16", True),
    ("llama_ct_tensor", ["--arch", "llama"], 15, "tensor", "bf16", False),
    # MiniMax-M2 as released: attention and Mixtral-named experts (w1 / w2 / w3) in fp8, the router and its fp32
    # selection bias left out (modules_to_not_convert), the fmt spelled float8_e4m3fn.
    ("minimax_m2_fp8_128", ["--arch", "minimax_m2"], 131, [128, 128], "bf16", False),
]


# ---------------------------------------------------------------- fp8 E4M3, from the OCP definition


def e4m3_values():
    """Value of each non-negative code 0..126 (0x7f is NaN): exponent bias 7, 3 mantissa bits,
    subnormals m / 8 * 2^-6."""
    vals = []
    for c in range(127):
        e, m = c >> 3, c & 7
        vals.append(m / 8.0 * 2.0 ** -6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7))
    return np.array(vals, dtype=np.float64)


E4M3 = e4m3_values()
assert E4M3[-1] == 448.0 and E4M3[1] == 2.0 ** -9


E4M3_MIDPOINTS = (E4M3[1:] + E4M3[:-1]) / 2


def e4m3_encode(x):
    """A nearest code of each element of x (|x| <= 448; a tie may go either way: only decoding is tested)."""
    idx = np.searchsorted(E4M3_MIDPOINTS, np.abs(x)).astype(np.uint8)
    return idx | np.where(x < 0, 0x80, 0).astype(np.uint8)


def e4m3_decode(codes):
    mag = E4M3[np.minimum(codes & 0x7F, 126)]
    return np.where(codes & 0x80, -mag, mag)


def quantize_fp8(w, block):
    """(codes uint8 [R, C], scales float32 [ceil(R / br), ceil(C / bc)])."""
    br, bc = block
    R, C = w.shape
    sr, sc = -(-R // br), -(-C // bc)
    scales = np.ones((sr, sc), dtype=np.float32)
    codes = np.zeros(w.shape, dtype=np.uint8)
    for i in range(sr):
        for j in range(sc):
            blk = w[i * br:(i + 1) * br, j * bc:(j + 1) * bc]
            amax = float(np.abs(blk).max())
            s = np.float32(amax / 448.0) if amax > 0 else np.float32(1.0)
            scales[i, j] = s
            codes[i * br:(i + 1) * br, j * bc:(j + 1) * bc] = e4m3_encode(np.clip(blk / float(s), -448, 448))
    return codes, scales


def cast_bf16_bits(codes, scales, block):
    """bf16 bits of fp32(code value) * fp32(scale), rounded to nearest even."""
    br, bc = block
    s = np.repeat(np.repeat(scales, br, axis=0), bc, axis=1)[:codes.shape[0], :codes.shape[1]]
    prod = e4m3_decode(codes).astype(np.float32) * s.astype(np.float32)  # one fp32 rounding
    return bf16_bits(prod)


# ---------------------------------------------------------------- folders


def write_safetensors(path, tensors):
    """name -> (safetensors dtype, little-endian array)."""
    head, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, (dt, a) in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        head[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
        pad = (-off) % 8  # keep every tensor 8-byte aligned
        if pad:
            blobs.append(b"\0" * pad)
            off += pad
    h = json.dumps(head).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def is_fp8_weight(name, a):
    """The linear layers DeepSeek-V3, Qwen3-FP8 and MiniMax-M2 store in fp8: not embeddings, the head, norms or
    the router gate."""
    linear = name.endswith(("_proj.weight", "_proj_with_mqa.weight", ".w1.weight", ".w2.weight", ".w3.weight"))
    return a.ndim == 2 and linear and ".mlp.gate." not in name


def bf16_bits(a):
    return (rf.bf16_round(a).astype(np.float32).view(np.uint32) >> 16).astype("<u2")


def compressed_tensors_config(strategy):
    """quantization_config as llm-compressor writes it for FP8-dynamic (channel) / FP8 (tensor) weights."""
    act = {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": True, "strategy": "token",
           "group_size": None, "block_structure": None, "actorder": None, "observer": None, "observer_kwargs": {}}
    weights = {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": False, "strategy": strategy,
               "group_size": None, "block_structure": None, "actorder": None, "observer": "minmax",
               "observer_kwargs": {}}
    return {"quant_method": "compressed-tensors", "format": "float-quantized", "quantization_status": "compressed",
            "global_compression_ratio": None, "ignore": ["lm_head"], "kv_cache_scheme": None,
            "sparsity_config": {},
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": act,
                                          "output_activations": None}}}


def write_fp8_pair(base, fp8_dir, cast_dir, scales_of, edit=None, others="F32"):
    """The fp8 checkpoint of `base` and its bf16 cast; the other tensors as `others` (F32, or BF16 for a
    bf16 base). `scales_of`: weight_block_size [rows, cols] (quant_method fp8) or a compressed-tensors
    strategy ("channel", "tensor"). `edit(tensors, config)` may break the fp8 one."""
    cfg, w = rf.read_model_folder(base)
    ct = isinstance(scales_of, str)
    fp8, cast = {}, {}
    for name, a in sorted(w.items()):
        if is_fp8_weight(name, a):
            block = list(scales_of) if not ct else [1, a.shape[1]] if scales_of == "channel" else list(a.shape)
            codes, scales = quantize_fp8(a, block)
            fp8[name] = ("F8_E4M3", codes)
            if ct:
                fp8[name + "_scale"] = ("F32", scales.reshape(-1 if scales_of == "tensor" else scales.shape).astype("<f4"))
            else:
                fp8[name + "_scale_inv"] = ("F32", scales.astype("<f4"))
            cast[name] = ("BF16", cast_bf16_bits(codes, scales, block).astype("<u2"))
        else:
            fp8[name] = cast[name] = ("F32", a.astype("<f4")) if others == "F32" else ("BF16", bf16_bits(a))
    qc = compressed_tensors_config(scales_of) if ct else {
        "activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": list(scales_of)}
    if cfg["architectures"][0] == "MiniMaxM2ForCausalLM":  # MiniMax-M2's quantization_config as published
        qc.update(fmt="float8_e4m3fn", modules_to_not_convert=["gate", "e_score_correction_bias", "lm_head"])
    fcfg = dict(cfg, quantization_config=qc)
    if edit:
        edit(fp8, fcfg)
    for d, tensors, c in ((fp8_dir, fp8, fcfg), (cast_dir, cast, cfg)):
        if d is None:
            continue
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(base):
            if not f.endswith(".safetensors") and f not in ("config.json", "model.safetensors.index.json"):
                shutil.copy(os.path.join(base, f), d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f, indent=1)
        write_safetensors(os.path.join(d, "model.safetensors"), tensors)
    return [n for n, t in fp8.items() if t[0] == "F8_E4M3"]


# ---------------------------------------------------------------- running


def run_probe(a, model_dir, sched, label, extra=(), ranks=False, env_extra=None):
    sp = os.path.join(a.work, f"{label.replace('/', '_')}.schedule.json")
    out = os.path.join(a.work, f"{label.replace('/', '_')}.logits.bin")
    with open(sp, "w") as f:
        json.dump({"steps": sched.steps}, f)
    cmd = [a.probe, "--model-path", model_dir, "--schedule", sp, "--out", out, *extra]
    if sched.page_size:
        cmd += ["--page-size", str(sched.page_size)]
    if ranks:
        cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "--timeout", str(th.PROBE_TIMEOUT - 10), "-np",
               "2", *cmd, "--threads", "1", "--tp-size", "2"]
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "passive"), **MPI_ENV,
               **(env_extra or {}))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=th.PROBE_TIMEOUT, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{label}: exit {p.returncode}: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    meta = th.parse_json_stdout(p.stdout, label) if not ranks else None
    data = np.fromfile(out, dtype="<f4")
    return meta, p.stderr, data


def bit_equal(label, got, want):
    same = got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32))
    diff = "" if same or got.shape != want.shape else f" (max abs diff {float(np.abs(got - want).max()):.3e})"
    return same, f"{label}: fp8 folder == bf16 cast bit for bit: {same}{diff}"


def run_case(case, a, results):
    name, args, seed, block, tol, ranks = case
    base = os.path.join(a.work, name + "_base")
    subprocess.run([sys.executable, MAKE, "--out", base, "--dtype", "f32", "--seed", str(seed), "--quiet", *args],
                   check=True)
    fp8_dir, cast_dir = os.path.join(a.work, name), os.path.join(a.work, name + "_cast")
    names = write_fp8_pair(base, fp8_dir, cast_dir, block)
    model = rf.RefModel(cast_dir)
    # The main model converts what it runs: not the multi-token-prediction layer after its layers.
    n_fp8 = sum(1 for n in names if not n.startswith(f"model.layers.{model.n_layers}."))
    src = th.TokenSource(model, seed + 1000, th.ROUTER_TIE[tol if tol in th.ROUTER_TIE else "bf16"])
    sched, rows, lives = th.build_schedule(th.schedule_shapes()[1], src)  # prefill, chunked prefill and decode

    def record(ok, msg):
        results.append((ok, msg))
        print(("PASS " if ok else "FAIL ") + msg, flush=True)

    meta, err, got = run_probe(a, fp8_dir, sched, f"{name}/fp8")
    _, _, want = run_probe(a, cast_dir, sched, f"{name}/cast")
    how = f"blocks {block[0]}x{block[1]}" if not isinstance(block, str) else f"compressed-tensors, {block} scales"
    record(*bit_equal(f"{name} ({n_fp8} fp8 matrices, {how})", got, want))
    said = f"{n_fp8} fp8 matrices" in err
    record(said, f"{name}: the load says how many fp8 matrices it converted: {said}")
    vocab = int(meta["vocab_size"])
    ref = th.reference_rows(model, rows, lives)
    ok, msg, _ = th.compare(f"{name}: fp8 folder vs float64 reference of its cast", ref, got.reshape(-1, vocab), tol)
    record(ok, msg)
    # --quantization converts from the bf16 values; DPSERVE_WEIGHTS=copied keeps bf16 rows plain (the
    # layout where no kernel reads 16-row groups); the MLA forms read kv_b_proj's heads as slices.
    extras = [("q8_0", ["--quantization", "q8_0"], None), ("plain_rows", [], {"DPSERVE_WEIGHTS": "copied"})]
    if model.deepseek:
        extras += [(f"mla_{p}", ["--mla-path", p], None) for p in ("absorbed", "decompressed")]
    for label, extra, env in extras:
        _, _, g = run_probe(a, fp8_dir, sched, f"{name}/fp8_{label}", extra, env_extra=env)
        _, _, w = run_probe(a, cast_dir, sched, f"{name}/cast_{label}", extra, env_extra=env)
        how = " ".join(extra + [f"{k}={v}" for k, v in (env or {}).items()])
        record(*bit_equal(f"{name} {how}", g, w))
    if a.nextn_probe and model.deepseek:
        got_n, want_n = [], []
        for d, into in ((fp8_dir, got_n), (cast_dir, want_n)):
            out = os.path.join(a.work, os.path.basename(d) + ".nextn.bin")
            cmd = [a.nextn_probe, "--model-path", d, "--tokens", ",".join(map(str, lives[0][:20])), "--draft", "3",
                   "--out", out]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=th.PROBE_TIMEOUT)
            if p.returncode != 0:
                raise RuntimeError(f"{name}/nextn: exit {p.returncode}: {' '.join(cmd)}\n{p.stderr[-2000:]}")
            into.append(np.fromfile(out, dtype="<f4"))
        record(*bit_equal(f"{name} NEXTN layer (eh_proj and its MoE in fp8), 19 rows and 3 drafts", got_n[0],
                          want_n[0]))
    if ranks:
        _, _, g = run_probe(a, fp8_dir, sched, f"{name}/fp8_tp2", ranks=True)
        _, _, w = run_probe(a, cast_dir, sched, f"{name}/cast_tp2", ranks=True)
        record(*bit_equal(f"{name} --tp-size 2 (MPI ranks)", g, w))


def refusals(a, results):
    """Broken fp8 checkpoints: a start-up error naming what is wrong, never a silent load."""
    base = os.path.join(a.work, "qwen3_fp8_128_base")
    W = "model.layers.1.mlp.down_proj.weight"

    def drop_scale(t, c):
        del t[W + "_scale_inv"]

    def bad_scale_shape(t, c):
        t[W + "_scale_inv"] = ("F32", np.ones((2, 2), dtype="<f4"))

    def no_config(t, c):
        del c["quantization_config"]

    def qc(key, value):
        def edit(t, c):
            c["quantization_config"][key] = value
        return edit

    def per_tensor(t, c):
        t[W.replace(".weight", ".input_scale")] = ("F32", np.ones((1,), dtype="<f4"))

    def orphan_scale(t, c):
        n = "model.embed_tokens.weight_scale_inv"
        t[n] = ("F32", np.ones((4, 1), dtype="<f4"))

    cases = [
        ("missing scale", drop_scale, [W, "_scale_inv", "missing"]),
        ("scale shape", bad_scale_shape, [W + "_scale_inv", "[2, 2]", "128 x 128 blocks needs [1, 3]"]),
        ("no quantization_config", no_config, ["F8_E4M3", "quantization_config"]),
        ("fmt e5m2", qc("fmt", "e5m2"), ["quantization_config.fmt", "e5m2"]),
        ("static activations", qc("activation_scheme", "static"), ["activation_scheme", "static"]),
        ("no weight_block_size", qc("weight_block_size", None), ["weight_block_size"]),
        ("bad weight_block_size", qc("weight_block_size", [128, 0]), ["weight_block_size"]),
        ("unknown key", qc("kv_cache_scheme", {"type": "float"}), ["quantization_config.kv_cache_scheme"]),
        ("quant_method gptq", qc("quant_method", "gptq"), ["quant_method", "gptq"]),
        ("static input_scale", per_tensor, [".input_scale"]),
        ("scale without fp8 weight", orphan_scale, ["model.embed_tokens.weight_scale_inv", "not F8_E4M3"]),
    ]
    def ct(path, value):
        def edit(t, c):
            o = c["quantization_config"]
            for k in path[:-1]:
                o = o[k]
            o[path[-1]] = value
        return edit

    def zero_point(t, c):
        t[W + "_zero_point"] = ("F32", np.zeros((96, 1), dtype="<f4"))

    def two_groups(t, c):
        g = c["quantization_config"]["config_groups"]
        g["group_1"] = json.loads(json.dumps(g["group_0"]))
        g["group_1"]["weights"]["strategy"] = "tensor"

    G = ["config_groups", "group_0"]
    ct_cases = [
        ("ct format pack-quantized", ct(["format"], "pack-quantized"), ["quantization_config.format", "pack-quantized"]),
        ("ct int4 weights", ct(G + ["weights", "num_bits"], 4), ["group_0.weights", "4-bit"]),
        ("ct group strategy", ct(G + ["weights", "strategy"], "group"), ["group_0.weights.strategy", "group"]),
        ("ct static activations", ct(G + ["input_activations", "dynamic"], False), ["input_activations", "static"]),
        ("ct kv_cache_scheme", ct(["kv_cache_scheme"], {"num_bits": 8}), ["quantization_config.kv_cache_scheme"]),
        ("ct two strategies", two_groups, ["group_1", "channel", "tensor"]),
        ("ct zero point", zero_point, [W + "_zero_point"]),
        ("ct scale shape", lambda t, c: t.update({W + "_scale": ("F32", np.ones((96, 3), dtype="<f4"))}),
         [W + "_scale", "[96, 3]", "one scale per row needs [96, 1]"]),
    ]
    cases = [(label, "block", edit, want) for label, edit, want in cases] + \
        [(label, "channel", edit, want) for label, edit, want in ct_cases]
    for label, scheme, edit, want in cases:
        d = os.path.join(a.work, "bad_" + label.replace(" ", "_"))
        shutil.rmtree(d, ignore_errors=True)
        write_fp8_pair(base, d, None, [128, 128] if scheme == "block" else "channel", edit)
        p = subprocess.run([a.dpserve, "generate", "--model-path", d, "--prompt-ids", "1,2,3", "--max-new-tokens",
                            "1"], capture_output=True, text=True, timeout=60)
        missing = [w for w in want if w not in p.stderr]
        ok = p.returncode != 0 and not missing and "Traceback" not in p.stderr
        line = next((ln for ln in p.stderr.splitlines() if "rror" in ln), p.stderr.strip()[-300:])
        msg = f"refused, {label}: exit {p.returncode}, says {line.strip()[:260]!r}"
        if missing:
            msg += f" (missing {missing})"
        results.append((ok, msg))
        print(("PASS " if ok else "FAIL ") + msg, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probe", required=True)
    ap.add_argument("--dpserve", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--nextn-probe", help="dpserve_nextn_probe: also compare the MTP layer's logits")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    t0, results = time.time(), []
    for case in CASES:
        try:
            run_case(case, a, results)
        except Exception as e:  # noqa: BLE001 - reported under the case's name
            results.append((False, f"{case[0]}: {e}"))
            print("FAIL " + results[-1][1], flush=True)
    refusals(a, results)
    failed = [m for ok, m in results if not ok]
    for m in failed:
        print("FAILED: " + m.splitlines()[0])
    print(f"({time.time() - t0:.1f}s) {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
