#!/usr/bin/python3
"""Converts a Hugging Face model folder into one GGUF file, the way llama.cpp's converter lays it
out, so tests and benchmarks can build GGUF models at run time (written for dpserve; needs NumPy
only).

What it writes:
  * tensors under llama.cpp's names (token_embd, blk.N.attn_q, ..., output), F32 / F16 / BF16
    (1-D tensors, norms and the MoE router stay F32, as llama.cpp's converter keeps them);
  * `llama` models: Q/K rows permuted per head (llama.cpp's converter does this so that GGML's
    RoPE on adjacent pairs equals Hugging Face's rotate-half), llama3 RoPE scaling as
    rope_freqs.weight (one divisor per frequency), linear as rope.scaling.*;
  * Qwen3-MoE, Qwen2-MoE, OLMoE, Mixtral and DeepSeek experts stacked into blk.N.ffn_{gate,up,down}_exps
    [experts, rows, cols]; Mixtral as llama.cpp's converter writes it: `llama` with expert_count /
    expert_used_count, experts feed_forward_length wide, the router block_sparse_moe.gate as
    ffn_gate_inp (w1 / w3 / w2 -> gate / up / down);
  * Llama 4 (Llama4ForCausalLM) as `llama4`: nothing permuted, the stacked input-major experts transposed into
    ffn_{gate,up,down}_exps, the shared expert as ffn_*_shexp, interleave_moe_layer_step, and configs that llama.cpp's
    fixed chunk (8192), temperature and NoPE pattern would run differently refused;
  * DeepSeek-V2/V3 as `deepseek2`: kv_b_proj split per head into attn_k_b (W_UK transposed) and
    attn_v_b with the attention.*_mla keys, as llama.cpp's converter does since its absorbed MLA
    (--kv-b joined writes the older single attn_kv_b); the router's meaning in llama.cpp's terms
    (expert_gating_func, expert_weights_norm / _scale, expert groups), refusing a config whose
    meaning those keys cannot express; YaRN with yarn_log_multiplier = 0.1 x mscale_all_dim;
    per-head YaRN (Qwen2 / Qwen3 / Llama) as rope.scaling.factor / original_context_length and the
    yarn_beta_* / yarn_attn_factor keys when the config has them;
  * the vocabulary: tokenizer.json (byte-level BPE -> `gpt2` with merges and the pre-tokenizer
    name), tokenizer.model (SentencePiece -> `llama` with scores and types) or a llama2.c
    tokenizer.bin; BOS/EOS ids, add_bos/add_eos and the chat template from tokenizer_config.json.

  * --outtype q8_0 / q4_0 / q5_0 / q5_1: matrices as those blocks, quantized here as ggml's reference
    quantizers do (llama.cpp's converter writes q8_0 itself; the others come from llama-quantize);
    a matrix whose rows are not whole 32-element blocks stays F16, the router and 1-D tensors F32.

  /usr/bin/python3 tools/hf_to_gguf.py /tmp/tiny-llama --out /tmp/tiny-llama.gguf --outtype f16
  /usr/bin/python3 tools/hf_to_gguf.py --vocab-only --tokenizer ../shared/tokenizers/qwen3 --out /tmp/qwen3-vocab.gguf
  /usr/bin/python3 tools/hf_to_gguf.py --llama2c ../shared/models/stories260K/stories260K.bin \\
      --tokenizer ../shared/models/stories260K/tok512.bin --out /tmp/stories260K.gguf
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_format as G  # noqa: E402

ARCH = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2",
        "Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3moe",
        "Qwen2MoeForCausalLM": "qwen2moe", "MixtralForCausalLM": "llama",
        "DeepseekV2ForCausalLM": "deepseek2", "DeepseekV3ForCausalLM": "deepseek2", "Gemma3ForCausalLM": "gemma3",
        "Gemma2ForCausalLM": "gemma2", "Phi3ForCausalLM": "phi3", "GptOssForCausalLM": "gpt-oss",
        "SmolLM3ForCausalLM": "smollm3", "GraniteForCausalLM": "granite", "GraniteMoeForCausalLM": "granitemoe",
        "Olmo2ForCausalLM": "olmo2", "Olmo3ForCausalLM": "olmo2", "OlmoeForCausalLM": "olmoe",
        "Glm4MoeForCausalLM": "glm4moe", "Exaone4ForCausalLM": "exaone4", "SeedOssForCausalLM": "seed_oss",
        "Ministral3ForCausalLM": "mistral3",
        "Glm4ForCausalLM": "glm4", "Glm4MoeLiteForCausalLM": "deepseek2", "Ernie4_5ForCausalLM": "ernie4_5",
        "Ernie4_5_MoeForCausalLM": "ernie4_5-moe", "MiniMaxM2ForCausalLM": "minimax-m2", "Llama4ForCausalLM": "llama4"}
# Architectures whose Q / K rows llama.cpp's converter permutes (its LlamaModel and subclasses), so that
# GGML's RoPE on adjacent pairs equals Hugging Face's rotate-half.
PERMUTED = ("llama", "smollm3", "granite", "granitemoe", "mistral3")
# (type, general.file_type)
OUTTYPES = {"f32": (G.GGML_F32, 0), "f16": (G.GGML_F16, 1), "bf16": (G.GGML_BF16, 32), "q8_0": (G.GGML_Q8_0, 7),
            "q4_0": (G.GGML_Q4_0, 2), "q5_0": (G.GGML_Q5_0, 8), "q5_1": (G.GGML_Q5_1, 9)}
BLOCK_TYPES = (G.GGML_Q8_0, G.GGML_Q4_0, G.GGML_Q5_0, G.GGML_Q5_1)

# A multi-token-prediction layer's own tensors (GLM-4.5's model.layers.<num_hidden_layers>.*).
NEXTN_NAMES = {
    "eh_proj.weight": "nextn.eh_proj.weight",
    "enorm.weight": "nextn.enorm.weight",
    "hnorm.weight": "nextn.hnorm.weight",
    "embed_tokens.weight": "nextn.embed_tokens.weight",
    "shared_head.head.weight": "nextn.shared_head_head.weight",
    "shared_head.norm.weight": "nextn.shared_head_norm.weight",
}

# Hugging Face -> llama.cpp tensor names (the per-layer part).
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "mlp.gate.weight": "ffn_gate_inp.weight",
    "block_sparse_moe.gate.weight": "ffn_gate_inp.weight",  # Mixtral
    "block_sparse_moe.router.layer.weight": "ffn_gate_inp.weight",  # Granite-MoE
    # DeepSeek-V2/V3 (multi-head latent attention, DeepSeekMoE)
    "self_attn.q_a_proj.weight": "attn_q_a.weight",
    "self_attn.q_a_layernorm.weight": "attn_q_a_norm.weight",
    "self_attn.q_b_proj.weight": "attn_q_b.weight",
    "self_attn.kv_a_proj_with_mqa.weight": "attn_kv_a_mqa.weight",
    "self_attn.kv_a_layernorm.weight": "attn_kv_a_norm.weight",
    "mlp.gate.e_score_correction_bias": "exp_probs_b.bias",
    "mlp.moe_statics.e_score_correction_bias": "exp_probs_b.bias",  # ERNIE 4.5 MoE's, [1, experts]
    "mlp.shared_experts.gate_proj.weight": "ffn_gate_shexp.weight",
    "mlp.shared_experts.up_proj.weight": "ffn_up_shexp.weight",
    "mlp.shared_experts.down_proj.weight": "ffn_down_shexp.weight",
    # Qwen2-MoE's one shared expert and its sigmoid gate ([1, hidden], kept 2-D as llama.cpp's converter does)
    "mlp.shared_expert.gate_proj.weight": "ffn_gate_shexp.weight",
    "mlp.shared_expert.up_proj.weight": "ffn_up_shexp.weight",
    "mlp.shared_expert.down_proj.weight": "ffn_down_shexp.weight",
    "mlp.shared_expert_gate.weight": "ffn_gate_inp_shexp.weight",
}
# Gemma 3's norms around attention and MLP (llama.cpp's names; its ffn_norm is the MLP's input norm).
GEMMA3_NAMES = {"post_attention_layernorm.weight": "post_attention_norm.weight",
                "pre_feedforward_layernorm.weight": "ffn_norm.weight",
                "post_feedforward_layernorm.weight": "post_ffw_norm.weight"}
# OLMo 2's norms on the attention and MLP outputs (llama.cpp's names; it has no input norms).
OLMO2_NAMES = {"post_attention_layernorm.weight": "post_attention_norm.weight",
               "post_feedforward_layernorm.weight": "post_ffw_norm.weight"}
# GLM-4.5's MLP input norm, as llama.cpp's converter names it (attn_post_norm in llama.cpp's code).
GLM4MOE_NAMES = {"post_attention_layernorm.weight": "post_attention_norm.weight"}
# GLM-4-0414's four norms and fused gate / up, as llama.cpp's converter names them (nothing permuted: its
# RoPE rotates adjacent pairs, as llama.cpp's NORM rope type for glm4 does).
GLM4_NAMES = {"post_self_attn_layernorm.weight": "post_attention_norm.weight",
              "post_attention_layernorm.weight": "ffn_norm.weight",
              "post_mlp_layernorm.weight": "post_ffw_norm.weight", "mlp.gate_up_proj.weight": "ffn_up.weight"}
# Llama 4's feed-forward blocks (Llama4TextMoe's router and shared expert, or a dense MLP) under feed_forward.
LLAMA4_NAMES = {"feed_forward.router.weight": "ffn_gate_inp.weight",
                "feed_forward.shared_expert.gate_proj.weight": "ffn_gate_shexp.weight",
                "feed_forward.shared_expert.up_proj.weight": "ffn_up_shexp.weight",
                "feed_forward.shared_expert.down_proj.weight": "ffn_down_shexp.weight",
                "feed_forward.gate_proj.weight": "ffn_gate.weight", "feed_forward.up_proj.weight": "ffn_up.weight",
                "feed_forward.down_proj.weight": "ffn_down.weight"}
# MiniMax-M2's router selection bias, beside (not in) its gate.
MINIMAX_M2_NAMES = {"block_sparse_moe.e_score_correction_bias": "exp_probs_b.bias"}
# Phi-3's fused projections, as llama.cpp's converter keeps them: attn_qkv (q, k, v rows) and ffn_up
# holding the gate rows, then the up rows (phi3 has no ffn_gate).
PHI3_NAMES = {"self_attn.qkv_proj.weight": "attn_qkv.weight", "mlp.gate_up_proj.weight": "ffn_up.weight"}
# gpt-oss as llama.cpp's converter names it (its MLP input norm is post_attention_norm; the stacked
# experts are written by gpt_oss_experts).
GPT_OSS_NAMES = {"self_attn.o_proj.bias": "attn_output.bias", "self_attn.sinks": "attn_sinks.weight",
                 "post_attention_layernorm.weight": "post_attention_norm.weight",
                 "mlp.router.weight": "ffn_gate_inp.weight", "mlp.router.bias": "ffn_gate_inp.bias"}
EXPERT_NAMES = {"gate_proj.weight": "ffn_gate_exps.weight", "up_proj.weight": "ffn_up_exps.weight",
                "down_proj.weight": "ffn_down_exps.weight"}
# Mixtral's experts (block_sparse_moe.experts.E.*): w1 is the gate, w3 the up and w2 the down projection.
MIXTRAL_EXPERT_NAMES = {"w1.weight": "ffn_gate_exps.weight", "w3.weight": "ffn_up_exps.weight",
                        "w2.weight": "ffn_down_exps.weight"}
GLOBAL_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                "lm_head.weight": "output.weight"}

# Token types (llama.cpp's llama_token_type; SentencePiece's piece types use the same numbers).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Pre-tokenizers recognised from tokenizer.json's Split regex -> tokenizer.ggml.pre.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_WORD_CASED = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
_WORD_UPPER = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
_CONTRACTION = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
_O200K_SPLIT = (_WORD_CASED + _CONTRACTION + "|" + _WORD_UPPER + _CONTRACTION +
                r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_TEKKEN_SPLIT = _WORD_CASED + "|" + _WORD_UPPER + r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
PRE_BY_REGEX = {_LLAMA3_SPLIT: "llama-bpe", _QWEN2_SPLIT: "qwen2", _O200K_SPLIT: "gpt-4o", _TEKKEN_SPLIT: "tekken"}


# --- reading Hugging Face files ---------------------------------------------------------------

def read_safetensors(folder):
    """name -> (NumPy array view of the file, dtype name) for every *.safetensors in `folder`."""
    out = {}
    for fn in sorted(os.listdir(folder)):
        if not fn.endswith(".safetensors"):
            continue
        path = os.path.join(folder, fn)
        mm = np.memmap(path, dtype=np.uint8, mode="r")
        hlen = int.from_bytes(bytes(mm[:8]), "little")
        header = json.loads(bytes(mm[8:8 + hlen]))
        base = 8 + hlen
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            np_dtype = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}[info["dtype"]]
            arr = mm[base + b:base + e].view(np_dtype).reshape(info["shape"])
            out[name] = (arr, info["dtype"])
    if not out:
        raise SystemExit(f"hf_to_gguf: no *.safetensors in {folder}")
    return out


def to_f32(arr, dtype):
    if dtype == "BF16":
        return (arr.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return arr.astype(np.float32)


def round_half_away(x):
    """C's roundf (ties away from zero), not NumPy's ties-to-even; x - trunc(x) is exact, where
    |x| + 0.5 could round up (0.49999997 + 0.5 is 1.0 in fp32)."""
    t = np.trunc(x)
    return t + np.sign(x) * (np.abs(x - t) >= np.float32(0.5))


def quantize_blocks(x, ggml_type):
    """fp32 rows (last dimension a multiple of 32) -> Q8_0 / Q4_0 blocks as uint8, as ggml's
    quantize_row_q8_0_ref / quantize_row_q4_0_ref compute them (fp32 arithmetic, the scale d
    stored as f16 but the codes computed with the unrounded d)."""
    shape = x.shape
    b = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 32)
    with np.errstate(divide="ignore"):
        if ggml_type == G.GGML_Q8_0:
            d = np.abs(b).max(axis=1) / np.float32(127)
            inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
            q = round_half_away(b * inv[:, None]).astype(np.int8).view(np.uint8)
        else:
            # d = -(the element of largest magnitude, the first on ties) / 8; codes
            # min(15, trunc(x / d + 8.5)), element j in the low nibble of byte j, j + 16 in the high.
            big = b[np.arange(len(b)), np.abs(b).argmax(axis=1)]
            d = (big / np.float32(-8)).astype(np.float32)
            inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
            c = np.minimum(15, np.trunc(b * inv[:, None] + np.float32(8.5))).astype(np.uint8)
            q = c[:, :16] | (c[:, 16:] << np.uint8(4))
    out = np.concatenate([d.astype("<f2").view(np.uint8).reshape(-1, 2), q], axis=1)
    return out.reshape(*shape[:-1], -1)


def quantize_blocks_q5(x, ggml_type):
    """fp32 rows -> Q5_0 / Q5_1 blocks as ggml's quantize_row_q5_0_ref / q5_1_ref compute them.
    Q5_0: d = -(the element of largest magnitude, the first on ties) / 16, codes
    min(31, trunc(x / d + 16.5)). Q5_1: d = (max - min) / 31, m = min, codes trunc((x - min) / d + 0.5).
    Element j's low four bits go to the low nibble of byte j (j + 16: the high nibble), its fifth
    bit to bit j (j + 16) of the 32-bit qh."""
    shape = x.shape
    b = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 32)
    with np.errstate(divide="ignore"):
        if ggml_type == G.GGML_Q5_0:
            big = b[np.arange(len(b)), np.abs(b).argmax(axis=1)]
            d = (big / np.float32(-16)).astype(np.float32)
            inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
            c = np.minimum(31, np.trunc(b * inv[:, None] + np.float32(16.5))).astype(np.uint32)
            head = [d.astype("<f2").view(np.uint8).reshape(-1, 2)]
        else:
            lo, hi = b.min(axis=1), b.max(axis=1)
            d = ((hi - lo) / np.float32(31)).astype(np.float32)
            inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
            c = np.trunc((b - lo[:, None]) * inv[:, None] + np.float32(0.5)).astype(np.uint32)
            head = [d.astype("<f2").view(np.uint8).reshape(-1, 2), lo.astype("<f2").view(np.uint8).reshape(-1, 2)]
    qs = ((c[:, :16] & 15) | ((c[:, 16:] & 15) << 4)).astype(np.uint8)
    qh = (((c >> 4) & 1) << np.arange(32, dtype=np.uint32)).sum(axis=1, dtype=np.uint64).astype("<u4")
    out = np.concatenate(head + [qh.view(np.uint8).reshape(-1, 4), qs], axis=1)
    return out.reshape(*shape[:-1], -1)


def matrix_type(ggml_type, shape):
    """Quantized types only for rows of whole 32-element blocks (else F16, as llama.cpp's converter)."""
    if ggml_type in BLOCK_TYPES and shape[-1] % 32 != 0:
        return G.GGML_F16
    return ggml_type


def convert(arr, dtype, ggml_type):
    """arr (source dtype, BF16 as uint16 bits) -> the bytes of ggml_type."""
    if ggml_type in (G.GGML_Q8_0, G.GGML_Q4_0):
        return quantize_blocks(to_f32(arr, dtype), ggml_type)
    if ggml_type in (G.GGML_Q5_0, G.GGML_Q5_1):
        return quantize_blocks_q5(to_f32(arr, dtype), ggml_type)
    if ggml_type == G.GGML_F32:
        return to_f32(arr, dtype).astype("<f4")
    if ggml_type == G.GGML_F16:
        return arr.astype("<f2") if dtype == "F16" else to_f32(arr, dtype).astype("<f2")
    if dtype == "BF16":
        return arr.astype("<u2")
    u = np.ascontiguousarray(to_f32(arr, dtype)).view(np.uint32)  # round to nearest even
    return ((u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)).astype("<u2")


def permute_rows(w, n_head):
    """llama.cpp's converter: within each head, rows (i, half + i) of HF's rotate-half layout
    become adjacent rows (2i, 2i + 1)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_json(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --- vocabularies ------------------------------------------------------------------------------

class Vocab:
    def __init__(self, model):
        self.model = model  # "llama" or "gpt2"
        self.tokens, self.types, self.scores, self.merges = [], [], None, None
        self.pre = None
        self.ids = {}  # tokenizer.ggml.<name>_token_id
        self.flags = {}  # tokenizer.ggml.<name> bools
        self.chat_template = None


def looks_special(text):
    return text.startswith("<|") and text.endswith("|>")


def vocab_from_tokenizer_json(folder, vocab_size, pre):
    tj = load_json(os.path.join(folder, "tokenizer.json"))
    m = tj["model"]
    pt = tj.get("pre_tokenizer") or {}
    steps = pt.get("pretokenizers", [pt])
    if m.get("type", "BPE") != "BPE" or not any(s.get("type") == "ByteLevel" for s in steps):
        raise SystemExit("hf_to_gguf: tokenizer.json is not a byte-level BPE (a SentencePiece model needs tokenizer.model)")
    v = Vocab("gpt2")
    if pre is None:
        splits = [s for s in steps if s.get("type") == "Split"]
        regex = splits[0]["pattern"].get("Regex") if splits else None
        pre = PRE_BY_REGEX.get(regex)
        if pre is None:
            raise SystemExit("hf_to_gguf: unknown pre-tokenizer in tokenizer.json: give --pre NAME")
    v.pre = pre
    by_id = {i: t for t, i in m["vocab"].items()}
    added = {a["id"]: a for a in tj.get("added_tokens", [])}
    n = max([vocab_size or 0] + [i + 1 for i in by_id] + [i + 1 for i in added])
    for i in range(n):
        if i in added:
            a = added[i]
            v.tokens.append(a["content"])
            v.types.append(CONTROL if a.get("special") or looks_special(a["content"]) else USER_DEFINED)
        elif i in by_id:
            v.tokens.append(by_id[i])
            v.types.append(NORMAL)
        else:
            v.tokens.append(f"[PAD{i}]")
            v.types.append(UNUSED)
    v.merges = [mg if isinstance(mg, str) else f"{mg[0]} {mg[1]}" for mg in m["merges"]]
    return v


def read_varint(b, i):
    v, shift = 0, 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v, i
        shift += 7


def proto_fields(b):
    """(field, wire, value) of a protobuf message: varints as ints, length-delimited as bytes."""
    i = 0
    while i < len(b):
        tag, i = read_varint(b, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            val, i = read_varint(b, i)
        elif wire == 1:
            val, i = b[i:i + 8], i + 8
        elif wire == 2:
            n, i = read_varint(b, i)
            val, i = b[i:i + n], i + n
        elif wire == 5:
            val, i = b[i:i + 4], i + 4
        else:
            raise SystemExit(f"hf_to_gguf: unsupported protobuf wire type {wire}")
        yield field, wire, val


def vocab_from_sentencepiece(path):
    with open(path, "rb") as f:
        data = f.read()
    v = Vocab("llama")
    v.scores = []
    v.ids = {"bos": 1, "eos": 2, "unknown": 0}
    model_type = 1
    for field, wire, val in proto_fields(data):
        if field == 1 and wire == 2:  # SentencePiece
            piece, score, typ = "", 0.0, NORMAL
            for f, w, x in proto_fields(val):
                if f == 1:
                    piece = x.decode("utf-8")
                elif f == 2 and w == 5:
                    score = struct.unpack("<f", x)[0]
                elif f == 3:
                    typ = x
            v.tokens.append(piece)
            v.scores.append(score)
            v.types.append(typ)
        elif field == 2 and wire == 2:  # TrainerSpec
            for f, w, x in proto_fields(val):
                if w == 0 and f == 3:
                    model_type = x
                elif w == 0 and f in (40, 41, 42):
                    v.ids[{40: "unknown", 41: "bos", 42: "eos"}[f]] = x if x < 2**63 else x - 2**64
        elif field == 3 and wire == 2:  # NormalizerSpec
            for f, w, x in proto_fields(val):
                if w == 0 and f == 3:
                    v.flags["add_space_prefix"] = bool(x)
                elif w == 0 and f == 4:
                    v.flags["remove_extra_whitespaces"] = bool(x)
    if model_type != 2:
        raise SystemExit(f"hf_to_gguf: {path}: SentencePiece model type {model_type} is not BPE")
    v.ids = {k: i for k, i in v.ids.items() if i >= 0}
    return v


def vocab_from_llama2c(path):
    """llama2.c tokenizer.bin: int32 max length, then per token f32 score, int32 length, bytes.
    Spaces become U+2581 and ids 0/1/2 are <unk>/<s>/</s>, as llama.cpp's llama2.c converter does."""
    with open(path, "rb") as f:
        data = f.read()
    v = Vocab("llama")
    v.scores = []
    i = 4
    while i < len(data):
        score, n = struct.unpack_from("<fi", data, i)
        text = data[i + 8:i + 8 + n].decode("utf-8")
        i += 8 + n
        tid = len(v.tokens)
        typ = NORMAL
        if tid == 0:
            text, typ = "<unk>", UNKNOWN
        elif tid in (1, 2):
            text, typ = ("<s>", "</s>")[tid - 1], CONTROL
        elif len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            typ = BYTE
        v.tokens.append(text.replace(" ", "\u2581"))
        v.scores.append(score)
        v.types.append(typ)
    v.ids = {"bos": 1, "eos": 2, "unknown": 0}
    return v


def read_vocab(path, vocab_size, pre):
    """The vocabulary in `path` (a folder or a tokenizer file), with tokenizer_config.json's ids,
    flags and chat template where a folder has them."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "tokenizer.model")):
            v = vocab_from_sentencepiece(os.path.join(path, "tokenizer.model"))
        elif os.path.exists(os.path.join(path, "tokenizer.json")):
            v = vocab_from_tokenizer_json(path, vocab_size, pre)
        elif os.path.exists(os.path.join(path, "tokenizer.bin")):
            v = vocab_from_llama2c(os.path.join(path, "tokenizer.bin"))
        else:
            raise SystemExit(f"hf_to_gguf: no tokenizer.model, tokenizer.json or tokenizer.bin in {path}")
    elif path.endswith(".model"):
        v = vocab_from_sentencepiece(path)
    elif path.endswith(".json"):
        v = vocab_from_tokenizer_json(folder, vocab_size, pre)
    else:
        v = vocab_from_llama2c(path)
    if vocab_size and len(v.tokens) < vocab_size:  # the model has more rows than the tokenizer names
        for i in range(len(v.tokens), vocab_size):
            v.tokens.append(f"[PAD{i}]")
            v.types.append(UNUSED)
            if v.scores is not None:
                v.scores.append(-1000.0)
    if vocab_size and len(v.tokens) > vocab_size:
        raise SystemExit(f"hf_to_gguf: the tokenizer has {len(v.tokens)} tokens, the model {vocab_size}")
    cfg = load_json(os.path.join(folder, "tokenizer_config.json")) if os.path.isdir(folder) else None
    if cfg:
        index = {t: i for i, t in enumerate(v.tokens)}
        for name in ("bos", "eos", "unk", "pad"):
            tok = cfg.get(f"{name}_token")
            if isinstance(tok, dict):
                tok = tok.get("content")
            if isinstance(tok, str) and tok in index:
                v.ids["unknown" if name == "unk" else "padding" if name == "pad" else name] = index[tok]
        for flag in ("add_bos_token", "add_eos_token"):
            if isinstance(cfg.get(flag), bool):
                v.flags[flag] = cfg[flag]
        tmpl = cfg.get("chat_template")
        if isinstance(tmpl, list):
            tmpl = next((t["template"] for t in tmpl if t.get("name") == "default"), tmpl[0]["template"] if tmpl else None)
        v.chat_template = tmpl
    return v


def add_vocab(w, v):
    w.add("tokenizer.ggml.model", G.STRING, v.model)
    if v.pre:
        w.add("tokenizer.ggml.pre", G.STRING, v.pre)
    w.add_array("tokenizer.ggml.tokens", G.STRING, v.tokens)
    if v.scores is not None:
        w.add_array("tokenizer.ggml.scores", G.F32, np.asarray(v.scores, dtype="<f4"))
    w.add_array("tokenizer.ggml.token_type", G.I32, np.asarray(v.types, dtype="<i4"))
    if v.merges is not None:
        w.add_array("tokenizer.ggml.merges", G.STRING, v.merges)
    for name, i in v.ids.items():
        w.add(f"tokenizer.ggml.{name}_token_id", G.U32, i)
    for name, val in v.flags.items():
        w.add(f"tokenizer.ggml.{name}", G.BOOL, val)
    if v.chat_template:
        w.add("tokenizer.chat_template", G.STRING, v.chat_template)


# --- model -------------------------------------------------------------------------------------

def llama3_rope_factors(c, head_dim):
    """llama.cpp's converter: one divisor per frequency that turns RoPE into llama3's scaled RoPE."""
    rs = c["rope_scaling"]
    base = c.get("rope_theta", 10000.0)
    factor, lo, hi = rs.get("factor", 8.0), rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
    old = rs.get("original_max_position_embeddings", 8192)
    out = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / base ** (i / head_dim)
        wavelen = 2 * math.pi / freq
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype="<f4")


def deepseek2_keys(w, p, c, kv_b):
    """DeepSeek-V2/V3 metadata as llama.cpp's converter writes it, and what llama.cpp reads it as."""
    r, rd = c["kv_lora_rank"], c["qk_rope_head_dim"]
    nope, vd = c["qk_nope_head_dim"], c["v_head_dim"]
    v3 = c["architectures"][0] in ("DeepseekV3ForCausalLM", "Glm4MoeLiteForCausalLM")
    # llama.cpp reads q_lora_rank for every layer count but V2-Lite's 27 (its files have none):
    # 0 keeps small q_proj models loadable there and means the same to dpserve.
    w.add(p + "attention.q_lora_rank", G.U32, c.get("q_lora_rank") or 0)
    w.add(p + "attention.kv_lora_rank", G.U32, r)
    w.add(p + "rope.dimension_count", G.U32, rd)
    if kv_b == "split":  # the cache seen as one MQA head of [c_kv | k_pe]
        w.add(p + "attention.head_count_kv", G.U32, 1)
        w.add(p + "attention.key_length", G.U32, r + rd)
        w.add(p + "attention.value_length", G.U32, r)
        w.add(p + "attention.key_length_mla", G.U32, nope + rd)
        w.add(p + "attention.value_length_mla", G.U32, vd)
    else:
        w.add(p + "attention.head_count_kv", G.U32, c["num_attention_heads"])
        w.add(p + "attention.key_length", G.U32, nope + rd)
        w.add(p + "attention.value_length", G.U32, vd)
    w.add(p + "vocab_size", G.U32, c["vocab_size"])
    n_exp = c.get("n_routed_experts")
    w.add(p + "leading_dense_block_count", G.U32,
          c.get("first_k_dense_replace") or 0 if n_exp else c["num_hidden_layers"])
    if not n_exp:
        return
    if c.get("moe_layer_freq", 1) != 1:
        raise SystemExit("hf_to_gguf: deepseek2 GGUF files have every layer after the dense ones sparse; "
                         "moe_layer_freq != 1 cannot be written")
    k = c["num_experts_per_tok"]
    scoring = c.get("scoring_func") or ("sigmoid" if v3 else "softmax")
    method = c.get("topk_method") or ("noaux_tc" if v3 else "greedy")
    norm = bool(c.get("norm_topk_prob", v3))
    scale = c.get("routed_scaling_factor") or 1.0
    groups = c.get("n_group") or 1
    # llama.cpp: selection on the scores (+ exp_probs_b); with groups, the groups of the largest sum
    # of their two best; weights divided by their sum when normalised, then always scaled.
    if method == "group_limited_greedy" and groups > 1:
        raise SystemExit("hf_to_gguf: group_limited_greedy ranks groups by their best expert; llama.cpp's deepseek2 "
                         "ranks them by the sum of the best two (noaux_tc's rule): not expressible")
    if not v3 and norm and k > 1 and scale != 1.0:
        raise SystemExit("hf_to_gguf: DeepSeek-V2 does not scale normalised weights; llama.cpp always scales: "
                         "routed_scaling_factor must be 1 with norm_topk_prob")
    if norm and k == 1:
        raise SystemExit("hf_to_gguf: the reference skips normalising a single expert, llama.cpp does not")
    w.add(p + "expert_count", G.U32, n_exp)
    w.add(p + "expert_used_count", G.U32, k)
    w.add(p + "expert_feed_forward_length", G.U32, c["moe_intermediate_size"])
    w.add(p + "expert_shared_count", G.U32, c.get("n_shared_experts") or 0)
    w.add(p + "expert_weights_scale", G.F32, scale)
    if norm:
        w.add(p + "expert_weights_norm", G.BOOL, True)
    w.add(p + "expert_gating_func", G.U32, {"softmax": 1, "sigmoid": 2}[scoring])
    if method != "greedy":
        w.add(p + "expert_group_count", G.U32, groups)
        w.add(p + "expert_group_used_count", G.U32, c.get("topk_group") or 1)


def per_head_yarn(w, p, rs):
    """YaRN of a per-head attention model with the keys llama.cpp's converter writes for it."""
    for k in ("mscale", "mscale_all_dim"):
        if rs.get(k):
            raise SystemExit(f"hf_to_gguf: yarn {k} has no GGUF key for this architecture")
    if rs.get("truncate", True) is not True:
        raise SystemExit("hf_to_gguf: yarn truncate false has no GGUF key (llama.cpp always truncates; gpt-oss's "
                         "real converter drops it, this one refuses)")
    w.add(p + "rope.scaling.type", G.STRING, "yarn")
    w.add(p + "rope.scaling.factor", G.F32, rs["factor"])
    if "original_max_position_embeddings" in rs:
        w.add(p + "rope.scaling.original_context_length", G.U32, rs["original_max_position_embeddings"])
    for hf, key in (("beta_fast", "yarn_beta_fast"), ("beta_slow", "yarn_beta_slow"),
                    ("attention_factor", "yarn_attn_factor")):
        if hf in rs:
            w.add(p + "rope.scaling." + key, G.F32, rs[hf])


def deepseek2_yarn(w, p, rs):
    """YaRN: llama.cpp takes mscale equal to mscale_all_dim and reads 0.1 x mscale_all_dim."""
    mad = rs.get("mscale_all_dim", 0.0)
    if rs.get("mscale", 1.0) != mad and not (mad in (0.0, 1.0) and rs.get("mscale", 1.0) == 1.0):
        raise SystemExit("hf_to_gguf: llama.cpp assumes yarn mscale == mscale_all_dim; this config differs")
    if mad == 0.0:
        raise SystemExit("hf_to_gguf: yarn without mscale_all_dim has no yarn_log_multiplier in llama.cpp's terms")
    w.add(p + "rope.scaling.type", G.STRING, "yarn")
    w.add(p + "rope.scaling.factor", G.F32, rs["factor"])
    w.add(p + "rope.scaling.original_context_length", G.U32, rs["original_max_position_embeddings"])
    w.add(p + "rope.scaling.yarn_beta_fast", G.F32, rs.get("beta_fast", 32.0))
    w.add(p + "rope.scaling.yarn_beta_slow", G.F32, rs.get("beta_slow", 1.0))
    w.add(p + "rope.scaling.yarn_log_multiplier", G.F32, 0.1 * mad)


def split_kv_b(a, c):
    """kv_b_proj [H * (nope + vd), r] -> attn_k_b [H, r, nope] (W_UK transposed), attn_v_b [H, vd, r]."""
    h, nope, vd = c["num_attention_heads"], c["qk_nope_head_dim"], c["v_head_dim"]
    kv = a.reshape(h, nope + vd, a.shape[-1])
    return np.ascontiguousarray(kv[:, :nope, :].transpose(0, 2, 1)), np.ascontiguousarray(kv[:, nope:, :])


# generation_config.json's sampling fields as llama.cpp's recommended-sampler keys (general.sampling.*).
SAMPLING_KEYS = (("temperature", "temp", G.F32), ("top_p", "top_p", G.F32), ("min_p", "min_p", G.F32),
                 ("repetition_penalty", "penalty_repeat", G.F32), ("top_k", "top_k", G.I32))


def check_gemma_query_scale(c, n_layers, head_dim, arch, big_layers):
    """llama.cpp scales a Gemma's queries by 1/sqrt(head_dim), 1/sqrt(hidden / heads) for the 27B model
    (`big_layers` layers); its files have no query_pre_attn_scalar key, so another value is refused."""
    scalar = c.get("query_pre_attn_scalar", 256)
    implied = c["hidden_size"] // c["num_attention_heads"] if n_layers == big_layers else head_dim
    if scalar != implied:
        raise SystemExit(f"hf_to_gguf: query_pre_attn_scalar {scalar} differs from the {implied} llama.cpp "
                         f"assumes for this shape; a {arch} GGUF has no key for it")


def gemma2_keys(w, p, c, n_layers, head_dim):
    """What llama.cpp's gemma2 reads beyond the common keys: the two soft-caps (it always applies both),
    the window. Its layers alternate (the even ones sliding) and its queries are scaled by
    1/sqrt(head_dim) (1/sqrt(hidden / heads) for the 46-layer 27B); a config that differs is refused."""
    for key, default in (("attn_logit_softcapping", 50.0), ("final_logit_softcapping", 30.0)):
        cap = c.get(key, default)
        if cap is None:
            raise SystemExit(f"hf_to_gguf: {key} null cannot be written for gemma2 (llama.cpp always caps)")
        w.add(p + key, G.F32, float(cap))
    check_gemma_query_scale(c, n_layers, head_dim, "gemma2", 46)
    types = c.get("layer_types")
    if types is not None and types != ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]:
        raise SystemExit("hf_to_gguf: layer_types is not Gemma 2's alternation (even layers sliding)")
    w.add(p + "attention.sliding_window", G.U32, c.get("sliding_window", 4096))


def gemma3_keys(w, p, c, n_layers, head_dim):
    """What llama.cpp's gemma3 reads beyond the common keys. Its queries are scaled by 1/sqrt(head_dim)
    (1/sqrt(hidden / heads) for the 62-layer 27B) whatever query_pre_attn_scalar says, the pattern is
    one period (every period-th layer full) and the local RoPE base defaults to 10000: a config that
    differs is refused rather than written as another model."""
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if c.get(key) is not None:
            raise SystemExit(f"hf_to_gguf: {key} {c[key]} cannot be written for gemma3")
    check_gemma_query_scale(c, n_layers, head_dim, "gemma3", 62)
    types = c.get("layer_types")
    if types is None:
        period = c.get("sliding_window_pattern", 6)
    else:
        full = [i for i, t in enumerate(types) if t == "full_attention"]
        period = full[0] + 1 if full else n_layers + 1
        if types != ["full_attention" if (i + 1) % period == 0 else "sliding_attention" for i in range(n_layers)]:
            raise SystemExit("hf_to_gguf: layer_types is not periodic (every N-th layer full): a gemma3 GGUF holds "
                             "only a period")
    if period == 1:
        return  # every layer full: no window key, as llama.cpp's converter writes it
    w.add(p + "attention.sliding_window", G.U32, c.get("sliding_window", 4096))
    w.add(p + "attention.sliding_window_pattern", G.U32, period)
    if c.get("rope_local_base_freq", 10000.0) != 10000.0:
        w.add(p + "rope.freq_base_swa", G.F32, c["rope_local_base_freq"])


# Phi3Config reads all three as LongRoPE (two factor lists), not as YaRN.
PHI3_LONGROPE_NAMES = ("longrope", "su", "yarn")


def phi3_keys(w, p, c, head_dim):
    """What llama.cpp's phi3 reads beyond the common keys: the rotated width, the original context, the
    window (0: none) and LongRoPE's cos/sin factor sqrt(1 + ln(s) / ln(original)) for s = context /
    original; the two factor sets are tensors (rope_factors_long / rope_factors_short)."""
    rot = int(head_dim * c.get("partial_rotary_factor", 1.0))
    orig = c.get("original_max_position_embeddings", c.get("max_position_embeddings", 4096))
    w.add(p + "rope.dimension_count", G.U32, rot)
    w.add(p + "rope.scaling.original_context_length", G.U32, orig)
    w.add(p + "attention.sliding_window", G.U32, c.get("sliding_window") or 0)
    rs = c.get("rope_scaling") or {}
    if rs.get("rope_type", rs.get("type")) not in PHI3_LONGROPE_NAMES:
        return None
    if "attention_factor" in rs:
        raise SystemExit("hf_to_gguf: rope_scaling.attention_factor cannot be written for phi3 (llama.cpp derives it)")
    scale = c.get("max_position_embeddings", 4096) / orig
    w.add(p + "rope.scaling.attn_factor", G.F32, math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1 else 1.0)
    return {k: np.asarray(rs[k + "_factor"], dtype="<f4") for k in ("long", "short")}


def gpt_oss_keys(w, p, c, n_layers):
    """What llama.cpp's gpt-oss reads beyond the common keys. Its clamped SwiGLU has the released models'
    limit (7) built in and its layers alternate sliding / full from the first (attention.sliding_window_pattern
    2, its default), so a config it would run differently is refused."""
    if not c.get("attention_bias", True):
        raise SystemExit("hf_to_gguf: gpt-oss without attention biases cannot be written (llama.cpp requires them)")
    if c.get("swiglu_limit", 7.0) != 7.0:
        raise SystemExit(f"hf_to_gguf: swiglu_limit {c['swiglu_limit']} cannot be written for gpt-oss (llama.cpp "
                         "fixes it at 7)")
    types = c.get("layer_types") or ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
    if types != ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]:
        raise SystemExit("hf_to_gguf: gpt-oss layer_types other than sliding / full alternating from layer 0 cannot "
                         "be written")
    w.add(p + "expert_count", G.U32, c["num_local_experts"])
    w.add(p + "expert_used_count", G.U32, c.get("num_experts_per_tok", c.get("experts_per_token")))
    w.add(p + "expert_feed_forward_length", G.U32, c["intermediate_size"])
    w.add(p + "attention.sliding_window", G.U32, c.get("sliding_window", 128))


def gpt_oss_experts(w, st, hp, layer, ggml_type):
    """transformers' stacked experts -> llama.cpp's: gate_up_proj [E, H, 2I] (x @ W; gate the even columns,
    up the odd) becomes ffn_gate_exps / ffn_up_exps [E, I, H], down_proj [E, I, H] ffn_down_exps [E, H, I];
    the biases split the same way (F32). The MXFP4 form (*_blocks / *_scales) is refused: write the dense
    folder, and llama-quantize MXFP4_MOE makes llama.cpp's MXFP4 from it."""
    q = hp + "mlp.experts."
    if q + "gate_up_proj" not in st:
        raise SystemExit(f"hf_to_gguf: {q}gate_up_proj is missing (MXFP4 gpt-oss folders are not converted; "
                         "write the dense form)")
    gu, gu_t = st[q + "gate_up_proj"]
    dn, dn_t = st[q + "down_proj"]
    gub, gub_t = st[q + "gate_up_proj_bias"]
    dnb, dnb_t = st[q + "down_proj_bias"]
    gu = np.swapaxes(np.asarray(gu), 1, 2)  # [E, 2I, H]
    parts = [("ffn_gate_exps.weight", gu[:, 0::2, :], gu_t), ("ffn_up_exps.weight", gu[:, 1::2, :], gu_t),
             ("ffn_down_exps.weight", np.swapaxes(np.asarray(dn), 1, 2), dn_t)]
    for gg, a, d in parts:
        t = matrix_type(ggml_type, a.shape)
        w.add_tensor(G.TensorSpec(f"blk.{layer}.{gg}", t, a.shape,
                                  lambda a=a, d=d, t=t: convert(np.ascontiguousarray(a), d, t)))
    gub = np.asarray(gub)
    for gg, a, d in (("ffn_gate_exps.bias", gub[:, 0::2], gub_t), ("ffn_up_exps.bias", gub[:, 1::2], gub_t),
                     ("ffn_down_exps.bias", np.asarray(dnb), dnb_t)):
        w.add_tensor(G.TensorSpec(f"blk.{layer}.{gg}", G.GGML_F32, a.shape,
                                  lambda a=a, d=d: convert(np.ascontiguousarray(a), d, G.GGML_F32)))


def llama4_experts(w, st, hp, layer, ggml_type):
    """Llama4TextExperts -> llama.cpp's: gate_up_proj [E, H, 2I] (x @ W; the gate's columns first, then the up's)
    becomes ffn_gate_exps / ffn_up_exps [E, I, H], down_proj [E, I, H] ffn_down_exps [E, H, I]."""
    q = hp + "feed_forward.experts."
    if q + "gate_up_proj" not in st:
        return  # a dense layer
    gu, gu_t = st[q + "gate_up_proj"]
    dn, dn_t = st[q + "down_proj"]
    gu = np.swapaxes(np.asarray(gu), 1, 2)  # [E, 2I, H]
    half = gu.shape[1] // 2
    for gg, a, d in (("ffn_gate_exps.weight", gu[:, :half, :], gu_t), ("ffn_up_exps.weight", gu[:, half:, :], gu_t),
                     ("ffn_down_exps.weight", np.swapaxes(np.asarray(dn), 1, 2), dn_t)):
        t = matrix_type(ggml_type, a.shape)
        w.add_tensor(G.TensorSpec(f"blk.{layer}.{gg}", t, a.shape,
                                  lambda a=a, d=d, t=t: convert(np.ascontiguousarray(a), d, t)))


def llama4_keys(w, p, c, n_layers):
    """Llama 4 as llama.cpp's converter writes it: feed_forward_length is intermediate_size_mlp (dense layers),
    expert_feed_forward_length intermediate_size (routed and shared experts), interleave_moe_layer_step. llama.cpp's
    llama4 graph fixes the rest: chunks of 8192 on all but every fourth layer, which are NoPE with the query
    temperature 1 + 0.1 ln(1 + floor((p + 1) / 8192)), L2 q / k norms unless there are 128 experts (Maverick). A
    config it would run differently is refused."""
    n_exp, step = c["num_local_experts"], c.get("interleave_moe_layer_step", 1)
    fixed = (("attention_chunk_size", 8192), ("attn_temperature_tuning", True), ("floor_scale", 8192),
             ("attn_scale", 0.1), ("use_qk_norm", n_exp != 128), ("attention_bias", False))
    for key, want in fixed:  # attn_temperature_tuning is tested for truth (the release says 4)
        if (bool(c.get(key, want)) if key == "attn_temperature_tuning" else c.get(key, want)) != want:
            raise SystemExit(f"hf_to_gguf: llama.cpp's llama4 runs {key} {want!r} (with {n_exp} experts); this config "
                             f"has {c[key]!r}")
    rope = [int((i + 1) % 4 != 0) for i in range(n_layers)]
    if (c.get("no_rope_layers") or rope)[:n_layers] != rope or c.get("no_rope_layer_interval", 4) != 4:
        raise SystemExit("hf_to_gguf: llama.cpp's llama4 makes every fourth layer NoPE; no_rope_layers differs")
    types = c.get("layer_types")
    if types and types != ["chunked_attention" if r else "full_attention" for r in rope]:
        raise SystemExit("hf_to_gguf: llama.cpp's llama4 chunks exactly the rotated layers; layer_types differs")
    if c.get("moe_layers") is not None and list(c["moe_layers"]) != list(range(step - 1, n_layers, step)):
        raise SystemExit("hf_to_gguf: llama4 GGUF files place experts every interleave_moe_layer_step layers; "
                         "moe_layers differs")
    w.add(p + "feed_forward_length", G.U32, c["intermediate_size_mlp"])
    w.add(p + "expert_feed_forward_length", G.U32, c["intermediate_size"])
    w.add(p + "expert_count", G.U32, n_exp)
    w.add(p + "expert_used_count", G.U32, c["num_experts_per_tok"])
    w.add(p + "interleave_moe_layer_step", G.U32, step)


def smollm3_check(c, n_layers):
    """llama.cpp's smollm3 has no key for the NoPE layers: it leaves every fourth one unrotated. Another
    layout (no_rope_layers, no_rope_layer_interval) or SmolLM3's sliding window cannot be written."""
    flags = c.get("no_rope_layers")
    if flags is None:
        n = int(c.get("no_rope_layer_interval", 4))
        flags = [int((i + 1) % n != 0) for i in range(n_layers)]
    if list(flags[:n_layers]) != [int((i + 1) % 4 != 0) for i in range(n_layers)]:
        raise SystemExit("hf_to_gguf: a smollm3 GGUF leaves every fourth layer unrotated (llama.cpp has no key for "
                         f"no_rope_layers); this model's are {list(flags[:n_layers])}")
    if c.get("use_sliding_window"):
        raise SystemExit("hf_to_gguf: use_sliding_window cannot be written for smollm3")


def granite_keys(w, p, c):
    """GraniteConfig's multipliers under llama.cpp's names; each written with its default (1.0) when the
    config leaves it out, since llama.cpp reads a missing attention.scale as 1/sqrt(head_dim)."""
    for hf, gg in (("embedding_multiplier", "embedding_scale"), ("attention_multiplier", "attention.scale"),
                   ("residual_multiplier", "residual_scale"), ("logits_scaling", "logit_scale")):
        w.add(p + gg, G.F32, float(c.get(hf, 1.0)))


def granite_moe_experts(w, st, hp, layer, ggml_type):
    """JetMoE's stacked input_linear [E, 2F, H] (gate rows, then up rows) split into ffn_gate_exps and
    ffn_up_exps, output_linear [E, H, F] as ffn_down_exps, as llama.cpp's converter does."""
    for hf, parts in (("input_linear", ("ffn_gate_exps.weight", "ffn_up_exps.weight")),
                      ("output_linear", ("ffn_down_exps.weight",))):
        arr, dtype = st[f"{hp}block_sparse_moe.{hf}.weight"]
        rows = np.asarray(arr).shape[1] // len(parts)
        for i, gg in enumerate(parts):
            part = np.asarray(arr)[:, i * rows:(i + 1) * rows, :]
            t = matrix_type(ggml_type, part.shape)
            w.add_tensor(G.TensorSpec(f"blk.{layer}.{gg}", t, part.shape,
                                      lambda part=part, dtype=dtype, t=t: convert(part, dtype, t)))


def ernie_moe_keys(w, p, c, n_layers):
    """ERNIE 4.5 MoE as llama.cpp's converter writes it: the first moe_layer_start_index layers dense, every
    moe_layer_interval-th sparse, and the shared experts' width as intermediate_size / num_key_value_heads (its
    converter's rule, which holds for the released models; refused here where it would not give the shared
    experts' real width, moe_num_shared_experts x moe_intermediate_size). llama.cpp has no key for
    moe_layer_end_index: it must be the last layer."""
    end = c.get("moe_layer_end_index", -1)
    if end not in (-1, n_layers - 1):
        raise SystemExit(f"hf_to_gguf: moe_layer_end_index {end} is not the last layer, which llama.cpp assumes")
    shared = c.get("moe_num_shared_experts", 0)
    width = c["intermediate_size"] // c["num_key_value_heads"]
    if shared and width != shared * c["moe_intermediate_size"]:
        raise SystemExit(f"hf_to_gguf: llama.cpp would size the shared experts {width} wide "
                         f"(intermediate_size / num_key_value_heads), not {shared * c['moe_intermediate_size']}")
    w.add(p + "expert_count", G.U32, c["moe_num_experts"])
    w.add(p + "expert_used_count", G.U32, c["moe_k"])
    w.add(p + "interleave_moe_layer_step", G.U32, c.get("moe_layer_interval", 1))
    w.add(p + "leading_dense_block_count", G.U32, c.get("moe_layer_start_index", 1))
    w.add(p + "expert_feed_forward_length", G.U32, c["moe_intermediate_size"])
    w.add(p + "expert_shared_count", G.U32, shared)
    if shared:
        w.add(p + "expert_shared_feed_forward_length", G.U32, width)


def glm4moe_keys(w, p, c, head_dim):
    """GLM-4.5 as llama.cpp's converter writes it: the first int(head_dim * partial_rotary_factor) dims rotate
    (rope.dimension_count), DeepSeek-V3's routing as deepseek2's keys (sigmoid gating, expert_weights_norm /
    _scale, leading_dense_block_count, shared experts), with Glm4MoeConfig's defaults for absent fields. The
    groups are written as the generic expert_group_count / _used_count when there are several (llama.cpp's
    converter leaves them out: the released models have one). The multi-token-prediction layers are kept
    as llama.cpp keeps them: counted in block_count, nextn_predict_layers of them (add_model writes them)."""
    w.add(p + "rope.dimension_count", G.U32, int(head_dim * c.get("partial_rotary_factor", 0.5)))
    w.add(p + "expert_count", G.U32, c["n_routed_experts"])
    w.add(p + "expert_used_count", G.U32, c["num_experts_per_tok"])
    w.add(p + "expert_feed_forward_length", G.U32, c["moe_intermediate_size"])
    w.add(p + "expert_shared_count", G.U32, c.get("n_shared_experts", 1))
    w.add(p + "leading_dense_block_count", G.U32, c.get("first_k_dense_replace", 1))
    w.add(p + "expert_gating_func", G.U32, 2)  # sigmoid
    w.add(p + "expert_weights_scale", G.F32, c.get("routed_scaling_factor", 1.0))
    w.add(p + "expert_weights_norm", G.BOOL, bool(c.get("norm_topk_prob", True)))
    if c.get("n_group", 1) > 1:
        w.add(p + "expert_group_count", G.U32, c["n_group"])
        w.add(p + "expert_group_used_count", G.U32, c.get("topk_group", 1))
    w.add(p + "nextn_predict_layers", G.U32, c.get("num_nextn_predict_layers", 0))


def minimax_m2_keys(w, p, c, head_dim):
    """MiniMax-M2 as llama.cpp's converter writes it: rotary_dim as rope.dimension_count, experts
    intermediate_size wide in every layer, sigmoid gating (its build_moe_ffn always renormalises the chosen
    scores, and adds exp_probs_b for the choice). A config its graph would run differently is refused."""
    for key, want in (("scoring_func", "sigmoid"), ("use_routing_bias", True), ("use_qk_norm", True),
                      ("qk_norm_type", "per_layer"), ("shared_intermediate_size", 0)):
        if c.get(key, want) not in (want, [want]):
            raise SystemExit(f"hf_to_gguf: minimax-m2 files run {key} {want!r} only; this config has {c[key]!r}")
    if any(t != 1 for t in c.get("attn_type_list") or []):
        raise SystemExit("hf_to_gguf: minimax-m2 files have full attention in every layer (attn_type_list 1)")
    w.add(p + "rope.dimension_count", G.U32, c.get("rotary_dim") or head_dim)
    w.add(p + "expert_count", G.U32, c["num_local_experts"])
    w.add(p + "expert_used_count", G.U32, c["num_experts_per_tok"])
    w.add(p + "expert_feed_forward_length", G.U32, c["intermediate_size"])
    w.add(p + "expert_gating_func", G.U32, 2)  # sigmoid


def add_sampling_defaults(w, folder):
    path = os.path.join(folder, "generation_config.json")
    if not os.path.exists(path):
        return
    g = load_json(path)
    for hf, key, typ in SAMPLING_KEYS:
        v = g.get(hf)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            w.add("general.sampling." + key, typ, int(v) if typ == G.I32 else float(v))


def add_model(w, folder, outtype, kv_b="split", experts_form="stacked", qkv="fused"):
    c = load_json(os.path.join(folder, "config.json"))
    arch = ARCH.get((c.get("architectures") or [""])[0])
    if arch is None:
        raise SystemExit(f"hf_to_gguf: architecture {c.get('architectures')} is not supported")
    ggml_type, file_type = OUTTYPES[outtype]
    gemma, phi3, gpt_oss = arch in ("gemma2", "gemma3"), arch == "phi3", arch == "gpt-oss"
    # Each layout option belongs to one architecture; elsewhere it would be silently ignored.
    if qkv != "fused" and not phi3:
        raise SystemExit(f"hf_to_gguf: --qkv {qkv} is for Phi-3 (fused qkv_proj); this model is {arch}")
    if kv_b != "split" and arch != "deepseek2":
        raise SystemExit(f"hf_to_gguf: --kv-b {kv_b} is for DeepSeek MLA models; this model is {arch}")
    if experts_form != "stacked" and c["architectures"][0] != "MixtralForCausalLM":
        raise SystemExit(f"hf_to_gguf: --experts {experts_form} is for Mixtral; this model is {c['architectures'][0]}")
    if arch == "gemma3":  # Gemma3TextConfig's defaults
        c = {"head_dim": 256, "max_position_embeddings": 131072, "rope_theta": 1000000.0,
             "tie_word_embeddings": True, **c}
    if arch == "gemma2":  # Gemma2Config's
        c = {"head_dim": 256, "max_position_embeddings": 8192, "rope_theta": 10000.0, "tie_word_embeddings": True,
             **c}
    if arch == "glm4":  # Glm4Config's defaults
        c = {"head_dim": 128, "attention_bias": True, **c}
    if arch == "mistral3":  # Ministral 3: transformers 5's rope_parameters (yarn and the query temperature)
        rp = dict(c.get("rope_parameters") or {})
        if rp.get("type", rp.get("rope_type")) != "yarn" or "llama_4_scaling_beta" not in rp:
            raise SystemExit("hf_to_gguf: Ministral3ForCausalLM needs yarn rope_parameters with llama_4_scaling_beta")
        if rp.get("mscale", 1.0) != 1.0:
            raise SystemExit("hf_to_gguf: llama.cpp's mistral3 takes YaRN's mscale as 1; this config has "
                             f"{rp['mscale']}")
        c = {"head_dim": 128, "rms_norm_eps": 1e-5, **c, "rope_theta": rp.get("rope_theta", 1e6),
             "rope_scaling": {k: v for k, v in rp.items() if k in ("factor", "original_max_position_embeddings",
                                                                     "beta_fast", "beta_slow")} | {"rope_type": "yarn"},
             "mistral3_temperature": (rp["llama_4_scaling_beta"], rp.get("mscale_all_dim", 1.0))}
    if arch == "seed_oss":  # SeedOssConfig's defaults; llama.cpp's seed_oss has no o_proj bias
        c = {"head_dim": 128, "attention_bias": True, **c}
        if c.get("attention_out_bias"):
            raise SystemExit("hf_to_gguf: seed_oss GGUF files have no o_proj bias (llama.cpp's seed_oss reads none); "
                             "attention_out_bias true cannot be written")
        if not c["attention_bias"]:
            raise SystemExit("hf_to_gguf: attention_bias false for seed_oss is not written (no released model)")
    if arch == "smollm3":  # SmolLM3Config's defaults
        c = {"tie_word_embeddings": True, "rope_theta": 2000000.0, **c}
    if arch == "minimax-m2":  # MiniMaxM2Config's defaults
        c = {"head_dim": 128, "rope_theta": 5000000.0, **c}
    if arch == "llama4":  # Llama4TextConfig's defaults (feed_forward_length is written by llama4_keys)
        c = {"head_dim": 128, "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "num_experts_per_tok": 1,
             "num_local_experts": 16, "intermediate_size_mlp": 16384, **c}
    hidden, n_head = c["hidden_size"], c["num_attention_heads"]
    n_kv = c.get("num_key_value_heads", n_head)
    head_dim = c.get("head_dim") or hidden // n_head
    n_layers = c["num_hidden_layers"]
    # GLM-4.5's and GLM-4.7-Flash's multi-token-prediction layers follow the decoder layers, with their own
    # tensors under NEXTN_NAMES (llama.cpp's Glm4MoeModel and Glm4MoeLiteModel converters keep them; its
    # DeepseekV2Model drops DeepSeek's).
    keeps_mtp = c["architectures"][0] in ("Glm4MoeForCausalLM", "Glm4MoeLiteForCausalLM")
    mtp = c.get("num_nextn_predict_layers", 0) if keeps_mtp else 0
    w.add("general.architecture", G.STRING, arch)
    w.add("general.name", G.STRING, os.path.basename(os.path.normpath(folder)))
    w.add("general.file_type", G.U32, file_type)
    add_sampling_defaults(w, folder)
    p = arch + "."
    w.add(p + "context_length", G.U32, c.get("max_position_embeddings", 2048))
    w.add(p + "embedding_length", G.U32, hidden)
    w.add(p + "block_count", G.U32, n_layers + mtp)
    if c.get("intermediate_size") and arch != "llama4":
        w.add(p + "feed_forward_length", G.U32, c["intermediate_size"])
    w.add(p + "attention.head_count", G.U32, n_head)
    if arch != "deepseek2":
        w.add(p + "attention.head_count_kv", G.U32, n_kv)
    # Olmo2Config's, OlmoeConfig's and Glm4MoeConfig's default is 1e-5, Glm4Config's 1.5625e-7, the others' 1e-6.
    w.add(p + "attention.layer_norm_rms_epsilon", G.F32,
          c.get("rms_norm_eps", 1e-5 if arch in ("olmo2", "olmoe", "glm4moe", "ernie4_5", "ernie4_5-moe", "exaone4")
                else 1.5625e-7 if arch == "glm4" else 1e-6))
    w.add(p + "rope.freq_base", G.F32, c.get("rope_theta", 500000.0 if arch.startswith("ernie4_5") else 10000.0))
    longrope = None
    if arch == "deepseek2":
        deepseek2_keys(w, p, c, kv_b)
        if mtp:
            w.add(p + "nextn_predict_layers", G.U32, mtp)
    elif phi3:
        longrope = phi3_keys(w, p, c, head_dim)
    elif arch == "glm4moe":
        glm4moe_keys(w, p, c, head_dim)
    elif arch == "glm4":  # Glm4Config's defaults: head_dim 128, half of it rotated
        w.add(p + "rope.dimension_count", G.U32, int(head_dim * c.get("partial_rotary_factor", 0.5)))
    elif arch == "minimax-m2":
        minimax_m2_keys(w, p, c, head_dim)
    else:
        w.add(p + "rope.dimension_count", G.U32, head_dim)
    if "head_dim" in c and c["head_dim"] and arch != "deepseek2":
        w.add(p + "attention.key_length", G.U32, head_dim)
        w.add(p + "attention.value_length", G.U32, head_dim)
    if arch == "llama4":
        llama4_keys(w, p, c, n_layers)
    if arch in PERMUTED or arch in ("exaone4", "llama4"):  # llama.cpp's Exaone4Model and Llama4Model write it too
        w.add(p + "vocab_size", G.U32, c["vocab_size"])
    if arch == "smollm3":
        smollm3_check(c, n_layers)
    if arch in ("granite", "granitemoe"):
        granite_keys(w, p, c)
    if arch == "ernie4_5-moe":
        ernie_moe_keys(w, p, c, n_layers)
    if arch == "granitemoe":  # llama.cpp's: experts feed_forward_length wide, softmax, top k renormalised
        if c.get("shared_intermediate_size"):
            raise SystemExit("hf_to_gguf: Granite-MoE's shared experts (GraniteMoeShared) are not supported")
        w.add(p + "expert_count", G.U32, c["num_local_experts"])
        w.add(p + "expert_used_count", G.U32, c["num_experts_per_tok"])
    if c["architectures"][0] == "Olmo3ForCausalLM" and ("sliding_window" not in c or c["sliding_window"]):
        # As llama.cpp's converter writes OLMo 3: olmo2 with the window (Olmo3Config's 4096 by default) and one
        # bool per layer from layer_types (default: sliding but every fourth). llama.cpp 3f545bec reads no array
        # here and takes every fourth layer full; dpserve reads the array.
        types = c.get("layer_types") or ["sliding_attention" if (i + 1) % 4 else "full_attention"
                                         for i in range(n_layers)]
        sliding = [t == "sliding_attention" for t in types]
        if sliding != [(i + 1) % 4 != 0 for i in range(n_layers)]:
            print("hf_to_gguf: note: these layer_types are not every fourth layer full, which llama.cpp assumes for "
                  "olmo2 files; dpserve reads the per-layer pattern", file=sys.stderr)
        w.add(p + "attention.sliding_window", G.U32, c.get("sliding_window", 4096))
        w.add_array(p + "attention.sliding_window_pattern", G.BOOL, sliding)
    if arch == "mistral3":  # as llama.cpp's Ministral3Model writes them
        beta, mscale_all_dim = c["mistral3_temperature"]
        w.add(p + "rope.scaling.yarn_log_multiplier", G.F32, mscale_all_dim)
        w.add(p + "attention.temperature_scale", G.F32, beta)
    if arch == "exaone4" and c.get("sliding_window", 4096) is not None:
        # As llama.cpp's converter writes EXAONE 4.0: the window (Exaone4Config's 4096 by default) and one bool per
        # layer from layer_types, else from sliding_window_pattern (a string of L / G per layer of a period, or
        # every N-th layer full; Exaone4Config's 4). llama.cpp 3f545bec applies them to 64-layer files only.
        pat = c.get("sliding_window_pattern", 4)
        if c.get("layer_types"):
            sliding = [t == "sliding_attention" for t in c["layer_types"]]
        elif isinstance(pat, str):
            sliding = [pat[i % len(pat)] == "L" for i in range(n_layers)]
        else:
            sliding = [(i + 1) % pat != 0 for i in range(n_layers)]
        if n_layers != 64:
            print("hf_to_gguf: note: llama.cpp runs exaone4's sliding window (and its unrotated full layers) only for "
                  "64-layer files; dpserve reads the window and pattern of any depth", file=sys.stderr)
        w.add(p + "attention.sliding_window", G.U32, c.get("sliding_window", 4096))
        w.add_array(p + "attention.sliding_window_pattern", G.BOOL, sliding)
    if arch == "olmoe":  # llama.cpp's: experts feed_forward_length wide, softmax, top k as they are
        if c.get("norm_topk_prob"):
            raise SystemExit("hf_to_gguf: llama.cpp's olmoe never renormalises the top-k weights; "
                             "norm_topk_prob true cannot be written")
        if c.get("clip_qkv") is not None:
            raise SystemExit("hf_to_gguf: olmoe GGUF files have no key for clip_qkv")
        w.add(p + "expert_count", G.U32, c["num_experts"])
        w.add(p + "expert_used_count", G.U32, c["num_experts_per_tok"])
    if arch == "gemma3":
        gemma3_keys(w, p, c, n_layers, head_dim)
    if gpt_oss:
        gpt_oss_keys(w, p, c, n_layers)
    if arch == "gemma2":
        gemma2_keys(w, p, c, n_layers, head_dim)
        if c.get("rope_scaling"):
            raise SystemExit("hf_to_gguf: rope_scaling cannot be written for gemma2")
    rs = c.get("rope_scaling") or {}
    rtype = rs.get("rope_type", rs.get("type"))
    if rtype == "linear":
        w.add(p + "rope.scaling.type", G.STRING, "linear")
        w.add(p + "rope.scaling.factor", G.F32, rs["factor"])
    elif phi3 and rtype in PHI3_LONGROPE_NAMES:
        pass  # written by phi3_keys
    elif rtype == "yarn" and arch == "deepseek2":
        deepseek2_yarn(w, p, rs)
    elif rtype == "yarn":
        per_head_yarn(w, p, rs)
    elif rtype not in (None, "default", "llama3"):
        raise SystemExit(f"hf_to_gguf: rope_scaling {rtype} is not supported")
    mixtral = c["architectures"][0] == "MixtralForCausalLM"
    if mixtral:
        # llama.cpp's llama MoE: experts feed_forward_length (= intermediate_size) wide, softmax,
        # top-k renormalised, which is MixtralSparseMoeBlock.
        w.add(p + "expert_count", G.U32, c["num_local_experts"])
        w.add(p + "expert_used_count", G.U32, c["num_experts_per_tok"])
    if arch == "llama" and (c.get("sliding_window") or 0) and c["sliding_window"] < c.get("max_position_embeddings", 2048):
        raise SystemExit(f"hf_to_gguf: sliding_window {c['sliding_window']} is narrower than the context: a llama GGUF "
                         "has no key for it (llama.cpp attends over the whole context), so the file would be another "
                         "model")
    if arch in ("qwen2moe", "qwen3moe"):
        if c.get("mlp_only_layers") or c.get("decoder_sparse_step", 1) != 1:
            print(f"hf_to_gguf: note: dense layers in a {arch} GGUF load in dpserve but not in llama.cpp",
                  file=sys.stderr)
        # llama.cpp renormalises the top-k weights of every qwen3moe and of no qwen2moe file.
        renorm = arch == "qwen3moe"
        if bool(c.get("norm_topk_prob", renorm)) != renorm:
            raise SystemExit(f"hf_to_gguf: llama.cpp's {arch} {'always' if renorm else 'never'} renormalises the "
                             f"top-k weights; norm_topk_prob {str(not renorm).lower()} cannot be written")
        if arch == "qwen2moe" and not c.get("qkv_bias", True):
            raise SystemExit("hf_to_gguf: qwen2moe GGUF files always have q/k/v biases; qkv_bias false cannot be "
                             "written")
        w.add(p + "expert_count", G.U32, c["num_experts"])
        w.add(p + "expert_used_count", G.U32, c["num_experts_per_tok"])
        w.add(p + "expert_feed_forward_length", G.U32, c["moe_intermediate_size"])
        if arch == "qwen2moe":
            w.add(p + "expert_shared_feed_forward_length", G.U32, c["shared_expert_intermediate_size"])

    st = read_safetensors(folder)

    def spec(gguf_name, hf_name, permute_heads=None, force_f32=False):
        arr, dtype = st[hf_name]
        t = G.GGML_F32 if (force_f32 or arr.ndim == 1) else matrix_type(ggml_type, arr.shape)
        # Gemma3RMSNorm multiplies by 1 + weight; llama.cpp's converter stores the sum.
        shift = 1.0 if gemma and hf_name.endswith("norm.weight") else 0.0

        def produce(arr=arr, dtype=dtype, t=t):
            a = np.asarray(arr)
            if permute_heads:
                a = permute_rows(a, permute_heads)
            if shift:
                return convert(to_f32(a, dtype) + np.float32(shift), "F32", t)
            return convert(a, dtype, t)
        return G.TensorSpec(gguf_name, t, arr.shape, produce)

    w.add_tensor(spec("token_embd.weight", "model.embed_tokens.weight"))
    if rtype == "llama3":
        factors = llama3_rope_factors(c, head_dim)
        w.add_tensor(G.TensorSpec("rope_freqs.weight", G.GGML_F32, factors.shape, lambda f=factors: f))
    for kind, factors in (longrope or {}).items():
        w.add_tensor(G.TensorSpec(f"rope_factors_{kind}.weight", G.GGML_F32, factors.shape, lambda f=factors: f))
    for layer in range(n_layers + mtp):
        hp = f"model.layers.{layer}."
        if layer >= n_layers:
            for hf, gg in NEXTN_NAMES.items():
                if hp + hf in st:
                    w.add_tensor(spec(f"blk.{layer}.{gg}", hp + hf))
        names = ({**LAYER_NAMES, **GEMMA3_NAMES} if gemma else {**LAYER_NAMES, **PHI3_NAMES} if phi3
                 else {**LAYER_NAMES, **GPT_OSS_NAMES} if gpt_oss
                 else {**LAYER_NAMES, **OLMO2_NAMES} if arch in ("olmo2", "exaone4")
                 else {**LAYER_NAMES, **GLM4MOE_NAMES} if arch in ("glm4moe", "seed_oss")
                 else {**LAYER_NAMES, **GLM4_NAMES} if arch == "glm4"
                 else {**LAYER_NAMES, **MINIMAX_M2_NAMES} if arch == "minimax-m2"
                 else {**LAYER_NAMES, **LLAMA4_NAMES} if arch == "llama4" else LAYER_NAMES)
        for hf, gg in names.items():
            if hp + hf not in st or (phi3 and qkv == "split" and gg == "attn_qkv.weight"):
                continue
            heads = None
            if arch in PERMUTED and hf.startswith("self_attn.q_proj"):
                heads = n_head
            elif arch in PERMUTED and hf.startswith("self_attn.k_proj"):
                heads = n_kv
            w.add_tensor(spec(f"blk.{layer}.{gg}", hp + hf, heads,
                              force_f32=gg in ("ffn_gate_inp.weight", "ffn_gate_inp.bias", "attn_sinks.weight",
                                               "ffn_gate_inp_shexp.weight")))
        if gpt_oss:
            gpt_oss_experts(w, st, hp, layer, ggml_type)
        if arch == "granitemoe":
            granite_moe_experts(w, st, hp, layer, ggml_type)
        if arch == "llama4":
            llama4_experts(w, st, hp, layer, ggml_type)
        if phi3 and qkv == "split":  # attn_q / attn_k / attn_v, which llama.cpp's phi3 also reads
            arr, dtype = st[hp + "self_attn.qkv_proj.weight"]
            rows = np.cumsum([n_head * head_dim, n_kv * head_dim])
            for gg, part in zip(("attn_q.weight", "attn_k.weight", "attn_v.weight"), np.split(np.asarray(arr), rows)):
                t = matrix_type(ggml_type, part.shape)
                w.add_tensor(G.TensorSpec(f"blk.{layer}.{gg}", t, part.shape,
                                          lambda part=part, dtype=dtype, t=t: convert(part, dtype, t)))
        if hp + "self_attn.kv_b_proj.weight" in st:
            arr, dtype = st[hp + "self_attn.kv_b_proj.weight"]
            if kv_b == "split":
                for i, gg in enumerate(["attn_k_b.weight", "attn_v_b.weight"]):
                    part = split_kv_b(np.asarray(arr), c)[i]
                    t = matrix_type(ggml_type, part.shape)
                    w.add_tensor(G.TensorSpec(f"blk.{layer}.{gg}", t, part.shape,
                                              lambda part=part, dtype=dtype, t=t: convert(part, dtype, t)))
            else:
                w.add_tensor(spec(f"blk.{layer}.attn_kv_b.weight", hp + "self_attn.kv_b_proj.weight"))
        n_exp = (c.get("num_experts") or c.get("n_routed_experts") or c.get("num_local_experts") or c.get("moe_num_experts")
                 or 0)
        experts, names = f"{hp}mlp.experts.", EXPERT_NAMES
        if mixtral or arch == "minimax-m2":
            experts, names = f"{hp}block_sparse_moe.experts.", MIXTRAL_EXPERT_NAMES
        if n_exp and experts + "0." + next(iter(names)) in st and experts_form == "split":
            for hf, gg in names.items():  # blk.N.ffn_gate.E.weight, ...
                for e in range(n_exp):
                    w.add_tensor(spec(f"blk.{layer}.{gg[:-len('_exps.weight')]}.{e}.weight", f"{experts}{e}.{hf}"))
        elif n_exp and experts + "0." + next(iter(names)) in st:
            for hf, gg in names.items():
                parts = [st[f"{experts}{e}.{hf}"] for e in range(n_exp)]
                shape = (n_exp,) + parts[0][0].shape
                t = matrix_type(ggml_type, shape)

                def produce(parts=parts, t=t):
                    return np.stack([convert(np.asarray(a), d, t) for a, d in parts])
                w.add_tensor(G.TensorSpec(f"blk.{layer}.{gg}", t, shape, produce))
    w.add_tensor(spec("output_norm.weight", "model.norm.weight"))
    if "lm_head.weight" in st and not c.get("tie_word_embeddings", False):
        w.add_tensor(spec("output.weight", "lm_head.weight"))
    return c


def add_llama2c(w, path, outtype):
    """A llama2.c checkpoint (legacy v0 header): its weights already rotate adjacent pairs, which
    is GGML's RoPE, so Q/K are written as they are."""
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", data, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // heads
    kv_dim = kv_heads * hd
    arr = np.frombuffer(data, dtype="<f4", offset=28)
    pos = [0]

    def take(*shape):
        n = int(np.prod(shape))
        a = arr[pos[0]:pos[0] + n].reshape(shape)
        pos[0] += n
        return a
    emb = take(vocab, dim)
    t = {"token_embd.weight": emb}
    for name, shape in [("attn_norm.weight", (dim,)), ("attn_q.weight", (dim, dim)), ("attn_k.weight", (kv_dim, dim)),
                        ("attn_v.weight", (kv_dim, dim)), ("attn_output.weight", (dim, dim)), ("ffn_norm.weight", (dim,)),
                        ("ffn_gate.weight", (hidden, dim)), ("ffn_down.weight", (dim, hidden)),
                        ("ffn_up.weight", (hidden, dim))]:
        for layer in range(layers):
            t[f"blk.{layer}.{name}"] = take(*shape)
    t["output_norm.weight"] = take(dim)
    take(seq_len * hd // 2)
    take(seq_len * hd // 2)
    if not shared:
        t["output.weight"] = take(vocab, dim)
    ggml_type, file_type = OUTTYPES[outtype]
    w.add("general.architecture", G.STRING, "llama")
    w.add("general.name", G.STRING, os.path.splitext(os.path.basename(path))[0])
    w.add("general.file_type", G.U32, file_type)
    for key, vt, val in [("context_length", G.U32, seq_len), ("embedding_length", G.U32, dim),
                         ("block_count", G.U32, layers), ("feed_forward_length", G.U32, hidden),
                         ("attention.head_count", G.U32, heads), ("attention.head_count_kv", G.U32, kv_heads),
                         ("attention.layer_norm_rms_epsilon", G.F32, 1e-5), ("rope.freq_base", G.F32, 10000.0),
                         ("rope.dimension_count", G.U32, hd), ("vocab_size", G.U32, vocab)]:
        w.add("llama." + key, vt, val)
    order = ["token_embd.weight"] + [n for layer in range(layers) for n in t if n.startswith(f"blk.{layer}.")]
    order += [n for n in ("output_norm.weight", "output.weight") if n in t]
    for name in order:
        a = t[name]
        typ = G.GGML_F32 if a.ndim == 1 else matrix_type(ggml_type, a.shape)
        w.add_tensor(G.TensorSpec(name, typ, a.shape, lambda a=a, typ=typ: convert(a, "F32", typ)))
    return {"vocab_size": vocab}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="Hugging Face model folder (config.json + *.safetensors)")
    ap.add_argument("--llama2c", help="convert this llama2.c checkpoint instead of a folder")
    ap.add_argument("--out", required=True, help="output .gguf (with --split-max-tensors: the name prefix)")
    ap.add_argument("--outtype", choices=sorted(OUTTYPES), default="f16", help="matrix type (default f16)")
    ap.add_argument("--tokenizer", help="tokenizer folder or file (default: the model folder)")
    ap.add_argument("--pre", help="tokenizer.ggml.pre for a byte-level BPE (default: recognised from tokenizer.json)")
    ap.add_argument("--kv-b", choices=["split", "joined"], default="split",
                    help="DeepSeek kv_b_proj: attn_k_b + attn_v_b as llama.cpp writes it now (default), or the "
                         "older single attn_kv_b")
    ap.add_argument("--experts", choices=["stacked", "split"], default="stacked",
                    help="MoE experts: one 3-D ffn_*_exps tensor per layer (default), or for Mixtral the older "
                         "one tensor per expert (blk.N.ffn_gate.E.weight), which llama.cpp no longer loads")
    ap.add_argument("--qkv", choices=["fused", "split"], default="fused",
                    help="Phi-3 qkv_proj: one attn_qkv as llama.cpp's converter writes it (default), or attn_q / "
                         "attn_k / attn_v")
    ap.add_argument("--vocab-only", action="store_true", help="write the vocabulary and no tensors")
    ap.add_argument("--no-vocab", action="store_true", help="write no vocabulary")
    ap.add_argument("--alignment", type=int, default=32, help="general.alignment (default 32, not written)")
    ap.add_argument("--split-max-tensors", type=int, default=0, help="write a split set of this many tensors per file")
    a = ap.parse_args(argv)
    w = G.GgufWriter(alignment=a.alignment)
    if a.alignment != 32:
        w.add("general.alignment", G.U32, a.alignment)
    cfg = {}
    if a.vocab_only:
        if not a.tokenizer:
            ap.error("--vocab-only needs --tokenizer")
        w.add("general.architecture", G.STRING, "llama")
        w.add("general.name", G.STRING, "vocab")
    elif a.llama2c:
        cfg = add_llama2c(w, a.llama2c, a.outtype)
    elif a.model:
        cfg = add_model(w, a.model, a.outtype, a.kv_b, a.experts, a.qkv)
    else:
        ap.error("give a model folder, --llama2c or --vocab-only")
    if not a.no_vocab:
        tok = a.tokenizer or a.model
        if tok is None:
            ap.error("give --tokenizer")
        add_vocab(w, read_vocab(tok, cfg.get("vocab_size"), a.pre))
    if a.split_max_tensors > 0:
        paths = w.write_split(a.out, a.split_max_tensors)
    else:
        w.write(a.out)
        paths = [a.out]
    total = sum(os.path.getsize(p) for p in paths)
    print(f"hf_to_gguf: wrote {len(w.tensors)} tensors, {len(w.kv)} keys, {total / 2**20:.2f} MiB to "
          f"{', '.join(paths)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
