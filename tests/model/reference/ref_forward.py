#!/usr/bin/python3
"""Independent float64 NumPy forward pass of Hugging Face Llama / Mistral / Qwen2 / Qwen2-MoE / Qwen3 / Qwen3-MoE /
Mixtral / DeepSeek-V2 / DeepSeek-V3 / Gemma 2 / Gemma 3 (text) / Phi-3 (Phi-3, Phi-3.5, Phi-4, Phi-4-mini) /
gpt-oss / SmolLM3 / Granite 3.x / Granite-MoE / OLMo 2 / OLMo 3 / EXAONE 4.0 / Seed-OSS / OLMoE / GLM-4-0414 (Glm4) / GLM-4.5 (Glm4Moe) /
ERNIE 4.5 (dense and MoE) / MiniMax-M2 models.

Written from the published architecture definitions (transformers' modeling_llama, modeling_mistral,
modeling_qwen2, modeling_qwen2_moe, modeling_qwen3, modeling_qwen3_moe, modeling_mixtral, modeling_gemma2 / modular_gemma2 /
configuration_gemma2 (see RefModel._gemma2_init), modeling_gemma3 / configuration_gemma3 / masking_utils,
modeling_phi3 / configuration_phi3 / modeling_rope_utils (see Phi3Rope), modeling_gpt_oss /
configuration_gpt_oss / integrations/mxfp4 (see RefModel._gpt_oss_init), modular_smollm3 and
modular_granite / configuration_granite, modular_granitemoe / modeling_jetmoe (see RefModel._smollm3_init,
_granite_init, _granite_moe), modular_olmo2 / configuration_olmo2 (see RefModel._olmo2_init), modular_olmo3 (see
RefModel._olmo3_init), modular_exaone4 (see RefModel._exaone4_init), modular_seed_oss / configuration_seed_oss
(see RefModel._seed_oss_init), modeling_olmoe / configuration_olmoe
(see RefModel._olmoe_init), modeling_glm4_moe / configuration_glm4_moe (see RefModel._glm4_moe_init), modular_glm4 / modeling_glm /
configuration_glm4 (see RefModel._glm4_init), modular_ernie4_5 / modular_ernie4_5_moe /
configuration_ernie4_5_moe (see RefModel._ernie_init, _ernie_moe), modular_minimax_m2 / configuration_minimax_m2
(see RefModel._minimax_m2_init, _minimax_moe); DeepSeek's
papers and
modeling_deepseek semantics in ref_deepseek.py), not from dpserve's C++.
It reads the model folder itself (config.json + safetensors, sharded or not) and converts bf16 / f16 / f32
weights exactly to float64 (U8 tensors, gpt-oss's MXFP4 blocks and scales, stay uint8 and are dequantized).

  /usr/bin/python3 ref_forward.py --model-path DIR --tokens 1,5,9 [--out logits.f32]

`breaks` (a set of names, see BREAKS) switches on deliberate bugs; the tests use them to show that
their tolerances catch such bugs. `emulate` ({"act", "kv"}) rounds matmul inputs / the KV cache to
bf16, to estimate the error a bf16 runtime legitimately makes.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

import ref_deepseek as ds

BREAKS = {
    "rope_interleaved": "RoPE rotates adjacent pairs (2i, 2i+1) instead of halves (i, i + d/2)",
    "rope_neg": "RoPE rotates by -angle (rotate_half with the wrong sign)",
    "rope_k_pos_plus1": "keys rotated at position + 1 (query/key position off by one)",
    "no_rope_scaling": "rope_scaling ignored",
    "yarn_betas_swapped": "YaRN ramp built with beta_fast and beta_slow exchanged",
    "yarn_no_attention_factor": "YaRN's cos/sin attention factor (0.1 ln(factor) + 1) left out",
    "gqa_modulo": "query head h reads kv head h % n_kv instead of h // (n_heads / n_kv)",
    "skip_bias": "q/k/v projection biases ignored (Qwen2)",
    "skip_q_norm": "per-head q_norm skipped (Qwen3)",
    "skip_k_norm": "per-head k_norm skipped (Qwen3)",
    "skip_norm_weight": "RMSNorm weights ignored (plain normalisation)",
    "no_causal_mask": "attention sees later tokens",
    "moe_flip_renorm": "norm_topk_prob applied the wrong way round (Qwen3-MoE)",
    "no_sliding_window": "sliding_window ignored (Mistral / Mixtral / Phi-3; Gemma 3's sliding layers)",
    "mixtral_no_renorm": "Mixtral's top-k weights left unnormalised",
    **ds.BREAKS,
    "gemma_norm_no_plus_one": "Gemma RMSNorm scales by w instead of (1 + w)",
    "gemma_no_embed_scale": "Gemma embeddings not multiplied by sqrt(hidden_size)",
    "gemma_no_post_norms": "Gemma post_attention / post_feedforward norms skipped (outputs added as they are)",
    "gemma_llama_norm_order": "Gemma run in Llama's layout: post_attention_layernorm normalises the residual "
                              "before the MLP, pre_feedforward / post_feedforward norms unused",
    "gemma_attn_scale_head_dim": "Gemma attention scaled by head_dim**-0.5 instead of query_pre_attn_scalar**-0.5",
    "gemma_local_rope_global_theta": "Gemma sliding layers use the full layers' RoPE (rope_theta, rope_scaling)",
    "gemma_rope_scaling_all_layers": "Gemma rope_scaling also applied to the sliding layers' local RoPE",
    "gemma_layer_types_shifted": "Gemma layer i gets layer i + 1's attention type ((i + 1) % pattern misread)",
    "gemma_silu": "Gemma MLP activation SiLU instead of GELU (tanh approximation)",
    "gemma2_no_attn_softcap": "Gemma 2 attention scores not soft-capped (attn_logit_softcapping ignored)",
    "gemma2_no_final_softcap": "Gemma final_logit_softcapping ignored: raw LM-head logits (Gemma 2; Gemma 3 "
                               "only when its config sets a cap)",
    "gemma2_softcap_after_mask_scale": "Gemma 2 attention soft-cap applied after the mask is added, so masked "
                                       "keys score -cap (cap * tanh(-inf / cap)) instead of -inf and get weight",
    "gemma2_sliding_odd_layers": "Gemma 2 sliding / full alternation with the wrong parity: every layer's type "
                                 "flipped (sliding on odd layers for the default layout)",
    "phi3_kv_swapped": "Phi-3 fused qkv_proj split with the key and value slices exchanged",
    "phi3_gate_up_swapped": "Phi-3 fused gate_up_proj: SiLU applied to the up half instead of the gate half",
    "phi3_full_rotary": "Phi-3 partial_rotary_factor ignored: the whole head rotates (frequencies over head_dim, "
                        "LongRoPE factors padded with 1); only differs when partial_rotary_factor < 1",
    "longrope_factors_swapped": "LongRoPE short_factor used where long_factor belongs and vice versa",
    "longrope_no_attention_factor": "LongRoPE's cos/sin attention factor left out",
    "yarn_truncate_ignored": "YaRN ramp bounds rounded to integers (floor / ceil) although rope_scaling.truncate "
                             "is false (gpt-oss)",
    "gpt_oss_no_sinks": "gpt-oss attention sinks ignored (plain softmax over the keys)",
    "gpt_oss_sink_scaled": "gpt-oss sink logit multiplied by head_dim**-0.5 like the scores",
    "gpt_oss_no_o_bias": "gpt-oss o_proj bias ignored",
    "gpt_oss_sliding_all": "gpt-oss layer_types ignored: every layer sliding",
    "gpt_oss_layer_types_flipped": "gpt-oss sliding / full alternation with the wrong parity (sliding on odd layers)",
    "gpt_oss_window_off_by_one": "gpt-oss sliding layers see sliding_window + 1 keys (i - j <= window)",
    "gpt_oss_no_router_bias": "gpt-oss router bias ignored",
    "gpt_oss_softmax_before_topk": "gpt-oss routing weights: softmax over all experts, then the top-k taken "
                                   "unrenormalised (Mixtral / Qwen style) instead of softmax over the top-k logits",
    "gpt_oss_gate_up_not_interleaved": "gpt-oss gate_up split in halves (gate first I columns, up the rest) instead "
                                       "of even / odd columns",
    "gpt_oss_gate_up_swapped": "gpt-oss gate taken from the odd columns and up from the even ones",
    "gpt_oss_no_clamp": "gpt-oss swiglu_limit ignored (no clamp of gate and up)",
    "gpt_oss_limit_7": "gpt-oss swiglu_limit read as the fixed 7.0 instead of config.json's value",
    "gpt_oss_gate_clamp_both_sides": "gpt-oss gate clamped to [-limit, limit] (like up) instead of only above",
    "gpt_oss_up_plus_one_missing": "gpt-oss expert output (up * glu) instead of ((up + 1) * glu)",
    "gpt_oss_plain_silu": "gpt-oss glu = gate * sigmoid(gate) (SiLU) instead of gate * sigmoid(1.702 gate)",
    "gpt_oss_no_expert_bias": "gpt-oss experts' gate_up_proj_bias and down_proj_bias ignored",
    "gpt_oss_mxfp4_nibbles_swapped": "MXFP4 byte's high nibble taken as the even element, low as the odd one",
    "gpt_oss_mxfp4_scale_bias_128": "MXFP4 E8M0 scale read as 2^(s - 128) instead of 2^(s - 127)",
    "smollm3_rope_every_layer": "SmolLM3 no_rope_layers ignored: every layer rotates q and k",
    "smollm3_nope_flags_inverted": "SmolLM3 no_rope_layers read the wrong way round (1 taken as 'no RoPE')",
    "granite_no_embedding_multiplier": "Granite embedding_multiplier ignored",
    "granite_attn_scale_head_dim": "Granite attention scaled by head_dim**-0.5 instead of attention_multiplier",
    "granite_no_residual_multiplier": "Granite residual_multiplier ignored (layer outputs added as they are)",
    "granite_logits_multiplied": "Granite logits multiplied by logits_scaling instead of divided",
    "granite_moe_gate_up_swapped": "Granite-MoE input_linear halves swapped: SiLU on the up half, not the gate half",
    "granite_moe_no_renorm": "Granite-MoE routing weights: softmax over all experts, the top k taken unrenormalised "
                             "instead of a softmax over the top-k logits",
    "qwen2_moe_shared_ungated": "Qwen2-MoE shared expert added without its sigmoid(shared_expert_gate) factor",
    "qwen2_moe_no_shared_expert": "Qwen2-MoE shared expert left out",
    "glm4_moe_full_rotary": "GLM-4.5 RoPE over the whole head instead of its first partial_rotary_factor share",
    "glm4_full_rotary": "GLM-4 RoPE over the whole head instead of its first partial_rotary_factor share",
    "ernie_no_selection_bias": "ERNIE 4.5 MoE's experts chosen by the softmax alone, moe_statics' bias ignored",
    "ernie_weights_unnormalised": "ERNIE 4.5 MoE's chosen softmax values not divided by their sum",
    "glm4_no_post_norms": "GLM-4 post_self_attn_layernorm / post_mlp_layernorm left out (Llama's layer)",
    "olmoe_qk_norm_per_head": "OLMoE q_norm / k_norm applied to each head on its own (Qwen3-MoE's way) instead of "
                              "over the whole projection",
    "olmo2_qk_norm_per_head": "OLMo 2 q_norm / k_norm applied to each head on its own (Qwen3's way) instead of over "
                              "the whole projection",
    "minimax_qk_norm_per_head": "MiniMax-M2 q_norm / k_norm applied to each head on its own instead of over the "
                                "whole projection (qk_norm_type per_layer)",
    "minimax_full_rotary": "MiniMax-M2 RoPE over the whole head instead of its first rotary_dim",
    "minimax_no_selection_bias": "MiniMax-M2 experts chosen by the sigmoid scores alone, e_score_correction_bias "
                                 "ignored",
    "minimax_weights_biased": "MiniMax-M2 experts weighted by the biased selection scores instead of the sigmoid "
                              "scores",
    "exaone4_rope_every_layer": "EXAONE 4.0 full layers rotated too (global NoPE ignored)",
    "llama4_scale_output": "Llama 4 router weights multiplying each expert's output instead of its input",
    "llama4_no_shared_expert": "Llama 4 shared expert left out",
    "llama4_gate_up_swapped": "Llama 4 experts' gate_up_proj read as up columns first, then gate",
    "llama4_no_chunk": "Llama 4 chunked_attention layers attending over the whole context",
    "llama4_no_qk_norm": "Llama 4 L2 q / k norm (use_qk_norm) left out",
    "llama4_no_temperature": "Llama 4 NoPE layers' query temperature left out",
    "llama4_temperature_no_offset": "Llama 4 query temperature from floor(p / floor_scale) instead of "
                                    "floor((p + 1) / floor_scale)",
    "ministral3_no_q_temperature": "Ministral 3 queries not multiplied by Llama 4's temperature "
                                   "1 + beta ln(1 + floor(p / original_max_position_embeddings))",
    "olmo3_yarn_all_layers": "OLMo 3 rope_scaling applied to the sliding layers too (one rotary embedding for all)",
    "olmo3_layer_types_flipped": "OLMo 3 sliding / full layers exchanged",
    "olmo2_pre_norms": "OLMo 2 norms used as pre-norms (Llama's order: normalise the layer input, add the raw "
                       "output) instead of normalising the outputs",
}

_ST_DTYPES = {"BF16": 2, "F16": 2, "F32": 4, "U8": 1}


def bf16_round(x):
    """Round to the nearest bfloat16 (ties to even), returned as float64."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def read_safetensors(path):
    """{name: float64 array} from one .safetensors file; every field is checked."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: truncated (no header length)")
        n = int.from_bytes(raw, "little")
        if n > size - 8:
            raise ValueError(f"{path}: header length {n} exceeds file size {size}")
        header = json.loads(f.read(n).decode("utf-8"))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt, shape, (lo, hi) = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in _ST_DTYPES:
            raise ValueError(f"{path}: {name}: unsupported dtype {dt}")
        count = int(np.prod(shape)) if shape else 1
        if hi - lo != count * _ST_DTYPES[dt] or hi > len(data) or lo < 0:
            raise ValueError(f"{path}: {name}: bad data_offsets {lo},{hi} for {dt}{shape}")
        buf = data[lo:hi]
        if dt == "BF16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32).astype(np.float64)
        elif dt == "F16":
            arr = np.frombuffer(buf, dtype="<f2").astype(np.float64)
        elif dt == "U8":  # MXFP4 blocks / scales: kept as bytes
            arr = np.frombuffer(buf, dtype=np.uint8).copy()
        else:
            arr = np.frombuffer(buf, dtype="<f4").astype(np.float64)
        out[name] = arr.reshape(shape)
    return out


def read_model_folder(path):
    """(config dict, {tensor name: float64 array}) from a HF model folder."""
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    index = os.path.join(path, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        for fname in sorted(set(weight_map.values())):
            part = read_safetensors(os.path.join(path, fname))
            for name in part:
                if weight_map.get(name) != fname:
                    raise ValueError(f"{fname}: {name} not mapped to this file by the index")
            tensors.update(part)
        missing = set(weight_map) - set(tensors)
        if missing:
            raise ValueError(f"index lists tensors not found in the shards: {sorted(missing)[:5]}")
    else:
        tensors = read_safetensors(os.path.join(path, "model.safetensors"))
    return config, tensors


def rope_inv_freq(config, head_dim, breaks=()):
    """Per-pair inverse frequencies, including the llama3 / linear rope_scaling rules."""
    theta = float(config.get("rope_theta", 10000.0))
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    rs = config.get("rope_scaling")
    if not rs or "no_rope_scaling" in breaks:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return inv / float(rs["factor"])
    if kind == "llama3":
        factor = float(rs["factor"])
        low, high = float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
        old_ctx = float(rs["original_max_position_embeddings"])
        low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return np.where(medium, smoothed, scaled)
    if kind == "yarn":
        return yarn_inv_freq(config, head_dim, breaks)
    if kind == "default":
        return inv
    raise ValueError(f"unsupported rope_scaling type {kind!r}")


def yarn_inv_freq(config, dim, breaks=()):
    """transformers' "yarn" rope_type (modeling_rope_utils, as Qwen2 / Qwen3 / Llama use it).

    For pair j of dim/2, the extrapolated frequency is base^(-2j/dim) and the interpolated one that
    divided by `factor`. The dimension d(r) at which a frequency turns r times over the original context
    L solves L * base^(-d/dim) = 2 pi r, so d(r) = dim * ln(L / (2 pi r)) / (2 ln base). The ramp runs
    from floor(d(beta_fast)) (at least 0) to ceil(d(beta_slow)) (at most dim - 1; +0.001 if equal;
    no rounding when truncate is false): pairs below it keep the extrapolated frequency, pairs above
    take the interpolated one, linear in j in between. L is original_max_position_embeddings, or
    max_position_embeddings when absent; beta_fast / beta_slow default to 32 / 1."""
    rs = config["rope_scaling"]
    base = float(config.get("rope_theta", 10000.0))
    factor = float(rs["factor"])
    ctx = float(rs.get("original_max_position_embeddings") or config["max_position_embeddings"])
    fast, slow = float(rs.get("beta_fast") or 32), float(rs.get("beta_slow") or 1)
    if "yarn_betas_swapped" in breaks:
        fast, slow = slow, fast
    turns_at = lambda r: dim * math.log(ctx / (2 * math.pi * r)) / (2 * math.log(base))  # noqa: E731
    lo, hi = turns_at(fast), turns_at(slow)
    if rs.get("truncate", True) or "yarn_truncate_ignored" in breaks:
        lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo, 0), min(hi, dim - 1)
    if hi == lo:
        hi += 0.001
    j = np.arange(dim // 2, dtype=np.float64)
    to_interp = np.clip((j - lo) / (hi - lo), 0.0, 1.0)  # 0: keep, 1: divide by factor
    extrap = 1.0 / base ** (2 * j / dim)
    return extrap * (1 - to_interp) + (extrap / factor) * to_interp


def rope_attention_scaling(config, breaks=()):
    """The factor transformers multiplies cos and sin by: 1, except for yarn: attention_factor if
    given, else mscale(factor, mscale) / mscale(factor, mscale_all_dim) when both are set, else
    mscale(factor, 1) = 0.1 ln(factor) + 1 (factor > 1)."""
    rs = config.get("rope_scaling")
    if not rs or rs.get("rope_type", rs.get("type")) != "yarn" or "no_rope_scaling" in breaks \
            or "yarn_no_attention_factor" in breaks:
        return 1.0
    if rs.get("attention_factor") is not None:
        return float(rs["attention_factor"])
    factor = float(rs["factor"])

    def mscale(m):
        return 1.0 if factor <= 1 else 0.1 * m * math.log(factor) + 1.0
    if rs.get("mscale") and rs.get("mscale_all_dim"):
        return mscale(float(rs["mscale"])) / mscale(float(rs["mscale_all_dim"]))
    return mscale(1.0)


def apply_rope(x, positions, inv_freq, breaks=(), mag=1.0):
    """x: [T, heads, head_dim]. HF convention: emb = cat(freqs, freqs); cos and sin times the
    attention scaling `mag`; x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1)."""
    ang = np.outer(positions.astype(np.float64), inv_freq)  # [T, d/2]
    cos, sin = mag * np.cos(ang)[:, None, :], mag * np.sin(ang)[:, None, :]
    if "rope_neg" in breaks:
        sin = -sin
    d2 = x.shape[-1] // 2
    if "rope_interleaved" in breaks:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x1 * cos - x2 * sin
        out[..., 1::2] = x2 * cos + x1 * sin
        return out
    x1, x2 = x[..., :d2], x[..., d2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def apply_partial_rope(x, positions, inv_freq, rotary_dim, breaks=(), mag=1.0):
    """modeling_phi3's apply_rotary_pos_emb: the first rotary_dim dims of each head rotate as apply_rope
    does (rotate_half within those dims), the rest pass through unchanged (and unscaled)."""
    if rotary_dim >= x.shape[-1]:
        return apply_rope(x, positions, inv_freq, breaks, mag)
    return np.concatenate([apply_rope(x[..., :rotary_dim], positions, inv_freq, breaks, mag),
                           x[..., rotary_dim:]], axis=-1)


class Phi3Rope:
    """RoPE of a Phi3ForCausalLM config, as transformers computes it.

    Read (huggingface/transformers): src/transformers/models/phi3/configuration_phi3.py (4.x: defaults,
    _rope_scaling_adjustment renaming rope_scaling type "su" / "yarn" to "longrope", _rope_scaling_validation
    wanting exactly {type, short_factor, long_factor} of rotary_dim / 2 numbers each; 5.x: the same
    renaming in convert_rope_params_to_dict, partial_rotary_factor and rope_theta moved into
    rope_parameters), src/transformers/models/phi3/modeling_phi3.py (Phi3RotaryEmbedding,
    apply_rotary_pos_emb with its rotary / pass-through split), src/transformers/modeling_rope_utils.py
    (_compute_default_rope_parameters, _compute_longrope_parameters, dynamic_rope_update's
    longrope_frequency_update, and in 5.x standardize_rope_params).

    - rotary_dim = int(head_dim * partial_rotary_factor), head_dim = config.head_dim or hidden / heads;
      inv_freq_i = 1 / (ext_i * rope_theta ** (2 i / rotary_dim)), ext = 1 without rope_scaling.
    - LongRoPE: ext = long_factor when the forward's sequence length max(position_ids) + 1 exceeds
      original_max_position_embeddings (the top-level config field, Phi3Config default 4096; transformers
      5's standardize_rope_params copies it over any value inside the rope dict), else short_factor. The
      choice is made per forward call over the whole sequence, so a prompt crossing the original length
      rotates all its tokens with the long factors.
    - cos and sin are multiplied by the attention factor whichever set is used: rope_scaling's
      attention_factor if given, else 1 when factor <= 1, else sqrt(1 + ln(factor) / ln(original)), with
      factor = max_position_embeddings / original_max_position_embeddings. (transformers 5 takes an
      explicit rope_scaling "factor" before that ratio, 4.x always took the ratio; a config with a factor
      key does not load in 4.x at all, since its Phi3Config wants exactly three keys.)

    `choice` None applies that sequence-length rule; "long" / "short" force a factor set (a server that
    picks it once from its context length)."""

    def __init__(self, config, head_dim):
        c = config
        # transformers 5 saves rope_parameters (rope_type, rope_theta, partial_rotary_factor and the
        # LongRoPE keys in one dict); a rope_scaling dict, when present, takes its place, and values in the
        # dict come before the top-level rope_theta / partial_rotary_factor.
        rs = c.get("rope_scaling") or c.get("rope_parameters") or {}
        if not isinstance(rs, dict):
            raise ValueError(f"rope_scaling must be a dict, not {rs!r}")
        self.theta = float(rs.get("rope_theta", c.get("rope_theta", 10000.0)))
        prf = rs.get("partial_rotary_factor", c.get("partial_rotary_factor", 1.0))
        self.head_dim = head_dim
        self.rotary_dim = int(head_dim * float(prf))
        if self.rotary_dim < 2 or self.rotary_dim % 2 or self.rotary_dim > head_dim:
            raise ValueError(f"partial_rotary_factor {prf} leaves rotary dim {self.rotary_dim} of head_dim {head_dim}")
        kind = rs.get("rope_type", rs.get("type", "default"))
        if kind in ("su", "yarn"):
            kind = "longrope"  # Phi3Config's renaming of the legacy names
        if kind not in ("default", "longrope"):
            raise ValueError(f"Phi3Config accepts rope_scaling type longrope (or su / yarn), not {kind!r}")
        self.longrope = kind == "longrope"
        self.original = int(c.get("original_max_position_embeddings", 4096))
        self.max_pos = int(c.get("max_position_embeddings", 4096))
        if self.longrope:
            self.short = np.asarray(rs["short_factor"], dtype=np.float64)
            self.long = np.asarray(rs["long_factor"], dtype=np.float64)
            for name, f in (("short_factor", self.short), ("long_factor", self.long)):
                if f.shape != (self.rotary_dim // 2,):
                    raise ValueError(f"{name} has {f.size} values, not rotary_dim / 2 = {self.rotary_dim // 2}")
            if rs.get("attention_factor") is not None:
                self.attention_factor = float(rs["attention_factor"])
            else:
                factor = rs.get("factor")
                factor = float(factor) if factor is not None else self.max_pos / self.original
                self.attention_factor = 1.0 if factor <= 1.0 else \
                    math.sqrt(1.0 + math.log(factor) / math.log(self.original))

    def uses_long(self, seq_len, choice=None):
        if choice not in (None, "long", "short"):
            raise ValueError(f"longrope_choice must be None, 'long' or 'short', not {choice!r}")
        return choice == "long" if choice else seq_len > self.original

    def frequencies(self, seq_len, choice=None, breaks=()):
        """(inv_freq, cos/sin magnitude, rotary dim) for a forward over positions 0 .. seq_len - 1."""
        dim = self.head_dim if "phi3_full_rotary" in breaks else self.rotary_dim
        ext = np.ones(dim // 2)
        mag = 1.0
        if self.longrope and "no_rope_scaling" not in breaks:
            long = self.uses_long(seq_len, choice) != ("longrope_factors_swapped" in breaks)
            f = self.long if long else self.short
            ext[:len(f)] = f[:dim // 2]
            if "longrope_no_attention_factor" not in breaks:
                mag = self.attention_factor
        inv = 1.0 / (ext * self.theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
        return inv, mag, dim


def rms_norm(x, w, eps, breaks=()):
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return y if "skip_norm_weight" in breaks else y * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warning for large |x|


# transformers' integrations/mxfp4.py FP4_VALUES (E2M1): codes 0-7 positive, 8-15 their negatives.
FP4_VALUES = np.array([+0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0,
                       -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float64)


def mxfp4_dequantize(blocks, scales, breaks=()):
    """transformers' convert_moe_packed_tensors: blocks uint8 [E, rows, G, 16], scales uint8 [E, rows, G]
    -> float64 [E, G * 32, rows]. In each block of 32 values byte b holds element 2b (low nibble) and
    2b + 1 (high nibble); the block is multiplied by 2^(scale - 127); the [E, rows, cols] result
    (rows = outputs) is transposed to the x @ W layout [E, cols, rows]."""
    if blocks.dtype != np.uint8 or scales.dtype != np.uint8 or blocks.shape[:-1] != scales.shape \
            or blocks.shape[-1] != 16:
        raise ValueError(f"MXFP4 blocks {blocks.shape} {blocks.dtype} / scales {scales.shape} {scales.dtype} "
                         "do not match [E, rows, G, 16] / [E, rows, G] uint8")
    lo, hi = blocks & 0x0F, blocks >> 4
    if "gpt_oss_mxfp4_nibbles_swapped" in breaks:
        lo, hi = hi, lo
    e, rows, g, _ = blocks.shape
    vals = np.empty((e, rows, g, 32))
    vals[..., 0::2] = FP4_VALUES[lo]
    vals[..., 1::2] = FP4_VALUES[hi]
    bias = 128 if "gpt_oss_mxfp4_scale_bias_128" in breaks else 127
    vals = np.ldexp(vals, scales.astype(np.int64)[..., None] - bias)
    return vals.reshape(e, rows, g * 32).transpose(0, 2, 1)


def topk_softmax(logits, k, margins, softmax_all=False):
    """Routing by a softmax over the top k router logits (gpt-oss, Granite-MoE): (experts [T, k], weights [T, k]).
    Each row's gap between its k-th and (k+1)-th logit lowers `margins` (near-ties a rounding could flip).
    softmax_all: the deliberate bug of a softmax over every expert, the top k taken unrenormalised."""
    order = np.argsort(-logits, axis=1, kind="stable")
    top = order[:, :k]
    if k < logits.shape[1]:
        srt = np.take_along_axis(logits, order, axis=1)
        np.minimum(margins, srt[:, k - 1] - srt[:, k], out=margins)
    if softmax_all:
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return top, np.take_along_axis(probs / probs.sum(axis=1, keepdims=True), top, axis=1)
    vals = np.take_along_axis(logits, top, axis=1)
    wts = np.exp(vals - vals.max(axis=1, keepdims=True))
    return top, wts / wts.sum(axis=1, keepdims=True)


def gemma_rms_norm(x, w, eps, breaks=()):
    """Gemma3RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + w); checkpoints store w as an offset from 1."""
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    if "skip_norm_weight" in breaks:
        return y
    return y * (w if "gemma_norm_no_plus_one" in breaks else 1.0 + w)


def gelu_tanh(x):
    """ACT2FN["gelu_pytorch_tanh"] = torch.nn.functional.gelu(x, approximate="tanh")."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def safetensors_dtypes(path):
    """{tensor name: safetensors dtype string} of a HF model folder (headers only)."""
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for fname in files:
        with open(os.path.join(path, fname), "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n).decode("utf-8"))
        out.update({k: v["dtype"] for k, v in header.items() if k != "__metadata__"})
    return out


def cast_scalar(v, st_dtype):
    """torch.tensor(v) (float32) .to(dtype) for a safetensors dtype, as float64."""
    v32 = np.float32(v)
    if st_dtype == "BF16":
        return float(bf16_round(np.array([v32]))[0])
    if st_dtype == "F16":
        return float(np.float16(v32))
    return float(v32)


GEMMA_TYPES = ("sliding_attention", "full_attention")


class RefModel:
    """A loaded model; forward() maps a token sequence to logits [T, vocab]."""

    def __init__(self, path):
        self.path = path
        self.config, self.w = read_model_folder(path)
        c = self.config
        arch = c["architectures"][0]
        if arch == "Llama4ForConditionalGeneration":
            self._llama4_unwrap()
            c, arch = self.config, "Llama4ForCausalLM"
        kinds = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
                 "Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3_moe",
                 "Qwen2MoeForCausalLM": "qwen2_moe", "MixtralForCausalLM": "mixtral",
                 "DeepseekV2ForCausalLM": "deepseek_v2", "DeepseekV3ForCausalLM": "deepseek_v3",
                 # transformers' modular_glm4_moe_lite: Glm4MoeLiteConfig is DeepseekV3Config, its attention
                 # DeepseekV3Attention, its MoE / router / decoder layer Glm4Moe's, which are DeepSeek-V3's.
                 "Glm4MoeLiteForCausalLM": "deepseek_v3",
                 "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3", "Phi3ForCausalLM": "phi3",
                 "GptOssForCausalLM": "gpt_oss", "SmolLM3ForCausalLM": "smollm3", "GraniteForCausalLM": "granite",
                 "GraniteMoeForCausalLM": "granite_moe", "Olmo2ForCausalLM": "olmo2",
                 "Olmo3ForCausalLM": "olmo3", "Exaone4ForCausalLM": "exaone4", "SeedOssForCausalLM": "seed_oss",
                 "Ministral3ForCausalLM": "ministral3",
                 "OlmoeForCausalLM": "olmoe", "Glm4MoeForCausalLM": "glm4_moe",
                 "Glm4ForCausalLM": "glm4", "Ernie4_5ForCausalLM": "ernie4_5",
                 "Ernie4_5_MoeForCausalLM": "ernie4_5_moe", "MiniMaxM2ForCausalLM": "minimax_m2",
                 "Llama4ForCausalLM": "llama4"}
        if arch not in kinds:
            raise ValueError(f"unsupported architecture {arch}")
        self.arch = kinds[arch]
        self.hidden = c["hidden_size"]
        self.n_layers = c["num_hidden_layers"]
        self.n_heads = c["num_attention_heads"]
        self.n_kv = c.get("num_key_value_heads", self.n_heads)
        self.head_dim = c.get("head_dim") or self.hidden // self.n_heads
        self.eps = float(c.get("rms_norm_eps", 1e-6))
        self.vocab = c["vocab_size"]
        self.tied = bool(c.get("tie_word_embeddings", False))
        if self.n_heads % self.n_kv:
            raise ValueError("num_attention_heads not a multiple of num_key_value_heads")
        self.deepseek = self.arch in ("deepseek_v2", "deepseek_v3")
        if self.arch == "ministral3":
            self._ministral3_init()
            c = self.config
        # Mistral / Mixtral / Ministral 3: a query at position i sees keys j with i - j < sliding_window.
        self.window = c.get("sliding_window") if self.arch in ("mistral", "mixtral", "ministral3") else None
        self.moe = self.arch in ("qwen3_moe", "qwen2_moe", "mixtral", "granite_moe", "olmoe", "glm4_moe", "ernie4_5_moe",
                                 "minimax_m2", "llama4") or (self.deepseek and bool(c.get("n_routed_experts")))
        self.gemma = self.arch in ("gemma2", "gemma3")
        if self.arch == "gemma3":
            self._gemma_init()
        elif self.arch == "gemma2":
            self._gemma2_init()
        self.phi3 = self.arch == "phi3"
        # Phi-3 LongRoPE factor set: None = transformers' rule (long iff the forward's length exceeds
        # original_max_position_embeddings); "long" / "short" force one set for every forward.
        self.longrope_choice = None
        if self.phi3:
            self._phi3_init()
        self.gpt_oss = self.arch == "gpt_oss"
        self.mxfp4 = False
        if self.gpt_oss:
            self._gpt_oss_init()
        # Layers that rotate q and k (all but SmolLM3's NoPE layers) and Granite's multipliers (1: Llama).
        self.rope_layers = [True] * self.n_layers
        self.embedding_multiplier = self.residual_multiplier = self.logits_scaling = 1.0
        self.attention_multiplier = None  # None: head_dim**-0.5
        if self.arch == "smollm3":
            self._smollm3_init()
        elif self.arch in ("granite", "granite_moe"):
            self._granite_init()
        elif self.arch in ("olmo2", "olmo3"):
            self._olmo2_init()
        elif self.arch == "olmoe":
            self._olmoe_init()
        if self.arch == "olmo3":
            self._olmo3_init()
        elif self.arch == "exaone4":
            self._exaone4_init()
        elif self.arch == "seed_oss":
            self._seed_oss_init()
        self.glm_rotary = None
        if self.arch == "glm4_moe":
            self._glm4_moe_init()
        elif self.arch == "glm4":
            self._glm4_init()
        if self.arch in ("ernie4_5", "ernie4_5_moe"):
            self._ernie_init()
        if self.arch == "minimax_m2":
            self._minimax_m2_init()
        if self.arch == "llama4":
            self._llama4_init()

    def _llama4_unwrap(self):
        """Llama4ForConditionalGeneration (Llama4Config): the language model is text_config (model_type llama4_text),
        its tensors under language_model.model. / language_model.lm_head. (transformers 4.51's layout, the
        release's) or model.language_model. / lm_head. (later layouts); the vision model is not read."""
        c = self.config
        text = dict(c["text_config"])
        for key in ("torch_dtype", "dtype"):
            if key in c and key not in text:
                text[key] = c[key]
        text["architectures"] = ["Llama4ForCausalLM"]
        self.config = text
        renamed = {}
        for name, t in self.w.items():
            for old, new in (("language_model.model.", "model."), ("language_model.lm_head.", "lm_head."),
                             ("model.language_model.", "model.")):
                if name.startswith(old):
                    name = new + name[len(old):]
                    break
            else:
                if not name.startswith("lm_head."):
                    continue  # vision_model., multi_modal_projector.
            renamed[name] = t
        self.w = renamed

    def _llama4_init(self):
        """Llama4TextConfig / modeling_llama4 (Llama4TextAttention, Llama4TextMoe, Llama4TextExperts):
        - defaults: head_dim 128, rms_norm_eps 1e-5, rope_theta 5e5, untied;
        - no_rope_layers[i] 1: layer i applies RoPE (complex multiplication: adjacent pairs), default
          int((i + 1) % no_rope_layer_interval != 0), interval 4;
        - layer_types default: "chunked_attention" where RoPE applies, "full_attention" elsewhere; chunked layers mask
          keys outside the query's chunk of attention_chunk_size positions (kv // chunk == q // chunk);
        - use_qk_norm: on RoPE layers q and k (per head) become x * rsqrt(mean(x^2) + rms_norm_eps) after RoPE;
        - attn_temperature_tuning (truthy) on NoPE layers: q *= log1p(floor((pos + 1) / floor_scale)) * attn_scale + 1;
        - moe_layers (default range(step - 1, n, step), step interleave_moe_layer_step) are Llama4TextMoe, the others
          Llama4TextMLP of intermediate_size_mlp."""
        c = self.config
        self.eps = float(c.get("rms_norm_eps", 1e-5))
        self.head_dim = c.get("head_dim") or 128
        if "rope_theta" not in c and not c.get("rope_parameters"):
            self.config = c = dict(c, rope_theta=500000.0)
        if c.get("attention_bias"):
            raise ValueError("attention_bias is not supported here")
        flags = c.get("no_rope_layers") or [int((i + 1) % c.get("no_rope_layer_interval", 4) != 0)
                                            for i in range(self.n_layers)]
        self.rope_layers = [bool(f) for f in flags[:self.n_layers]]
        types = c.get("layer_types") or ["chunked_attention" if r else "full_attention" for r in self.rope_layers]
        self.llama4_chunked = [t == "chunked_attention" for t in types]
        self.llama4_chunk = c.get("attention_chunk_size", 8192)
        self.llama4_qk_norm = bool(c.get("use_qk_norm", True))
        self.llama4_temp = (float(c.get("attn_scale", 0.1)), float(c.get("floor_scale", 8192))) \
            if c.get("attn_temperature_tuning", True) else None
        step = c.get("interleave_moe_layer_step", 1)
        moe = c.get("moe_layers")
        self.llama4_moe = set(range(step - 1, self.n_layers, step) if moe is None else moe)

    def _llama4_moe(self, p, h, breaks, act, margins):
        """Llama4TextMoe: router logits h @ router^T; the top num_experts_per_tok logits chosen, their sigmoids the
        scores; each chosen expert runs on the input times its score (routed_in), gate_up = x @ gate_up_proj[e]
        (gate the first half of the columns), (up * silu(gate)) @ down_proj[e]; plus the shared expert on h."""
        c, w = self.config, self.w
        k = c.get("num_experts_per_tok", 1)
        q = p + "feed_forward."
        logits = h @ w[q + "router.weight"].T
        gu_w, dn_w = w[q + "experts.gate_up_proj"], w[q + "experts.down_proj"]
        f = dn_w.shape[1]
        order = np.argsort(-logits, axis=1, kind="stable")
        if k < logits.shape[1]:
            srt = np.take_along_axis(logits, order, axis=1)
            np.minimum(margins, srt[:, k - 1] - srt[:, k], out=margins)
        out = np.zeros_like(h)
        for t in range(len(h)):
            for e in order[t, :k]:
                score = sigmoid(logits[t, e])
                xin = h[t] if "llama4_scale_output" in breaks else act(h[t] * score)
                gu = xin @ gu_w[e]
                g, u = (gu[f:], gu[:f]) if "llama4_gate_up_swapped" in breaks else (gu[:f], gu[f:])
                y = act(u * silu(g)) @ dn_w[e]
                out[t] += y * score if "llama4_scale_output" in breaks else y
        if "llama4_no_shared_expert" not in breaks:
            out += self._mlp(q + "shared_expert.", h, act)
        return out

    def _ministral3_init(self):
        """Ministral3Config / modular_ministral3: Mistral's layer (MistralAttention, window from sliding_window,
        none by default) with head_dim 128 and rms_norm_eps 1e-5 by default, rope_parameters (transformers 5:
        rope_theta, the yarn keys, llama_4_scaling_beta and max_position_embeddings, which rope validation
        ignores; without them Ministral3Config's YaRN: factor 16 over 16384, base 1e6, mscale = mscale_all_dim = 1,
        beta 0.1); after RoPE each query at position p is multiplied by _get_llama_4_attn_scale:
        1 + llama_4_scaling_beta * ln(1 + floor(p / original_max_position_embeddings))."""
        c = dict(self.config)
        rp = c.pop("rope_parameters", None) or {"type": "yarn", "rope_theta": 1e6, "factor": 16.0,
                                                 "original_max_position_embeddings": 16384, "beta_fast": 32.0,
                                                 "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0,
                                                 "llama_4_scaling_beta": 0.1}
        c["rope_theta"] = rp.get("rope_theta", 1e6)
        c["rope_scaling"] = {k: v for k, v in rp.items()
                             if k not in ("rope_theta", "llama_4_scaling_beta", "max_position_embeddings")}
        self.q_temp = (float(rp["llama_4_scaling_beta"]), float(rp["original_max_position_embeddings"]))
        self.config = c
        self.head_dim = c.get("head_dim") or 128
        self.eps = float(c.get("rms_norm_eps", 1e-5))

    def _seed_oss_init(self):
        """SeedOssConfig / modular_seed_oss: LlamaDecoderLayer around SeedOssAttention, whose q / k / v projections
        have biases when attention_bias (default true) and o_proj when attention_out_bias (default false);
        head_dim defaults to 128, rms_norm_eps to 1e-6; dropout is training only."""
        c = self.config
        self.head_dim = c.get("head_dim") or 128
        if c.get("mlp_bias"):
            raise ValueError("mlp_bias is not modelled")

    def _minimax_m2_init(self):
        """MiniMaxM2Config / modular_minimax_m2 with the config's defaults (head_dim 128, rms_norm_eps 1e-6,
        rope_theta 5e6): MiniMaxM2Attention is FlexOlmoAttention with unbiased projections, i.e. q_norm /
        k_norm (widths heads * head_dim, kv_heads * head_dim) over each token's whole q_proj / k_proj output
        before the heads are split, then Glm4Moe's RoPE (rotate-half) on the first rotary_dim of each head
        with frequencies over that width (config.json's rotary_dim; transformers 5's partial_rotary_factor,
        top level or in rope_parameters, is rotary_dim / head_dim); Llama's pre-norms; every layer a
        MiniMaxM2SparseMoeBlock (see _minimax_moe)."""
        c = self.config
        self.head_dim = c.get("head_dim") or 128
        self.eps = float(c.get("rms_norm_eps", 1e-6))
        rp = c.get("rope_parameters") or {}
        theta = rp.get("rope_theta", c.get("rope_theta", 5000000.0))
        self.config = c = dict(c, rope_theta=theta)
        if c.get("rotary_dim") is not None:
            self.glm_rotary = int(c["rotary_dim"])
        else:
            self.glm_rotary = int(self.head_dim * float(rp.get("partial_rotary_factor",
                                                               c.get("partial_rotary_factor", 1.0))))
        if any(t != 1 for t in c.get("attn_type_list") or []) or c.get("scoring_func", "sigmoid") != "sigmoid":
            raise ValueError("lightning attention layers / a router other than sigmoid are not modelled")

    def _glm4_init(self):
        """Glm4Config / modular_glm4 (GlmAttention from modeling_glm, Phi3MLP) with the config's defaults:
        rms_norm_eps 1.5625e-7, head_dim 128, attention_bias true (q/k/v; o_proj has none); RoPE on the
        first int(head_dim * partial_rotary_factor) (default 0.5) dims of each head, frequencies over that
        width, rotating adjacent pairs (cos / sin repeat-interleaved, rotate_half over x[0::2], x[1::2]);
        per layer x += post_self_attn_layernorm(attn(input_layernorm(x))),
        x += post_mlp_layernorm(mlp(post_attention_layernorm(x))), the MLP's gate and up fused in
        gate_up_proj (gate rows first)."""
        c = self.config
        self.eps = float(c.get("rms_norm_eps", 1.5625e-7))
        self.head_dim = c.get("head_dim", 128) or self.hidden // self.n_heads
        self.glm_rotary = int(self.head_dim * float(c.get("partial_rotary_factor", 0.5)))

    def _glm4_moe_init(self):
        """Glm4MoeConfig / modeling_glm4_moe with the config's defaults: rms_norm_eps 1e-5; head_dim from the
        config (else hidden / heads); q/k/v biases when attention_bias (o_proj never has one); per-head
        q_norm / k_norm before RoPE when use_qk_norm; RoPE (rotate-half) on the first int(head_dim *
        partial_rotary_factor) (default 0.5) dims of each head, frequencies over that width; layers from
        first_k_dense_replace (default 1) on are Glm4MoeMoE: Glm4MoeTopkRouter is DeepseekV3TopkRouter
        (sigmoid, e_score_correction_bias for the choice, n_group groups scored by their two best,
        topk_group kept, renormalised when norm_topk_prob (default true), times routed_scaling_factor)
        plus n_shared_experts (default 1) shared experts; the rest dense MLPs of intermediate_size.
        The router is ref_deepseek.gate on a V3-shaped view of the config (router_config)."""
        c = self.config
        self.eps = float(c.get("rms_norm_eps", 1e-5))
        self.glm_rotary = int(self.head_dim * float(c.get("partial_rotary_factor", 0.5)))
        self.router_config = dict(c, scoring_func="sigmoid", topk_method="noaux_tc",
                                  architectures=["DeepseekV3ForCausalLM"], n_group=c.get("n_group", 1),
                                  topk_group=c.get("topk_group", 1), norm_topk_prob=c.get("norm_topk_prob", True),
                                  n_shared_experts=c.get("n_shared_experts", 1),
                                  first_k_dense_replace=c.get("first_k_dense_replace", 1))

    def _ernie_init(self):
        """Ernie4_5Config / Ernie4_5_MoeConfig with their defaults: rms_norm_eps 1e-5, rope_theta 500000, tied
        embeddings; Ernie4_5Attention is LlamaAttention with use_bias projections (none here) and its own
        apply_rotary_pos_emb: cos / sin repeat-interleaved over the whole head with rotate_half taking
        adjacent pairs, i.e. RoPE on pairs (2i, 2i+1). MoE layers: moe_layer_start_index (default 1) <= l <=
        moe_layer_end_index (-1: the last) with (l + 1) % moe_layer_interval == 0 (see _ernie_moe)."""
        c = self.config
        self.eps = float(c.get("rms_norm_eps", 1e-5))
        self.tied = bool(c.get("tie_word_embeddings", True))
        self.config = c = dict(c, rope_theta=c.get("rope_theta", 500000.0))
        if c.get("use_bias", False):
            raise ValueError("use_bias is not modelled")

    def _olmoe_init(self):
        """OlmoeConfig / modeling_olmoe: rms_norm_eps defaults to 1e-5; Llama's pre-norms; q_norm / k_norm as
        OLMo 2's (over each token's whole q_proj / k_proj output, before the heads are split and rotated);
        every layer an OlmoeSparseMoeBlock: softmax over all router logits, top num_experts_per_tok, the
        chosen weights renormalised only if norm_topk_prob (default false) -- Qwen3-MoE's block (_moe).
        clip_qkv (clamping q, k, v) is not modelled: a config that sets it is refused."""
        c = self.config
        self.eps = float(c.get("rms_norm_eps", 1e-5))
        if c.get("attention_bias") or c.get("clip_qkv") is not None:
            raise ValueError("attention_bias / clip_qkv are not supported here")

    def _exaone4_init(self):
        """Exaone4Config / modular_exaone4: rms_norm_eps 1e-5; Exaone4DecoderLayer is Olmo2DecoderLayer (norms on
        the attention and MLP outputs, none before); per-head q_norm / k_norm (head_dim wide) as Qwen3's; with
        sliding_window set (4096 by default; null: none), layer_types (else sliding_window_pattern: a number N,
        every N-th layer full; a string of L / G per layer of a period, as llama.cpp's converter reads it) says
        which layers see keys j with i - j < sliding_window; those rotate, the full ones do not (RoPE only when
        sliding_window is None or the layer slides); one rotary embedding (rope_scaling included) for all."""
        c = self.config
        n = self.n_layers
        self.eps = float(c.get("rms_norm_eps", 1e-5))
        window = c.get("sliding_window", 4096)
        types = c.get("layer_types")
        if types is None:
            pat = c.get("sliding_window_pattern", 4)
            if window is None or not pat:
                types = ["full_attention"] * n
            elif isinstance(pat, str):
                types = ["sliding_attention" if pat[i % len(pat)] == "L" else "full_attention" for i in range(n)]
            else:
                types = ["sliding_attention" if (i + 1) % pat else "full_attention" for i in range(n)]
        self.olmo3_window = window
        self.olmo3_sliding = [t == "sliding_attention" and window is not None for t in types]
        self.rope_layers = [window is None or sl for sl in self.olmo3_sliding]

    def _olmo3_init(self):
        """Olmo3Config / modular_olmo3: Olmo2Config plus sliding_window (4096) and layer_types (default: every
        layer sliding_attention but each fourth, (i + 1) % 4 == 0, full); OLMo 2's layers, whose sliding ones see
        keys j with i - j < sliding_window and rotate with default RoPE (rope_theta, no rope_scaling: transformers
        4.57's Olmo3Model builds a second rotary embedding with rope_type "default" for them), the full ones with
        the config's rope_scaling."""
        c = self.config
        n = self.n_layers
        types = c.get("layer_types") or ["sliding_attention" if (i + 1) % 4 else "full_attention" for i in range(n)]
        self.olmo3_window = c.get("sliding_window", 4096)
        self.olmo3_sliding = [t == "sliding_attention" and self.olmo3_window is not None for t in types]

    def _olmo2_init(self):
        """Olmo2Config / modular_olmo2: rms_norm_eps defaults to 1e-5; no input_layernorm; q_norm / k_norm
        (RMSNorm of width heads * head_dim and kv_heads * head_dim) on each token's whole q_proj / k_proj output,
        before the heads are split and rotated; x = x + post_attention_layernorm(attn);
        x = x + post_feedforward_layernorm(mlp(x))."""
        c = self.config
        self.eps = float(c.get("rms_norm_eps", 1e-5))
        if c.get("attention_bias"):
            raise ValueError("attention_bias is not supported here")

    def _smollm3_init(self):
        """SmolLM3Config (transformers' modular_smollm3): tie_word_embeddings defaults to true and rope_theta
        to 2e6 (default_theta); no_rope_layers[i] is 1 where layer i applies RoPE and 0 where it does not
        (NoPE), and defaults to int((i + 1) % no_rope_layer_interval != 0), interval 4. SmolLM3Attention
        skips apply_rotary_pos_emb on a NoPE layer; everything else is LlamaDecoderLayer. Its sliding
        window (NoPE layers only, with use_sliding_window) is off in the published configs: refused here."""
        c = self.config
        self.tied = bool(c.get("tie_word_embeddings", True))
        if "rope_theta" not in c and not c.get("rope_parameters"):
            self.config = c = dict(c, rope_theta=2000000.0)
        if c.get("use_sliding_window"):
            raise ValueError("use_sliding_window is not supported")
        for key in ("attention_bias", "mlp_bias"):
            if c.get(key):
                raise ValueError(f"{key} is not supported here")
        flags = c.get("no_rope_layers")
        if flags is None:
            n = int(c.get("no_rope_layer_interval", 4))
            flags = [int((i + 1) % n != 0) for i in range(self.n_layers)]
        self.rope_layers = [bool(f) for f in flags[:self.n_layers]]

    def _granite_init(self):
        """GraniteConfig / modular_granite: embeddings times embedding_multiplier; the attention softmax scale is
        attention_multiplier (not head_dim**-0.5); x = residual + out * residual_multiplier after attention and
        after the MLP; logits = lm_head(norm(x)) / logits_scaling. Every multiplier defaults to 1.0."""
        c = self.config
        for key in ("attention_bias", "mlp_bias"):
            if c.get(key):
                raise ValueError(f"{key} is not supported here")
        self.embedding_multiplier = float(c.get("embedding_multiplier", 1.0))
        self.attention_multiplier = float(c.get("attention_multiplier", 1.0))
        self.residual_multiplier = float(c.get("residual_multiplier", 1.0))
        self.logits_scaling = float(c.get("logits_scaling", 1.0))

    def _gpt_oss_init(self):
        """GptOssConfig's fields with its defaults, checked. Read (huggingface/transformers, 4.55+):
        src/transformers/models/gpt_oss/configuration_gpt_oss.py and modeling_gpt_oss.py (GptOssRMSNorm,
        GptOssAttention with eager_attention_forward's sinks, GptOssTopKRouter, GptOssExperts,
        GptOssDecoderLayer, GptOssRotaryEmbedding / _apply_rotary_emb), src/transformers/modeling_rope_utils.py
        (_compute_yarn_parameters with truncate), src/transformers/masking_utils.py (sliding windows) and
        src/transformers/integrations/mxfp4.py (FP4_VALUES, convert_moe_packed_tensors).

        - Defaults: head_dim 64 (a null head_dim: hidden / heads), rms_norm_eps 1e-5, sliding_window 128,
          layer_types: layer i sliding when (i + 1) % 2, attention_bias true, swiglu_limit 7.0, alpha 1.702,
          tie_word_embeddings false. rope_scaling (or transformers 5's rope_parameters) must be present:
          yarn with truncate (default true) honoured.
        - Layer: x += o_proj(attn(rmsnorm(x))) (all projections with biases); x += moe(rmsnorm(x)); plain
          RMSNorm (w * x / rms). Attention: scores * head_dim**-0.5, causal, sliding layers see keys j with
          i - j < sliding_window; each head's sink s_h is one more logit in every row's softmax whose
          probability is dropped. MoE: router logits = x W^T + b, softmax over the top-k logits; expert e:
          gu = x @ gate_up_proj[e] + gate_up_proj_bias[e], gate = gu[..., ::2] clamped above at the limit, up
          = gu[..., 1::2] clamped to [-limit, limit], y = ((up + 1) * gate * sigmoid(alpha gate)) @ down_proj[e]
          + down_proj_bias[e].
        - The experts come dense (gate_up_proj [E, hidden, 2 I], down_proj [E, I, hidden]) or as MXFP4
          *_blocks / *_scales (dequantized here as convert_moe_packed_tensors does; see mxfp4_dequantize)."""
        c = self.config
        if "head_dim" in c and c["head_dim"] is None:
            self.head_dim = self.hidden // self.n_heads
        else:
            self.head_dim = int(c.get("head_dim", 64))
        self.eps = float(c.get("rms_norm_eps", 1e-5))
        self.tied = bool(c.get("tie_word_embeddings", False))
        self._alternating_layers(128)
        self.swiglu_limit = float(c.get("swiglu_limit", 7.0))
        self.swiglu_alpha = float(c.get("swiglu_alpha", 1.702))
        self.n_experts = int(c.get("num_local_experts", 128))
        self.top_k = int(c.get("num_experts_per_tok", 4))
        if not 0 < self.top_k <= self.n_experts:
            raise ValueError(f"need 0 < num_experts_per_tok ({self.top_k}) <= num_local_experts ({self.n_experts})")
        self.moe = True
        rs = c.get("rope_scaling") or c.get("rope_parameters")
        if not isinstance(rs, dict) or rs.get("rope_type", rs.get("type")) != "yarn":
            raise ValueError(f"gpt_oss: expected a yarn rope_scaling, not {rs!r}")
        self.rope_config = {"rope_theta": float(rs.get("rope_theta", c.get("rope_theta", 150000.0))),
                            "rope_scaling": dict(rs),
                            "max_position_embeddings": c.get("max_position_embeddings", 131072)}
        qc = c.get("quantization_config") or {}
        for i in range(self.n_layers):
            q = f"model.layers.{i}.mlp.experts."
            for proj in ("gate_up_proj", "down_proj"):
                packed = q + proj + "_blocks" in self.w
                if packed:
                    self.mxfp4 = True
                    if qc.get("quant_method") != "mxfp4":
                        raise ValueError(f"{q}{proj}_blocks present but quantization_config is {qc!r}")
                    mxfp4_dequantize(self.w[q + proj + "_blocks"], self.w[q + proj + "_scales"])  # checks shapes
                elif q + proj not in self.w:
                    raise ValueError(f"missing {q}{proj} (dense) or {q}{proj}_blocks / _scales (MXFP4)")
        self._experts_cache = {}

    def gpt_oss_experts(self, p, breaks=()):
        """(gate_up_proj [E, hidden, 2 I], down_proj [E, I, hidden]) of layer prefix p, float64."""
        if not self.mxfp4:
            return self.w[p + "mlp.experts.gate_up_proj"], self.w[p + "mlp.experts.down_proj"]
        key = (p, frozenset(b for b in breaks if b.startswith("gpt_oss_mxfp4_")))
        if key not in self._experts_cache:
            w = self.w
            self._experts_cache[key] = tuple(
                mxfp4_dequantize(w[f"{p}mlp.experts.{n}_blocks"], w[f"{p}mlp.experts.{n}_scales"], breaks)
                for n in ("gate_up_proj", "down_proj"))
        return self._experts_cache[key]

    def _phi3_init(self):
        """Phi3Config's fields with its defaults (rms_norm_eps 1e-5, num_key_value_heads = heads,
        original_max_position_embeddings 4096, sliding_window none), checked."""
        c = self.config
        if c.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {c.get('hidden_act')!r}")
        for key in ("attention_bias", "mlp_bias", "lm_head_bias"):  # Microsoft's own modelling files' keys
            if c.get(key):
                raise ValueError(f"{key} is not supported (Phi3ForCausalLM has no biases)")
        self.eps = float(c.get("rms_norm_eps", 1e-5))
        # A query at position i sees keys j with i - j < sliding_window (masking_utils:
        # kv_idx > q_idx - sliding_window; 4.x's own mask: key j masked when j <= i - sliding_window).
        self.window = c.get("sliding_window")
        if self.window is not None and (not isinstance(self.window, int) or self.window < 1):
            raise ValueError(f"bad sliding_window {self.window!r}")
        self.rope = Phi3Rope(c, self.head_dim)

    def _gemma_init(self):
        """Gemma3TextConfig's fields with its defaults (configuration_gemma3.py), checked."""
        c = self.config
        if c.get("attn_logit_softcapping") is not None:
            raise ValueError("attn_logit_softcapping is not supported (null in Gemma 3 configs)")
        if c.get("use_bidirectional_attention"):
            raise ValueError("use_bidirectional_attention (an encoder, not a causal LM) is not supported")
        if c.get("attention_bias"):
            raise ValueError("attention_bias is not supported (false in Gemma 3 configs)")
        # Gemma3MLP uses ACT2FN[config.hidden_activation]; a "hidden_act" key is not read.
        act = c.get("hidden_activation", "gelu_pytorch_tanh")
        if act != "gelu_pytorch_tanh":
            raise ValueError(f"unsupported hidden_activation {act!r}")
        if "head_dim" in c and c["head_dim"] is None:
            raise ValueError("head_dim is null")
        self.head_dim = int(c.get("head_dim", 256))
        self.n_kv = c.get("num_key_value_heads", 4)
        if self.n_heads % self.n_kv:
            raise ValueError("num_attention_heads not a multiple of num_key_value_heads")
        self.tied = bool(c.get("tie_word_embeddings", True))
        self.query_pre_attn_scalar = float(c.get("query_pre_attn_scalar", 256))
        types = c.get("layer_types")
        if types is None:
            # Older configs: every pattern-th layer is full (layer i full when (i + 1) % pattern == 0).
            pattern = c.get("sliding_window_pattern", 6)
            if not isinstance(pattern, int) or pattern < 1:
                raise ValueError(f"bad sliding_window_pattern {pattern!r}")
            types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(self.n_layers)]
        if len(types) != self.n_layers or any(t not in GEMMA_TYPES for t in types):
            raise ValueError(f"layer_types must list {self.n_layers} of {GEMMA_TYPES}: {types}")
        self.layer_types = list(types)
        sliding = "sliding_attention" in self.layer_types
        self.window = c.get("sliding_window", 4096) if sliding else None
        if sliding and (not isinstance(self.window, int) or self.window < 1):
            raise ValueError(f"sliding layers need a positive sliding_window, not {self.window!r}")
        # Gemma3TextScaledWordEmbedding: embedding * embed_scale.to(weight.dtype), embed_scale a
        # float32 tensor of hidden_size**0.5 (so a bf16 checkpoint multiplies by sqrt(h) rounded to bf16).
        dt = safetensors_dtypes(self.path).get("model.embed_tokens.weight", "F32")
        self.embed_scale = cast_scalar(self.hidden ** 0.5, dt)
        self.final_logit_softcapping = c.get("final_logit_softcapping")
        self.attn_logit_softcapping = None

    def _alternating_layers(self, default_window):
        """layer_types (Gemma 2's and gpt-oss's default: layer i sliding when (i + 1) % 2) and the
        sliding_window, None when no layer slides."""
        c = self.config
        types = c.get("layer_types")
        if types is None:
            types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(self.n_layers)]
        if not isinstance(types, list) or len(types) != self.n_layers or any(t not in GEMMA_TYPES for t in types):
            raise ValueError(f"layer_types must list {self.n_layers} of {GEMMA_TYPES}: {types}")
        self.layer_types = list(types)
        self.window = c.get("sliding_window", default_window)
        if "sliding_attention" in self.layer_types:
            if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 1:
                raise ValueError(f"sliding layers need a positive sliding_window, not {self.window!r}")
        else:
            self.window = None

    def _gemma2_init(self):
        """Gemma2Config's fields with its defaults, checked. Read (huggingface/transformers):
        src/transformers/models/gemma2/configuration_gemma2.py and modular_gemma2.py (Gemma2Config,
        Gemma2Attention, Gemma2DecoderLayer, Gemma2Model, Gemma2ForCausalLM, eager_attention_forward),
        modeling_gemma2.py (4.x: the same computation, sliding when not layer_idx % 2), and
        src/transformers/masking_utils.py (sliding_window_overlay: kv_idx > q_idx - sliding_window).

        - Defaults: head_dim 256, num_key_value_heads 4, query_pre_attn_scalar 256, sliding_window 4096,
          hidden_activation gelu_pytorch_tanh (hidden_act is not read), rms_norm_eps 1e-6,
          tie_word_embeddings True, rope_theta 10000, max_position_embeddings 8192,
          attn_logit_softcapping 50.0, final_logit_softcapping 30.0 (an explicit null: no cap).
        - layer_types if given (validated: num_hidden_layers entries), else layer i is sliding when
          (i + 1) % 2 (i even: 0, 2, ...), full otherwise; sliding layers see keys j with i - j < window.
        - One RoPE for every layer (no local base): rope_theta, and rope_scaling is honoured
          (Gemma2RotaryEmbedding takes ROPE_INIT_FUNCTIONS[rope_type]); transformers 5 writes both into
          one rope_parameters dict.
        - No q_norm / k_norm. Embeddings times torch.tensor(hidden_size**0.5, dtype=embedding dtype)
          (sqrt(h) rounded to the weight dtype, like Gemma 3). Attention: scores * query_pre_attn_scalar**-0.5,
          then cap * tanh(scores / cap), then the mask, softmax. Logits: cap * tanh(logits / cap)."""
        c = self.config
        if c.get("use_bidirectional_attention"):
            raise ValueError("use_bidirectional_attention (an encoder, not a causal LM) is not supported")
        if c.get("attention_bias"):
            raise ValueError("attention_bias is not supported (false in Gemma 2 configs)")
        act = c.get("hidden_activation", "gelu_pytorch_tanh")
        if act != "gelu_pytorch_tanh":
            raise ValueError(f"unsupported hidden_activation {act!r}")
        if "head_dim" in c and c["head_dim"] is None:
            raise ValueError("head_dim is null")
        self.head_dim = int(c.get("head_dim", 256))
        self.n_kv = c.get("num_key_value_heads", 4)
        if self.n_heads % self.n_kv:
            raise ValueError("num_attention_heads not a multiple of num_key_value_heads")
        self.eps = float(c.get("rms_norm_eps", 1e-6))
        self.tied = bool(c.get("tie_word_embeddings", True))
        self.query_pre_attn_scalar = float(c.get("query_pre_attn_scalar", 256))
        if self.query_pre_attn_scalar <= 0:
            raise ValueError(f"query_pre_attn_scalar must be positive, not {self.query_pre_attn_scalar}")
        caps = {}
        for key, default in (("attn_logit_softcapping", 50.0), ("final_logit_softcapping", 30.0)):
            v = c.get(key, default)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
                raise ValueError(f"{key} must be a positive number or null, not {v!r}")
            caps[key] = None if v is None else float(v)
        self.attn_logit_softcapping = caps["attn_logit_softcapping"]
        self.final_logit_softcapping = caps["final_logit_softcapping"]
        self._alternating_layers(4096)
        rs = c.get("rope_scaling") or c.get("rope_parameters") or {}
        if not isinstance(rs, dict) or set(rs) & set(GEMMA_TYPES):
            raise ValueError(f"rope_scaling / rope_parameters must be one flat dict for Gemma 2, not {rs!r}")
        kind = rs.get("rope_type", rs.get("type", "default"))
        # {"rope_theta", "rope_scaling", "max_position_embeddings"} for rope_inv_freq / rope_attention_scaling.
        self.gemma2_rope = {"rope_theta": float(rs.get("rope_theta", c.get("rope_theta", 10000.0))),
                            "rope_scaling": None if kind == "default" else dict(rs),
                            "max_position_embeddings": c.get("max_position_embeddings", 8192)}
        rope_inv_freq(self.gemma2_rope, self.head_dim)  # refuses rope types it does not model
        dt = safetensors_dtypes(self.path).get("model.embed_tokens.weight", "F32")
        self.embed_scale = cast_scalar(self.hidden ** 0.5, dt)

    def gemma_rope_configs(self, breaks=()):
        """{layer type: config dict for rope_inv_freq / rope_attention_scaling}. Full layers: rope_theta
        (default 1e6) with rope_scaling; sliding layers: rope_local_base_freq (default 1e4), unscaled.
        transformers 5's per-type "rope_parameters" dict is read the same way when present.
        Gemma 2: one RoPE (rope_theta, default 1e4, with rope_scaling) for both types."""
        c = self.config
        if self.arch == "gemma2":
            return {t: dict(self.gemma2_rope) for t in GEMMA_TYPES}
        mpe = c.get("max_position_embeddings", 131072)
        rp = c.get("rope_parameters")
        if isinstance(rp, dict) and rp and set(rp) <= set(GEMMA_TYPES):
            out = {}
            for t, default_theta in (("full_attention", c.get("rope_theta", 1e6)),
                                     ("sliding_attention", c.get("rope_local_base_freq", 1e4))):
                p = dict(rp.get(t) or {})
                scaled = p.get("rope_type", p.get("type", "default")) != "default"
                out[t] = {"rope_theta": p.get("rope_theta", default_theta), "rope_scaling": p if scaled else None,
                          "max_position_embeddings": mpe}
        else:
            out = {"full_attention": {"rope_theta": c.get("rope_theta", 1e6), "rope_scaling": c.get("rope_scaling"),
                                      "max_position_embeddings": mpe},
                   "sliding_attention": {"rope_theta": c.get("rope_local_base_freq", 1e4), "rope_scaling": None,
                                         "max_position_embeddings": mpe}}
        if "gemma_local_rope_global_theta" in breaks:
            out["sliding_attention"] = dict(out["full_attention"])
        elif "gemma_rope_scaling_all_layers" in breaks:
            out["sliding_attention"] = dict(out["sliding_attention"],
                                            rope_scaling=out["full_attention"]["rope_scaling"])
        return out

    def is_sparse(self, layer):
        c = self.config
        if self.deepseek:
            return ds.is_sparse(c, layer)
        if self.arch == "glm4_moe":
            return ds.is_sparse(self.router_config, layer)
        if self.arch == "ernie4_5_moe":
            end = c.get("moe_layer_end_index", -1)
            end = self.n_layers - 1 if end == -1 else end
            return (c.get("moe_layer_start_index", 1) <= layer <= end
                    and (layer + 1) % c.get("moe_layer_interval", 1) == 0)
        if self.arch in ("mixtral", "gpt_oss", "granite_moe", "olmoe", "minimax_m2"):
            return True
        if self.arch == "llama4":
            return layer in self.llama4_moe
        if self.arch not in ("qwen3_moe", "qwen2_moe"):
            return False
        return (layer not in c.get("mlp_only_layers", []) and c["num_experts"] > 0
                and (layer + 1) % c.get("decoder_sparse_step", 1) == 0)

    def lm_head(self):
        return self.w["model.embed_tokens.weight"] if self.tied else self.w["lm_head.weight"]

    def forward(self, tokens, breaks=(), emulate=(), routing=None, hidden=None):
        """Logits [T, vocab] (float64) of the sequence `tokens` starting at position 0.
        If `routing` is a list, per-token minimum top-k router margins (logit of the last chosen
        expert minus the best unchosen one, over sparse layers) are appended to it.
        If `hidden` is a list, the hidden states [T, hidden_size] are appended to it: before the final
        norm, then after it (Hugging Face's last_hidden_state, what embedding models pool)."""
        for b in breaks:
            if b not in BREAKS:
                raise ValueError(f"unknown break {b}")
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 1 or len(tokens) == 0 or tokens.min() < 0 or tokens.max() >= self.vocab:
            raise ValueError("tokens must be a non-empty list of ids < vocab_size")
        w, T = self.w, len(tokens)
        act = (lambda v: bf16_round(v)) if "act" in emulate else (lambda v: v)
        kvq = (lambda v: bf16_round(v)) if "kv" in emulate else (lambda v: v)
        if self.gemma:
            return self._gemma_forward(tokens, breaks, act, kvq, hidden)
        if self.gpt_oss:
            return self._gpt_oss_forward(tokens, breaks, act, kvq, hidden, routing)
        positions = np.arange(T)
        k_positions = positions + (1 if "rope_k_pos_plus1" in breaks else 0)
        rot = self.head_dim
        if self.deepseek:
            inv_freq, mag = ds.rope_frequencies(self.config, self.config["qk_rope_head_dim"], breaks)
        elif self.phi3:
            # seq_len = max(position_ids) + 1 of this forward: positions run 0 .. T - 1.
            inv_freq, mag, rot = self.rope.frequencies(T, self.longrope_choice, breaks)
        elif self.glm_rotary and not {"glm4_moe_full_rotary", "glm4_full_rotary", "minimax_full_rotary"} & set(breaks):
            rot = self.glm_rotary
            inv_freq = rope_inv_freq(self.config, rot, breaks)
            mag = rope_attention_scaling(self.config, breaks)
        else:
            inv_freq = rope_inv_freq(self.config, self.head_dim, breaks)
            mag = rope_attention_scaling(self.config, breaks)
        group = self.n_heads // self.n_kv
        scale = 1.0 / math.sqrt(self.head_dim)
        if self.attention_multiplier is not None and "granite_attn_scale_head_dim" not in breaks:
            scale = self.attention_multiplier
        res = 1.0 if "granite_no_residual_multiplier" in breaks else self.residual_multiplier
        causal = np.tril(np.ones((T, T), dtype=bool))
        if self.window and "no_sliding_window" not in breaks:
            causal &= np.subtract.outer(positions, positions) < self.window
        margins = np.full(T, np.inf)
        olmo3 = self.arch in ("olmo3", "exaone4")  # per-layer windows
        if olmo3:
            sw_inv = rope_inv_freq(dict(self.config, rope_scaling=None), self.head_dim, breaks)
            sw_causal = causal & (np.subtract.outer(positions, positions) < (self.olmo3_window or T + 1))

        x = w["model.embed_tokens.weight"][tokens].copy()
        if "granite_no_embedding_multiplier" not in breaks:
            x = x * self.embedding_multiplier
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            rotate = self.rope_layers[i]
            if "smollm3_rope_every_layer" in breaks:
                rotate = True
            elif "smollm3_nope_flags_inverted" in breaks:
                rotate = not rotate
            olmo2 = self.arch in ("olmo2", "olmo3", "exaone4")
            inv_l, mag_l, causal_l = inv_freq, mag, causal
            llama4 = self.arch == "llama4"
            if llama4 and self.llama4_chunked[i] and "llama4_no_chunk" not in breaks:
                c_pos = positions // self.llama4_chunk
                causal_l = causal & np.equal.outer(c_pos, c_pos)
            if self.arch == "exaone4" and "exaone4_rope_every_layer" in breaks:
                rotate = True
            if olmo3 and self.olmo3_sliding[i] != ("olmo3_layer_types_flipped" in breaks):
                if "olmo3_yarn_all_layers" not in breaks and self.arch == "olmo3":
                    inv_l, mag_l = sw_inv, 1.0
                if "no_sliding_window" not in breaks:
                    causal_l = sw_causal
            if olmo2:
                h = act(rms_norm(x, w[p + "post_attention_layernorm.weight"], self.eps, breaks)) \
                    if "olmo2_pre_norms" in breaks else act(x)
            else:
                h = act(rms_norm(x, w[p + "input_layernorm.weight"], self.eps, breaks))
            if self.deepseek:
                mla = ds.Mla(self.config, w, p, rms_norm, self.eps)
                x = x + mla.forward(h, positions, inv_freq, mag, breaks, act, kvq)
                h = act(rms_norm(x, w[p + "post_attention_layernorm.weight"], self.eps, breaks))
                x = x + (self._deepseek_moe(p, h, breaks, act, margins) if self.is_sparse(i)
                         else self._mlp(p + "mlp.", h, act))
                continue
            if self.phi3:
                q, k, v = self._phi3_qkv(p, h, breaks)
            else:
                q = h @ w[p + "self_attn.q_proj.weight"].T
                k = h @ w[p + "self_attn.k_proj.weight"].T
                v = h @ w[p + "self_attn.v_proj.weight"].T
            biased = self.arch == "qwen2" or (self.arch == "qwen2_moe" and self.config.get("qkv_bias", True)) or \
                (self.arch == "glm4_moe" and self.config.get("attention_bias", False)) or \
                (self.arch == "glm4" and self.config.get("attention_bias", True)) or \
                (self.arch == "seed_oss" and self.config.get("attention_bias", True))
            if biased and "skip_bias" not in breaks:
                q = q + w[p + "self_attn.q_proj.bias"]
                k = k + w[p + "self_attn.k_proj.bias"]
                v = v + w[p + "self_attn.v_proj.bias"]
            per_head = bool({"olmo2_qk_norm_per_head", "olmoe_qk_norm_per_head", "minimax_qk_norm_per_head"} & set(breaks))
            whole = self.arch in ("olmo2", "olmo3", "olmoe", "minimax_m2")
            if whole and not per_head:
                q = rms_norm(q, w[p + "self_attn.q_norm.weight"], self.eps, breaks)
                k = rms_norm(k, w[p + "self_attn.k_norm.weight"], self.eps, breaks)
            q = q.reshape(T, self.n_heads, self.head_dim)
            k = k.reshape(T, self.n_kv, self.head_dim)
            v = v.reshape(T, self.n_kv, self.head_dim)
            if whole and per_head:
                q = rms_norm(q, w[p + "self_attn.q_norm.weight"].reshape(self.n_heads, -1), self.eps, breaks)
                k = rms_norm(k, w[p + "self_attn.k_norm.weight"].reshape(self.n_kv, -1), self.eps, breaks)
            if self.arch in ("qwen3", "qwen3_moe", "exaone4") or \
                    (self.arch == "glm4_moe" and self.config.get("use_qk_norm")):
                if "skip_q_norm" not in breaks:
                    q = rms_norm(q, w[p + "self_attn.q_norm.weight"], self.eps, breaks)
                if "skip_k_norm" not in breaks:
                    k = rms_norm(k, w[p + "self_attn.k_norm.weight"], self.eps, breaks)
            # (RoPE keeps each head's norm, so the L2 norm's place before or after it does not matter.)
            l2 = llama4 and rotate and self.llama4_qk_norm and "llama4_no_qk_norm" not in breaks
            if rotate:
                # GLM-4, ERNIE and Llama 4 rotate adjacent pairs: for them the rope_interleaved break means
                # half-rotation.
                rb = set(breaks) ^ {"rope_interleaved"} if self.arch in ("glm4", "ernie4_5", "ernie4_5_moe", "llama4") \
                    else breaks
                q = apply_partial_rope(q, positions, inv_l, rot, rb, mag_l)
                k = apply_partial_rope(k, k_positions, inv_l, rot, rb, mag_l)
            if l2:
                q, k = rms_norm(q, 1.0, self.eps), rms_norm(k, 1.0, self.eps)
            if llama4 and not rotate and self.llama4_temp and "llama4_no_temperature" not in breaks:
                beta, period = self.llama4_temp
                p1 = positions if "llama4_temperature_no_offset" in breaks else positions + 1.0
                q = q * (1.0 + beta * np.log1p(np.floor(p1 / period)))[:, None, None]
            if self.arch == "ministral3" and "ministral3_no_q_temperature" not in breaks:
                beta, period = self.q_temp
                q = q * (1.0 + beta * np.log1p(np.floor(positions / period)))[:, None, None]
            k = kvq(k)
            v = kvq(v)
            attn = np.empty((T, self.n_heads, self.head_dim))
            for hh in range(self.n_heads):
                kv = hh % self.n_kv if "gqa_modulo" in breaks else hh // group
                s = (q[:, hh, :] @ k[:, kv, :].T) * scale
                if "no_causal_mask" not in breaks:
                    s = np.where(causal_l, s, -np.inf)
                s = s - s.max(axis=1, keepdims=True)
                e = np.exp(s)
                attn[:, hh, :] = (e / e.sum(axis=1, keepdims=True)) @ v[:, kv, :]
            out = (act(attn.reshape(T, -1)) @ w[p + "self_attn.o_proj.weight"].T) * res
            if self.arch == "seed_oss" and self.config.get("attention_out_bias", False) and "skip_bias" not in breaks:
                out = out + w[p + "self_attn.o_proj.bias"]
            if olmo2 and "olmo2_pre_norms" not in breaks:
                out = rms_norm(out, w[p + "post_attention_layernorm.weight"], self.eps, breaks)
            glm4_post = self.arch == "glm4" and "glm4_no_post_norms" not in breaks
            if glm4_post:
                out = rms_norm(out, w[p + "post_self_attn_layernorm.weight"], self.eps, breaks)
            x = x + out
            if olmo2:
                pre = "olmo2_pre_norms" in breaks
                h = act(rms_norm(x, w[p + "post_feedforward_layernorm.weight"], self.eps, breaks)) if pre else act(x)
                y = self._mlp(p + "mlp.", h, act)
                x = x + (y if pre else rms_norm(y, w[p + "post_feedforward_layernorm.weight"], self.eps, breaks))
                continue
            h = act(rms_norm(x, w[p + "post_attention_layernorm.weight"], self.eps, breaks))
            if self.phi3:
                x = x + self._phi3_mlp(p + "mlp.", h, act, breaks)
            elif self.arch == "glm4":
                y = self._phi3_mlp(p + "mlp.", h, act, breaks)
                x = x + (rms_norm(y, w[p + "post_mlp_layernorm.weight"], self.eps, breaks) if glm4_post else y)
            elif self.arch == "granite_moe":
                x = x + self._granite_moe(p, h, breaks, act, margins) * res
            elif self.arch == "glm4_moe" and self.is_sparse(i):
                x = x + self._deepseek_moe(p, h, breaks, act, margins, self.router_config)
            elif self.arch == "ernie4_5_moe" and self.is_sparse(i):
                x = x + self._ernie_moe(p, h, breaks, act, margins)
            elif self.arch == "minimax_m2":
                x = x + self._minimax_moe(p, h, breaks, act, margins)
            elif llama4:
                x = x + (self._llama4_moe(p, h, breaks, act, margins) if i in self.llama4_moe
                         else self._mlp(p + "feed_forward.", h, act))
            elif self.is_sparse(i):
                x = x + self._moe(p, h, breaks, act, margins)
            else:
                x = x + self._mlp(p + "mlp.", h, act) * res
        if hidden is not None:
            hidden.append(x.copy())
        x = act(rms_norm(x, w["model.norm.weight"], self.eps, breaks))
        if hidden is not None:
            hidden.append(x.copy())
        if routing is not None:
            routing.extend(margins.tolist())
        logits = x @ self.lm_head().T
        if "granite_logits_multiplied" in breaks:
            return logits * self.logits_scaling
        return logits / self.logits_scaling

    def _gemma_forward(self, tokens, breaks, act, kvq, hidden):
        """Gemma3ForCausalLM (modeling_gemma3.py) and Gemma2ForCausalLM (modular_gemma2.py). Per layer:
        x += post_attention_norm(attn(input_norm(x))); x += post_feedforward_norm(mlp(pre_feedforward_norm(x)));
        every norm scales by (1 + w). Attention: (Gemma 3 only) q_norm / k_norm per head before RoPE, scores *
        query_pre_attn_scalar**-0.5, (Gemma 2 only) cap * tanh(scores / cap) before the mask (Gemma 2's
        eager_attention_forward), sliding layers see keys j with i - j < sliding_window (masking_utils:
        kv_idx > q_idx - sliding_window) and, in Gemma 3, use the local RoPE. Embeddings times embed_scale;
        tied LM head = the unscaled embedding; optional final tanh softcap. `act` rounds where the Llama
        path does (matmul inputs), `kvq` the cached k / v."""
        w, T = self.w, len(tokens)
        eps, hd = self.eps, self.head_dim

        def norm(v, name):
            return gemma_rms_norm(v, w[name], eps, breaks)

        positions = np.arange(T)
        k_positions = positions + (1 if "rope_k_pos_plus1" in breaks else 0)
        ropes = {t: (rope_inv_freq(rc, hd, breaks), rope_attention_scaling(rc, breaks))
                 for t, rc in self.gemma_rope_configs(breaks).items()}
        types = self.layer_types
        gemma2 = self.arch == "gemma2"
        if gemma2 and "gemma2_sliding_odd_layers" in breaks:
            flip = {"sliding_attention": "full_attention", "full_attention": "sliding_attention"}
            types = [flip[t] for t in types]
        if "gemma_layer_types_shifted" in breaks:
            types = types[1:] + types[:1]
        acap = None if "gemma2_no_attn_softcap" in breaks else self.attn_logit_softcapping
        cap_after_mask = "gemma2_softcap_after_mask_scale" in breaks
        scale = hd ** -0.5 if "gemma_attn_scale_head_dim" in breaks else self.query_pre_attn_scalar ** -0.5
        masks = {"full_attention": np.tril(np.ones((T, T), dtype=bool))}
        masks["sliding_attention"] = masks["full_attention"].copy()
        window = self.window
        if window is None and "sliding_attention" in types:  # an all-full Gemma 2 flipped by the break
            window = self.config.get("sliding_window", 4096)
        if window and "no_sliding_window" not in breaks:
            masks["sliding_attention"] &= np.subtract.outer(positions, positions) < window
        group = self.n_heads // self.n_kv
        x = w["model.embed_tokens.weight"][tokens] * (1.0 if "gemma_no_embed_scale" in breaks else self.embed_scale)
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            inv_freq, mag = ropes[types[i]]
            h = act(norm(x, p + "input_layernorm.weight"))
            q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, self.n_heads, hd)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, self.n_kv, hd)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, self.n_kv, hd)
            if not gemma2 and "skip_q_norm" not in breaks:
                q = norm(q, p + "self_attn.q_norm.weight")
            if not gemma2 and "skip_k_norm" not in breaks:
                k = norm(k, p + "self_attn.k_norm.weight")
            q = apply_rope(q, positions, inv_freq, breaks, mag)
            k = kvq(apply_rope(k, k_positions, inv_freq, breaks, mag))
            v = kvq(v)
            attn = np.empty((T, self.n_heads, hd))
            for hh in range(self.n_heads):
                kv = hh % self.n_kv if "gqa_modulo" in breaks else hh // group
                s = (q[:, hh, :] @ k[:, kv, :].T) * scale
                if acap is not None and not cap_after_mask:
                    s = acap * np.tanh(s / acap)
                if "no_causal_mask" not in breaks:
                    s = np.where(masks[types[i]], s, -np.inf)
                if acap is not None and cap_after_mask:
                    s = acap * np.tanh(s / acap)
                s = s - s.max(axis=1, keepdims=True)
                e = np.exp(s)
                attn[:, hh, :] = (e / e.sum(axis=1, keepdims=True)) @ v[:, kv, :]
            o = act(attn.reshape(T, -1)) @ w[p + "self_attn.o_proj.weight"].T
            if "gemma_llama_norm_order" in breaks:
                x = x + o
                x = x + self._gemma_mlp(p + "mlp.", act(norm(x, p + "post_attention_layernorm.weight")), act, breaks)
                continue
            if "gemma_no_post_norms" not in breaks:
                o = norm(o, p + "post_attention_layernorm.weight")
            x = x + o
            m = self._gemma_mlp(p + "mlp.", act(norm(x, p + "pre_feedforward_layernorm.weight")), act, breaks)
            if "gemma_no_post_norms" not in breaks:
                m = norm(m, p + "post_feedforward_layernorm.weight")
            x = x + m
        if hidden is not None:
            hidden.append(x.copy())
        x = act(norm(x, "model.norm.weight"))
        if hidden is not None:
            hidden.append(x.copy())
        logits = x @ self.lm_head().T
        cap = self.final_logit_softcapping
        if cap is not None and "gemma2_no_final_softcap" not in breaks:
            logits = cap * np.tanh(logits / cap)
        return logits

    def _gpt_oss_forward(self, tokens, breaks, act, kvq, hidden, routing):
        """GptOssForCausalLM (see _gpt_oss_init). `act` rounds where the Llama path does (matmul inputs:
        normed hidden states, attention output, the experts' gated activations), `kvq` the cached k / v."""
        w, T, hd = self.w, len(tokens), self.head_dim
        eps = self.eps
        positions = np.arange(T)
        k_positions = positions + (1 if "rope_k_pos_plus1" in breaks else 0)
        inv_freq = rope_inv_freq(self.rope_config, hd, breaks)
        mag = rope_attention_scaling(self.rope_config, breaks)
        types = list(self.layer_types)
        if "gpt_oss_layer_types_flipped" in breaks:
            flip = {"sliding_attention": "full_attention", "full_attention": "sliding_attention"}
            types = [flip[t] for t in types]
        if "gpt_oss_sliding_all" in breaks:
            types = ["sliding_attention"] * self.n_layers
        window = self.window or self.config.get("sliding_window") or 128
        causal = np.tril(np.ones((T, T), dtype=bool))
        dist = np.subtract.outer(positions, positions)
        masks = {"full_attention": causal,
                 "sliding_attention": causal & ((dist <= window) if "gpt_oss_window_off_by_one" in breaks
                                                else (dist < window))}
        if "no_sliding_window" in breaks:
            masks["sliding_attention"] = causal
        if "no_causal_mask" in breaks:
            masks = {t: np.ones((T, T), dtype=bool) for t in masks}
        scale = hd ** -0.5
        group = self.n_heads // self.n_kv
        margins = np.full(T, np.inf)
        x = w["model.embed_tokens.weight"][tokens].copy()
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            h = act(rms_norm(x, w[p + "input_layernorm.weight"], eps, breaks))
            proj = {}
            for n in ("q", "k", "v"):
                proj[n] = h @ w[f"{p}self_attn.{n}_proj.weight"].T
                if "skip_bias" not in breaks and f"{p}self_attn.{n}_proj.bias" in w:
                    proj[n] = proj[n] + w[f"{p}self_attn.{n}_proj.bias"]
            q = apply_rope(proj["q"].reshape(T, self.n_heads, hd), positions, inv_freq, breaks, mag)
            k = kvq(apply_rope(proj["k"].reshape(T, self.n_kv, hd), k_positions, inv_freq, breaks, mag))
            v = kvq(proj["v"].reshape(T, self.n_kv, hd))
            sinks = w[p + "self_attn.sinks"]
            mask = masks[types[i]]
            attn = np.empty((T, self.n_heads, hd))
            for hh in range(self.n_heads):
                kv = hh % self.n_kv if "gqa_modulo" in breaks else hh // group
                s = np.where(mask, (q[:, hh, :] @ k[:, kv, :].T) * scale, -np.inf)
                sink = sinks[hh] * (scale if "gpt_oss_sink_scaled" in breaks else 1.0)
                m = s.max(axis=1)
                if "gpt_oss_no_sinks" not in breaks:
                    m = np.maximum(m, sink)
                e = np.exp(s - m[:, None])
                den = e.sum(axis=1)
                if "gpt_oss_no_sinks" not in breaks:
                    den = den + np.exp(sink - m)  # the sink's column: in the softmax, then dropped
                attn[:, hh, :] = (e / den[:, None]) @ v[:, kv, :]
            o = act(attn.reshape(T, -1)) @ w[p + "self_attn.o_proj.weight"].T
            if "gpt_oss_no_o_bias" not in breaks and p + "self_attn.o_proj.bias" in w:
                o = o + w[p + "self_attn.o_proj.bias"]
            x = x + o
            h = act(rms_norm(x, w[p + "post_attention_layernorm.weight"], eps, breaks))
            x = x + self._gpt_oss_moe(p, h, breaks, act, margins)
        if hidden is not None:
            hidden.append(x.copy())
        x = act(rms_norm(x, w["model.norm.weight"], eps, breaks))
        if hidden is not None:
            hidden.append(x.copy())
        if routing is not None:
            routing.extend(margins.tolist())
        return x @ self.lm_head().T

    def _gpt_oss_moe(self, p, h, breaks, act, margins):
        """GptOssMLP: GptOssTopKRouter (torch.topk of the router logits, softmax over those k values) and
        GptOssExperts' clamped SwiGLU with interleaved gate / up columns."""
        w, k = self.w, self.top_k
        logits = h @ w[p + "mlp.router.weight"].T
        if "gpt_oss_no_router_bias" not in breaks:
            logits = logits + w[p + "mlp.router.bias"]
        top, wts = topk_softmax(logits, k, margins, "gpt_oss_softmax_before_topk" in breaks)
        gate_up, down = self.gpt_oss_experts(p, breaks)
        gu_bias, down_bias = w[p + "mlp.experts.gate_up_proj_bias"], w[p + "mlp.experts.down_proj_bias"]
        limit = 7.0 if "gpt_oss_limit_7" in breaks else self.swiglu_limit
        alpha = 1.0 if "gpt_oss_plain_silu" in breaks else self.swiglu_alpha
        no_bias = "gpt_oss_no_expert_bias" in breaks
        out = np.zeros_like(h)
        for e in range(logits.shape[1]):
            rows, slot = np.nonzero(top == e)
            if len(rows) == 0:
                continue
            gu = h[rows] @ gate_up[e] + (0.0 if no_bias else gu_bias[e])
            if "gpt_oss_gate_up_not_interleaved" in breaks:
                f = gu.shape[1] // 2
                gate, up = gu[:, :f], gu[:, f:]
            elif "gpt_oss_gate_up_swapped" in breaks:
                gate, up = gu[:, 1::2], gu[:, 0::2]
            else:
                gate, up = gu[:, 0::2], gu[:, 1::2]
            if "gpt_oss_no_clamp" not in breaks:
                lo = -limit if "gpt_oss_gate_clamp_both_sides" in breaks else -np.inf
                gate = np.clip(gate, lo, limit)
                up = np.clip(up, -limit, limit)
            glu = gate * sigmoid(alpha * gate)
            y = act((up if "gpt_oss_up_plus_one_missing" in breaks else up + 1.0) * glu) @ down[e]
            if not no_bias:
                y = y + down_bias[e]
            out[rows] += wts[rows, slot][:, None] * y
        return out

    def _gemma_mlp(self, p, h, act, breaks):
        w = self.w
        g = h @ w[p + "gate_proj.weight"].T
        u = h @ w[p + "up_proj.weight"].T
        a = silu(g) if "gemma_silu" in breaks else gelu_tanh(g)
        return act(a * u) @ w[p + "down_proj.weight"].T

    def _phi3_qkv(self, p, h, breaks):
        """Phi3Attention: one qkv_proj; its outputs are the queries (heads * head_dim), then the keys
        (kv_heads * head_dim), then the values (the rest)."""
        T, hd = len(h), self.head_dim
        qkv = h @ self.w[p + "self_attn.qkv_proj.weight"].T
        nq, nk = self.n_heads * hd, self.n_kv * hd
        if qkv.shape[1] != nq + 2 * nk:
            raise ValueError(f"{p}self_attn.qkv_proj.weight has {qkv.shape[1]} rows, not {nq + 2 * nk}")
        q, k, v = qkv[:, :nq], qkv[:, nq:nq + nk], qkv[:, nq + nk:]
        if "phi3_kv_swapped" in breaks:
            k, v = v, k
        return q.reshape(T, self.n_heads, hd), k.reshape(T, self.n_kv, hd), v.reshape(T, self.n_kv, hd)

    def _phi3_mlp(self, p, h, act, breaks):
        """Phi3MLP: gate, up = gate_up_proj(h).chunk(2) (gate rows first); down(up * silu(gate))."""
        gu = h @ self.w[p + "gate_up_proj.weight"].T
        f = gu.shape[1] // 2
        g, u = gu[:, :f], gu[:, f:]
        if "phi3_gate_up_swapped" in breaks:
            g, u = u, g
        return act(u * silu(g)) @ self.w[p + "down_proj.weight"].T

    def _mlp(self, p, h, act, names=("gate_proj", "up_proj", "down_proj")):
        w = self.w
        g = h @ w[f"{p}{names[0]}.weight"].T
        u = h @ w[f"{p}{names[1]}.weight"].T
        return act(silu(g) * u) @ w[f"{p}{names[2]}.weight"].T

    def _deepseek_moe(self, p, h, breaks, act, margins, config=None):
        # DeepseekV2MoE / DeepseekV3MoE (and Glm4MoeMoE, with its V3-shaped config): routed experts weighted
        # by the gate, plus the shared experts (one MLP of n_shared_experts * moe_intermediate_size) on every token.
        c = config or self.config
        top, wts = ds.gate(c, self.w, p + "mlp.", h, breaks, margins)
        out = np.zeros_like(h)
        for e in range(c["n_routed_experts"]):
            rows, slot = np.nonzero(top == e)
            if len(rows):
                out[rows] += wts[rows, slot][:, None] * self._mlp(f"{p}mlp.experts.{e}.", h[rows], act)
        if c.get("n_shared_experts"):
            out += self._mlp(p + "mlp.shared_experts.", h, act)
        return out

    def _ernie_moe(self, p, h, breaks, act, margins):
        """Ernie4_5_MoeSparseMoeBlock: router logits h @ gate^T, softmaxed over every expert; the top moe_k by
        softmax + moe_statics.e_score_correction_bias (the bias only chooses); their softmax values divided by
        max(sum, moe_norm_min) weigh the experts' SwiGLU MLPs; the shared experts (one MLP) are added.
        `margins` gets each row's gap between the last chosen and the best unchosen selection score."""
        c, w = self.config, self.w
        k, n = c["moe_k"], c["moe_num_experts"]
        logits = h @ w[p + "mlp.gate.weight"].T
        prob = np.exp(logits - logits.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        bias = w[p + "mlp.moe_statics.e_score_correction_bias"].reshape(n)
        choice = prob if "ernie_no_selection_bias" in breaks else prob + bias
        out = np.zeros_like(h)
        for t in range(len(h)):
            order = np.argsort(-choice[t], kind="stable")
            top = order[:k]
            # A logit error e moves each softmax value by at most e / 2, so a gap between two choice scores
            # closes only for e >= the gap: comparable with the other routers' logit margins as it is.
            margins[t] = min(margins[t], choice[t][order[k - 1]] - choice[t][order[k]])
            wts = prob[t][top]
            if "ernie_weights_unnormalised" not in breaks:
                wts = wts / max(wts.sum(), c.get("moe_norm_min", 1e-12))
            for e, wt in zip(top, wts):
                out[t] += wt * self._mlp(f"{p}mlp.experts.{e}.", h[t:t + 1], act)[0]
        if c.get("moe_num_shared_experts", 0):
            out += self._mlp(p + "mlp.shared_experts.", h, act)
        return out

    def _minimax_moe(self, p, h, breaks, act, margins):
        """MiniMaxM2SparseMoeBlock (MiniMaxM2TopKRouter + MixtralExperts): router logits h @ gate^T, scores their
        sigmoid; the top num_experts_per_tok of scores + block_sparse_moe.e_score_correction_bias are chosen (the
        bias only chooses); their scores divided by their sum weigh the experts' SwiGLU MLPs (w1 gate, w3 up,
        w2 down). `margins` gets each row's gap between the last chosen and the best unchosen expert."""
        c, w = self.config, self.w
        k = c["num_experts_per_tok"]
        q = p + "block_sparse_moe."
        scores = sigmoid(h @ w[q + "gate.weight"].T)
        choice = scores if "minimax_no_selection_bias" in breaks else scores + w[q + "e_score_correction_bias"]
        out = np.zeros_like(h)
        for t in range(len(h)):
            order = np.argsort(-choice[t], kind="stable")
            top = order[:k]
            if k < len(order):
                # In router-logit units (ref_deepseek.gate's rule): the gap over the sum of the two sigmoids'
                # derivatives, how far the logits must move to swap the two experts.
                sa, sb = scores[t][order[k - 1]], scores[t][order[k]]
                gap = (choice[t][order[k - 1]] - choice[t][order[k]]) / max(sa * (1 - sa) + sb * (1 - sb), 1e-12)
                margins[t] = min(margins[t], gap)
            wts = (choice if "minimax_weights_biased" in breaks else scores)[t][top]
            wts = wts / wts.sum()
            for e, wt in zip(top, wts):
                out[t] += wt * self._mlp(f"{q}experts.{e}.", h[t:t + 1], act, ("w1", "w3", "w2"))[0]
        return out

    def _granite_moe(self, p, h, breaks, act, margins):
        """GraniteMoeMoE (JetMoeTopKGating + JetMoeParallelExperts): router logits = h @ router.layer^T; the top k
        logits softmaxed among themselves are the weights; expert e: [g | u] = h @ input_linear[e]^T (F outputs
        each, gate first), silu(g) * u, then @ output_linear[e]^T; the weighted sum over the chosen experts."""
        w, k = self.w, self.config["num_experts_per_tok"]
        block = p + "block_sparse_moe."
        logits = h @ w[block + "router.layer.weight"].T  # [T, E]
        top, wts = topk_softmax(logits, k, margins, "granite_moe_no_renorm" in breaks)
        w_in, w_out = w[block + "input_linear.weight"], w[block + "output_linear.weight"]
        f = w_in.shape[1] // 2
        out = np.zeros_like(h)
        for e in range(logits.shape[1]):
            rows, slot = np.nonzero(top == e)
            if len(rows) == 0:
                continue
            gu = act(h[rows]) @ w_in[e].T
            g, u = (gu[:, f:], gu[:, :f]) if "granite_moe_gate_up_swapped" in breaks else (gu[:, :f], gu[:, f:])
            y = act(silu(g) * u) @ w_out[e].T
            out[rows] += wts[rows, slot][:, None] * y
        return out

    def _moe(self, p, h, breaks, act, margins):
        # Qwen3MoeSparseMoeBlock: softmax over all experts, top-k, optional renormalisation of the
        # k chosen probabilities, weighted sum of the chosen experts' SiLU-gated MLPs.
        # MixtralSparseMoeBlock: the same with the top-k always renormalised, tensors under
        # block_sparse_moe with experts' w1 (gate), w3 (up), w2 (down).
        c, w = self.config, self.w
        k = c["num_experts_per_tok"]
        mixtral = self.arch == "mixtral"
        block = p + ("block_sparse_moe." if mixtral else "mlp.")
        names = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
        logits = h @ w[block + "gate.weight"].T  # [T, E]
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        order = np.argsort(-logits, axis=1, kind="stable")
        top = order[:, :k]
        if k < logits.shape[1]:
            srt = np.take_along_axis(logits, order, axis=1)
            np.minimum(margins, srt[:, k - 1] - srt[:, k], out=margins)
        wts = np.take_along_axis(probs, top, axis=1)
        renorm = bool(c.get("norm_topk_prob", False)) != ("moe_flip_renorm" in breaks)
        if mixtral:
            renorm = "mixtral_no_renorm" not in breaks
        if renorm:
            wts = wts / wts.sum(axis=1, keepdims=True)
        out = np.zeros_like(h)
        for e in range(logits.shape[1]):
            rows, slot = np.nonzero(top == e)
            if len(rows) == 0:
                continue
            y = self._mlp(f"{block}experts.{e}.", h[rows], act, names)
            out[rows] += wts[rows, slot][:, None] * y
        if self.arch == "qwen2_moe" and "qwen2_moe_no_shared_expert" not in breaks:
            # Qwen2MoeSparseMoeBlock: + sigmoid(shared_expert_gate(x)) * shared_expert(x).
            shared = self._mlp(block + "shared_expert.", h, act)
            gate = 1.0 if "qwen2_moe_shared_ungated" in breaks else \
                sigmoid(h @ w[block + "shared_expert_gate.weight"].T)  # [T, 1]
            out += gate * shared
        return out


def main(argv):
    ap = argparse.ArgumentParser(description="float64 reference logits of a HF model folder")
    ap.add_argument("--model-path", required=True)
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--out", help="write float32 logits [T, vocab] here (raw little-endian)")
    ap.add_argument("--break", dest="breaks", action="append", default=[], choices=sorted(BREAKS))
    ap.add_argument("--longrope-choice", choices=["long", "short"],
                    help="Phi-3 LongRoPE: force a factor set (default: transformers' rule from the token count)")
    a = ap.parse_args(argv)
    m = RefModel(a.model_path)
    m.longrope_choice = a.longrope_choice
    logits = m.forward([int(t) for t in a.tokens.split(",")], breaks=set(a.breaks))
    if a.out:
        logits.astype("<f4").tofile(a.out)
    print(json.dumps({"vocab_size": m.vocab, "argmax": logits.argmax(axis=1).tolist(),
                      "logit_std": float(logits.std())}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
