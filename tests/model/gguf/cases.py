"""The tiny GGUF models compared with llama.cpp: how each is made (our own writers, so a test can
rebuild the float files and check their sha256 against the manifest) and the prompts they run."""
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
PY = "/usr/bin/python3"

# name -> make_hf_model.py flags, hf_to_gguf.py flags (the tokenizer may come from the shared
# data) and the variants compared: "F32" is our writer's file itself (rebuilt by the test and
# checked against its sha256), the others llama-quantize's (committed: the tests cannot run
# llama.cpp). Float cases use the small default shapes of make_hf_model.py; quantized cases have
# one layer so the committed files stay small.
CASES = {
    # Llama: converter-permuted Q/K, llama3 RoPE scaling (rope_freqs.weight), untied output,
    # SentencePiece vocabulary of stories260K (512 pieces).
    "llama": dict(
        hf=["--arch", "llama", "--vocab-size", "512", "--num-hidden-layers", "2", "--rope-scaling", "llama3",
            "--rope-theta", "500000", "--original-max-position-embeddings", "32", "--seed", "11", "--no-tokenizer"],
        gguf=["--tokenizer", "{shared}/models/stories260K/tok512.bin"], variants=["F32"]),
    # Qwen2: Q/K/V biases, byte-level BPE vocabulary (pre "qwen2").
    "qwen2": dict(hf=["--arch", "qwen2", "--seed", "12"], gguf=[], variants=["F32"]),
    # Qwen3: per-head q/k norm, head_dim independent of hidden.
    "qwen3": dict(hf=["--arch", "qwen3", "--seed", "13"], gguf=[], variants=["F32"]),
    # Qwen3 with YaRN as the Qwen model cards add it (factor 4, llama.cpp's keys: type, factor,
    # original_context_length), an original context of 16 that every prompt passes.
    "qwen3_yarn": dict(hf=["--arch", "qwen3", "--rope-scaling", "yarn", "--rope-factor", "4",
                           "--original-max-position-embeddings", "16", "--max-position-embeddings", "64",
                           "--seed", "17"], gguf=[], variants=["F32"]),
    # Qwen3-MoE: 8 experts, top 2, stacked expert tensors, every layer sparse (llama.cpp has no
    # dense layers in qwen3moe).
    "qwen3moe": dict(hf=["--arch", "qwen3_moe", "--num-hidden-layers", "2", "--mlp-only-layers", "",
                         "--seed", "14"], gguf=[], variants=["F32"]),
    # deepseek2 (llama.cpp's converter layout: kv_b split into attn_k_b / attn_v_b, the *_mla keys),
    # DeepSeek-V2-Lite-like: plain q_proj, softmax router, greedy top 3 of 8, 2 shared experts,
    # first layer dense.
    "deepseek_v2": dict(hf=["--arch", "deepseek_v2", "--seed", "15"], gguf=[], variants=["F32"], same_as_hf=True,
                        kv_b_joined=True),
    # DeepSeek-V3-like: q LoRA, sigmoid router with exp_probs_b, 4 groups of 4 (2 used), top 4,
    # normalised and scaled by 2.5, a shared expert, first layer dense, YaRN (factor 40).
    "deepseek_v3": dict(hf=["--arch", "deepseek_v3", "--seed", "16"], gguf=[], variants=["F32"], same_as_hf=True,
                        kv_b_joined=True),
    # GLM-4.7-Flash (Glm4MoeLiteForCausalLM, which llama.cpp converts to deepseek2): DeepSeek-V3's layout without
    # YaRN, plus the multi-token-prediction layer llama.cpp's converter keeps for it (block_count 4,
    # nextn_predict_layers 1, blk.3.nextn.* beside the layer's own tensors), which neither engine runs in the
    # model: llama.cpp loads the file, and its logits are the 3-layer model's.
    "glm4moelite": dict(hf=["--arch", "glm4_moe_lite", "--num-nextn-predict-layers", "1", "--rope-scaling", "none",
                            "--seed", "34"], gguf=[], variants=["F32"], same_as_hf=True),
    # ERNIE 4.5 (llama.cpp's ernie4_5: Llama's tensors, RoPE on adjacent pairs with nothing permuted) and ERNIE 4.5
    # MoE (ernie4_5-moe: the first layer dense, then 8 experts top 2 by softmax with exp_probs_b for the choice,
    # renormalised, and a shared expert expert_shared_feed_forward_length wide); untied.
    "ernie4_5": dict(hf=["--arch", "ernie4_5", "--seed", "35"], gguf=[], variants=["F32"], same_as_hf=True),
    "ernie4_5moe": dict(hf=["--arch", "ernie4_5_moe", "--seed", "36"], gguf=[], variants=["F32"], same_as_hf=True),
    # Gemma 3: GeGLU, sandwich norms (+1 folded in by the converter), embeddings times sqrt(hidden),
    # q/k norm; layers sliding (window 6), sliding, full, sliding: attention.sliding_window_pattern 3,
    # local RoPE base 10000 and linear scaling 8 on the full layer. query_pre_attn_scalar = head_dim,
    # the scale llama.cpp uses for this shape (the file has no key for it).
    # llama.cpp's CPU GeGLU rounds the gate to f16 and reads GELU from an f16 table (GGML_GELU_FP16 in
    # ggml-cpu/vec.h at 3f545bec); dpserve computes it in fp32. Measured: max 1.7e-3 / rms 3.5e-4 x scale
    # against stock llama.cpp, 2.5e-6 / 5.3e-7 against a local build with the table switched off.
    # The tolerance below leaves room for the table and is still far under the smallest error a
    # Gemma-specific bug makes in the NumPy comparison (rms 0.088 x scale, model_reference_gemma3).
    "gemma3": dict(hf=["--arch", "gemma3", "--query-pre-attn-scalar", "32", "--seed", "18"], gguf=[],
                   variants=["F32"], tolerance={"F32": (5e-3, 1e-3)}),
    # Gemma 2: Gemma 3's layout without q/k norms; layers alternating sliding (window 6) and full, one RoPE;
    # the attention scores and the logits soft-capped (the tiny model's caps, 2.5 and 4.0, bend them:
    # attn_logit_softcapping / final_logit_softcapping in the file). query_pre_attn_scalar = head_dim, as
    # llama.cpp assumes. The tolerance is gemma3's: llama.cpp's f16 GELU table (see above).
    "gemma2": dict(hf=["--arch", "gemma2", "--query-pre-attn-scalar", "32", "--seed", "20"], gguf=[],
                   variants=["F32"], tolerance={"F32": (5e-3, 1e-3)}),
    # Phi-4-mini-like phi3: fused attn_qkv and ffn_up (gate rows, then up), 0.75 of each 32-wide head
    # rotated (rope.dimension_count 24), LongRoPE over an original context of 16 (both here and in
    # llama.cpp's 1024-token context the long factor set, rope.scaling.attn_factor sqrt(1 + ln 4 / ln 16)).
    # No sliding window: this llama.cpp release switches Phi's off. (Not named "phi3": llama.cpp gives the
    # special tokens of a model whose general.name contains it Phi-3's attributes, looking up
    # "<|endoftext|>", which this tiny vocabulary does not have.)
    "phi4mini": dict(hf=["--arch", "phi3", "--rope-scaling", "longrope", "--partial-rotary-factor", "0.75",
                     "--seed", "19"], gguf=[], variants=["F32"]),
    # gpt-oss (llama.cpp's gpt-oss: attn_sinks, q / k / v / o biases, post_attention_norm as the MLP's norm,
    # router and expert biases, layers sliding (window 6) and full from layer 0), the tiny model of
    # make_hf_model.py (YaRN factor 4 over 32 positions) with two changes llama.cpp needs: swiglu_limit 7
    # (llama.cpp's is fixed; the tiny experts' gate / up rarely pass it, the clamp is checked in
    # model_reference_gpt_oss) and YaRN truncate true (llama.cpp rounds the ramp's ends; the file has no
    # key for it). The F32 file holds the HF folder's weights (experts split and transposed), so dpserve
    # must give the same logits from both. MXFP4_MOE: llama-quantize's MXFP4 experts (ggml's nibble
    # order), Q8_0 for the other matrices.
    "gpt_oss": dict(hf=["--arch", "gpt_oss", "--swiglu-limit", "7", "--yarn-truncate", "true", "--seed", "25"],
                    gguf=[], variants=["F32", "MXFP4_MOE"], same_as_hf=True),
    # SmolLM3 (llama.cpp's smollm3: Q/K permuted as llama's, every fourth layer unrotated, the only layout its
    # files can hold): 5 layers, so layer 3 is NoPE with a rotating layer after it; untied.
    "smollm3": dict(hf=["--arch", "smollm3", "--no-rope-layers", "", "--num-hidden-layers", "5", "--seed", "26"],
                    gguf=[], variants=["F32"]),
    # Granite 3.x (llama.cpp's granite: embedding_scale, attention.scale, residual_scale, logit_scale): the tiny
    # model's multipliers (embeddings x 3, attention 0.3, residual x 0.5, logits / 2.5); untied (a tied random
    # model's greedy ids repeat one token).
    "granite": dict(hf=["--arch", "granite", "--seed", "27"], gguf=[], variants=["F32"]),
    # Granite-MoE (llama.cpp's granitemoe: granite's scales, Mixtral's routing, input_linear split into
    # ffn_gate_exps / ffn_up_exps by the converter): the tiny model, 4 experts top 2.
    "granitemoe": dict(hf=["--arch", "granite_moe", "--seed", "28"], gguf=[], variants=["F32"]),
    # OLMo 2 (llama.cpp's olmo2: attn_q_norm / attn_k_norm over the whole projection, post_attention_norm and
    # post_ffw_norm, no input norms, RoPE on halves with nothing permuted).
    "olmo2": dict(hf=["--arch", "olmo2", "--seed", "29"], gguf=[], variants=["F32"], same_as_hf=True),
    # OLMo 3 (llama.cpp's olmo2 with attention.sliding_window: layers sliding (window 6) but every fourth, which rotate
    # plainly while the full ones take YaRN, factor 4 over 16 positions), 4 layers.
    "olmo3": dict(hf=["--arch", "olmo3", "--rope-scaling", "yarn", "--rope-factor", "4",
                      "--original-max-position-embeddings", "16", "--seed", "38"], gguf=[], variants=["F32"],
                  same_as_hf=True),
    # EXAONE 4.0 (llama.cpp's exaone4: post_attention_norm / post_ffw_norm, per-head attn_q_norm / attn_k_norm, RoPE
    # on halves with llama3 factors in rope_freqs.weight): 64 layers, the only depth at which llama.cpp 3f545bec runs
    # the window, sliding (6) and rotated but every fourth, full and unrotated ("LLLG"). Not same_as_hf: llama3
    # scaling from the file's rope_freqs divisors rounds differently from the config's formula (as for "llama").
    "exaone4": dict(hf=["--arch", "exaone4", "--num-hidden-layers", "64", "--hidden-size", "64",
                        "--intermediate-size", "96", "--rope-scaling", "llama3", "--rope-factor", "8",
                        "--original-max-position-embeddings", "32", "--seed", "39"], gguf=[], variants=["F32"]),
    # Seed-OSS (llama.cpp's seed_oss: q/k/v biases, 4 heads of 40 on a 128-wide model, the MLP's input norm named
    # post_attention_norm, RoPE on halves with nothing permuted, rope_theta 1e7).
    "seed_oss": dict(hf=["--arch", "seed_oss", "--seed", "40"], gguf=[], variants=["F32"], same_as_hf=True),
    # Ministral 3 (llama.cpp's mistral3: Q/K permuted as llama's, YaRN factor 4 over 16 positions with
    # rope.scaling.yarn_log_multiplier = mscale_all_dim, attention.temperature_scale 0.1: the queries' Llama 4
    # temperature over periods of 16 positions), 4 heads of 40 on a 128-wide model.
    "ministral3": dict(hf=["--arch", "ministral3", "--seed", "41"], gguf=[], variants=["F32"]),
    # OLMoE (llama.cpp's olmoe: OLMo 2's whole-projection attn_q_norm / attn_k_norm with attn_norm / ffn_norm,
    # feed_forward_length-wide experts in every layer, the top k's softmax weights not renormalised): the tiny
    # model, 8 experts top 2, with 4 KV heads of 4 (OLMoE-1B-7B is MHA; llama.cpp's olmoe sizes attn_k_norm by
    # embedding_length, so it cannot load a GQA OLMoE).
    "olmoe": dict(hf=["--arch", "olmoe", "--num-key-value-heads", "4", "--seed", "30"], gguf=[], variants=["F32"],
                  same_as_hf=True),
    # Qwen2-MoE (llama.cpp's qwen2moe: q/k/v biases, every layer sparse, the top k not renormalised, one shared
    # expert scaled by sigmoid(ffn_gate_inp_shexp . x)): the tiny model with no dense layer, 8 experts top 2.
    "qwen2moe": dict(hf=["--arch", "qwen2_moe", "--mlp-only-layers", "", "--seed", "31"], gguf=[], variants=["F32"],
                     same_as_hf=True),
    # GLM-4.5 (llama.cpp's glm4moe: q/k/v biases, per-head attn_q_norm / attn_k_norm, the first half of each 40-wide
    # head rotated (rope.dimension_count 20), post_attention_norm as the MLP's input norm, one dense leading layer,
    # 8 experts top 2 by sigmoid + exp_probs_b in 2 groups of which 1 is kept (expert_group_count), renormalised and
    # scaled by 2.5, one shared expert).
    "glm4moe": dict(hf=["--arch", "glm4_moe", "--use-qk-norm", "--seed", "32"], gguf=[], variants=["F32"],
                    same_as_hf=True),
    # GLM-4-0414 (llama.cpp's glm4: q/k/v biases, adjacent pairs of the first 20 of 40 dims rotated with nothing
    # permuted, gate and up fused in ffn_up, post_attention_norm / ffn_norm / post_ffw_norm).
    "glm4": dict(hf=["--arch", "glm4", "--seed", "33"], gguf=[], variants=["F32"], same_as_hf=True),
    # MiniMax-M2 (llama.cpp's minimax-m2: attn_q_norm / attn_k_norm over the whole 4 x 32-wide projection, the first
    # 16 of each head's 32 dims rotated on halves with nothing permuted, every layer 8 experts top 2 by sigmoid +
    # exp_probs_b, renormalised).
    "minimax_m2": dict(hf=["--arch", "minimax_m2", "--seed", "37"], gguf=[], variants=["F32"], same_as_hf=True),
    # Llama 4 (llama.cpp's llama4: nothing permuted, RoPE on adjacent pairs; experts every second layer, dense layers
    # between, top 1 weighted on the input by the sigmoid of its logit, plus the shared expert; L2 q / k norms; the last
    # of 4 layers NoPE). llama.cpp fixes the chunk and the temperature's period at 8192, so the model has those and
    # the prompts never reach either: this case checks everything but chunks and temperature, which the float64
    # reference checks at 6 and 8 (model_reference_olmo2).
    "llama4": dict(hf=["--arch", "llama4", "--attention-chunk-size", "8192", "--floor-scale", "8192",
                       "--interleave-moe-layer-step", "2", "--seed", "42"], gguf=[], variants=["F32"], same_as_hf=True),
    # Quantized: every matrix row is 256 elements wide (hidden 256, FFN 256, attention 256), so
    # llama-quantize uses the K-quant types on every tensor instead of falling back to Q5_0 /
    # Q8_0 for rows that are not whole 256-element blocks.
    "llama-q": dict(
        hf=["--arch", "llama", "--vocab-size", "512", "--hidden-size", "256", "--intermediate-size", "256",
            "--num-hidden-layers", "1", "--num-attention-heads", "4", "--num-key-value-heads", "2",
            "--seed", "21", "--no-tokenizer"],
        gguf=["--tokenizer", "{shared}/models/stories260K/tok512.bin"],
        variants=["Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"]),
    "qwen2-q": dict(
        hf=["--arch", "qwen2", "--vocab-size", "320", "--hidden-size", "256", "--intermediate-size", "256",
            "--num-hidden-layers", "1", "--num-attention-heads", "4", "--num-key-value-heads", "2",
            "--seed", "22"],
        gguf=[], variants=["Q4_K_M"]),
    "qwen3-q": dict(
        hf=["--arch", "qwen3", "--vocab-size", "320", "--hidden-size", "256", "--intermediate-size", "256",
            "--num-hidden-layers", "1", "--num-attention-heads", "4", "--num-key-value-heads", "2",
            "--head-dim", "64", "--seed", "23"],
        gguf=[], variants=["Q5_K_M"]),
    "qwen3moe-q": dict(
        hf=["--arch", "qwen3_moe", "--vocab-size", "320", "--hidden-size", "256", "--intermediate-size", "256",
            "--num-hidden-layers", "1", "--num-attention-heads", "4", "--num-key-value-heads", "2",
            "--head-dim", "64", "--num-experts", "4", "--num-experts-per-tok", "2", "--moe-intermediate-size", "256",
            "--decoder-sparse-step", "1", "--mlp-only-layers", "", "--seed", "24"],
        gguf=[], variants=["Q4_0", "Q4_K_M"]),
}

N_DECODE = 8


def prompts(vocab):
    """Deterministic prompt ids: one token, a short and a longer prompt."""
    out, x = [], 2024
    for n in (1, 7, 30):
        ids = []
        for _ in range(n):
            x = (x * 1103515245 + 12345) % (1 << 31)
            ids.append(3 + x % (vocab - 3))
        out.append(ids)
    return out


def make_f32(name, work, shared, extra=(), tag="F32"):
    """Writes the case's HF folder and its F32 GGUF under `work` (`extra`: more hf_to_gguf.py
    flags, written as <name>-<tag>.gguf); returns the GGUF path."""
    c = CASES[name]
    hf = os.path.join(work, f"hf-{name}")
    out = os.path.join(work, f"{name}-{tag}.gguf")
    subprocess.run([PY, os.path.join(REPO, "tools/make_hf_model.py"), "--dtype", "f32", "--quiet", "--out", hf]
                   + c["hf"], check=True, timeout=300)
    subprocess.run([PY, os.path.join(REPO, "tools/hf_to_gguf.py"), hf, "--outtype", "f32", "--out", out]
                   + [a.format(shared=shared) for a in c["gguf"]] + list(extra), check=True, timeout=300,
                   stderr=subprocess.DEVNULL)
    return out
