#!/usr/bin/python3
"""LoRA (PEFT) adapters in dpserve's forward pass against the independent float64 reference.

A model with a LoRA adapter on projection W computes W x + scale * B (A x), which is the base model
with W' = W + scale * B @ A (PEFT's documented merge; scale = lora_alpha / r, or lora_alpha / sqrt(r)
with use_rslora). Each case writes a tiny model (tools/make_hf_model.py, f32) and two random PEFT
adapter folders written here with NumPy (adapter_config.json + adapter_model.safetensors, serialized
by hand): adapter 0 targets all seven projections (f32 tensors); adapter 1 targets a subset, with
use_rslora and layers_to_transform, its tensors in bf16 (or f16). dpserve_forward_probe loads the base
model plus both adapters and runs batches in which base, adapter-0 and adapter-1 sequences prefill and
decode together; every logit row is compared with ref_forward on the merged weights of its sequence's
adapter (the reference never sees A or B apart), at test_hf_reference.py's f32 tolerances.

--bad: each adapter this runtime cannot run (DoRA, fan_in_fan_out, biases, rank / alpha patterns,
modules_to_save, a regex target_modules, embeddings, lm_head, MoE experts, MLA projections, missing /
unexpected / misshapen tensors, ...) must stop the probe with an error naming the field or tensor.

--ranks tp2 / tp2_dpa2: the same comparison with the probe on two MPI ranks (tensor parallel; DP
attention with two groups of one rank, the MLP sharded over both, each group running half of the
sequences), so every shard of A and B and the DP gather of each row's adapter are checked against
the same single-process reference.

  /usr/bin/python3 tests/model/test_lora_reference.py --probe PROBE --work DIR [--bad | --ranks LAYOUT]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "reference"))
import ref_forward as rf  # noqa: E402
import test_hf_reference as hf  # noqa: E402

MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROBE_TIMEOUT = 120


# ---------------------------------------------------------------- writing adapters


def to_bf16_bits(x):
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, tensors):
    """tensors: {name: (dtype string, array)}; the file as the format specifies it."""
    header, blobs, off = {}, [], 0
    for name, (dt, arr) in tensors.items():
        if dt == "F32":
            raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        elif dt == "F16":
            raw = np.ascontiguousarray(arr, dtype="<f2").tobytes()
        elif dt == "BF16":
            raw = to_bf16_bits(arr).astype("<u2").tobytes()
        else:
            raise ValueError(dt)
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def stored_value(dt, arr):
    """The float64 value the file holds for `arr` written as dt."""
    if dt == "BF16":
        return (to_bf16_bits(arr).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if dt == "F16":
        return arr.astype(np.float16).astype(np.float64)
    return arr.astype(np.float32).astype(np.float64)


def module_weight(layer, mod):
    part = "self_attn" if mod in MODULES[:4] else "mlp"
    return f"model.layers.{layer}.{part}.{mod}.weight"


def lora_names(layer, mod):
    part = "self_attn" if mod in MODULES[:4] else "mlp"
    p = f"base_model.model.model.layers.{layer}.{part}.{mod}"
    return p + ".lora_A.weight", p + ".lora_B.weight"


def make_adapter(out, base, rng, r, alpha, targets, dtype="F32", rslora=False, layers=None, config_extra=None,
                 target_field=None):
    """Writes a random PEFT adapter for RefModel `base` and returns (config, {weight name: scaled B @ A})."""
    os.makedirs(out, exist_ok=True)
    scale = alpha / np.sqrt(r) if rslora else alpha / r
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base.path, "r": r,
           "lora_alpha": alpha, "lora_dropout": 0.0, "use_rslora": rslora, "use_dora": False,
           "fan_in_fan_out": False, "bias": "none", "target_modules": target_field or targets,
           "modules_to_save": None, "layers_to_transform": layers, "layers_pattern": None,
           "rank_pattern": {}, "alpha_pattern": {}, "init_lora_weights": True, "inference_mode": True}
    cfg.update(config_extra or {})
    tensors, deltas = {}, {}
    for layer in range(base.n_layers):
        if layers is not None and layer not in layers:
            continue
        for mod in targets:
            w = base.w[module_weight(layer, mod)]
            n_out, n_in = w.shape
            a = rng.standard_normal((r, n_in)) / np.sqrt(n_in)
            # The update's entries about half the base weight's, so a wrong slice or scale shows.
            b = rng.standard_normal((n_out, r)) * (0.5 * w.std() * np.sqrt(n_in) / (scale * np.sqrt(r)))
            na, nb = lora_names(layer, mod)
            tensors[na], tensors[nb] = (dtype, a), (dtype, b)
            deltas[module_weight(layer, mod)] = scale * stored_value(dtype, b) @ stored_value(dtype, a)
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    write_safetensors(os.path.join(out, "adapter_model.safetensors"), tensors)
    return cfg, tensors, deltas


def merged(model_dir, deltas):
    m = rf.RefModel(model_dir)
    for name, d in deltas.items():
        m.w[name] = m.w[name] + d
    return m


# ---------------------------------------------------------------- running


# Multi-rank layouts (--ranks): the probe under mpirun, sharded as dpserve shards the model.
LAYOUTS = {"tp2": ["--tp-size", "2"], "tp2_dpa2": ["--tp-size", "2", "--dp-size", "2", "--enable-dp-attention"]}
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}


def run_probe(probe, model_dir, steps, work, label, loras, page_size=None, num_pages=None, extra=(), layout=None):
    sp = os.path.join(work, f"{label.replace('/', '_')}.schedule.json")
    out = os.path.join(work, f"{label.replace('/', '_')}.logits.bin")
    with open(sp, "w") as f:
        json.dump({"steps": steps}, f)
    cmd = [probe, "--model-path", model_dir, "--schedule", sp, "--out", out, *extra]
    if layout:
        cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "--timeout", str(PROBE_TIMEOUT - 10), "-np", "2",
               *cmd, "--threads", "1", *LAYOUTS[layout]]
    for d in loras:
        cmd += ["--lora", d]
    if page_size:
        cmd += ["--page-size", str(page_size)]
    if num_pages:
        cmd += ["--num-pages", str(num_pages)]
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "passive"), **MPI_ENV)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT, env=env)
    return p, out


CASES = [
    # name, make_hf_model args, seed, adapter-1 dtype
    ("llama_gqa_f32", ["--arch", "llama"], 61, "BF16"),
    ("qwen3_gqa_f32", ["--arch", "qwen3"], 62, "F16"),
    # One KV head: with two attention ranks each keeps a copy of it (and its adapter's rows).
    ("qwen2_bias_kv1_f32", ["--arch", "qwen2", "--num-key-value-heads", "1"], 63, "BF16"),
    # GeGLU: adapted gate / up rows take the unfused gated form with Gemma's gelu_tanh.
    ("gemma3_gqa_f32", ["--arch", "gemma3"], 64, "BF16"),
]
# Which adapter each schedule sequence runs: base, 0, 1, 0, 1 (seq 0 stays on the base model).
SEQ_LORA = {0: -1, 1: 0, 2: 1, 3: 0, 4: 1}


def read_logits(out, rows, vocab, layout):
    """The probe's logit rows in schedule order; with DP attention, merged from every group's files."""
    if layout != "tp2_dpa2":
        return np.fromfile(out, dtype="<f4").reshape(-1, vocab)
    by_key = {}
    for g in range(2):
        with open(f"{out}.g{g}.json") as f:
            meta = json.load(f)
        data = np.fromfile(f"{out}.g{g}", dtype="<f4").reshape(-1, vocab)
        if len(meta["rows"]) != data.shape[0]:
            raise RuntimeError(f"group {g}: {len(meta['rows'])} rows listed, {data.shape[0]} written")
        for r, row in zip(meta["rows"], data):
            by_key[(r["step"], r["seq"], r["pos"])] = row
    missing = [k for k in ((s, q, p) for (s, q, p, _) in rows) if k not in by_key]
    if missing or len(by_key) != len(rows):
        raise RuntimeError(f"DP groups wrote {len(by_key)} rows for {len(rows)} expected (missing {missing[:3]})")
    return np.stack([by_key[(s, q, p)] for (s, q, p, _) in rows])


def run_case(name, args, seed, dtype1, a, results):
    model_dir = os.path.join(a.work, name)
    subprocess.run([sys.executable, hf.MAKE, "--out", model_dir, "--dtype", "f32", "--seed", str(seed), "--quiet",
                    *args], check=True)
    base = rf.RefModel(model_dir)
    rng = np.random.default_rng(seed + 500)
    d0, d1 = os.path.join(a.work, name + "_lora0"), os.path.join(a.work, name + "_lora1")
    _, _, delta0 = make_adapter(d0, base, rng, r=8, alpha=16, targets=MODULES, dtype="F32")
    layers1 = [0, base.n_layers - 1]
    _, _, delta1 = make_adapter(d1, base, rng, r=4, alpha=6, targets=["q_proj", "v_proj", "up_proj", "down_proj"],
                                dtype=dtype1, rslora=True, layers=layers1)
    models = {-1: base, 0: merged(model_dir, delta0), 1: merged(model_dir, delta1)}
    src = hf.TokenSource(base, seed + 1000, hf.ROUTER_TIE["f32"])
    for shape in hf.schedule_shapes():
        label = f"{name}/{shape[0]}" + (f"/{a.ranks}" if a.ranks else "")
        # The long prefill runs adapter 0 alone; the other schedules mix base and both adapters.
        seq_lora = {0: 0} if shape[0] == "long_prefill" else SEQ_LORA
        try:
            sched, rows, lives = hf.build_schedule(shape, src)
            seq_of_life = {}
            for (_, q, _, life) in rows:
                seq_of_life[life] = q
            for st in sched.steps:
                for e in st["run"]:
                    e["lora"] = seq_lora[e["seq"]]
            p, out = run_probe(a.probe, model_dir, sched.steps, a.work, label, [d0, d1], sched.page_size,
                               sched.num_pages, layout=a.ranks)
            if p.returncode != 0:
                raise RuntimeError(f"probe exit {p.returncode}: {p.stderr.strip()[-1500:]}")
            got = read_logits(out, rows, base.vocab, a.ranks)
            logits = [models[seq_lora[seq_of_life[life]]].forward(h) for life, h in enumerate(lives)]
            ref = np.stack([logits[life][pos] for (_, _, pos, life) in rows])
            ok, msg, _ = hf.compare(label, ref, got, "f32")
            # The adapters must matter: the base model's logits are far from the merged ones.
            adapted = np.array([seq_lora[seq_of_life[life]] >= 0 for (_, _, _, life) in rows])
            if adapted.any():
                base_ref = np.stack([base.forward(lives[life])[pos] for (_, _, pos, life) in rows])
                gap = float(np.abs(base_ref[adapted] - ref[adapted]).max()) / float(ref.std())
                msg += f" adapter_effect/scale={gap:.2f}"
                if gap < 0.05:
                    ok, msg = False, msg + " (adapters change too little to test)"
        except Exception as e:  # noqa: BLE001 - reported under the case name
            ok, msg = False, f"{label}: {e}"
        results.append((ok, msg))
        print(("PASS " if ok else "FAIL ") + msg, flush=True)


# ---------------------------------------------------------------- refused adapters


def bad_cases(work):
    """(label, model dir, adapter dir, words the error must contain)."""
    out = []
    rng = np.random.default_rng(7)
    llama = os.path.join(work, "bad_llama")
    subprocess.run([sys.executable, hf.MAKE, "--out", llama, "--dtype", "f32", "--seed", "71", "--quiet",
                    "--arch", "llama", "--num-hidden-layers", "2"], check=True)
    base = rf.RefModel(llama)

    def adapter(label, targets=("q_proj", "v_proj"), extra=None, target_field=None, edit=None):
        d = os.path.join(work, "bad_" + label)
        shutil.rmtree(d, ignore_errors=True)
        _, tensors, _ = make_adapter(d, base, rng, r=4, alpha=8, targets=list(targets), config_extra=extra,
                                     target_field=target_field)
        if edit:
            edit(tensors)
            write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors)
        return d

    out.append(("use_dora", llama, adapter("dora", extra={"use_dora": True}), ["use_dora"]))
    out.append(("fan_in_fan_out", llama, adapter("fifo", extra={"fan_in_fan_out": True}), ["fan_in_fan_out"]))
    out.append(("bias", llama, adapter("bias", extra={"bias": "lora_only"}), ["bias", "lora_only"]))
    out.append(("rank_pattern", llama, adapter("rankpat", extra={"rank_pattern": {"q_proj": 2}}), ["rank_pattern"]))
    out.append(("alpha_pattern", llama, adapter("alphapat", extra={"alpha_pattern": {"q_proj": 2}}),
                ["alpha_pattern"]))
    out.append(("modules_to_save", llama, adapter("mts", extra={"modules_to_save": ["lm_head"]}),
                ["modules_to_save"]))
    out.append(("peft_type", llama, adapter("prefix", extra={"peft_type": "PREFIX_TUNING"}), ["peft_type"]))
    out.append(("regex target", llama, adapter("regex", target_field=".*\\.q_proj"), ["target_modules", "regular"]))
    out.append(("layers_to_transform", llama, adapter("ltt", extra={"layers_to_transform": [5]}),
                ["layers_to_transform"]))
    for mod in ("embed_tokens", "lm_head"):
        out.append((f"target {mod}", llama, adapter("t_" + mod, target_field=["q_proj", mod]), [mod]))

    def drop(t):
        del t[lora_names(1, "v_proj")[1]]
    out.append(("missing tensor", llama, adapter("missing", edit=drop), [lora_names(1, "v_proj")[1], "missing"]))

    def add(t):
        t[lora_names(0, "k_proj")[0]] = ("F32", np.zeros((4, base.hidden)))
    out.append(("unexpected tensor", llama, adapter("unexpected", edit=add), [lora_names(0, "k_proj")[0], "unexpected"]))

    def reshape(t):
        n = lora_names(0, "v_proj")[1]
        t[n] = ("F32", np.zeros((t[n][1].shape[0] + 1, 4)))
    out.append(("misshapen tensor", llama, adapter("shape", edit=reshape), [lora_names(0, "v_proj")[1], "shape"]))

    # A MoE model: gate_proj of a sparse layer is an expert's.
    moe = os.path.join(work, "bad_moe")
    subprocess.run([sys.executable, hf.MAKE, "--out", moe, "--dtype", "f32", "--seed", "72", "--quiet",
                    "--arch", "qwen3_moe"], check=True)
    d = os.path.join(work, "bad_moe_gate")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["gate_proj"]}, f)
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), {})
    out.append(("moe experts", moe, d, ["gate_proj", "experts"]))
    # An MLA model: q_proj is a latent-attention projection.
    ds = os.path.join(work, "bad_mla")
    subprocess.run([sys.executable, hf.MAKE, "--out", ds, "--dtype", "f32", "--seed", "73", "--quiet",
                    "--arch", "deepseek_v2"], check=True)
    d = os.path.join(work, "bad_mla_q")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}, f)
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), {})
    out.append(("mla projections", ds, d, ["q_proj", "latent"]))
    return out, llama


def run_bad(a, results):
    cases, llama = bad_cases(a.work)
    steps = [{"run": [{"seq": 0, "tokens": [1, 2, 3], "lora": 0}]}]
    for label, model_dir, d, words in cases:
        p, _ = run_probe(a.probe, model_dir, steps, a.work, "bad_" + label.replace(" ", "_"), [d])
        err = p.stderr.strip()
        ok = p.returncode != 0 and all(w in err for w in words)
        msg = f"refused {label}: exit={p.returncode} words={words} stderr={err[-300:]!r}"
        results.append((ok, msg))
        print(("PASS " if ok else "FAIL ") + msg, flush=True)
    # A good adapter loads and a slot past the loaded ones is refused at forward.
    good = os.path.join(a.work, "bad_dora")
    with open(os.path.join(good, "adapter_config.json")) as f:
        cfg = json.load(f)
    cfg["use_dora"] = False
    with open(os.path.join(good, "adapter_config.json"), "w") as f:
        json.dump(cfg, f)
    for slot, want_ok in ((0, True), (1, False)):
        steps = [{"run": [{"seq": 0, "tokens": [1, 2, 3], "lora": slot}]}]
        p, _ = run_probe(a.probe, llama, steps, a.work, f"good_slot{slot}", [good])
        ok = (p.returncode == 0) == want_ok and (want_ok or "slot 1" in p.stderr)
        msg = f"slot {slot} with one adapter loaded: exit={p.returncode} stderr={p.stderr.strip()[-200:]!r}"
        results.append((ok, msg))
        print(("PASS " if ok else "FAIL ") + msg, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--probe", required=True, help="dpserve_forward_probe binary")
    ap.add_argument("--bad", action="store_true", help="only the refused adapters")
    ap.add_argument("--cases", help="run only cases whose name contains this")
    ap.add_argument("--ranks", choices=sorted(LAYOUTS), help="run the probe on 2 MPI ranks in this layout")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    results, t0 = [], time.time()
    if a.bad:
        run_bad(a, results)
    else:
        for name, args, seed, dt in CASES:
            if a.cases and a.cases not in name:
                continue
            run_case(name, args, seed, dt, a, results)
    failed = [m for ok, m in results if not ok]
    if failed:
        print("\nFailed cases:")
        for m in failed:
            print("  " + m.splitlines()[0])
    print(f"({time.time() - t0:.1f}s)")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
