#!/usr/bin/python3
"""Checks of the NumPy reference itself and of tools/make_hf_model.py (no dpserve binary needed).

The reference is what dpserve's logits are judged against, so it gets its own checks from angles that
do not reuse its code paths: a token-by-token KV-cache decoder, HF's repeat_kv written as weight
expansion, RoPE as complex multiplication, hand-made safetensors bytes, and invariants (causality,
relative positions, scaling factor 1 == no scaling).

  /usr/bin/python3 tests/model/test_ref_forward.py --work /tmp/refcheck
"""
import argparse
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
import ref_deepseek as ds  # noqa: E402
import ref_forward as rf  # noqa: E402
import ref_nextn as rn  # noqa: E402

MAKE = os.path.join(HERE, "..", "..", "tools", "make_hf_model.py")
WORK = None


def make_model(name, *args):
    out = os.path.join(WORK, name)
    subprocess.run([sys.executable, MAKE, "--out", out, "--quiet", *args], check=True)
    return out


def close(a, b, tol=1e-10):
    err = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    assert err <= tol, f"max abs difference {err:.3e} > {tol:.1e}"
    return err


def tokens(n, vocab, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=n)


# ---------------------------------------------------------------- file format


def test_safetensors_bytes_decode_exactly():
    # Hand-made file: bf16 1.0, -2.0, 1.0078125, smallest subnormal; f16 1.0, -0.5; f32 pi.
    bf = np.array([0x3F80, 0xC000, 0x3F81, 0x0001], dtype="<u2").tobytes()
    hf = np.array([0x3C00, 0xB800], dtype="<u2").tobytes()
    f4 = np.array([math.pi], dtype="<f4").tobytes()
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
              "b": {"dtype": "F16", "shape": [2], "data_offsets": [8, 12]},
              "c": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}
    hj = json.dumps(header).encode()
    path = os.path.join(WORK, "hand.safetensors")
    with open(path, "wb") as f:
        f.write(len(hj).to_bytes(8, "little") + hj + bf + hf + f4)
    t = rf.read_safetensors(path)
    assert t["a"].shape == (2, 2)
    assert t["a"].ravel().tolist() == [1.0, -2.0, 1.0078125, 2.0 ** -133], t["a"]
    assert t["b"].tolist() == [1.0, -0.5]
    assert t["c"][0] == float(np.float32(math.pi))
    with open(path, "r+b") as f:  # truncated data must be refused
        f.truncate(len(hj) + 8 + 10)
    try:
        rf.read_safetensors(path)
    except ValueError:
        pass
    else:
        raise AssertionError("truncated file accepted")


def test_bf16_rounding_is_nearest_even():
    sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
    import make_hf_model as mk
    x = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8), 3.0], dtype=np.float32)
    bits = mk.f32_to_bf16_bits(x)
    assert bits.tolist() == [0x3F80, 0x3F82, 0x3F81, 0xBF80, 0x4040], [hex(b) for b in bits]
    assert rf.bf16_round(x).tolist() == [1.0, 1.015625, 1.0078125, -1.0, 3.0]


def test_generated_folder_matches_config():
    for arch in ("llama", "qwen2", "qwen3", "qwen3_moe"):
        for dt, st in (("bf16", "BF16"), ("f16", "F16"), ("f32", "F32")):
            path = make_model(f"cfg_{arch}_{dt}", "--arch", arch, "--dtype", dt)
            with open(os.path.join(path, "model.safetensors"), "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n))
            assert header["__metadata__"] == {"format": "pt"}
            assert (8 + n) % 8 == 0
            m = rf.RefModel(path)
            c = m.config
            assert c["architectures"][0] in ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                                             "Qwen3MoeForCausalLM")
            assert c["torch_dtype"] == {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[dt]
            names = [k for k in header if k != "__metadata__"]
            assert all(header[k]["dtype"] == st for k in names)
            hd, h = m.head_dim, c["hidden_size"]
            w = m.w
            assert w["model.layers.0.self_attn.q_proj.weight"].shape == (c["num_attention_heads"] * hd, h)
            assert w["model.layers.0.self_attn.k_proj.weight"].shape == (c["num_key_value_heads"] * hd, h)
            assert ("model.layers.0.self_attn.q_proj.bias" in w) == (arch == "qwen2")
            assert ("model.layers.0.self_attn.q_norm.weight" in w) == (arch in ("qwen3", "qwen3_moe"))
            assert ("lm_head.weight" in w) == (not c["tie_word_embeddings"])
            if arch == "qwen3_moe":
                assert c["mlp_only_layers"] == [1]
                assert "model.layers.1.mlp.gate_proj.weight" in w and "model.layers.1.mlp.gate.weight" not in w
                assert w["model.layers.0.mlp.gate.weight"].shape == (c["num_experts"], h)
                e = c["num_experts"] - 1
                assert w[f"model.layers.2.mlp.experts.{e}.down_proj.weight"].shape == (h, c["moe_intermediate_size"])
            # Norm weights spread around 1, biases nonzero, logits not flat.
            nw = w["model.layers.0.input_layernorm.weight"]
            assert 0.55 < nw.min() and nw.max() < 1.45 and nw.std() > 0.1
            logits = m.forward(tokens(12, m.vocab))
            assert logits.std() > 1.0, logits.std()


def test_sharded_equals_single_file():
    one = rf.RefModel(make_model("sh1", "--arch", "qwen2", "--dtype", "bf16", "--seed", "7"))
    three_path = make_model("sh3", "--arch", "qwen2", "--dtype", "bf16", "--seed", "7", "--shards", "3")
    files = sorted(f for f in os.listdir(three_path) if f.endswith(".safetensors"))
    assert files == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)], files
    three = rf.RefModel(three_path)
    assert sorted(one.w) == sorted(three.w)
    for k in one.w:
        assert np.array_equal(one.w[k], three.w[k]), k
    with open(os.path.join(three_path, "model.safetensors.index.json")) as f:
        idx = json.load(f)
    assert idx["metadata"]["total_size"] == sum(v.size * 2 for v in one.w.values())


def test_seed_changes_weights_and_dtype_keeps_values():
    a = rf.RefModel(make_model("seed1", "--arch", "llama", "--seed", "1"))
    b = rf.RefModel(make_model("seed2", "--arch", "llama", "--seed", "2"))
    assert not np.array_equal(a.w["model.embed_tokens.weight"], b.w["model.embed_tokens.weight"])
    c = rf.RefModel(make_model("seed1bf", "--arch", "llama", "--seed", "1", "--dtype", "bf16"))
    # The bf16 file holds the f32 file's values rounded to bf16.
    close(rf.bf16_round(a.w["model.layers.0.mlp.up_proj.weight"]), c.w["model.layers.0.mlp.up_proj.weight"], 0)


# ---------------------------------------------------------------- RoPE


def test_rope_is_complex_rotation_of_halves():
    # HF rotate_half pairs element i with element i + d/2: as complex numbers z_i = x_i + j x_{i+d/2},
    # RoPE multiplies z_i by exp(j * pos * inv_freq_i).
    d, T = 16, 9
    x = np.random.default_rng(3).normal(size=(T, 2, d))
    inv = rf.rope_inv_freq({"rope_theta": 500.0}, d)
    assert np.allclose(inv, 500.0 ** (-np.arange(0, d, 2) / d))
    pos = np.arange(T) * 3
    out = rf.apply_rope(x, pos, inv)
    z = (x[..., : d // 2] + 1j * x[..., d // 2:]) * np.exp(1j * np.outer(pos, inv))[:, None, :]
    close(out, np.concatenate([z.real, z.imag], axis=-1), 1e-12)


def test_rope_depends_on_relative_position_only():
    d = 32
    rng = np.random.default_rng(4)
    q, k = rng.normal(size=(1, 1, d)), rng.normal(size=(1, 1, d))
    for cfg in ({"rope_theta": 10000.0},
                {"rope_theta": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 4.0}},
                {"rope_theta": 10000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                         "high_freq_factor": 4.0,
                                                         "original_max_position_embeddings": 64}}):
        inv = rf.rope_inv_freq(cfg, d)
        dots = [float(np.sum(rf.apply_rope(q, np.array([m + s]), inv) * rf.apply_rope(k, np.array([n + s]), inv)))
                for m, n, s in ((7, 3, 0), (7, 3, 11), (7, 3, 90))]
        assert abs(dots[0] - dots[1]) < 1e-10 and abs(dots[0] - dots[2]) < 1e-10, dots


def test_rope_scaling_factor_one_is_identity():
    d = 32
    base = rf.rope_inv_freq({"rope_theta": 10000.0}, d)
    lin = rf.rope_inv_freq({"rope_theta": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 1.0}}, d)
    l3 = rf.rope_inv_freq({"rope_theta": 10000.0, "rope_scaling": {
        "rope_type": "llama3", "factor": 1.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}}, d)
    close(base, lin, 1e-15)
    close(base, l3, 1e-15)


def test_rope_llama3_bands():
    # theta 10000, d 16: wavelengths 2*pi*10000^(i/8) = 6.3, 19.9, 62.8, 199, ... With an original
    # context of 64, low_freq_factor 1 and high_freq_factor 4: wavelength < 16 keeps its frequency,
    # > 64 is divided by the factor, and 16..64 interpolates with
    # smooth = (64 / wavelen - 1) / (4 - 1): f' = (1 - smooth) * f / factor + smooth * f.
    d, factor = 16, 8.0
    base = 10000.0 ** (-np.arange(0, d, 2) / d)
    got = rf.rope_inv_freq({"rope_theta": 10000.0, "rope_scaling": {
        "rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}}, d)
    wl = 2 * math.pi / base
    assert wl[0] < 16 and 16 < wl[1] < 64 and 16 < wl[2] < 64 and wl[3] > 64
    assert got[0] == base[0]
    for i in (1, 2):
        s = (64 / wl[i] - 1) / 3
        assert abs(got[i] - ((1 - s) * base[i] / factor + s * base[i])) < 1e-15
    close(got[3:] * 1e6, base[3:] / factor * 1e6, 1e-9)
    # linear: every frequency divided by the factor
    lin = rf.rope_inv_freq({"rope_theta": 10000.0, "rope_scaling": {"type": "linear", "factor": 2.5}}, d)
    close(lin * 1e6, base / 2.5 * 1e6, 1e-9)


# ---------------------------------------------------------------- whole model


def test_causal_prefix_logits_do_not_change():
    for arch in ("llama", "qwen2", "qwen3", "qwen3_moe"):
        m = rf.RefModel(make_model(f"causal_{arch}", "--arch", arch))
        toks = tokens(40, m.vocab, seed=5)
        full = m.forward(toks)
        for t in (1, 2, 17, 39):
            close(m.forward(toks[:t]), full[:t], 1e-9)


def incremental_decode(m, toks):
    """A second, structurally different forward: one token at a time against a growing KV cache,
    per-head scalar-style loops, HF repeat_kv semantics (kv head = h // n_rep). Dense models only."""
    w, c = m.w, m.config
    inv = rf.rope_inv_freq(c, m.head_dim)
    n_rep = m.n_heads // m.n_kv
    kc = [[] for _ in range(m.n_layers)]
    vc = [[] for _ in range(m.n_layers)]
    rows = []
    for pos, tok in enumerate(toks):
        x = w["model.embed_tokens.weight"][tok].copy()
        for i in range(m.n_layers):
            p = f"model.layers.{i}."
            h = x / math.sqrt(float(np.dot(x, x)) / len(x) + m.eps) * w[p + "input_layernorm.weight"]
            heads_q, heads_k, heads_v = [], [], []
            for kind, n, store in (("q", m.n_heads, heads_q), ("k", m.n_kv, heads_k), ("v", m.n_kv, heads_v)):
                W = w[f"{p}self_attn.{kind}_proj.weight"]
                b = w.get(f"{p}self_attn.{kind}_proj.bias")
                for hh in range(n):
                    r = slice(hh * m.head_dim, (hh + 1) * m.head_dim)
                    vec = W[r] @ h + (b[r] if b is not None else 0.0)
                    if kind in ("q", "k") and f"{p}self_attn.{kind}_norm.weight" in w:
                        vec = vec / math.sqrt(float(np.dot(vec, vec)) / len(vec) + m.eps) * w[
                            f"{p}self_attn.{kind}_norm.weight"]
                    if kind in ("q", "k"):
                        half = m.head_dim // 2
                        z = (vec[:half] + 1j * vec[half:]) * np.exp(1j * pos * inv)
                        vec = np.concatenate([z.real, z.imag])
                    store.append(vec)
            kc[i].append(heads_k)
            vc[i].append(heads_v)
            outs = []
            for hh in range(m.n_heads):
                kv = hh // n_rep
                scores = np.array([np.dot(heads_q[hh], kc[i][t][kv]) for t in range(pos + 1)]) / math.sqrt(m.head_dim)
                pr = np.exp(scores - scores.max())
                pr /= pr.sum()
                outs.append(sum(pr[t] * vc[i][t][kv] for t in range(pos + 1)))
            x = x + w[p + "self_attn.o_proj.weight"] @ np.concatenate(outs)
            h = x / math.sqrt(float(np.dot(x, x)) / len(x) + m.eps) * w[p + "post_attention_layernorm.weight"]
            g = w[p + "mlp.gate_proj.weight"] @ h
            u = w[p + "mlp.up_proj.weight"] @ h
            x = x + w[p + "mlp.down_proj.weight"] @ (g / (1 + np.exp(-g)) * u)
        x = x / math.sqrt(float(np.dot(x, x)) / len(x) + m.eps) * w["model.norm.weight"]
        rows.append(m.lm_head() @ x)
    return np.array(rows)


def test_incremental_decoder_agrees():
    cases = [("inc_llama3", ["--arch", "llama", "--rope-scaling", "llama3"]),
             ("inc_linear", ["--arch", "llama", "--rope-scaling", "linear", "--rope-factor", "3"]),
             ("inc_tied", ["--arch", "llama", "--tie-word-embeddings"]),
             ("inc_qwen2", ["--arch", "qwen2", "--dtype", "bf16"]),
             ("inc_qwen3", ["--arch", "qwen3", "--dtype", "f16"])]
    for name, args in cases:
        m = rf.RefModel(make_model(name, *args))
        toks = tokens(70, m.vocab, seed=6)
        close(incremental_decode(m, toks), m.forward(toks), 1e-9)


def test_gqa_equals_mha_with_repeated_kv_heads():
    # HF repeat_kv: kv head j serves query heads j*n_rep .. j*n_rep+n_rep-1. Expanding the k/v
    # weights that way and running as plain MHA must give the same logits.
    for arch in ("llama", "qwen2", "qwen3"):
        m = rf.RefModel(make_model(f"gqa_{arch}", "--arch", arch, "--num-attention-heads", "4",
                                   "--num-key-value-heads", "2"))
        mha = copy.copy(m)
        mha.w = dict(m.w)
        rep = m.n_heads // m.n_kv
        assert rep == 2
        for i in range(m.n_layers):
            for kind in ("k", "v"):
                key = f"model.layers.{i}.self_attn.{kind}_proj."
                W = m.w[key + "weight"].reshape(m.n_kv, m.head_dim, -1)
                mha.w[key + "weight"] = np.repeat(W, rep, axis=0).reshape(m.n_heads * m.head_dim, -1)
                if key + "bias" in m.w:
                    mha.w[key + "bias"] = np.repeat(m.w[key + "bias"].reshape(m.n_kv, -1), rep, axis=0).ravel()
        mha.n_kv = m.n_heads
        toks = tokens(30, m.vocab, seed=7)
        close(mha.forward(toks), m.forward(toks), 1e-10)
        # and the wrong mapping is really different
        assert np.abs(m.forward(toks, breaks={"gqa_modulo"}) - m.forward(toks)).max() > 1e-2


def test_moe_all_experts_equals_dense_mixture():
    # top-k = num_experts with renormalisation: every token is the softmax-weighted sum of all experts.
    path = make_model("moe_all", "--arch", "qwen3_moe", "--num-experts", "4", "--num-experts-per-tok", "4",
                      "--mlp-only-layers", "", "--num-hidden-layers", "1")
    m = rf.RefModel(path)
    toks = tokens(10, m.vocab, seed=8)
    got = m.forward(toks)
    dense = copy.copy(m)
    dense.config = dict(m.config, num_experts=0)
    calls = {}

    def mixture_mlp(p, h, act):
        if p != "model.layers.0.mlp.":
            return rf.RefModel._mlp(m, p, h, act)
        calls["n"] = calls.get("n", 0) + 1
        logits = h @ m.w[p + "gate.weight"].T
        pr = np.exp(logits - logits.max(axis=1, keepdims=True))
        pr /= pr.sum(axis=1, keepdims=True)
        return sum(pr[:, e:e + 1] * rf.RefModel._mlp(m, f"{p}experts.{e}.", h, act) for e in range(4))

    dense._mlp = mixture_mlp
    close(dense.forward(toks), got, 1e-10)
    assert calls["n"] == 1


def test_moe_topk_routing_picks_largest():
    # top-1 without renormalisation: output = p_max * expert_argmax(h). Checked on layer 0 alone.
    path = make_model("moe_top1", "--arch", "qwen3_moe", "--num-experts", "5", "--num-experts-per-tok", "1",
                      "--norm-topk-prob", "false", "--mlp-only-layers", "", "--num-hidden-layers", "1")
    m = rf.RefModel(path)
    h = np.random.default_rng(9).normal(size=(6, m.hidden))
    margins = np.full(6, np.inf)
    out = m._moe("model.layers.0.", h, set(), lambda v: v, margins)
    logits = h @ m.w["model.layers.0.mlp.gate.weight"].T
    for t in range(6):
        e = int(np.argmax(logits[t]))
        p = np.exp(logits[t] - logits[t].max())
        p /= p.sum()
        want = p[e] * rf.RefModel._mlp(m, f"model.layers.0.mlp.experts.{e}.", h[t:t + 1], lambda v: v)[0]
        close(out[t], want, 1e-12)
        assert abs(margins[t] - (np.sort(logits[t])[-1] - np.sort(logits[t])[-2])) < 1e-12


def test_sparse_layer_rule():
    m = rf.RefModel(make_model("moe_rule", "--arch", "qwen3_moe", "--num-hidden-layers", "4",
                               "--decoder-sparse-step", "2", "--mlp-only-layers", "3"))
    assert [m.is_sparse(i) for i in range(4)] == [False, True, False, False]
    assert "model.layers.1.mlp.gate.weight" in m.w and "model.layers.3.mlp.gate_proj.weight" in m.w


def test_every_break_changes_logits():
    # Each deliberate bug must change the output of a model it applies to (else the tolerance
    # self-check in test_hf_reference.py would prove nothing).
    models = {
        "llama3": rf.RefModel(make_model("brk_llama", "--arch", "llama", "--rope-scaling", "llama3")),
        "qwen2": rf.RefModel(make_model("brk_qwen2", "--arch", "qwen2")),
        "qwen3": rf.RefModel(make_model("brk_qwen3", "--arch", "qwen3")),
        "moe": rf.RefModel(make_model("brk_moe", "--arch", "qwen3_moe")),
        "mistral": rf.RefModel(make_model("brk_mistral", "--arch", "mistral")),
        "mixtral": rf.RefModel(make_model("brk_mixtral", "--arch", "mixtral")),
        "v2g": rf.RefModel(make_model("brk_v2g", "--arch", "deepseek_v2", *V2_GROUPED)),
        "v3": rf.RefModel(make_model("brk_v3", "--arch", "deepseek_v3")),
        "yarn": rf.RefModel(make_model("brk_yarn", "--arch", "qwen3", "--rope-scaling", "yarn", "--rope-factor", "4",
                                       "--original-max-position-embeddings", "16")),
        "gemma": rf.RefModel(make_model("brk_gemma", "--arch", "gemma3")),
        "gemma2": rf.RefModel(make_model("brk_gemma2", "--arch", "gemma2")),
        # 50 tokens > original_max_position_embeddings 16: the long factors are in use.
        "phi3": rf.RefModel(make_model("brk_phi3", "--arch", "phi3", "--rope-scaling", "longrope",
                                       "--partial-rotary-factor", "0.75")),
        "gpt_oss": rf.RefModel(make_model("brk_gpt_oss", "--arch", "gpt_oss", "--mxfp4")),
        "smollm3": rf.RefModel(make_model("brk_smollm3", "--arch", "smollm3")),
        "granite": rf.RefModel(make_model("brk_granite", "--arch", "granite")),
        "granite_moe": rf.RefModel(make_model("brk_granite_moe", "--arch", "granite_moe")),
        "olmo2": rf.RefModel(make_model("brk_olmo2", "--arch", "olmo2")),
        "olmoe": rf.RefModel(make_model("brk_olmoe", "--arch", "olmoe")),
        "qwen2_moe": rf.RefModel(make_model("brk_qwen2_moe", "--arch", "qwen2_moe")),
        "glm4_moe": rf.RefModel(make_model("brk_glm4_moe", "--arch", "glm4_moe")),
        "glm4": rf.RefModel(make_model("brk_glm4", "--arch", "glm4")),
        "ernie_moe": rf.RefModel(make_model("brk_ernie_moe", "--arch", "ernie4_5_moe")),
        "minimax_m2": rf.RefModel(make_model("brk_minimax_m2", "--arch", "minimax_m2")),
        "exaone4": rf.RefModel(make_model("brk_exaone4", "--arch", "exaone4")),
        "ministral3": rf.RefModel(make_model("brk_ministral3", "--arch", "ministral3")),
        "llama4": rf.RefModel(make_model("brk_llama4", "--arch", "llama4")),
        "olmo3": rf.RefModel(make_model("brk_olmo3", "--arch", "olmo3", "--rope-scaling", "yarn", "--rope-factor", "4",
                                        "--original-max-position-embeddings", "16")),
    }
    use = {"skip_bias": "qwen2", "skip_q_norm": "qwen3", "skip_k_norm": "qwen3", "moe_flip_renorm": "moe",
           "no_rope_scaling": "llama3", "no_sliding_window": "mistral", "mixtral_no_renorm": "mixtral",
           "mla_rope_order": "v3", "skip_kv_a_norm": "v3", "no_mscale": "v3", "group_limit_ignored": "v2g",
           "group_score_max": "v3", "moe_scale_rule_swapped": "v2g", "yarn_betas_swapped": "yarn",
           "yarn_no_attention_factor": "yarn"}
    use.update({b: "gemma" for b in rf.BREAKS if b.startswith("gemma_")})
    use.update({b: "gemma2" for b in rf.BREAKS if b.startswith("gemma2_")})
    use.update({b: "phi3" for b in rf.BREAKS if b.startswith(("phi3_", "longrope_"))})
    use.update({b: "gpt_oss" for b in rf.BREAKS if b.startswith("gpt_oss_")})
    use.update({b: "smollm3" for b in rf.BREAKS if b.startswith("smollm3_")})
    use.update({b: "granite" for b in rf.BREAKS if b.startswith("granite_")})
    use.update({b: "granite_moe" for b in rf.BREAKS if b.startswith("granite_moe_")})
    use.update({b: "olmo2" for b in rf.BREAKS if b.startswith("olmo2_")})
    use.update({b: "olmoe" for b in rf.BREAKS if b.startswith("olmoe_")})
    use.update({b: "qwen2_moe" for b in rf.BREAKS if b.startswith("qwen2_moe_")})
    use.update({b: "glm4" for b in rf.BREAKS if b.startswith("glm4_")})
    use.update({b: "glm4_moe" for b in rf.BREAKS if b.startswith("glm4_moe_")})
    use.update({b: "ernie_moe" for b in rf.BREAKS if b.startswith("ernie_")})
    use.update({b: "minimax_m2" for b in rf.BREAKS if b.startswith("minimax_")})
    use.update({b: "olmo3" for b in rf.BREAKS if b.startswith("olmo3_")})
    use.update({b: "exaone4" for b in rf.BREAKS if b.startswith("exaone4_")})
    use.update({b: "ministral3" for b in rf.BREAKS if b.startswith("ministral3_")})
    use.update({b: "llama4" for b in rf.BREAKS if b.startswith("llama4_")})
    use["yarn_truncate_ignored"] = "gpt_oss"
    for b in rf.BREAKS:
        m = models[use.get(b, "llama3")]
        toks = tokens(50, m.vocab, seed=10)
        diff = np.abs(m.forward(toks, breaks={b}) - m.forward(toks)).max()
        assert diff > 0.05, f"{b}: only {diff:.3g}"
    # The generic breaks reach the Phi-3 path too.
    m = models["phi3"]
    toks = tokens(50, m.vocab, seed=10)
    for b in ("skip_norm_weight", "rope_neg", "rope_interleaved", "rope_k_pos_plus1", "gqa_modulo", "no_causal_mask",
              "no_rope_scaling"):
        diff = np.abs(m.forward(toks, breaks={b}) - m.forward(toks)).max()
        assert diff > 0.05, f"phi3 {b}: only {diff:.3g}"
    w = rf.RefModel(make_model("brk_phi3_win", "--arch", "phi3", "--sliding-window", "8"))
    diff = np.abs(w.forward(toks, breaks={"no_sliding_window"}) - w.forward(toks)).max()
    assert diff > 0.05, f"phi3 no_sliding_window: only {diff:.3g}"
    # The generic and Gemma breaks that mean something for Gemma 2 (one RoPE, no q_norm / k_norm) reach it.
    m = models["gemma2"]
    toks = tokens(50, m.vocab, seed=10)
    for b in ("skip_norm_weight", "rope_neg", "rope_interleaved", "rope_k_pos_plus1", "gqa_modulo", "no_causal_mask",
              "no_sliding_window", "gemma_norm_no_plus_one", "gemma_no_embed_scale", "gemma_no_post_norms",
              "gemma_llama_norm_order", "gemma_attn_scale_head_dim", "gemma_layer_types_shifted", "gemma_silu"):
        diff = np.abs(m.forward(toks, breaks={b}) - m.forward(toks)).max()
        assert diff > 0.05, f"gemma2 {b}: only {diff:.3g}"
    # The generic breaks reach the gpt-oss path too.
    m = models["gpt_oss"]
    toks = tokens(50, m.vocab, seed=10)
    for b in ("skip_norm_weight", "rope_neg", "rope_interleaved", "rope_k_pos_plus1", "gqa_modulo", "no_causal_mask",
              "no_sliding_window", "no_rope_scaling", "skip_bias", "yarn_betas_swapped", "yarn_no_attention_factor"):
        diff = np.abs(m.forward(toks, breaks={b}) - m.forward(toks)).max()
        assert diff > 0.05, f"gpt_oss {b}: only {diff:.3g}"


# ---------------------------------------------------------------- DeepSeek / Mixtral

# A DeepSeek-V2 variant that exercises what the V2-Lite-like default does not: YaRN whose cos/sin
# magnitude is not 1 (mscale != mscale_all_dim), group-limited greedy routing, normalised top-k with
# a routed scaling factor (which V2 then does not apply), a sparse layer only every other layer.
V2_GROUPED = ["--rope-scaling", "yarn", "--rope-factor", "40", "--original-max-position-embeddings", "128",
              "--yarn-mscale", "1.0", "--yarn-mscale-all-dim", "0.707", "--topk-method", "group_limited_greedy",
              "--n-group", "4", "--topk-group", "2", "--norm-topk-prob", "true", "--routed-scaling-factor", "2.0",
              "--moe-layer-freq", "2", "--num-hidden-layers", "4"]


def test_deepseek_rope_order_is_pairwise_rotation_up_to_a_permutation():
    # De-interleaving then rotating halves rotates each adjacent pair (x_2i, x_2i+1) by angle i and
    # stores the results permuted; q and k get the same permutation, so every q.k equals that of
    # the pairwise rotation (what llama.cpp's "normal" RoPE and dpserve's interleaved kernel do).
    d, T = 8, 11
    rng = np.random.default_rng(4)
    q, k = rng.normal(size=(T, 3, d)), rng.normal(size=(T, 1, d))
    inv = 10000.0 ** (-np.arange(0, d, 2) / d)
    pos = np.arange(T) * 2 + 1
    qr, kr = ds.rope(q, pos, inv, 1.0), ds.rope(k, pos, inv, 1.0)
    zq = (q[..., 0::2] + 1j * q[..., 1::2]) * np.exp(1j * np.outer(pos, inv))[:, None, :]
    zk = (k[..., 0::2] + 1j * k[..., 1::2]) * np.exp(1j * np.outer(pos, inv))[:, None, :]
    pair_q = np.stack([zq.real, zq.imag], axis=-1).reshape(T, 3, d)
    pair_k = np.stack([zk.real, zk.imag], axis=-1).reshape(T, 1, d)
    close(np.einsum("thd,skd->tsh", qr, kr), np.einsum("thd,skd->tsh", pair_q, pair_k), 1e-12)
    close(qr, np.concatenate([zq.real, zq.imag], axis=-1), 1e-12)  # the stored permutation


def test_yarn_by_hand():
    # dim 8, base 10000, L = 4096: d(32) = 8 ln(4096 / 64 pi) / (2 ln 10000) = 1.3086 -> low 1;
    # d(1) = 8 ln(4096 / 2 pi) / (2 ln 10000) = 2.8141 -> high 3. Ramp over i = 0..3: 0, 0, 0.5, 1.
    cfg = {"rope_theta": 10000.0, "rope_scaling": {"type": "yarn", "factor": 40.0, "beta_fast": 32, "beta_slow": 1,
                                                   "original_max_position_embeddings": 4096, "mscale": 0.9,
                                                   "mscale_all_dim": 0.6}}
    inv, mag = ds.rope_frequencies(cfg, 8)
    base = 10000.0 ** (-np.arange(0, 8, 2) / 8)
    ramp = np.array([0.0, 0.0, 0.5, 1.0])
    close(inv, base / 40 * ramp + base * (1 - ramp), 1e-15)
    close(mag, (0.1 * 0.9 * math.log(40) + 1) / (0.1 * 0.6 * math.log(40) + 1), 1e-15)
    c2 = {"qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "rope_scaling": cfg["rope_scaling"]}
    close(ds.softmax_scale(c2), 24 ** -0.5 * (0.1 * 0.6 * math.log(40) + 1) ** 2, 1e-15)
    close(ds.softmax_scale(dict(c2, rope_scaling=None)), 24 ** -0.5, 1e-15)
    close(ds.yarn_mscale(0.5, 3.0), 1.0, 0)


def test_qwen_yarn_by_hand():
    # transformers' yarn for per-head models. dim 16, base 500, L = 32, beta_fast 16, beta_slow 2:
    # d(16) = 16 ln(32 / 32 pi) / (2 ln 500) = -1.474 -> floor -2 -> low 0;
    # d(2) = 16 ln(32 / 4 pi) / (2 ln 500) = 1.20324 -> high 2. Ramp over i = 0..7: 0, 0.5, 1, 1, ...
    # Without truncation the ramp runs 0 .. 1.20324: 0, 1 / 1.20324, 1, ...
    rs = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "beta_fast": 16,
          "beta_slow": 2}
    cfg = {"rope_theta": 500.0, "max_position_embeddings": 128, "rope_scaling": rs}
    base = 500.0 ** (-np.arange(0, 16, 2) / 16)
    ramp = np.array([0, 0.5, 1, 1, 1, 1, 1, 1])
    close(rf.rope_inv_freq(cfg, 16), base / 4 * ramp + base * (1 - ramp), 1e-15)
    close(rf.rope_attention_scaling(cfg), 0.1 * math.log(4) + 1, 1e-15)
    ramp = np.array([0, 1 / 1.20324, 1, 1, 1, 1, 1, 1])
    got = rf.rope_inv_freq(dict(cfg, rope_scaling=dict(rs, truncate=False)), 16)
    close(got, base / 4 * ramp + base * (1 - ramp), 1e-5)
    # Defaults: betas 32 / 1, L = max_position_embeddings when the key is absent.
    plain = {"rope_type": "yarn", "factor": 4.0}
    close(rf.rope_inv_freq(dict(cfg, rope_scaling=plain), 16),
          rf.rope_inv_freq(dict(cfg, rope_scaling=dict(plain, beta_fast=32, beta_slow=1,
                                                       original_max_position_embeddings=128)), 16), 0)
    # attention_factor overrides; mscale alone (without mscale_all_dim) does not count.
    close(rf.rope_attention_scaling(dict(cfg, rope_scaling=dict(rs, attention_factor=0.5))), 0.5, 0)
    close(rf.rope_attention_scaling(dict(cfg, rope_scaling=dict(rs, mscale=0.7))), 0.1 * math.log(4) + 1, 1e-15)
    close(rf.rope_attention_scaling(dict(cfg, rope_scaling=dict(rs, mscale=0.7, mscale_all_dim=0.5))),
          (0.07 * math.log(4) + 1) / (0.05 * math.log(4) + 1), 1e-15)
    # factor 1: no change at all
    one = dict(cfg, rope_scaling=dict(rs, factor=1.0))
    close(rf.rope_inv_freq(one, 16), base, 1e-15)
    close(rf.rope_attention_scaling(one), 1.0, 0)


def test_mla_absorbed_decoder_agrees():
    # Token by token over a cache of latent rows [c_kv | rotated k_pe] only, with the weight-absorbed
    # form, against the decompressed full-sequence forward: the latent is all MLA needs to cache.
    for name, args in (("mla_v2", ["--arch", "deepseek_v2", *V2_GROUPED]), ("mla_v3", ["--arch", "deepseek_v3"])):
        m = rf.RefModel(make_model(name, *args))
        toks = tokens(30, m.vocab, seed=5)
        w, c = m.w, m.config
        inv, mag = ds.rope_frequencies(c, c["qk_rope_head_dim"])
        caches = [[] for _ in range(m.n_layers)]
        rows = []
        for t, tok in enumerate(toks):
            x = w["model.embed_tokens.weight"][tok].copy()
            for i in range(m.n_layers):
                p = f"model.layers.{i}."
                h = rf.rms_norm(x, w[p + "input_layernorm.weight"], m.eps)
                x = x + ds.Mla(c, w, p, rf.rms_norm, m.eps).decode_absorbed(h, t, caches[i], inv, mag)
                h = rf.rms_norm(x, w[p + "post_attention_layernorm.weight"], m.eps)[None, :]
                x = x + (m._deepseek_moe(p, h, (), lambda v: v, np.full(1, np.inf)) if m.is_sparse(i)
                         else m._mlp(p + "mlp.", h, lambda v: v))[0]
            rows.append(rf.rms_norm(x, w["model.norm.weight"], m.eps) @ m.lm_head().T)
        close(np.stack(rows), m.forward(toks), 1e-9)


def test_deepseek_gate_by_hand():
    # 8 experts in 4 groups of 2, k = 2, keep 2 groups. Scores chosen by hand (sigmoid of logits).
    s = np.array([[0.90, 0.10, 0.80, 0.75, 0.20, 0.95, 0.30, 0.35]])
    logit = np.log(s / (1 - s))
    h = np.ones((1, 8))  # with W[i, j] = logit_i / 8 the router logits are exactly `logit`
    w = {"g.gate.weight": np.diag(logit[0])[:, :] @ np.ones((8, 8)) / 8,
         "g.gate.e_score_correction_bias": np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.2])}
    base = {"architectures": ["DeepseekV3ForCausalLM"], "num_experts_per_tok": 2, "n_routed_experts": 8,
            "n_group": 4, "topk_group": 2, "scoring_func": "sigmoid", "norm_topk_prob": True,
            "routed_scaling_factor": 2.5}
    # noaux_tc: choice = s + bias = .9 .1 | .8 .75 | .2 .95 | .5 .55; groups by top-2 sum: 1.0, 1.55,
    # 1.15, 1.05 -> groups 1 and 2 -> experts 5 (.95) and 2 (.8); weights from s without bias,
    # normalised then scaled by 2.5.
    top, wts = ds.gate(dict(base, topk_method="noaux_tc"), w, "g.", h)
    assert top.tolist() == [[5, 2]], top
    close(wts, [[2.5 * 0.95 / 1.75, 2.5 * 0.80 / 1.75]], 1e-12)
    # Group by best expert instead: 0.9, 0.8, 0.95, 0.55 -> groups 2 and 0 -> experts 5 and 0.
    top, _ = ds.gate(dict(base, topk_method="noaux_tc"), w, "g.", h, breaks={"group_score_max"})
    assert top.tolist() == [[5, 0]], top
    # group_limited_greedy (no bias; groups by best: .9 .8 .95 .35 -> 2 and 0) -> 5 and 0. V2's rule:
    # normalised weights are not scaled.
    v2 = dict(base, architectures=["DeepseekV2ForCausalLM"], topk_method="group_limited_greedy")
    top, wts = ds.gate(v2, w, "g.", h)
    assert top.tolist() == [[5, 0]], top
    close(wts, [[0.95 / 1.85, 0.90 / 1.85]], 1e-12)
    # Unnormalised V2 weights are scaled; greedy ignores groups: 5 (.95) and 0 (.9).
    top, wts = ds.gate(dict(v2, topk_method="greedy", norm_topk_prob=False), w, "g.", h)
    assert top.tolist() == [[5, 0]]
    close(wts, [[2.5 * 0.95, 2.5 * 0.90]], 1e-12)


def test_deepseek_sparse_layer_rule():
    c = {"n_routed_experts": 8, "first_k_dense_replace": 2, "moe_layer_freq": 3}
    assert [ds.is_sparse(c, i) for i in range(8)] == [False, False, False, True, False, False, True, False]
    assert not ds.is_sparse(dict(c, n_routed_experts=None), 5)


def test_sliding_window_masks_old_keys():
    # Logits of a sequence shorter than the window equal the plain causal model's; beyond it, the
    # first tokens stop mattering: changing token 0 leaves the logits at positions >= window alone.
    m = rf.RefModel(make_model("win", "--arch", "mistral", "--sliding-window", "6", "--num-hidden-layers", "1"))
    toks = tokens(20, m.vocab, seed=8)
    close(m.forward(toks[:6]), m.forward(toks[:6], breaks={"no_sliding_window"}), 1e-12)
    other = toks.copy()
    other[0] = (other[0] + 1) % m.vocab
    close(m.forward(toks)[6:], m.forward(other)[6:], 1e-12)
    assert np.abs(m.forward(toks)[5] - m.forward(other)[5]).max() > 1e-3


def test_nextn_layer_from_other_angles():
    # make_hf_model writes the MTP layer after the main model's tensors without touching them, with
    # an exact copy of the embedding; the MTP layer's logits depend on positions only through their
    # differences (pos0 0 == pos0 1); a chain of drafts equals the layer run row by row on the pairs
    # (h, token) it was fed; and an MTP layer that passes the embedding half through (--nextn-echo,
    # small residual) predicts the token it is given.
    m = rf.RefModel(make_model("nextn_v3", "--arch", "deepseek_v3", "--num-nextn-predict-layers", "1"))
    plain = rf.RefModel(make_model("nextn_v3_plain", "--arch", "deepseek_v3"))
    for k, v in plain.w.items():
        assert np.array_equal(m.w[k], v), k
    n = m.config["num_hidden_layers"]
    assert np.array_equal(m.w[f"model.layers.{n}.embed_tokens.weight"], m.w["model.embed_tokens.weight"])
    toks = tokens(14, m.vocab, seed=3)
    a, da = rn.nextn_forward(m, toks, draft=3)
    b, db = rn.nextn_forward(m, toks, draft=3, pos0=0)
    close(a, b, 1e-9)
    assert da == db
    # Row by row: the pairs (the target's normed hidden states, the next tokens) fed one at a time against
    # the whole-sequence rows.
    hidden = []
    m.forward(list(toks), hidden=hidden)
    rows = [rn.nextn_rows(m, hidden[1][:i + 1], toks[1:i + 2])[0][-1] for i in range(len(toks) - 1)]
    close(np.stack(rows), a[:len(toks) - 1], 1e-9)
    echo = rf.RefModel(make_model("nextn_echo", "--arch", "deepseek_v3", "--num-nextn-predict-layers", "1",
                                  "--nextn-echo", "--tie-word-embeddings", "--residual-out-scale", "0.02"))
    e, _ = rn.nextn_forward(echo, toks)
    assert (e.argmax(axis=1) == np.asarray(toks[1:])).mean() > 0.9, e.argmax(axis=1)


# ---------------------------------------------------------------- Gemma 3


def gemma_decode(m, toks):
    """Gemma3ForCausalLM / Gemma2ForCausalLM written out again token by token against a growing KV cache,
    per head, with RoPE as complex multiplication and the window as an explicit test on the key position;
    nothing from the reference's Gemma path but the weights and the parsed layer types. Gemma 2: no
    q_norm / k_norm, one RoPE for all layers, scores and logits soft-capped (cap * tanh(x / cap)) when
    config.json sets the caps (the generated folders always write both keys)."""
    w, c = m.w, m.config
    hd, eps = m.head_dim, m.eps
    half = hd // 2
    gemma2 = c["model_type"] == "gemma2"
    full_inv = c["rope_theta"] ** (-np.arange(half) * 2.0 / hd)
    rs = c.get("rope_scaling")
    if rs:
        assert rs["rope_type"] == "linear"
        full_inv = full_inv / rs["factor"]
    local_inv = full_inv if gemma2 else c["rope_local_base_freq"] ** (-np.arange(half) * 2.0 / hd)
    acap = c["attn_logit_softcapping"] if gemma2 else None
    fcap = c.get("final_logit_softcapping")

    def capped(x, cap):
        return x if cap is None else cap * np.tanh(x / cap)

    def norm(v, name):
        return v / math.sqrt(float(np.dot(v, v)) / len(v) + eps) * (1.0 + w[name])

    def gelu(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    n_rep = m.n_heads // m.n_kv
    kc = [[] for _ in range(m.n_layers)]
    vc = [[] for _ in range(m.n_layers)]
    rows = []
    for pos, tok in enumerate(toks):
        x = w["model.embed_tokens.weight"][tok] * m.embed_scale
        for i in range(m.n_layers):
            p = f"model.layers.{i}."
            sliding = m.layer_types[i] == "sliding_attention"
            inv = local_inv if sliding else full_inv
            h = norm(x, p + "input_layernorm.weight")
            heads = {}
            for kind, n in (("q", m.n_heads), ("k", m.n_kv), ("v", m.n_kv)):
                W = w[f"{p}self_attn.{kind}_proj.weight"]
                heads[kind] = []
                for hh in range(n):
                    vec = W[hh * hd:(hh + 1) * hd] @ h
                    if kind != "v":
                        if not gemma2:
                            vec = norm(vec, f"{p}self_attn.{kind}_norm.weight")
                        z = (vec[:half] + 1j * vec[half:]) * np.exp(1j * pos * inv)
                        vec = np.concatenate([z.real, z.imag])
                    heads[kind].append(vec)
            kc[i].append(heads["k"])
            vc[i].append(heads["v"])
            seen = [t for t in range(pos + 1) if not sliding or pos - t < c["sliding_window"]]
            outs = []
            for hh in range(m.n_heads):
                kv = hh // n_rep
                sc = capped(np.array([np.dot(heads["q"][hh], kc[i][t][kv]) for t in seen]) / math.sqrt(
                    c["query_pre_attn_scalar"]), acap)
                pr = np.exp(sc - sc.max())
                pr /= pr.sum()
                outs.append(sum(pr[j] * vc[i][t][kv] for j, t in enumerate(seen)))
            x = x + norm(w[p + "self_attn.o_proj.weight"] @ np.concatenate(outs), p + "post_attention_layernorm.weight")
            h = norm(x, p + "pre_feedforward_layernorm.weight")
            g, u = w[p + "mlp.gate_proj.weight"] @ h, w[p + "mlp.up_proj.weight"] @ h
            y = w[p + "mlp.down_proj.weight"] @ (gelu(g) * u)
            x = x + norm(y, p + "post_feedforward_layernorm.weight")
        rows.append(capped(w["model.embed_tokens.weight"] @ norm(x, "model.norm.weight"), fcap))
    return np.array(rows)


def test_gemma_generated_folder_matches_config():
    for dt, st, scale in (("f32", "F32", float(np.float32(math.sqrt(96)))), ("bf16", "BF16", 9.8125),
                          ("f16", "F16", 9.796875)):
        path = make_model(f"gemma_cfg_{dt}", "--arch", "gemma3", "--dtype", dt)
        m = rf.RefModel(path)
        c = m.config
        assert c["architectures"] == ["Gemma3ForCausalLM"] and c["model_type"] == "gemma3_text"
        assert "hidden_act" not in c and c["hidden_activation"] == "gelu_pytorch_tanh"
        assert (c["head_dim"], c["query_pre_attn_scalar"], c["hidden_size"] // c["num_attention_heads"]) == (32, 48, 24)
        assert c["layer_types"] == ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"]
        assert "sliding_window_pattern" not in c and c["sliding_window"] == 6
        assert c["rope_scaling"] == {"rope_type": "linear", "factor": 8.0}
        assert (c["rope_theta"], c["rope_local_base_freq"]) == (1e6, 1e4)
        assert c["tie_word_embeddings"] is True and c["attn_logit_softcapping"] is None
        assert c["final_logit_softcapping"] is None
        assert (c["bos_token_id"], c["eos_token_id"], c["pad_token_id"]) == (2, [1, 106], 0)
        with open(os.path.join(path, "tokenizer.json")) as f:
            added = [t["content"] for t in json.load(f)["added_tokens"]]
        assert added == ["<pad>", "<eos>", "<bos>"], added
        assert set(rf.safetensors_dtypes(path).values()) == {st}
        # sqrt(96) = 9.7980 as a float32 tensor cast to the weight dtype.
        assert m.embed_scale == scale, (dt, m.embed_scale)
        want = {"model.embed_tokens.weight", "model.norm.weight"}
        for i in range(4):
            p = f"model.layers.{i}."
            want |= {p + n + ".weight" for n in (
                "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                "post_feedforward_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                "self_attn.o_proj", "self_attn.q_norm", "self_attn.k_norm", "mlp.gate_proj", "mlp.up_proj",
                "mlp.down_proj")}
        assert set(m.w) == want, sorted(set(m.w) ^ want)
        w = m.w
        assert w["model.layers.0.self_attn.q_proj.weight"].shape == (4 * 32, 96)
        assert w["model.layers.0.self_attn.k_norm.weight"].shape == (32,)
        nw = w["model.layers.1.post_feedforward_layernorm.weight"]
        assert abs(nw.mean()) < 0.1 and 0.15 < nw.std() < 0.35  # offsets from 1, not around 1
        logits = m.forward(tokens(12, m.vocab))
        assert logits.std() > 1.0, logits.std()
    assert make_model("gemma_pat", "--arch", "gemma3", "--gemma-layer-config", "pattern")
    with open(os.path.join(WORK, "gemma_pat", "config.json")) as f:
        c = json.load(f)
    assert "layer_types" not in c and c["sliding_window_pattern"] == 3


def test_gemma_incremental_decoder_agrees():
    for name, args in (("gemma_inc", []), ("gemma_inc_bf16", ["--dtype", "bf16", "--layer-types", "f,s,s,f"]),
                       ("gemma_inc_norope", ["--rope-scaling", "none", "--sliding-window", "4"])):
        m = rf.RefModel(make_model(name, "--arch", "gemma3", *args))
        toks = tokens(30, m.vocab, seed=11)
        close(gemma_decode(m, toks), m.forward(toks), 1e-9)


def test_gemma_sliding_window_boundary():
    # Two sliding layers of window 6: a query at i sees keys i-5..i (i - j < 6), so the output at
    # position p depends on tokens p-10..p. Changing token 0 must change position 10 and leave 11+
    # alone; with one full layer it reaches every position.
    m = rf.RefModel(make_model("gemma_win", "--arch", "gemma3", "--num-hidden-layers", "2", "--layer-types", "s,s"))
    toks = tokens(20, m.vocab, seed=12)
    other = toks.copy()
    other[0] = (other[0] + 1) % m.vocab
    a, b = m.forward(toks), m.forward(other)
    close(a[11:], b[11:], 1e-12)
    assert np.abs(a[10] - b[10]).max() > 1e-4
    m = rf.RefModel(make_model("gemma_win_full", "--arch", "gemma3", "--num-hidden-layers", "2",
                               "--layer-types", "s,f"))
    assert np.abs(m.forward(toks)[19] - m.forward(other)[19]).max() > 1e-4
    # Shorter than the window: sliding and full layers alike see everything.
    close(m.forward(toks[:6]), m.forward(toks[:6], breaks={"no_sliding_window"}), 1e-12)


def test_gemma_layer_types_rule():
    # transformers: without layer_types, layer i is full when (i + 1) % sliding_window_pattern == 0
    # (default 6); with layer_types it is used whatever the pattern says.
    pat = rf.RefModel(make_model("gemma_rule_pat", "--arch", "gemma3", "--num-hidden-layers", "5",
                                 "--gemma-layer-config", "pattern", "--sliding-window-pattern", "2"))
    assert pat.layer_types == ["sliding_attention", "full_attention"] * 2 + ["sliding_attention"]
    lt = rf.RefModel(make_model("gemma_rule_lt", "--arch", "gemma3", "--num-hidden-layers", "5",
                                "--layer-types", "s,f,s,f,s"))
    toks = tokens(25, pat.vocab, seed=13)
    close(pat.forward(toks), lt.forward(toks), 0)
    both = rf.RefModel(make_model("gemma_rule_both", "--arch", "gemma3", "--num-hidden-layers", "5",
                                  "--gemma-layer-config", "both", "--layer-types", "s,f,s,f,s",
                                  "--sliding-window-pattern", "6"))
    assert both.config["sliding_window_pattern"] == 6
    close(both.forward(toks), lt.forward(toks), 0)
    nopat = copy.copy(pat)
    nopat.config = {k: v for k, v in pat.config.items() if k != "sliding_window_pattern"}
    nopat._gemma_init()
    assert nopat.layer_types == ["sliding_attention"] * 5  # default pattern 6


def test_gemma_rope_parameters_and_defaults():
    # transformers 5 writes rope_parameters per layer type; the same RoPE written that way gives the
    # same logits. Full layers: rope_theta with rope_scaling; sliding: rope_local_base_freq, unscaled.
    m = rf.RefModel(make_model("gemma_rp", "--arch", "gemma3"))
    toks = tokens(25, m.vocab, seed=14)
    want = m.forward(toks)
    rc = m.gemma_rope_configs()
    inv_full = rf.rope_inv_freq(rc["full_attention"], 32)
    inv_local = rf.rope_inv_freq(rc["sliding_attention"], 32)
    close(inv_full, 1e6 ** (-np.arange(16) / 16) / 8, 1e-15)
    close(inv_local, 1e4 ** (-np.arange(16) / 16), 1e-15)
    v5 = copy.copy(m)
    v5.config = {k: v for k, v in m.config.items() if k not in ("rope_theta", "rope_scaling", "rope_local_base_freq")}
    v5.config["rope_parameters"] = {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}
    close(v5.forward(toks), want, 0)
    # Gemma3TextConfig's defaults: rope_theta 1e6, rope_local_base_freq 1e4.
    d = copy.copy(m)
    d.config = {k: v for k, v in m.config.items() if k not in ("rope_theta", "rope_local_base_freq")}
    close(d.forward(toks), want, 0)


def test_gemma_softcap_and_refusals():
    m = rf.RefModel(make_model("gemma_cap", "--arch", "gemma3", "--final-logit-softcapping", "3.0"))
    assert m.config["final_logit_softcapping"] == 3.0
    toks = tokens(15, m.vocab, seed=15)
    capped = m.forward(toks)
    m.final_logit_softcapping = None
    plain = m.forward(toks)
    close(capped, 3.0 * np.tanh(plain / 3.0), 1e-12)
    assert np.abs(capped - plain).max() > 0.1
    close(rf.gelu_tanh(np.array([1.0, -2.0])), [0.8411919906082768, -0.04540230591222494], 1e-12)
    for key, val in (("attn_logit_softcapping", 50.0), ("hidden_activation", "gelu"),
                     ("use_bidirectional_attention", True), ("attention_bias", True)):
        bad = copy.copy(m)
        bad.config = dict(m.config, **{key: val})
        try:
            bad._gemma_init()
        except ValueError:
            pass
        else:
            raise AssertionError(f"{key}={val!r} accepted")
    # hidden_act is not what Gemma3MLP reads.
    ok = copy.copy(m)
    ok.config = dict(m.config, hidden_act="silu")
    ok._gemma_init()


# ---------------------------------------------------------------- Gemma 2


def test_gemma2_generated_folder_matches_config():
    for dt, st, scale in (("f32", "F32", float(np.float32(math.sqrt(96)))), ("bf16", "BF16", 9.8125),
                          ("f16", "F16", 9.796875)):
        path = make_model(f"gemma2_cfg_{dt}", "--arch", "gemma2", "--dtype", dt)
        m = rf.RefModel(path)
        c = m.config
        assert c["architectures"] == ["Gemma2ForCausalLM"] and c["model_type"] == "gemma2"
        assert m.arch == "gemma2" and m.gemma
        assert c["layer_types"] == ["sliding_attention", "full_attention"] * 2
        assert m.layer_types == c["layer_types"] and m.window == 6
        assert (m.head_dim, m.query_pre_attn_scalar, m.n_kv) == (32, 48.0, 2)
        assert (m.attn_logit_softcapping, m.final_logit_softcapping) == (2.5, 4.0)
        assert set(rf.safetensors_dtypes(path).values()) == {st}
        # torch.tensor(hidden_size**0.5, dtype=embedding dtype), as Gemma 3's embed_scale.
        assert m.embed_scale == scale, (dt, m.embed_scale)
        rc = m.gemma_rope_configs()
        assert rc["sliding_attention"] == rc["full_attention"] and rc["full_attention"]["rope_theta"] == 1e4
        assert not any("q_norm" in k or "k_norm" in k for k in m.w)
        logits = m.forward(tokens(12, m.vocab))
        assert logits.std() > 1.0 and np.abs(logits).max() < 4.0, (logits.std(), np.abs(logits).max())


def test_gemma2_incremental_decoder_agrees():
    for name, args in (("gemma2_inc", []), ("gemma2_inc_bf16", ["--dtype", "bf16", "--layer-types", "f,s,s,f"]),
                       ("gemma2_inc_nocap", ["--attn-logit-softcapping", "0", "--final-logit-softcapping", "0",
                                             "--sliding-window", "4"]),
                       ("gemma2_inc_pat", ["--gemma-layer-config", "pattern", "--rope-scaling", "linear",
                                           "--rope-factor", "4"])):
        m = rf.RefModel(make_model(name, "--arch", "gemma2", *args))
        toks = tokens(30, m.vocab, seed=11)
        close(gemma_decode(m, toks), m.forward(toks), 1e-9)


def test_gemma2_softcaps_by_hand():
    # Final cap: cap * tanh(raw / cap) of the uncapped logits. Attention cap: before the mask and the
    # softmax, after the query_pre_attn_scalar scaling, so a cap far above the scores changes nothing
    # and a small one changes the logits.
    m = rf.RefModel(make_model("gemma2_caps", "--arch", "gemma2"))
    toks = tokens(25, m.vocab, seed=16)
    capped = m.forward(toks)
    raw = m.forward(toks, breaks={"gemma2_no_final_softcap"})
    close(capped, 4.0 * np.tanh(raw / 4.0), 1e-12)
    assert np.abs(capped - raw).max() > 0.5
    big = copy.copy(m)
    big.attn_logit_softcapping = 1e7
    close(big.forward(toks), m.forward(toks, breaks={"gemma2_no_attn_softcap"}), 1e-9)
    assert np.abs(capped - m.forward(toks, breaks={"gemma2_no_attn_softcap"})).max() > 0.05


def test_gemma2_layer_types_rule():
    # transformers' Gemma2Config: without layer_types, layer i is sliding when (i + 1) % 2 (i even).
    pat = rf.RefModel(make_model("gemma2_rule_pat", "--arch", "gemma2", "--num-hidden-layers", "5",
                                 "--gemma-layer-config", "pattern"))
    assert "layer_types" not in pat.config
    assert pat.layer_types == ["sliding_attention", "full_attention"] * 2 + ["sliding_attention"]
    lt = rf.RefModel(make_model("gemma2_rule_lt", "--arch", "gemma2", "--num-hidden-layers", "5",
                                "--layer-types", "s,f,s,f,s"))
    toks = tokens(25, pat.vocab, seed=13)
    close(pat.forward(toks), lt.forward(toks), 0)
    odd = rf.RefModel(make_model("gemma2_rule_odd", "--arch", "gemma2", "--num-hidden-layers", "5",
                                 "--layer-types", "f,s,f,s,f"))
    close(odd.forward(toks), lt.forward(toks, breaks={"gemma2_sliding_odd_layers"}), 0)
    # Two sliding layers of window 6 reach 10 tokens back, no further (as Gemma 3's).
    m = rf.RefModel(make_model("gemma2_win", "--arch", "gemma2", "--num-hidden-layers", "2", "--layer-types", "s,s"))
    toks = tokens(20, m.vocab, seed=12)
    other = toks.copy()
    other[0] = (other[0] + 1) % m.vocab
    a, b = m.forward(toks), m.forward(other)
    close(a[11:], b[11:], 1e-12)
    assert np.abs(a[10] - b[10]).max() > 1e-4


def test_gemma2_defaults_rope_parameters_and_refusals():
    m = rf.RefModel(make_model("gemma2_def", "--arch", "gemma2"))
    toks = tokens(20, m.vocab, seed=17)
    want = m.forward(toks)
    # Gemma2Config's defaults (head_dim 256, 4 KV heads, caps 50 / 30, window 4096, tied, eps 1e-6,
    # rope_theta 1e4, query_pre_attn_scalar 256, sliding on even layers).
    d = copy.copy(m)
    d.config = {k: v for k, v in m.config.items() if k not in (
        "head_dim", "num_key_value_heads", "attn_logit_softcapping", "final_logit_softcapping", "sliding_window",
        "tie_word_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling", "query_pre_attn_scalar", "layer_types",
        "hidden_activation", "max_position_embeddings")}
    d._gemma2_init()
    assert (d.head_dim, d.n_kv, d.attn_logit_softcapping, d.final_logit_softcapping, d.window, d.tied, d.eps,
            d.query_pre_attn_scalar) == (256, 4, 50.0, 30.0, 4096, True, 1e-6, 256.0)
    assert d.layer_types == ["sliding_attention", "full_attention"] * 2
    assert d.gemma_rope_configs()["full_attention"] == {"rope_theta": 1e4, "rope_scaling": None,
                                                        "max_position_embeddings": 8192}
    # transformers 5 writes rope_theta (and any scaling) into one rope_parameters dict.
    v5 = copy.copy(m)
    v5.config = {k: v for k, v in m.config.items() if k not in ("rope_theta", "rope_scaling")}
    v5.config["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e4}
    v5._gemma2_init()
    close(v5.forward(toks), want, 0)
    lin = copy.copy(m)
    lin.config = dict(m.config, rope_scaling={"rope_type": "linear", "factor": 4.0})
    lin._gemma2_init()
    lin5 = copy.copy(m)
    lin5.config = dict(v5.config, rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 1e4})
    lin5._gemma2_init()
    close(lin.forward(toks), lin5.forward(toks), 0)
    assert np.abs(lin.forward(toks) - want).max() > 0.05
    for key, val in (("attention_bias", True), ("hidden_activation", "gelu"), ("use_bidirectional_attention", True),
                     ("layer_types", ["sliding_attention", "full_attention"] * 2 + ["full_attention"]),
                     ("layer_types", ["sliding_attention", "chunked_attention"] * 2),
                     ("attn_logit_softcapping", -1.0), ("final_logit_softcapping", "30"), ("sliding_window", None),
                     ("head_dim", None), ("rope_scaling", {"rope_type": "dynamic", "factor": 2.0})):
        bad = copy.copy(m)
        bad.config = dict(m.config, **{key: val})
        try:
            bad._gemma2_init()
        except ValueError:
            pass
        else:
            raise AssertionError(f"{key}={val!r} accepted")
    # Null caps: none applied.
    ok = copy.copy(m)
    ok.config = dict(m.config, attn_logit_softcapping=None, final_logit_softcapping=None)
    ok._gemma2_init()
    close(ok.forward(toks), m.forward(toks, breaks={"gemma2_no_attn_softcap", "gemma2_no_final_softcap"}), 0)


# ---------------------------------------------------------------- SmolLM3, Granite


def as_arch(src, name, arch, drop=(), **changes):
    """A copy of the model folder src whose config.json names another architecture (keys in drop removed,
    changes set): the same weights read by another code path of the reference."""
    out = os.path.join(WORK, name)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out)
    with open(os.path.join(out, "config.json")) as f:
        c = json.load(f)
    c = {k: v for k, v in c.items() if k not in drop}
    c.update(architectures=[arch], **changes)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f)
    return out


SMOLLM3_KEYS = ("no_rope_layers", "no_rope_layer_interval", "use_sliding_window", "sliding_window")
GRANITE_KEYS = ("embedding_multiplier", "attention_multiplier", "residual_multiplier", "logits_scaling")


def test_smollm3_and_granite_reduce_to_llama():
    # SmolLM3 with RoPE on every layer, and Granite with every multiplier 1 except the attention one (which
    # is head_dim**-0.5 in Llama), are Llama: the same logits from the Llama path, bit for bit.
    smol = make_model("smol_all_rope", "--arch", "smollm3", "--no-rope-layers", "1,1,1,1")
    llama = rf.RefModel(as_arch(smol, "smol_as_llama", "LlamaForCausalLM", SMOLLM3_KEYS))
    toks = tokens(40, llama.vocab, seed=3)
    close(rf.RefModel(smol).forward(toks), llama.forward(toks), 0)
    gran = make_model("granite_ones", "--arch", "granite", "--embedding-multiplier", "1", "--residual-multiplier", "1",
                      "--logits-scaling", "1", "--attention-multiplier", str(32 ** -0.5))
    llama = rf.RefModel(as_arch(gran, "granite_as_llama", "LlamaForCausalLM", GRANITE_KEYS))
    close(rf.RefModel(gran).forward(toks), llama.forward(toks), 1e-12)


def test_granite_multipliers_by_their_algebra():
    # RMSNorm ignores the scale of its input (up to eps), so embeddings times e with residual branches times r
    # give the logits of embeddings times 1 with branches times r / e. logits_scaling divides the logits.
    # attention_multiplier a scales every score as q_proj's rows times a * sqrt(head_dim) in Llama would.
    base = make_model("granite_alg", "--arch", "granite", "--embedding-multiplier", "4", "--residual-multiplier",
                      "0.5", "--logits-scaling", "2.5")
    m = rf.RefModel(base)
    toks = tokens(40, m.vocab, seed=4)
    same = rf.RefModel(as_arch(base, "granite_alg2", "GraniteForCausalLM", embedding_multiplier=1.0,
                               residual_multiplier=0.125, logits_scaling=1.0))
    err = close(m.forward(toks) * 2.5, same.forward(toks), 1e-5)
    assert err > 0, "the two configurations run the same arithmetic: the check would prove nothing"
    q_scaled = rf.RefModel(as_arch(base, "granite_alg_llama", "LlamaForCausalLM", GRANITE_KEYS))
    g = rf.RefModel(as_arch(base, "granite_alg_res1", "GraniteForCausalLM", embedding_multiplier=1.0,
                            residual_multiplier=1.0, logits_scaling=1.0))
    factor = g.attention_multiplier * math.sqrt(g.head_dim)
    assert abs(factor - 1) > 0.5
    for name in list(q_scaled.w):
        if name.endswith("q_proj.weight"):
            q_scaled.w[name] = q_scaled.w[name] * factor
    close(g.forward(toks), q_scaled.forward(toks), 1e-10)


def test_smollm3_nope_layer_sees_its_context_as_a_set():
    # One NoPE layer: the last token's logits do not depend on the order of the tokens before it; with RoPE
    # they do. (Deeper, earlier tokens' own prefixes would change with the order.)
    nope = rf.RefModel(make_model("smol_nope1", "--arch", "smollm3", "--num-hidden-layers", "1", "--no-rope-layers", "0"))
    rope = rf.RefModel(make_model("smol_rope1", "--arch", "smollm3", "--num-hidden-layers", "1", "--no-rope-layers", "1"))
    toks = tokens(30, nope.vocab, seed=5)
    shuffled = np.concatenate([np.random.default_rng(6).permutation(toks[:-1]), toks[-1:]])
    assert list(shuffled) != list(toks)
    close(nope.forward(toks)[-1], nope.forward(shuffled)[-1], 1e-9)
    assert np.abs(rope.forward(toks)[-1] - rope.forward(shuffled)[-1]).max() > 1e-3


# ---------------------------------------------------------------- Phi-3


def phi3_as_llama(m, out):
    """The Llama folder with the weights of the Phi-3 model m: qkv_proj cut into q / k / v, gate_up_proj
    into gate / up. Phi-3's own keys are dropped from the config."""
    os.makedirs(out, exist_ok=True)
    c = {k: v for k, v in m.config.items() if k not in ("original_max_position_embeddings", "partial_rotary_factor",
                                                         "sliding_window", "resid_pdrop", "embd_pdrop")}
    c.update(architectures=["LlamaForCausalLM"], model_type="llama", rope_scaling=None)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f)
    hd, nq, nkv = m.head_dim, m.n_heads, m.n_kv
    t = {}
    for name, arr in m.w.items():
        if name.endswith("self_attn.qkv_proj.weight"):
            p = name[:-len("qkv_proj.weight")]
            t[p + "q_proj.weight"] = arr[:nq * hd]
            t[p + "k_proj.weight"] = arr[nq * hd:(nq + nkv) * hd]
            t[p + "v_proj.weight"] = arr[(nq + nkv) * hd:]
        elif name.endswith("mlp.gate_up_proj.weight"):
            p = name[:-len("gate_up_proj.weight")]
            f2 = arr.shape[0] // 2
            t[p + "gate_proj.weight"], t[p + "up_proj.weight"] = arr[:f2], arr[f2:]
        else:
            t[name] = arr
    # The LoRA test's writer (the file as the format specifies it).
    from test_lora_reference import write_safetensors
    write_safetensors(os.path.join(out, "model.safetensors"), {n: ("F32", a) for n, a in t.items()})
    return out


def phi3_decode(m, toks, choice):
    """Phi3ForCausalLM written out again token by token against a growing KV cache: rows of the fused
    tensors picked per head, RoPE as complex multiplication of (x_i, x_{i + r/2}) for i < r/2 over the first
    r = rotary dim of each head (cos / sin times the attention factor), the window as an explicit test on
    the key position, and a LongRoPE factor set fixed by `choice`. Only the weights, the parsed config and
    Phi3Rope's rotary dim, factors and attention factor come from the reference."""
    w, c, rope = m.w, m.config, m.rope
    hd, r, eps, n_rep = m.head_dim, rope.rotary_dim, m.eps, m.n_heads // m.n_kv
    half = r // 2
    ext, mag = np.ones(half), 1.0
    if rope.longrope:
        ext, mag = (rope.long if choice == "long" else rope.short), rope.attention_factor
    inv = 1.0 / (ext * rope.theta ** (np.arange(half) * 2.0 / r))
    window = c.get("sliding_window")

    def norm(v, name):
        return v / math.sqrt(float(np.dot(v, v)) / len(v) + eps) * w[name]

    def rotate(vec, pos):
        z = (vec[:half] + 1j * vec[half:r]) * (mag * np.exp(1j * pos * inv))
        return np.concatenate([z.real, z.imag, vec[r:]])

    kc = [[] for _ in range(m.n_layers)]
    vc = [[] for _ in range(m.n_layers)]
    rows = []
    for pos, tok in enumerate(toks):
        x = w["model.embed_tokens.weight"][tok].copy()
        for i in range(m.n_layers):
            p = f"model.layers.{i}."
            h = norm(x, p + "input_layernorm.weight")
            W = w[p + "self_attn.qkv_proj.weight"]
            qs = [rotate(W[j * hd:(j + 1) * hd] @ h, pos) for j in range(m.n_heads)]
            k0, v0 = m.n_heads * hd, (m.n_heads + m.n_kv) * hd
            kc[i].append([rotate(W[k0 + j * hd:k0 + (j + 1) * hd] @ h, pos) for j in range(m.n_kv)])
            vc[i].append([W[v0 + j * hd:v0 + (j + 1) * hd] @ h for j in range(m.n_kv)])
            seen = [t for t in range(pos + 1) if window is None or pos - t < window]
            outs = []
            for hh in range(m.n_heads):
                kv = hh // n_rep
                sc = np.array([np.dot(qs[hh], kc[i][t][kv]) for t in seen]) / math.sqrt(hd)
                pr = np.exp(sc - sc.max())
                pr /= pr.sum()
                outs.append(sum(pr[j] * vc[i][t][kv] for j, t in enumerate(seen)))
            x = x + w[p + "self_attn.o_proj.weight"] @ np.concatenate(outs)
            h = norm(x, p + "post_attention_layernorm.weight")
            G = w[p + "mlp.gate_up_proj.weight"]
            f = G.shape[0] // 2
            g, u = G[:f] @ h, G[f:] @ h
            x = x + w[p + "mlp.down_proj.weight"] @ (u * g / (1 + np.exp(-g)))
        rows.append(m.lm_head() @ norm(x, "model.norm.weight"))
    return np.array(rows)


def test_phi3_generated_folder_matches_config():
    path = make_model("phi3_cfg", "--arch", "phi3", "--dtype", "bf16", "--rope-scaling", "longrope",
                      "--partial-rotary-factor", "0.75")
    m = rf.RefModel(path)
    c = m.config
    assert c["architectures"] == ["Phi3ForCausalLM"] and c["model_type"] == "phi3"
    assert (c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]) == (128, 4, 2) and "head_dim" not in c
    assert (c["original_max_position_embeddings"], c["max_position_embeddings"]) == (16, 64)
    assert c["partial_rotary_factor"] == 0.75 and c["sliding_window"] is None and c["hidden_act"] == "silu"
    assert c["rms_norm_eps"] == 1e-5 and (c["bos_token_id"], c["eos_token_id"], c["pad_token_id"]) == (1, 2, 2)
    rs = c["rope_scaling"]
    assert sorted(rs) == ["long_factor", "short_factor", "type"] and rs["type"] == "longrope"
    assert len(rs["short_factor"]) == len(rs["long_factor"]) == 12  # int(32 * 0.75) / 2
    assert all(1.0 <= f <= 1.3 for f in rs["short_factor"])
    lf = rs["long_factor"]
    assert lf == sorted(lf) and lf[0] < 1.2 and 9 < lf[-1] < 15, lf
    assert os.path.exists(os.path.join(path, "tokenizer.json"))
    want = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    names = ("input_layernorm", "self_attn.qkv_proj", "self_attn.o_proj", "post_attention_layernorm",
             "mlp.gate_up_proj", "mlp.down_proj")
    for i in range(3):
        want |= {f"model.layers.{i}.{n}.weight" for n in names}
    assert set(m.w) == want, sorted(set(m.w) ^ want)
    assert m.w["model.layers.0.self_attn.qkv_proj.weight"].shape == ((4 + 2 * 2) * 32, 128)
    assert m.w["model.layers.0.mlp.gate_up_proj.weight"].shape == (2 * 344, 128)
    assert set(rf.safetensors_dtypes(path).values()) == {"BF16"}
    assert (m.rope.rotary_dim, m.window) == (24, None)
    assert m.forward(tokens(12, m.vocab)).std() > 1.0
    # The legacy type name, a window, tied embeddings.
    su = make_model("phi3_su", "--arch", "phi3", "--rope-scaling", "longrope", "--longrope-type-name", "su",
                    "--sliding-window", "7", "--tie-word-embeddings")
    with open(os.path.join(su, "config.json")) as f:
        c2 = json.load(f)
    assert c2["rope_scaling"]["type"] == "su" and c2["sliding_window"] == 7 and c2["tie_word_embeddings"] is True
    assert "lm_head.weight" not in rf.RefModel(su).w
    # Phi-4-mini's shape, checked without writing its 7.7 GB.
    sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
    import make_hf_model as mk
    a = mk.parse_args(["--out", os.path.join(WORK, "phi4_unused"), "--preset", "phi4-mini"])
    pc = mk.build_config(a)
    assert (pc["hidden_size"], pc["num_hidden_layers"], pc["num_attention_heads"], pc["num_key_value_heads"]) == \
        (3072, 32, 24, 8)
    assert (pc["intermediate_size"], pc["vocab_size"], pc["partial_rotary_factor"], pc["tie_word_embeddings"]) == \
        (8192, 200064, 0.75, True)
    assert (pc["original_max_position_embeddings"], pc["max_position_embeddings"], pc["rope_theta"]) == \
        (4096, 131072, 10000.0)
    assert len(pc["rope_scaling"]["short_factor"]) == 48 and pc["torch_dtype"] == "bfloat16"
    shapes = {t.name: t.shape for t in mk.build_tensors(a)}
    assert shapes["model.layers.31.self_attn.qkv_proj.weight"] == (5120, 3072)
    assert shapes["model.layers.0.mlp.gate_up_proj.weight"] == (16384, 3072) and "lm_head.weight" not in shapes
    for bad in (["--arch", "llama", "--partial-rotary-factor", "0.5"],
                ["--arch", "llama", "--rope-scaling", "longrope"], ["--arch", "phi3", "--rope-scaling", "yarn"],
                ["--arch", "phi3", "--longrope-type-name", "su"], ["--arch", "phi3", "--partial-rotary-factor", "0.3"],
                ["--arch", "phi3", "--head-dim", "16"]):
        r = subprocess.run([sys.executable, MAKE, "--out", os.path.join(WORK, "phi3_bad"), "--quiet", *bad],
                           capture_output=True)
        assert r.returncode != 0, bad


def test_phi3_equals_llama_with_unfused_weights():
    # Without rope_scaling and with the whole head rotating, Phi-3 is Llama with q/k/v and gate/up fused:
    # the reference's Phi-3 path against its Llama path on the same weights.
    for name, args in (("phi3_llama", []), ("phi3_llama_tied", ["--dtype", "bf16", "--tie-word-embeddings"]),
                       ("phi3_llama_mha", ["--num-key-value-heads", "4", "--num-hidden-layers", "2"])):
        m = rf.RefModel(make_model(name, "--arch", "phi3", *args))
        assert m.rope.rotary_dim == m.head_dim and not m.rope.longrope
        ll = rf.RefModel(phi3_as_llama(m, os.path.join(WORK, name + "_as_llama")))
        assert ll.arch == "llama" and ll.eps == m.eps
        toks = tokens(40, m.vocab, seed=21)
        ha, hb = [], []
        close(m.forward(toks, hidden=ha), ll.forward(toks, hidden=hb), 1e-12)
        close(np.stack(ha), np.stack(hb), 1e-12)
        for b in ("phi3_kv_swapped", "phi3_gate_up_swapped"):
            assert np.abs(m.forward(toks, breaks={b}) - ll.forward(toks)).max() > 0.05, b
        # bf16 emulation rounds at the same places in both paths.
        close(m.forward(toks[:12], emulate={"act", "kv"}), ll.forward(toks[:12], emulate={"act", "kv"}), 1e-12)


def test_phi3_longrope_by_hand():
    # head_dim 16, partial_rotary_factor 0.5: 8 dims rotate, 4 frequencies. max 64 / original 16 -> factor 4,
    # attention factor sqrt(1 + ln 4 / ln 16) = sqrt(1.5). Long factors from seq_len 17 on.
    short, long = [1.0, 1.1, 1.2, 1.3], [1.0, 2.0, 4.0, 8.0]
    cfg = {"hidden_size": 64, "num_attention_heads": 4, "rope_theta": 500.0, "partial_rotary_factor": 0.5,
           "max_position_embeddings": 64, "original_max_position_embeddings": 16,
           "rope_scaling": {"type": "longrope", "short_factor": short, "long_factor": long}}
    rope = rf.Phi3Rope(cfg, 16)
    base = 500.0 ** (-np.arange(0, 8, 2) / 8)
    for T, want in ((1, short), (16, short), (17, long), (64, long), (200, long)):
        inv, mag, dim = rope.frequencies(T)
        assert dim == 8
        close(inv, base / np.array(want), 1e-15)
        close(mag, math.sqrt(1.5), 1e-15)
    close(rope.frequencies(5, "long")[0], base / np.array(long), 1e-15)
    close(rope.frequencies(50, "short")[0], base / np.array(short), 1e-15)
    close(rope.frequencies(50, breaks={"longrope_factors_swapped"})[0], base / np.array(short), 1e-15)
    assert rope.frequencies(50, breaks={"longrope_no_attention_factor"})[1] == 1.0
    inv, _, dim = rope.frequencies(50, breaks={"phi3_full_rotary"})
    assert dim == 16
    close(inv, 500.0 ** (-np.arange(0, 16, 2) / 16) / np.array(long + [1.0] * 4), 1e-15)
    # The legacy names "su" and "yarn" mean longrope; transformers 5's rope_parameters form is read alike.
    for kind in ("su", "yarn"):
        other = rf.Phi3Rope(dict(cfg, rope_scaling=dict(cfg["rope_scaling"], type=kind)), 16)
        close(other.frequencies(30)[0], rope.frequencies(30)[0], 0)
    v5 = {k: v for k, v in cfg.items() if k not in ("rope_scaling", "rope_theta", "partial_rotary_factor")}
    v5["rope_parameters"] = {"rope_type": "longrope", "rope_theta": 500.0, "partial_rotary_factor": 0.5,
                             "short_factor": short, "long_factor": long, "original_max_position_embeddings": 16}
    for T in (16, 17):
        a, b = rf.Phi3Rope(v5, 16).frequencies(T), rope.frequencies(T)
        close(a[0], b[0], 0)
        assert a[1:] == b[1:]
    # attention_factor given wins; max == original (factor 1) gives 1; the original length defaults to 4096.
    given = dict(cfg, rope_scaling=dict(cfg["rope_scaling"], attention_factor=0.9))
    assert rf.Phi3Rope(given, 16).attention_factor == 0.9
    assert rf.Phi3Rope(dict(cfg, max_position_embeddings=16), 16).attention_factor == 1.0
    d = rf.Phi3Rope({k: v for k, v in cfg.items() if k != "original_max_position_embeddings"}, 16)
    assert d.original == 4096 and d.attention_factor == 1.0  # 64 / 4096 < 1
    assert not d.uses_long(4096) and d.uses_long(4097)
    # Phi-3-mini-128k's numbers: 131072 / 4096 = 32 -> sqrt(1 + ln 32 / ln 4096) = sqrt(1 + 5/12).
    big = rf.Phi3Rope(dict(cfg, max_position_embeddings=131072, original_max_position_embeddings=4096), 16)
    close(big.attention_factor, math.sqrt(1 + 5 / 12), 1e-15)
    for bad in ({"type": "linear", "factor": 2.0}, dict(cfg["rope_scaling"], short_factor=short[:3])):
        try:
            rf.Phi3Rope(dict(cfg, rope_scaling=bad), 16)
        except ValueError:
            pass
        else:
            raise AssertionError(f"accepted {bad}")


def test_phi3_partial_rope_leaves_the_rest():
    # Only the first r dims of a head rotate (pairs i, i + r/2); the rest pass through untouched.
    x = np.random.default_rng(22).normal(size=(7, 3, 20))
    inv = 100.0 ** (-np.arange(0, 12, 2) / 12)
    pos = np.arange(7) * 2
    out = rf.apply_partial_rope(x, pos, inv, 12, mag=1.3)
    z = (x[..., :6] + 1j * x[..., 6:12]) * (1.3 * np.exp(1j * np.outer(pos, inv)))[:, None, :]
    close(out[..., :12], np.concatenate([z.real, z.imag], axis=-1), 1e-12)
    assert np.array_equal(out[..., 12:], x[..., 12:])
    close(rf.apply_partial_rope(x, pos, 100.0 ** (-np.arange(0, 20, 2) / 20), 20),
          rf.apply_rope(x, pos, 100.0 ** (-np.arange(0, 20, 2) / 20)), 0)


def test_phi3_longrope_neutral_factors_are_no_scaling():
    # short_factor all 1 with max_position_embeddings == original (factor 1, attention factor 1): within
    # the original length that is plain RoPE; with long_factor all 1 too, at any length.
    m = rf.RefModel(make_model("phi3_neutral", "--arch", "phi3", "--rope-scaling", "longrope",
                               "--partial-rotary-factor", "0.5"))
    plain = copy.copy(m)
    plain.config = dict(m.config, rope_scaling=None)
    plain._phi3_init()
    n = m.rope.rotary_dim // 2
    neutral = copy.copy(m)
    neutral.config = dict(m.config, max_position_embeddings=16,
                          rope_scaling=dict(m.config["rope_scaling"], short_factor=[1.0] * n))
    neutral._phi3_init()
    toks = tokens(30, m.vocab, seed=23)
    close(neutral.forward(toks[:16]), plain.forward(toks[:16]), 1e-12)
    assert np.abs(neutral.forward(toks) - plain.forward(toks)).max() > 0.05  # long factors from 17 on
    neutral.config["rope_scaling"]["long_factor"] = [1.0] * n
    neutral._phi3_init()
    close(neutral.forward(toks), plain.forward(toks), 1e-12)
    # The real factors do change things, short and long alike.
    assert np.abs(m.forward(toks[:16]) - plain.forward(toks[:16])).max() > 0.05


def test_phi3_incremental_decoder_agrees():
    cases = (("phi3_inc_long", ["--rope-scaling", "longrope", "--partial-rotary-factor", "0.75"]),
             ("phi3_inc_bf16", ["--dtype", "bf16", "--rope-scaling", "longrope", "--longrope-type-name", "su",
                                "--sliding-window", "5", "--tie-word-embeddings"]),
             ("phi3_inc_plain", ["--partial-rotary-factor", "0.5", "--sliding-window", "9",
                                 "--num-hidden-layers", "2"]))
    for name, args in cases:
        m = rf.RefModel(make_model(name, "--arch", "phi3", *args))
        toks = tokens(30, m.vocab, seed=24)
        for choice in ("long", "short"):
            m.longrope_choice = choice
            close(phi3_decode(m, toks, choice), m.forward(toks), 1e-9)
        m.longrope_choice = None
        if m.rope.longrope:
            # transformers' rule: up to the original length (16) the short factors, beyond it the long ones for
            # the whole sequence, so a row's logits depend on how long the sequence is.
            close(m.forward(toks[:16]), phi3_decode(m, toks[:16], "short"), 1e-9)
            close(m.forward(toks), phi3_decode(m, toks, "long"), 1e-9)
            assert np.abs(m.forward(toks)[:16] - m.forward(toks[:16])).max() > 0.05
    # The window: with 2 layers of window 9 the output at p depends on tokens p-16..p.
    other = toks.copy()
    other[0] = (other[0] + 1) % m.vocab
    a, b = m.forward(toks), m.forward(other)
    close(a[17:], b[17:], 1e-12)
    assert np.abs(a[16] - b[16]).max() > 1e-4


# ---------------------------------------------------------------- gpt-oss


def fp4_e2m1(code):
    """OCP MX E2M1 from its bits (sign, 2-bit exponent with bias 1, 1-bit mantissa; exponent 0 subnormal)."""
    sign = -1.0 if code & 8 else 1.0
    e, m = (code >> 1) & 3, code & 1
    return sign * (0.5 * m if e == 0 else 2.0 ** (e - 1) * (1.0 + 0.5 * m))


def mxfp4_rows(blocks, scales):
    """[E, rows, cols] (output-major) from MXFP4 bytes, element by element from the format's definition:
    column c = 32 g + j is nibble j % 2 (0: low) of byte j // 2 of block g, times 2^(scale - 127)."""
    table = np.array([fp4_e2m1(c) for c in range(16)])
    e, rows, g, _ = blocks.shape
    j = np.arange(32)
    byte = blocks[..., j // 2].astype(np.int64)  # [E, rows, G, 32]
    code = np.where(j % 2 == 0, byte & 15, byte >> 4)
    vals = table[code] * np.exp2(scales.astype(np.float64) - 127.0)[..., None]
    return vals.reshape(e, rows, g * 32)


def gpt_oss_decode(m, toks):
    """A second gpt-oss forward: one token at a time against a growing KV cache, RoPE as complex
    multiplication with YaRN's frequencies written from the correction-range formula, each head's sink as
    exp(s_j) / (sum_t exp(s_t) + exp(sink)), routing by sorting, the experts as output-major matrices
    (the MXFP4 bytes decoded bit by bit, or the dense x @ W tensors transposed)."""
    w, c = m.w, m.config
    hd, nh, nkv = c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"]
    rs = c["rope_scaling"]
    base, factor, ctx = c["rope_theta"], rs["factor"], rs["original_max_position_embeddings"]
    jj = np.arange(hd // 2)
    theta = base ** (-2.0 * jj / hd)
    lo = (hd / 2) * math.log(ctx / (2 * math.pi * rs["beta_fast"])) / math.log(base)
    hi = (hd / 2) * math.log(ctx / (2 * math.pi * rs["beta_slow"])) / math.log(base)
    if rs.get("truncate", True):
        lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo, 0), min(hi, hd - 1)
    gam = np.clip((jj - lo) / (hi - lo), 0.0, 1.0)
    freq = theta * (1 - gam) + theta / factor * gam
    mscale = 0.1 * math.log(factor) + 1.0
    limit, k_top = c["swiglu_limit"], c["num_experts_per_tok"]
    n_exp, window = c["num_local_experts"], c["sliding_window"]
    experts = []
    for i in range(m.n_layers):
        q = f"model.layers.{i}.mlp.experts."
        if q + "gate_up_proj_blocks" in w:
            experts.append([mxfp4_rows(w[q + n + "_blocks"], w[q + n + "_scales"])
                            for n in ("gate_up_proj", "down_proj")])
        else:
            experts.append([w[q + n].transpose(0, 2, 1) for n in ("gate_up_proj", "down_proj")])

    def norm(v, name):
        return v / math.sqrt(float(np.dot(v, v)) / len(v) + m.eps) * w[name]

    def rot(v, pos):
        z = (v[:hd // 2] + 1j * v[hd // 2:]) * np.exp(1j * pos * freq) * mscale
        return np.concatenate([z.real, z.imag])

    kc = [[] for _ in range(m.n_layers)]
    vc = [[] for _ in range(m.n_layers)]
    rows = []
    for pos, tok in enumerate(toks):
        x = w["model.embed_tokens.weight"][tok].copy()
        for i in range(m.n_layers):
            p = f"model.layers.{i}."
            h = norm(x, p + "input_layernorm.weight")
            proj = {n: w[f"{p}self_attn.{n}_proj.weight"] @ h + w[f"{p}self_attn.{n}_proj.bias"] for n in "qkv"}
            kc[i].append([rot(proj["k"][j * hd:(j + 1) * hd], pos) for j in range(nkv)])
            vc[i].append([proj["v"][j * hd:(j + 1) * hd] for j in range(nkv)])
            first = max(0, pos - window + 1) if c["layer_types"][i] == "sliding_attention" else 0
            outs = []
            for hh in range(nh):
                qv, kv = rot(proj["q"][hh * hd:(hh + 1) * hd], pos), hh // (nh // nkv)
                sc = np.array([np.dot(qv, kc[i][t][kv]) / math.sqrt(hd) for t in range(first, pos + 1)])
                sink = w[p + "self_attn.sinks"][hh]
                top = max(sc.max(), sink)
                den = np.exp(sc - top).sum() + math.exp(sink - top)
                outs.append(sum(math.exp(sc[t - first] - top) / den * vc[i][t][kv] for t in range(first, pos + 1)))
            x = x + w[p + "self_attn.o_proj.weight"] @ np.concatenate(outs) + w[p + "self_attn.o_proj.bias"]
            h = norm(x, p + "post_attention_layernorm.weight")
            logit = w[p + "mlp.router.weight"] @ h + w[p + "mlp.router.bias"]
            chosen = sorted(range(n_exp), key=lambda e: -logit[e])[:k_top]
            z = np.exp(logit[chosen] - logit[chosen].max())
            for e, wt in zip(chosen, z / z.sum()):
                gu_w, dn_w = experts[i][0][e], experts[i][1][e]
                b = w[p + "mlp.experts.gate_up_proj_bias"][e]
                g = np.minimum(gu_w[0::2] @ h + b[0::2], limit)
                u = np.clip(gu_w[1::2] @ h + b[1::2], -limit, limit)
                y = dn_w @ ((u + 1) * g / (1 + np.exp(-1.702 * g))) + w[p + "mlp.experts.down_proj_bias"][e]
                x = x + wt * y
        rows.append(m.lm_head() @ norm(x, "model.norm.weight"))
    return np.array(rows)


def test_gpt_oss_decoder_agrees():
    for name, args in (("gpt_oss_inc_mx", ["--mxfp4"]),
                       ("gpt_oss_inc_bf16", ["--dtype", "bf16", "--layer-types", "f,s,s,f", "--sliding-window", "4",
                                             "--yarn-truncate", "true", "--seed", "3"])):
        m = rf.RefModel(make_model(name, "--arch", "gpt_oss", *args))
        toks = tokens(30, m.vocab, seed=13)
        close(gpt_oss_decode(m, toks), m.forward(toks), 1e-9)


def test_gpt_oss_generated_folder_matches_config():
    dense = make_model("gpt_oss_cfg", "--arch", "gpt_oss", "--dtype", "bf16", "--seed", "4")
    packed = make_model("gpt_oss_cfg_mx", "--arch", "gpt_oss", "--dtype", "bf16", "--seed", "4", "--mxfp4",
                        "--shards", "2")
    types = {}
    for path in (dense, packed):
        types.update({path + ":" + k: v for k, v in rf.safetensors_dtypes(path).items()})
    md, mp = rf.RefModel(dense), rf.RefModel(packed)
    c = mp.config
    assert c["architectures"] == ["GptOssForCausalLM"] and c["model_type"] == "gpt_oss"
    assert c["layer_types"] == ["sliding_attention", "full_attention"] * 2 and c["sliding_window"] == 6
    assert c["rope_scaling"] == {"rope_type": "yarn", "factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0,
                                 "truncate": False, "original_max_position_embeddings": 32}
    assert c["max_position_embeddings"] == 128 and c["rope_theta"] == 150000.0 and c["swiglu_limit"] == 3.0
    assert c["attention_bias"] is True and c["num_local_experts"] == 4 and c["num_experts_per_tok"] == 2
    assert c["quantization_config"]["quant_method"] == "mxfp4" and "quantization_config" not in md.config
    h, f, e = c["hidden_size"], c["intermediate_size"], c["num_local_experts"]
    p = "model.layers.3."
    want = {"self_attn.q_proj.weight": (8 * 16, h), "self_attn.q_proj.bias": (8 * 16,),
            "self_attn.k_proj.bias": (2 * 16,), "self_attn.o_proj.weight": (h, 8 * 16), "self_attn.o_proj.bias": (h,),
            "self_attn.sinks": (8,), "mlp.router.weight": (e, h), "mlp.router.bias": (e,),
            "mlp.experts.gate_up_proj_bias": (e, 2 * f), "mlp.experts.down_proj_bias": (e, h)}
    for name, shape in want.items():
        assert md.w[p + name].shape == shape and mp.w[p + name].shape == shape, name
        assert types[dense + ":" + p + name] == "BF16" and types[packed + ":" + p + name] == "BF16"
    assert md.w[p + "mlp.experts.gate_up_proj"].shape == (e, h, 2 * f)
    assert md.w[p + "mlp.experts.down_proj"].shape == (e, f, h)
    assert mp.w[p + "mlp.experts.gate_up_proj_blocks"].shape == (e, 2 * f, h // 32, 16)
    assert mp.w[p + "mlp.experts.gate_up_proj_scales"].shape == (e, 2 * f, h // 32)
    assert mp.w[p + "mlp.experts.down_proj_blocks"].shape == (e, h, f // 32, 16)
    assert mp.w[p + "mlp.experts.down_proj_scales"].shape == (e, h, f // 32)
    assert all(types[packed + ":" + p + "mlp.experts." + n] == "U8" for n in (
        "gate_up_proj_blocks", "gate_up_proj_scales", "down_proj_blocks", "down_proj_scales"))
    # One seed, one model: the dense tensors are the MXFP4 ones decoded (output-major, transposed).
    for i in range(4):
        q = f"model.layers.{i}.mlp.experts."
        for n in ("gate_up_proj", "down_proj"):
            assert np.array_equal(md.w[q + n], mxfp4_rows(mp.w[q + n + "_blocks"], mp.w[q + n + "_scales"])
                                  .transpose(0, 2, 1)), q + n
    assert set(md.w) - {k for k in md.w if k.endswith(("experts.gate_up_proj", "experts.down_proj"))} < set(mp.w)
    assert all(np.array_equal(md.w[k], mp.w[k]) for k in md.w if k in mp.w)
    # The same weights, so the same logits up to float64 summation order: the dense experts are
    # transposed views, and BLAS may sum a view in another order than a contiguous array (on an
    # Intel Xeon the two differed by 8e-15 at logits of magnitude 10; on Zen 5 not at all).
    toks = tokens(40, md.vocab, seed=2)
    close(md.forward(toks), mp.forward(toks), 1e-12)
    # Sinks spread over [0, 3]; the experts' gate / up values reach past swiglu_limit.
    sinks = np.concatenate([md.w[f"model.layers.{i}.self_attn.sinks"] for i in range(4)])
    assert 0 <= sinks.min() < 0.7 and 2.3 < sinks.max() <= 3 and sinks.std() > 0.5
    logits = md.forward(toks)
    assert logits.std() > 1.0, logits.std()
    # Refused: widths not multiples of 32, a YaRN factor other than max / original positions, gpt-oss
    # flags on other architectures.
    for bad in (["--arch", "gpt_oss", "--hidden-size", "80"], ["--arch", "gpt_oss", "--max-position-embeddings", "256"],
                ["--arch", "llama", "--mxfp4"], ["--arch", "qwen3", "--swiglu-limit", "7"],
                ["--arch", "gpt_oss", "--rope-scaling", "none"]):
        r = subprocess.run([sys.executable, MAKE, "--out", os.path.join(WORK, "gpt_oss_bad"), "--quiet", *bad],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "error" in r.stderr, (bad, r.stderr)


def test_gpt_oss_sinks_and_routing_by_hand():
    # A very negative sink takes no weight: the same as no sinks, and not the same as the drawn sinks.
    m = rf.RefModel(make_model("gpt_oss_hand", "--arch", "gpt_oss", "--num-hidden-layers", "1"))
    toks = tokens(9, m.vocab, seed=21)
    base = m.forward(toks)
    w = m.w
    w["model.layers.0.self_attn.sinks"] = np.full(m.n_heads, -1e4)
    close(m.forward(toks), m.forward(toks, breaks={"gpt_oss_no_sinks"}), 1e-12)
    assert np.abs(m.forward(toks) - base).max() > 0.05
    # The top-k router weights are a softmax over the chosen logits: top-2 of 4 -> sigmoid of the gap.
    h = np.random.default_rng(3).normal(size=(5, m.hidden))
    margins = np.full(5, np.inf)
    out = m._gpt_oss_moe("model.layers.0.", h, (), lambda v: v, margins)
    logit = h @ w["model.layers.0.mlp.router.weight"].T + w["model.layers.0.mlp.router.bias"]
    gu, dn = m.gpt_oss_experts("model.layers.0.")
    lim = m.swiglu_limit
    for r in range(5):
        a, b = np.argsort(-logit[r])[:2]
        wa = 1.0 / (1.0 + math.exp(logit[r, b] - logit[r, a]))
        y = 0
        for e, wt in ((a, wa), (b, 1 - wa)):
            v = h[r] @ gu[e] + w["model.layers.0.mlp.experts.gate_up_proj_bias"][e]
            g, u = np.minimum(v[0::2], lim), np.clip(v[1::2], -lim, lim)
            y = y + wt * (((u + 1) * g / (1 + np.exp(-1.702 * g))) @ dn[e]
                          + w["model.layers.0.mlp.experts.down_proj_bias"][e])
        close(out[r], y, 1e-10)
        srt = np.sort(logit[r])[::-1]
        close(margins[r], srt[1] - srt[2], 1e-12)


def test_llama4_chunks_and_temperature_reduce_to_plain_attention():
    """Chunks longer than the sequence are full attention, a temperature period beyond it is no temperature, and a
    one-expert router (sigmoid weight on the input) is the expert run on sigmoid(logit) * x: each Llama 4 piece
    reduces to its definition where it should do nothing."""
    toks = tokens(40, 397, seed=12)
    m = rf.RefModel(make_model("l4_long_chunks", "--arch", "llama4", "--attention-chunk-size", "64",
                               "--floor-scale", "1000"))
    base = m.forward(toks)
    assert np.array_equal(base, m.forward(toks, breaks={"llama4_no_chunk"}))
    assert np.array_equal(base, m.forward(toks, breaks={"llama4_no_temperature"}))
    one = rf.RefModel(make_model("l4_one_expert", "--arch", "llama4", "--num-experts", "1", "--num-experts-per-tok", "1"))
    h = np.random.default_rng(3).standard_normal((5, one.hidden))
    p, w = "model.layers.0.", one.w
    got = one._llama4_moe(p, h, (), lambda v: v, np.full(5, np.inf))
    s = rf.sigmoid(h @ w[p + "feed_forward.router.weight"].T)  # [5, 1]
    x = h * s
    gu = x @ w[p + "feed_forward.experts.gate_up_proj"][0]
    f = gu.shape[1] // 2
    want = (gu[:, f:] * rf.silu(gu[:, :f])) @ w[p + "feed_forward.experts.down_proj"][0]
    want += one._mlp(p + "feed_forward.shared_expert.", h, lambda v: v)
    assert np.allclose(got, want, rtol=1e-12, atol=1e-12)


def llama4_decode(m, toks):
    """A second Llama 4 forward as modeling_llama4 computes it, read from config.json alone: one token at a time
    against a growing KV cache; RoPE as complex multiplication of adjacent pairs (view_as_complex); the L2 norm
    after it; a chunked layer's keys from the start of the query's chunk; the NoPE layers' temperature from
    cache_position + 1; the router's scores for every expert (sigmoid of -inf is 0 off the top k), every expert
    run on its scaled input (a zero input gives zero: no biases), the shared expert added."""
    w, c = m.w, m.config
    hd, nh, nkv, n = c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"], c["num_hidden_layers"]
    eps, k_top, chunk = c["rms_norm_eps"], c["num_experts_per_tok"], c["attention_chunk_size"]
    ropes = c.get("no_rope_layers") or [int((i + 1) % 4 != 0) for i in range(n)]
    step = c.get("interleave_moe_layer_step", 1)
    moe = c.get("moe_layers")
    moe = list(range(step - 1, n, step)) if moe is None else moe
    freq = rf.rope_inv_freq(c, hd)  # llama3 bands checked by test_rope_llama3_bands

    def rms(v):
        return v / math.sqrt(float(np.dot(v, v)) / len(v) + eps)

    def rot(v, pos):
        z = (v[0::2] + 1j * v[1::2]) * np.exp(1j * pos * freq)
        return np.stack([z.real, z.imag], axis=-1).reshape(-1)

    def swiglu(x, gate, up, down):
        return down @ (rf.silu(gate @ x) * (up @ x))

    kc = [[] for _ in range(n)]
    vc = [[] for _ in range(n)]
    rows = []
    for pos, tok in enumerate(toks):
        x = w["model.embed_tokens.weight"][tok].copy()
        for i in range(n):
            p = f"model.layers.{i}."
            h = rms(x) * w[p + "input_layernorm.weight"]
            q, k, v = (w[f"{p}self_attn.{t}_proj.weight"] @ h for t in "qkv")
            q, k, v = q.reshape(nh, hd), k.reshape(nkv, hd), v.reshape(nkv, hd)
            if ropes[i]:
                q, k = np.array([rot(r, pos) for r in q]), np.array([rot(r, pos) for r in k])
                if c["use_qk_norm"]:
                    q, k = np.array([rms(r) for r in q]), np.array([rms(r) for r in k])
            elif c["attn_temperature_tuning"]:
                q = q * (1 + c["attn_scale"] * math.log1p(math.floor((pos + 1) / c["floor_scale"])))
            kc[i].append(k)
            vc[i].append(v)
            first = pos // chunk * chunk if ropes[i] else 0  # layer_types: chunked exactly where RoPE applies
            outs = []
            for hh in range(nh):
                kv = hh // (nh // nkv)
                sc = np.array([np.dot(q[hh], kc[i][t][kv]) for t in range(first, pos + 1)]) / math.sqrt(hd)
                e = np.exp(sc - sc.max())
                outs.append(sum(e[t - first] / e.sum() * vc[i][t][kv] for t in range(first, pos + 1)))
            x = x + w[p + "self_attn.o_proj.weight"] @ np.concatenate(outs)
            h = rms(x) * w[p + "post_attention_layernorm.weight"]
            f = p + "feed_forward."
            if i not in moe:
                x = x + swiglu(h, *(w[f"{f}{t}_proj.weight"] for t in ("gate", "up", "down")))
                continue
            logit = w[f + "router.weight"] @ h
            kth = np.sort(logit)[-k_top]
            score = np.where(logit >= kth, 1 / (1 + np.exp(-logit)), 0.0)
            gu, dn = w[f + "experts.gate_up_proj"], w[f + "experts.down_proj"]
            half = gu.shape[2] // 2
            for e in range(len(logit)):
                y = (h * score[e]) @ gu[e]
                x = x + (y[half:] * rf.silu(y[:half])) @ dn[e]
            x = x + swiglu(h, *(w[f"{f}shared_expert.{t}_proj.weight"] for t in ("gate", "up", "down")))
        rows.append(m.lm_head() @ (rms(x) * w["model.norm.weight"]))
    return np.array(rows)


def test_llama4_decoder_agrees():
    for name, args in (("l4_inc", []),
                       ("l4_inc_llama3_step2_bf16", ["--rope-scaling", "llama3", "--original-max-position-embeddings",
                                                     "16", "--interleave-moe-layer-step", "2", "--dtype", "bf16"]),
                       ("l4_inc_no_norm_top2", ["--no-qk-norm", "--num-experts-per-tok", "2", "--seed", "5"])):
        m = rf.RefModel(make_model(name, "--arch", "llama4", *args))
        toks = tokens(30, m.vocab, seed=14)
        close(llama4_decode(m, toks), m.forward(toks), 1e-9)


def test_llama4_conditional_generation_layout():
    """Llama4ForConditionalGeneration as the Scout release writes it (text_config nested; language_model.model.*,
    language_model.lm_head.weight, vision_model.*, multi_modal_projector.*) reads as the CausalLM folder does."""
    src = make_model("l4_causal", "--arch", "llama4", "--seed", "9")
    out = os.path.join(WORK, "l4_conditional")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        text = json.load(f)
    top = {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4", "torch_dtype": "float32",
           "text_config": dict(text, architectures=None), "vision_config": {"model_type": "llama4_vision_model"}}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(top, f)
    # Same data bytes, renamed header, one vision and one projector tensor reusing the first tensor's bytes.
    with open(os.path.join(src, "model.safetensors"), "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        data = f.read()
    renamed = {"__metadata__": header.pop("__metadata__")}
    for k, v in header.items():
        renamed[("language_model." + k) if k.startswith(("model.", "lm_head.")) else k] = v
    first = header["model.embed_tokens.weight"]
    renamed["vision_model.patch_embedding.linear.weight"] = dict(first)
    renamed["multi_modal_projector.linear_1.weight"] = dict(first)
    raw = json.dumps(renamed).encode()
    raw += b" " * (-len(raw) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw + data)
    toks = tokens(20, 397, seed=15)
    assert np.array_equal(rf.RefModel(out).forward(toks), rf.RefModel(src).forward(toks))


def main():
    global WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True, help="scratch folder for generated models")
    ap.add_argument("-k", help="run only tests whose name contains this")
    a = ap.parse_args()
    WORK = a.work
    os.makedirs(WORK, exist_ok=True)
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    if a.k:
        tests = [(n, f) for n, f in tests if a.k in n]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"PASS {name}")
            passed += 1
        except Exception:
            print(f"FAIL {name}\n{traceback.format_exc()}")
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
