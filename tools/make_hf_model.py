#!/usr/bin/python3
"""Writes a random-weight model as a real Hugging Face folder (config.json + safetensors).

Used by the reference tests (tiny models of every supported architecture) and by the benchmarks
(realistic shapes such as TinyLlama-1.1B). The safetensors files are serialized here, byte for byte
as the format specifies, so nothing outside NumPy is needed.

  /usr/bin/python3 tools/make_hf_model.py --arch qwen3 --dtype bf16 --out /tmp/tiny-qwen3
  /usr/bin/python3 tools/make_hf_model.py --arch deepseek_v3 --out /tmp/tiny-v3 [--num-nextn-predict-layers 1]
  /usr/bin/python3 tools/make_hf_model.py --arch gemma3 --out /tmp/tiny-gemma3 [--gemma-layer-config pattern]
  /usr/bin/python3 tools/make_hf_model.py --arch phi3 --out /tmp/tiny-phi3 [--rope-scaling longrope]
      [--partial-rotary-factor 0.75] [--sliding-window N]
  /usr/bin/python3 tools/make_hf_model.py --arch qwen2_5_vl --out /tmp/tiny-vl --tokenizer-dir DIR
  /usr/bin/python3 tools/make_hf_model.py --arch gpt_oss --out /tmp/tiny-gpt-oss [--mxfp4] [--swiglu-limit 3.0]
      [--yarn-truncate true|false] [--layer-types s,f,...]
  /usr/bin/python3 tools/make_hf_model.py --preset tinyllama-1.1b --out /tmp/tinyllama-shape
  /usr/bin/python3 tools/make_hf_model.py --preset deepseek-v2-lite-bench --out /tmp/v2-lite-shape
  /usr/bin/python3 tools/make_hf_model.py --preset phi4-mini --out /tmp/phi4-mini-shape
  /usr/bin/python3 tools/make_hf_model.py --preset qwen2_5_vl-3b-tower --out /tmp/vl-3b-tower --tokenizer-dir DIR
"""
import argparse
import json
import os
import sys
import time

import numpy as np

ARCHITECTURES = {
    "llama": ("LlamaForCausalLM", "llama"),
    "qwen2": ("Qwen2ForCausalLM", "qwen2"),
    "qwen3": ("Qwen3ForCausalLM", "qwen3"),
    "qwen3_moe": ("Qwen3MoeForCausalLM", "qwen3_moe"),
    "qwen2_moe": ("Qwen2MoeForCausalLM", "qwen2_moe"),
    "mistral": ("MistralForCausalLM", "mistral"),
    "mixtral": ("MixtralForCausalLM", "mixtral"),
    "deepseek_v2": ("DeepseekV2ForCausalLM", "deepseek_v2"),
    "deepseek_v3": ("DeepseekV3ForCausalLM", "deepseek_v3"),
    # GLM-4.7-Flash: DeepSeek-V3's config and tensors under GLM's architecture name (written as deepseek_v3).
    "glm4_moe_lite": ("Glm4MoeLiteForCausalLM", "glm4_moe_lite"),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "qwen2_5_vl"),
    "gemma2": ("Gemma2ForCausalLM", "gemma2"),
    "gemma3": ("Gemma3ForCausalLM", "gemma3_text"),
    "phi3": ("Phi3ForCausalLM", "phi3"),
    "gpt_oss": ("GptOssForCausalLM", "gpt_oss"),
    "smollm3": ("SmolLM3ForCausalLM", "smollm3"),
    "granite": ("GraniteForCausalLM", "granite"),
    "granite_moe": ("GraniteMoeForCausalLM", "granitemoe"),
    "olmo2": ("Olmo2ForCausalLM", "olmo2"),
    "olmo3": ("Olmo3ForCausalLM", "olmo3"),
    "exaone4": ("Exaone4ForCausalLM", "exaone4"),
    "seed_oss": ("SeedOssForCausalLM", "seed_oss"),
    "ministral3": ("Ministral3ForCausalLM", "ministral3"),
    "olmoe": ("OlmoeForCausalLM", "olmoe"),
    "ernie4_5": ("Ernie4_5ForCausalLM", "ernie4_5"),
    "ernie4_5_moe": ("Ernie4_5_MoeForCausalLM", "ernie4_5_moe"),
    "glm4_moe": ("Glm4MoeForCausalLM", "glm4_moe"),
    "glm4": ("Glm4ForCausalLM", "glm4"),
    "minimax_m2": ("MiniMaxM2ForCausalLM", "minimax_m2"),
    "llama4": ("Llama4ForCausalLM", "llama4_text"),
}
DEEPSEEK = ("deepseek_v2", "deepseek_v3")

# Tiny defaults per architecture: small enough for a float64 reference in milliseconds, shaped like
# the real thing (GQA, head_dim independent of hidden_size for Qwen3, sizes not all powers of two).
TINY = {
    "llama": dict(vocab_size=397, hidden_size=128, intermediate_size=344, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=None),
    "qwen2": dict(vocab_size=397, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=None),
    # Qwen2.5-VL: a Qwen2 language model (q/k/v biases, M-RoPE) behind a vision tower. The vocabulary
    # covers the real Qwen tokenizer (its vision special tokens sit at 151652..151656); embeddings
    # are tied as in Qwen2.5-VL-3B so the file stays small.
    "qwen2_5_vl": dict(vocab_size=151936, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=None, tie_word_embeddings=True,
                       rope_theta=1000000.0),
    "qwen3": dict(vocab_size=397, hidden_size=96, intermediate_size=288, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=32),
    "qwen3_moe": dict(vocab_size=397, hidden_size=96, intermediate_size=256, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                      num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
                      mlp_only_layers="1"),  # one dense layer between sparse ones
    # Qwen2-MoE (Qwen1.5-MoE-A2.7B's layout): Qwen2's q/k/v biases, 8 experts top 2 (not renormalised, as
    # Qwen2MoeConfig's default), a sigmoid-gated shared expert wider than the routed ones, one dense layer.
    "qwen2_moe": dict(vocab_size=397, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=None, num_experts=8,
                      num_experts_per_tok=2, moe_intermediate_size=64, shared_expert_intermediate_size=96,
                      norm_topk_prob="false", mlp_only_layers="1"),
    "mistral": dict(vocab_size=397, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=None, sliding_window=16),
    # Mixtral: every layer sparse, 8 experts top-2, expert FFN = intermediate_size.
    "mixtral": dict(vocab_size=397, hidden_size=96, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=None, num_experts=8,
                    num_experts_per_tok=2),
    # DeepSeek-V2-Lite-like: plain q_proj (q_lora_rank null), softmax router, greedy top-k, no
    # renormalisation, 2 shared experts, first layer dense.
    "deepseek_v2": dict(vocab_size=397, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=4, head_dim=None, q_lora_rank=0,
                        kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                        num_experts=8, num_experts_per_tok=3, moe_intermediate_size=32, n_shared_experts=2,
                        first_k_dense_replace=1, moe_layer_freq=1, topk_method="greedy", scoring_func="softmax",
                        norm_topk_prob="false", routed_scaling_factor=1.0, n_group=1, topk_group=1),
    # DeepSeek-V3-like: q LoRA, sigmoid router with noaux_tc group-limited selection and a correction
    # bias, normalised and scaled weights, a shared expert, first layer dense, YaRN.
    "deepseek_v3": dict(vocab_size=397, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=4, head_dim=None, q_lora_rank=48,
                        kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                        num_experts=16, num_experts_per_tok=4, moe_intermediate_size=32, n_shared_experts=1,
                        first_k_dense_replace=1, moe_layer_freq=1, topk_method="noaux_tc",
                        scoring_func="sigmoid", norm_topk_prob="true", routed_scaling_factor=2.5, n_group=4,
                        topk_group=2, rope_scaling="yarn", rope_factor=40.0,
                        original_max_position_embeddings=128, yarn_mscale=1.0, yarn_mscale_all_dim=1.0),
    # Gemma 3 text (Gemma3ForCausalLM): head_dim not hidden / heads, query_pre_attn_scalar not head_dim,
    # layers sliding, sliding, full, sliding (every 3rd full) with a 6-token window, local RoPE base 1e4
    # and global 1e6 with linear scaling 8 (as the 4B+ checkpoints), tied embeddings, Gemma's ids.
    "gemma3": dict(vocab_size=397, hidden_size=96, intermediate_size=224, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=48.0,
                   sliding_window=6, sliding_window_pattern=3, rope_local_base_freq=10000.0,
                   rope_theta=1000000.0, rope_scaling="linear", rope_factor=8.0, tie_word_embeddings=True),
    # Gemma 2 (Gemma2ForCausalLM): Gemma 3's layout without q_norm / k_norm, layers alternating sliding
    # and full with a 6-token window, one RoPE (base 1e4), tied embeddings. The caps are small (Gemma 2
    # ships 50 and 30) because a tiny random model's scores and logits are a few units: at 50 / 30 tanh
    # would be linear there and a runtime that skipped the caps would pass.
    "gemma2": dict(vocab_size=397, hidden_size=96, intermediate_size=224, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=48.0,
                   sliding_window=6, rope_theta=10000.0, tie_word_embeddings=True, attn_logit_softcapping=2.5,
                   final_logit_softcapping=4.0),
    # Phi-3 / Phi-3.5 / Phi-4(-mini) (Phi3ForCausalLM): fused qkv_proj and gate_up_proj, RMSNorm eps 1e-5 as
    # in their configs. The original context is 16 and the extended one 64, so that --rope-scaling longrope
    # switches from the short to the long factors within prompts of a few dozen tokens.
    "phi3": dict(vocab_size=397, hidden_size=128, intermediate_size=344, num_hidden_layers=3,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=None, rms_norm_eps=1e-5,
                 original_max_position_embeddings=16, max_position_embeddings=64),
    # gpt-oss (GptOssForCausalLM): q/k/v/o biases, attention sinks, layers alternating sliding (window 6,
    # so prompts cross it) and full starting with sliding, YaRN with truncate false (factor 4 over an
    # original context of 32, max_position_embeddings = factor x original as in the real configs), rope_theta
    # 150000, 4 experts top-2 (softmax over the top-k router logits, router bias), the clamped SwiGLU with
    # interleaved gate / up columns and expert biases. heads x head_dim (128) is not hidden_size (96), as
    # in gpt-oss (64 x 64 vs 2880). swiglu_limit is 3.0 rather than the real 7.0: the tiny experts' gate /
    # up values have std ~2, so at 7 the clamp would never act and a runtime that skipped it would pass.
    "gpt_oss": dict(vocab_size=397, hidden_size=96, intermediate_size=64, num_hidden_layers=4,
                    num_attention_heads=8, num_key_value_heads=2, head_dim=16, num_experts=4,
                    num_experts_per_tok=2, sliding_window=6, rms_norm_eps=1e-5, rope_theta=150000.0,
                    rope_scaling="yarn", rope_factor=4.0, original_max_position_embeddings=32,
                    max_position_embeddings=128, swiglu_limit=3.0),
    # SmolLM3 (SmolLM3ForCausalLM): Llama with NoPE layers (no_rope_layers: layers 1 and 3 unrotated, so
    # both a middle and the last layer are NoPE). SmolLM3-3B ties its embeddings (--tie-word-embeddings); the
    # tiny default does not, since a tied random model mostly repeats its last token, whatever its RoPE.
    "smollm3": dict(vocab_size=397, hidden_size=128, intermediate_size=344, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=None, no_rope_layers="1,0,1,0"),
    # Granite 3.x (GraniteForCausalLM): Llama with multipliers. The published configs have embedding 12,
    # attention 1/64 to 1/128, residual 0.22, logits_scaling 8 to 16; the tiny ones are chosen so that each moves the
    # logits well past the bf16 tolerance when left out: attention 0.3 against 1/sqrt(32) = 0.18 (peakier
    # softmax), residual 0.5, embeddings x 3 (the stream's start against what layers add), logits / 2.5.
    "granite": dict(vocab_size=397, hidden_size=128, intermediate_size=344, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=None, embedding_multiplier=3.0,
                    attention_multiplier=0.3, residual_multiplier=0.5, logits_scaling=2.5),
    # Granite-MoE (GraniteMoeForCausalLM: granite-3.x-1b-a400m / 3b-a800m): Granite's multipliers, every layer
    # a mixture of 4 experts (top 2), stacked as JetMoE's parallel experts (input_linear: gate rows then up rows).
    "granite_moe": dict(vocab_size=397, hidden_size=128, intermediate_size=64, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=None, num_experts=4,
                        num_experts_per_tok=2, embedding_multiplier=3.0, attention_multiplier=0.3,
                        residual_multiplier=0.5, logits_scaling=2.5),
    # OLMo 2 (Olmo2ForCausalLM): no input norms; q_norm / k_norm over the whole q / k projection; norms after
    # attention and the MLP; rms_norm_eps 1e-6 as OLMo-2's configs (Olmo2Config's default is 1e-5).
    "olmo2": dict(vocab_size=397, hidden_size=128, intermediate_size=344, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=None),
    # OLMo 3 (Olmo3ForCausalLM): OLMo 2's layers, 4 of them so that the default layer_types (sliding but every
    # fourth) has both kinds, a 6-token window; YaRN with --rope-scaling yarn (the released models' factor 8 over
    # 8192 positions: here over 16), which only the full layers apply.
    "olmo3": dict(vocab_size=397, hidden_size=128, intermediate_size=344, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=None, sliding_window=6),
    # EXAONE 4.0 (Exaone4ForCausalLM, as the 32B): OLMo 2's post-norms with per-head q / k norms, layers sliding
    # (window 6) and rotated but every fourth, full and unrotated (sliding_window_pattern "LLLG" unless
    # --layer-types), rms_norm_eps 1e-5 as released; --sliding-window 0 writes null (the 1.2B: no window, all rotate).
    # Seed-OSS (SeedOssForCausalLM): Llama with q/k/v biases and head_dim independent of hidden_size (4 x 40 != 128),
    # an o_proj bias with --attention-out-bias; rms_norm_eps 1e-6 and rope_theta 1e7 as released.
    "seed_oss": dict(vocab_size=397, hidden_size=128, intermediate_size=344, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=40, rope_theta=1e7),
    # Ministral 3 (Ministral3ForCausalLM): Mistral with head_dim independent of hidden_size (4 x 40 != 128), no window,
    # transformers 5's rope_parameters as released (YaRN with mscale = mscale_all_dim = 1, so no cos / sin factor)
    # plus llama_4_scaling_beta 0.1, the queries' temperature period being original_max_position_embeddings: 16 here
    # (16384 released) so that the tests' positions cross several periods; rms_norm_eps 1e-5 as Ministral3Config's.
    "ministral3": dict(vocab_size=397, hidden_size=128, intermediate_size=344, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=40, rms_norm_eps=1e-5,
                       rope_theta=1e6, rope_factor=4.0, original_max_position_embeddings=16),
    # Llama 4 (Llama4ForCausalLM): 4 layers, the last NoPE (no_rope_layer_interval 4, written out as the release
    # does); experts intermediate_size wide (4, top 1) and dense layers intermediate_size_mlp wide; head_dim 32 on a
    # 128-wide model; chunks of 6 and a temperature period of 8 (8192 both released) so the tests' positions cross
    # many of each; rms_norm_eps 1e-5 and rope_theta 5e5 as Llama4TextConfig's.
    "llama4": dict(vocab_size=397, hidden_size=128, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=32, num_experts=4, num_experts_per_tok=1, rms_norm_eps=1e-5,
                   rope_theta=500000.0),
    "exaone4": dict(vocab_size=397, hidden_size=128, intermediate_size=344, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=None, sliding_window=6, rms_norm_eps=1e-5),
    # OLMoE (OlmoeForCausalLM: OLMoE-1B-7B): Llama's pre-norms, OLMo 2's whole-projection q / k norms, every layer
    # a mixture of 8 experts (top 2, intermediate_size wide), the top k not renormalised (OlmoeConfig's default),
    # rms_norm_eps 1e-5 as OLMoE's config.
    "olmoe": dict(vocab_size=397, hidden_size=128, intermediate_size=64, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=None, num_experts=8,
                  num_experts_per_tok=2, norm_topk_prob="false", rms_norm_eps=1e-5),
    # GLM-4.5 (Glm4MoeForCausalLM): q/k/v biases, head_dim independent of hidden_size with its first half rotated,
    # DeepSeek-V3's router (sigmoid, correction bias, 2 groups of which 1 is kept, renormalised, scaled by 2.5),
    # one shared expert, the first layer dense; rms_norm_eps 1e-5 as GLM-4.5's config.
    # GLM-4-0414 (Glm4ForCausalLM): q/k/v biases, head_dim independent of hidden_size with its first half rotated on
    # adjacent pairs, norms after attention and the MLP too, gate and up fused; rms_norm_eps 1e-5 as GLM-4-9B-0414.
    "glm4": dict(vocab_size=397, hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=40, partial_rotary_factor=0.5, rms_norm_eps=1e-5),
    # ERNIE 4.5 (Ernie4_5ForCausalLM: ERNIE-4.5-0.3B): Llama with RoPE on adjacent pairs, rms_norm_eps 1e-5 and
    # rope_theta 500000 as its config; untied unless --tie-word-embeddings (the released models tie: a tied random
    # model's greedy ids repeat its last token whatever the attention does).
    "ernie4_5": dict(vocab_size=397, hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=None, rms_norm_eps=1e-5, rope_theta=500000.0),
    # ERNIE 4.5 MoE (Ernie4_5_MoeForCausalLM: ERNIE-4.5-21B-A3B): the first layer dense, then 8 experts (top 2) by
    # softmax with a selection bias (moe_statics), renormalised, one shared expert. intermediate_size is 2 x 64
    # (the KV heads times the shared experts' width): llama.cpp's converter derives the shared experts' width
    # as intermediate_size / num_key_value_heads, which holds for the released 21B-A3B.
    "ernie4_5_moe": dict(vocab_size=397, hidden_size=128, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=None, num_experts=8,
                         num_experts_per_tok=2, moe_intermediate_size=64, n_shared_experts=1,
                         first_k_dense_replace=1, decoder_sparse_step=1, rms_norm_eps=1e-5, rope_theta=500000.0),
    "glm4_moe": dict(vocab_size=397, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=40, num_experts=8,
                     num_experts_per_tok=2, moe_intermediate_size=64, n_shared_experts=1, first_k_dense_replace=1,
                     n_group=2, topk_group=1, routed_scaling_factor=2.5, norm_topk_prob="true",
                     partial_rotary_factor=0.5, rms_norm_eps=1e-5),
    # MiniMax-M2 (MiniMaxM2ForCausalLM): q / k projections wider than hidden_size (4 x 32 = 128 > 96, as 48 x 128
    # > 3072) normalised as a whole, the first half of each head rotated (rotary_dim 16 of 32, as 64 of 128), every
    # layer 8 experts top 2 by sigmoid + correction bias, renormalised; rms_norm_eps 1e-6 as released.
    "minimax_m2": dict(vocab_size=397, hidden_size=96, intermediate_size=64, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=32, num_experts=8,
                       num_experts_per_tok=2, partial_rotary_factor=0.5, rms_norm_eps=1e-6),
}

PRESETS = {
    "tiny": {},
    # TinyLlama-1.1B shape (about 2.2 GB in bf16).
    "tinyllama-1.1b": dict(arch="llama", dtype="bf16", vocab_size=32000, hidden_size=2048,
                           intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                           num_key_value_heads=4, head_dim=None, rope_theta=10000.0,
                           max_position_embeddings=2048),
    # Gemma-3-1B's shape (its config.json: 26 layers, hidden 1152, FFN 6912, 4 heads / 1 KV head of
    # 256, 262144-token vocabulary, window 512 on five layers of six); about 2 GB in bf16.
    # gemma-2-2b(-it)'s shapes.
    "gemma2-2b": dict(arch="gemma2", dtype="bf16", vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                      num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                      query_pre_attn_scalar=256.0, sliding_window=4096, rope_theta=10000.0,
                      max_position_embeddings=8192, tie_word_embeddings=True, attn_logit_softcapping=50.0,
                      final_logit_softcapping=30.0),
    "gemma3-1b": dict(arch="gemma3", dtype="bf16", vocab_size=262144, hidden_size=1152, intermediate_size=6912,
                      num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                      query_pre_attn_scalar=256.0, sliding_window=512, sliding_window_pattern=6,
                      rope_local_base_freq=10000.0, rope_theta=1000000.0, rope_scaling="none",
                      max_position_embeddings=32768, tie_word_embeddings=True),
    # Phi-4-mini-instruct's shape (its config.json: 32 layers, hidden 3072, FFN 8192, 24 heads / 8 KV heads
    # of 128 of which 96 rotate (partial_rotary_factor 0.75), 200064-token vocabulary, tied embeddings,
    # LongRoPE from 4096 to 131072 with base 10000); about 7.7 GB in bf16. Its LongRoPE factors here are
    # drawn from the seed, not the published ones; its sliding_window (262144, beyond the context) is left
    # out, and bos / eos are the generated tokenizer's.
    "phi4-mini": dict(arch="phi3", dtype="bf16", vocab_size=200064, hidden_size=3072, intermediate_size=8192,
                      num_hidden_layers=32, num_attention_heads=24, num_key_value_heads=8, head_dim=None,
                      partial_rotary_factor=0.75, tie_word_embeddings=True, rope_scaling="longrope",
                      original_max_position_embeddings=4096, max_position_embeddings=131072,
                      rope_theta=10000.0, rms_norm_eps=1e-5),
    # Qwen3-MoE-like benchmark shape: every layer sparse, 32 experts, top-4.
    "qwen3-moe-bench": dict(arch="qwen3_moe", dtype="bf16", vocab_size=32000, hidden_size=1024,
                            intermediate_size=3072, num_hidden_layers=16, num_attention_heads=16,
                            num_key_value_heads=4, head_dim=64, num_experts=32,
                            num_experts_per_tok=4, moe_intermediate_size=768,
                            decoder_sparse_step=1, mlp_only_layers="", rope_theta=1000000.0,
                            max_position_embeddings=4096),
    # DeepSeek-V2-Lite's attention and expert shapes (hidden 2048, 16 heads, kv_lora_rank 512,
    # qk_nope 128 / qk_rope 64 / v 128, 64 experts top-6 of FFN 1408 plus 2 shared, first layer
    # dense, YaRN as in its config) with 4 layers instead of 27 and a 32000 vocabulary, so that the
    # bf16 weights (4.1 GB) fit this shared 24 GiB machine beside everything else.
    "deepseek-v2-lite-bench": dict(arch="deepseek_v2", dtype="bf16", vocab_size=32000, hidden_size=2048,
                                   intermediate_size=10944, num_hidden_layers=4, num_attention_heads=16,
                                   num_key_value_heads=16, head_dim=None, q_lora_rank=0, kv_lora_rank=512,
                                   qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                                   num_experts=64, num_experts_per_tok=6, moe_intermediate_size=1408,
                                   n_shared_experts=2, first_k_dense_replace=1, moe_layer_freq=1,
                                   topk_method="greedy", scoring_func="softmax", norm_topk_prob="false",
                                   routed_scaling_factor=1.0, n_group=1, topk_group=1, rope_scaling="yarn",
                                   rope_factor=40.0, original_max_position_embeddings=4096, yarn_mscale=0.707,
                                   yarn_mscale_all_dim=0.707, max_position_embeddings=163840),
    # Qwen2.5-VL-3B's vision tower exactly (its vision_config: 32 blocks of hidden 1280, 16 heads, FFN
    # 3420, 112-pixel windows, full attention in blocks 7/15/23/31, out 2048) in front of a 2-layer
    # language model of its width (hidden 2048, FFN 11008, 16 heads, 2 KV heads, tied embeddings), so
    # the tower's time is real and the folder stays ~2.3 GB in bf16 (docs/benchmarks.md).
    "qwen2_5_vl-3b-tower": dict(arch="qwen2_5_vl", dtype="bf16", vocab_size=151936, hidden_size=2048,
                                intermediate_size=11008, num_hidden_layers=2, num_attention_heads=16,
                                num_key_value_heads=2, head_dim=None, tie_word_embeddings=True,
                                rope_theta=1000000.0, max_position_embeddings=32768,
                                vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                                            window_size=112, fullatt_block_indexes=[7, 15, 23, 31])),
}

DTYPES = {"bf16": ("BF16", 2), "f16": ("F16", 2), "f32": ("F32", 4), "u8": ("U8", 1)}
TORCH_DTYPE = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}


def f32_to_bf16_bits(x):
    """Round float32 to bfloat16 (nearest, ties to even) and return the 16-bit patterns."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    u = u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    return (u >> np.uint32(16)).astype(np.uint16)


def encode(values, dtype):
    """float array -> raw little-endian bytes in the file dtype."""
    if dtype == "bf16":
        return f32_to_bf16_bits(np.asarray(values, dtype=np.float32)).astype("<u2").tobytes()
    if dtype == "f16":
        return np.asarray(values, dtype="<f2").tobytes()
    return np.asarray(values, dtype="<f4").tobytes()


class TensorSpec:
    """One tensor to write: name, shape and how to draw its values."""

    def __init__(self, name, shape, kind, scale=1.0, same_as=None, loc=0.0, dtype=None, mx=None):
        self.name, self.shape, self.kind, self.scale = name, tuple(int(s) for s in shape), kind, scale
        self.same_as = same_as  # another tensor's name: written with its values (a copy)
        self.loc = loc  # kind "offset": mean of the normal draw; kind "uniform": low end
        self.dtype = dtype  # a DTYPES key when not the folder's dtype (MXFP4 blocks / scales: "u8")
        self.mx = mx  # kinds "mxfp4_*": the MxfpExperts draw this tensor is a view of

    def file_dtype(self, default):
        return self.dtype or default

    @property
    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n


def build_config(a):
    arch_name, model_type = ARCHITECTURES[a.named_arch]
    cfg = {
        "architectures": [arch_name],
        "model_type": model_type,
        "vocab_size": a.vocab_size,
        "hidden_size": a.hidden_size,
        "intermediate_size": a.intermediate_size,
        "num_hidden_layers": a.num_hidden_layers,
        "num_attention_heads": a.num_attention_heads,
        "num_key_value_heads": a.num_key_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": a.max_position_embeddings,
        "rms_norm_eps": a.rms_norm_eps,
        "rope_theta": a.rope_theta,
        "rope_scaling": None,
        "tie_word_embeddings": bool(a.tie_word_embeddings),
        "bos_token_id": a.bos_token_id,
        "eos_token_id": a.eos_token_id,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": TORCH_DTYPE[a.dtype],
        "transformers_version": "4.51.0",
    }
    if a.arch == "gemma3":
        gemma_config(a, cfg)
    if a.arch == "gemma2":
        gemma2_config(a, cfg)
    if a.arch == "phi3":
        phi3_config(a, cfg)
    if a.arch == "gpt_oss":
        gpt_oss_config(a, cfg)
    if a.arch == "llama":
        cfg["attention_bias"] = False
        cfg["mlp_bias"] = False
        cfg["pretraining_tp"] = 1
    if a.arch == "smollm3":
        cfg.update({"attention_bias": False, "mlp_bias": False, "use_sliding_window": False, "sliding_window": None,
                    "no_rope_layer_interval": a.no_rope_layer_interval})
        if a.no_rope_layers:  # else SmolLM3Config derives it from no_rope_layer_interval
            cfg["no_rope_layers"] = a.no_rope_layers
    if a.arch in ("olmo2", "olmo3"):
        cfg.update({"attention_bias": False, "pad_token_id": 1})
    if a.arch == "ministral3":
        cfg.update({"head_dim": a.head_dim, "sliding_window": a.sliding_window or None, "pad_token_id": 11})
        del cfg["rope_theta"], cfg["rope_scaling"]
        cfg["rope_parameters"] = {"type": "yarn", "rope_theta": a.rope_theta, "factor": a.rope_factor,
                                  "original_max_position_embeddings": a.original_max_position_embeddings,
                                  "max_position_embeddings": a.max_position_embeddings, "beta_fast": 32.0,
                                  "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0,
                                  "llama_4_scaling_beta": a.llama_4_scaling_beta}
    if a.arch == "llama4":
        llama4_config(a, cfg)
    if a.arch == "seed_oss":
        cfg.update({"head_dim": a.head_dim, "attention_bias": True, "attention_out_bias": bool(a.attention_out_bias),
                    "mlp_bias": False, "attention_dropout": 0.1, "residual_dropout": 0.1, "pad_token_id": 1})
    if a.arch == "exaone4":
        cfg["sliding_window"] = a.sliding_window or None
        cfg["sliding_window_pattern"] = "LLLG" if a.sliding_window else None
        if a.layer_types:
            cfg["layer_types"] = gemma_layer_types(a)
    if a.arch == "olmo3":  # layer_types only when given: Olmo3Config's default (sliding but every fourth) otherwise
        cfg["sliding_window"] = a.sliding_window
        if a.layer_types:
            cfg["layer_types"] = gemma_layer_types(a)
    if a.arch == "glm4":
        cfg.update({"head_dim": a.head_dim, "partial_rotary_factor": a.partial_rotary_factor, "attention_bias": True,
                    "pad_token_id": 0})
    if a.arch == "glm4_moe":
        cfg.update({"head_dim": a.head_dim, "partial_rotary_factor": a.partial_rotary_factor, "attention_bias": True,
                    "use_qk_norm": bool(a.use_qk_norm), "n_routed_experts": a.num_experts,
                    "num_experts_per_tok": a.num_experts_per_tok, "moe_intermediate_size": a.moe_intermediate_size,
                    "n_shared_experts": a.n_shared_experts, "first_k_dense_replace": a.first_k_dense_replace,
                    "n_group": a.n_group, "topk_group": a.topk_group, "norm_topk_prob": bool(a.norm_topk_prob),
                    "routed_scaling_factor": a.routed_scaling_factor,
                    "num_nextn_predict_layers": a.num_nextn_predict_layers,
                    "pad_token_id": 0})
    if a.arch in ("ernie4_5", "ernie4_5_moe"):
        cfg.update({"use_bias": False, "pad_token_id": 0})
    if a.arch == "ernie4_5_moe":
        cfg.update({"moe_num_experts": a.num_experts, "moe_k": a.num_experts_per_tok,
                    "moe_intermediate_size": a.moe_intermediate_size, "moe_num_shared_experts": a.n_shared_experts,
                    "moe_layer_start_index": a.first_k_dense_replace, "moe_layer_end_index": a.num_hidden_layers - 1,
                    "moe_layer_interval": a.decoder_sparse_step, "moe_norm_min": 1e-12,
                    "output_router_logits": False, "router_aux_loss_coef": 0.001})
    if a.arch == "minimax_m2":
        # The released config.json's keys (MiniMax-M2, M2.1, M2.5), MiniMax-01's among them.
        cfg.update({"head_dim": a.head_dim, "rotary_dim": phi3_rotary_dim(a),
                    "attn_type_list": [1] * a.num_hidden_layers, "num_local_experts": a.num_experts,
                    "num_experts_per_tok": a.num_experts_per_tok, "scoring_func": "sigmoid",
                    "use_routing_bias": True, "use_qk_norm": True, "qk_norm_type": "per_layer",
                    "shared_intermediate_size": 0, "use_mtp": True, "num_mtp_modules": 3,
                    "mtp_transformer_layers": 1, "output_router_logits": False, "router_aux_loss_coef": 0.001,
                    "router_jitter_noise": 0.0, "bos_token_id": a.bos_token_id, "eos_token_id": a.eos_token_id})
    if a.arch == "olmoe":
        cfg.update({"attention_bias": False, "pad_token_id": 1, "clip_qkv": None, "num_experts": a.num_experts,
                    "num_experts_per_tok": a.num_experts_per_tok, "norm_topk_prob": bool(a.norm_topk_prob),
                    "output_router_logits": False, "router_aux_loss_coef": 0.01})
    if a.arch == "granite_moe":
        cfg.update({"num_local_experts": a.num_experts, "num_experts_per_tok": a.num_experts_per_tok,
                    "output_router_logits": False, "router_aux_loss_coef": 0.001})
    if a.arch in ("granite", "granite_moe"):
        cfg.update({"attention_bias": False, "mlp_bias": False, "embedding_multiplier": a.embedding_multiplier,
                    "attention_multiplier": a.attention_multiplier, "residual_multiplier": a.residual_multiplier,
                    "logits_scaling": a.logits_scaling})
    if a.arch in ("qwen2", "qwen2_5_vl", "qwen2_moe"):
        cfg["use_sliding_window"] = False
        cfg["sliding_window"] = a.max_position_embeddings
        cfg["max_window_layers"] = a.num_hidden_layers
    if a.arch == "qwen2_5_vl":
        cfg.update(vision_model_config(a))
    if a.arch in ("qwen3", "qwen3_moe"):
        cfg["head_dim"] = a.head_dim
        cfg["attention_bias"] = False
        cfg["use_sliding_window"] = False
        cfg["sliding_window"] = None
        cfg["max_window_layers"] = a.num_hidden_layers
    if a.arch in ("mistral", "mixtral"):
        cfg["sliding_window"] = a.sliding_window or None
        cfg["rope_theta"] = a.rope_theta
    if a.arch == "mixtral":
        cfg["num_local_experts"] = a.num_experts
        cfg["num_experts_per_tok"] = a.num_experts_per_tok
        cfg["output_router_logits"] = False
        cfg["router_aux_loss_coef"] = 0.02
        cfg["router_jitter_noise"] = 0.0
    if a.arch in DEEPSEEK:
        cfg.update({
            "q_lora_rank": a.q_lora_rank or None,
            "kv_lora_rank": a.kv_lora_rank,
            "qk_nope_head_dim": a.qk_nope_head_dim,
            "qk_rope_head_dim": a.qk_rope_head_dim,
            "v_head_dim": a.v_head_dim,
            "n_routed_experts": a.num_experts,
            "n_shared_experts": a.n_shared_experts or None,
            "num_experts_per_tok": a.num_experts_per_tok,
            "moe_intermediate_size": a.moe_intermediate_size,
            "first_k_dense_replace": a.first_k_dense_replace,
            "moe_layer_freq": a.moe_layer_freq,
            "topk_method": a.topk_method,
            "scoring_func": a.scoring_func,
            "norm_topk_prob": bool(a.norm_topk_prob),
            "routed_scaling_factor": a.routed_scaling_factor,
            "n_group": a.n_group,
            "topk_group": a.topk_group,
            "attention_bias": False,
            "aux_loss_alpha": 0.001,
            "seq_aux": True,
            "pretraining_tp": 1,
        })
        if a.arch == "deepseek_v3":
            cfg["ep_size"] = 1
            cfg["num_nextn_predict_layers"] = a.num_nextn_predict_layers
    if a.arch == "qwen2_moe":
        cfg["shared_expert_intermediate_size"] = a.shared_expert_intermediate_size
        cfg["qkv_bias"] = True
    if a.arch in ("qwen3_moe", "qwen2_moe"):
        cfg["num_experts"] = a.num_experts
        cfg["num_experts_per_tok"] = a.num_experts_per_tok
        cfg["moe_intermediate_size"] = a.moe_intermediate_size
        cfg["norm_topk_prob"] = bool(a.norm_topk_prob)
        cfg["decoder_sparse_step"] = a.decoder_sparse_step
        cfg["mlp_only_layers"] = list(a.mlp_only_layers)
        cfg["output_router_logits"] = False
        cfg["router_aux_loss_coef"] = 0.001
    if a.rope_scaling == "llama3":
        cfg["rope_scaling"] = {
            "rope_type": "llama3",
            "factor": a.rope_factor,
            "low_freq_factor": a.low_freq_factor,
            "high_freq_factor": a.high_freq_factor,
            "original_max_position_embeddings": a.original_max_position_embeddings,
        }
    elif a.rope_scaling == "linear":
        cfg["rope_scaling"] = {"rope_type": "linear", "factor": a.rope_factor}
    elif a.rope_scaling == "yarn" and a.arch == "gpt_oss":
        # As the gpt-oss configs carry it (every key written, truncate false by default).
        cfg["rope_scaling"] = {"rope_type": "yarn", "factor": a.rope_factor, "beta_fast": a.beta_fast,
                               "beta_slow": a.beta_slow, "truncate": a.yarn_truncate == "true",
                               "original_max_position_embeddings": a.original_max_position_embeddings}
    elif a.rope_scaling == "yarn" and a.arch not in DEEPSEEK:
        # As the Qwen2.5 / Qwen3 model cards add it (transformers' "yarn" rope_type); beta_fast / beta_slow
        # only when given, so that the defaults (32 / 1) are exercised otherwise.
        cfg["rope_scaling"] = {"rope_type": "yarn", "factor": a.rope_factor,
                               "original_max_position_embeddings": a.original_max_position_embeddings}
        for key in ("beta_fast", "beta_slow"):
            if key in a.explicit:
                cfg["rope_scaling"][key] = getattr(a, key)
    elif a.rope_scaling == "yarn":
        # DeepSeek's own key names ("type", not "rope_type").
        cfg["rope_scaling"] = {
            "type": "yarn",
            "factor": a.rope_factor,
            "original_max_position_embeddings": a.original_max_position_embeddings,
            "beta_fast": a.beta_fast,
            "beta_slow": a.beta_slow,
            "mscale": a.yarn_mscale,
            "mscale_all_dim": a.yarn_mscale_all_dim,
        }
    return cfg


def llama4_config(a, cfg):
    """Llama4TextConfig's keys as the Llama 4 Scout release writes them (no_rope_layers and moe_layers listed)."""
    step = a.interleave_moe_layer_step
    cfg.update({"head_dim": a.head_dim, "intermediate_size_mlp": a.intermediate_size_mlp,
                "num_local_experts": a.num_experts, "num_experts_per_tok": a.num_experts_per_tok,
                "interleave_moe_layer_step": step, "moe_layers": list(range(step - 1, a.num_hidden_layers, step)),
                "no_rope_layers": [int((i + 1) % 4 != 0) for i in range(a.num_hidden_layers)],
                "attention_chunk_size": a.attention_chunk_size, "attn_temperature_tuning": 4,
                "floor_scale": a.floor_scale, "attn_scale": a.attn_scale, "use_qk_norm": not a.no_qk_norm,
                "attention_bias": False, "router_aux_loss_coef": 0.001, "router_jitter_noise": 0.0,
                "output_router_logits": False, "for_llm_compressor": False, "pad_token_id": 0})


def llama4_layer_mlp(a, p, i):
    """Llama 4's feed_forward: Llama4TextMoe (router, stacked input-major experts, shared expert) on the
    interleave_moe_layer_step-th layers, a dense MLP intermediate_size_mlp wide on the others."""
    h, f = a.hidden_size, a.intermediate_size
    q = p + "feed_forward."
    if (i + 1) % a.interleave_moe_layer_step:
        return mlp_tensors(q, a.intermediate_size_mlp, h)
    # Router logits spread over several units so near-ties between experts are rare.
    return [TensorSpec(q + "router.weight", (a.num_experts, h), "normal", 4.0 / np.sqrt(h)),
            TensorSpec(q + "experts.gate_up_proj", (a.num_experts, h, 2 * f), "normal", 1.0 / np.sqrt(h)),
            TensorSpec(q + "experts.down_proj", (a.num_experts, f, h), "normal", 1.0 / np.sqrt(f))] + \
        mlp_tensors(q + "shared_expert.", f, h)


def gpt_oss_config(a, cfg):
    """GptOssConfig's keys as openai/gpt-oss-20b's config.json carries them (its experts_per_token and
    initial_context_length too, which transformers does not read); with --mxfp4 the quantization_config
    of the published MXFP4 checkpoints."""
    cfg.update({
        "head_dim": a.head_dim,
        "num_local_experts": a.num_experts,
        "num_experts_per_tok": a.num_experts_per_tok,
        "experts_per_token": a.num_experts_per_tok,
        "sliding_window": a.sliding_window,
        "layer_types": gemma_layer_types(a),
        "attention_bias": True,
        "swiglu_limit": a.swiglu_limit,
        "initial_context_length": a.original_max_position_embeddings,
        "router_aux_loss_coef": 0.9,
        "output_router_logits": False,
        "pad_token_id": a.eos_token_id if isinstance(a.eos_token_id, int) else a.eos_token_id[0],
        "transformers_version": "4.55.0",
    })
    if a.mxfp4:
        cfg["quantization_config"] = {
            "quant_method": "mxfp4",
            "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                       "model.embed_tokens", "lm_head"]}


# MXFP4 (OCP microscaling FP4): E2M1 codes, 32 per block sharing one E8M0 scale 2^(s - 127).
FP4_VALUES = np.array([+0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0,
                       -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32)


class MxfpExperts:
    """One gpt-oss expert projection drawn as the MXFP4 checkpoints store it: blocks uint8
    [E, rows, cols / 32, 16] (byte b of a block: element 2b in the low nibble, 2b + 1 in the high one)
    and scales uint8 [E, rows, cols / 32], W[e] = [rows (out), cols (in)]. The same draw gives the dense
    tensor [E, cols, rows] (x @ W, transformers' layout after convert_moe_packed_tensors), so a dense
    and an --mxfp4 folder of one seed hold the same expert weights exactly. Scale exponents are drawn
    from exps (inclusive), per 32-value block."""

    def __init__(self, layer, proj, n_experts, rows, cols, exps):
        self.layer, self.proj, self.shape = layer, proj, (n_experts, rows, cols)
        self.exps = exps

    def draw(self, seed):
        e, rows, cols = self.shape
        rng = np.random.default_rng([seed, 0x4D58, self.layer, ("gate_up", "down").index(self.proj)])
        codes = rng.integers(0, 16, size=(e, rows, cols // 32, 32), dtype=np.uint8)
        blocks = (codes[..., 0::2] | (codes[..., 1::2] << np.uint8(4))).astype(np.uint8)
        scales = (127 + rng.integers(self.exps[0], self.exps[1] + 1, size=(e, rows, cols // 32))).astype(np.uint8)
        return blocks, scales

    def dense(self, seed):
        blocks, scales = self.draw(seed)
        e, rows, cols = self.shape
        vals = np.empty(blocks.shape[:-1] + (32,), dtype=np.float32)
        vals[..., 0::2] = FP4_VALUES[blocks & 0x0F]
        vals[..., 1::2] = FP4_VALUES[blocks >> 4]
        vals = np.ldexp(vals, scales.astype(np.int32)[..., None] - 127)
        return np.ascontiguousarray(vals.reshape(e, rows, cols).transpose(0, 2, 1))


def gpt_oss_tensors(a):
    """GptOssForCausalLM in HF naming. Per layer: q/k/v/o projections with biases (q / k at 1 / sqrt(hidden),
    biases 0.3: with YaRN's cos/sin factor on both, Llama's 1.5 / sqrt(hidden) and 0.5 biases make attention
    so peaked that a bf16 runtime's legitimate error doubles), sinks [heads] drawn uniform in [0, 3]
    (against scores of a few units they take a visible share of the softmax), the router (weight
    [E, hidden] spread over several units, bias), and the experts: dense gate_up_proj
    [E, hidden, 2 I] (columns: gate i at 2i, up i at 2i + 1), gate_up_proj_bias [E, 2 I], down_proj
    [E, I, hidden], down_proj_bias [E, hidden], or with --mxfp4 the *_blocks / *_scales (U8) of the
    published checkpoints in place of gate_up_proj and down_proj (biases stay in the folder dtype).
    Expert weights: gate_up ~0.2 rms (exponents 2^-6..2^-3), so gate / up have std ~2 and the tiny
    swiglu_limit of 3 clips ~8% of the gates and ~16% of the ups; down ~0.05 rms (2^-8..2^-5) keeps each
    expert's output O(1)."""
    h, hd, f = a.hidden_size, a.head_dim, a.intermediate_size
    nq, nkv, ne = a.num_attention_heads, a.num_key_value_heads, a.num_experts
    t = [TensorSpec("model.embed_tokens.weight", (a.vocab_size, h), "normal", 1.0)]
    for i in range(a.num_hidden_layers):
        p = f"model.layers.{i}."
        t.append(TensorSpec(p + "input_layernorm.weight", (h,), "norm"))
        t.append(TensorSpec(p + "self_attn.q_proj.weight", (nq * hd, h), "normal", 1.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "self_attn.q_proj.bias", (nq * hd,), "normal", 0.3))
        t.append(TensorSpec(p + "self_attn.k_proj.weight", (nkv * hd, h), "normal", 1.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "self_attn.k_proj.bias", (nkv * hd,), "normal", 0.3))
        t.append(TensorSpec(p + "self_attn.v_proj.weight", (nkv * hd, h), "normal", 1.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "self_attn.v_proj.bias", (nkv * hd,), "normal", 0.3))
        t.append(TensorSpec(p + "self_attn.o_proj.weight", (h, nq * hd), "normal", 1.0 / np.sqrt(nq * hd)))
        t.append(TensorSpec(p + "self_attn.o_proj.bias", (h,), "normal", 0.3))
        t.append(TensorSpec(p + "self_attn.sinks", (nq,), "uniform", 3.0, loc=0.0))
        t.append(TensorSpec(p + "post_attention_layernorm.weight", (h,), "norm"))
        t.append(TensorSpec(p + "mlp.router.weight", (ne, h), "normal", 4.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "mlp.router.bias", (ne,), "normal", 0.5))
        q = p + "mlp.experts."
        gate_up = MxfpExperts(i, "gate_up", ne, 2 * f, h, (-6, -3))
        down = MxfpExperts(i, "down", ne, h, f, (-8, -5))
        for name, mx, bias in (("gate_up_proj", gate_up, (ne, 2 * f)), ("down_proj", down, (ne, h))):
            e, rows, cols = mx.shape
            if a.mxfp4:
                t.append(TensorSpec(q + name + "_blocks", (e, rows, cols // 32, 16), "mxfp4_blocks", dtype="u8",
                                    mx=mx))
                t.append(TensorSpec(q + name + "_scales", (e, rows, cols // 32), "mxfp4_scales", dtype="u8", mx=mx))
            else:
                t.append(TensorSpec(q + name, (e, cols, rows), "mxfp4_dense", mx=mx))
            t.append(TensorSpec(q + name + "_bias", bias, "normal", 0.5))
    t.append(TensorSpec("model.norm.weight", (h,), "norm"))
    if not a.tie_word_embeddings:
        t.append(TensorSpec("lm_head.weight", (a.vocab_size, h), "normal", 2.5 / np.sqrt(h)))
    return t


def phi3_rotary_dim(a):
    """Phi3Config / modeling_rope_utils: int(head_dim * partial_rotary_factor) leading dims of a head rotate."""
    return int(a.head_dim * a.partial_rotary_factor)


def longrope_factors(n, seed):
    """(short_factor, long_factor), n values each, drawn from the seed and shaped like the published
    lists: short ones in [1.0, 1.3], long ones rising with the pair index from about 1 to about 12 (the
    highest frequencies are stretched least). Phi-3.5-mini's long factors run from ~1.08 to ~60."""
    rng = np.random.default_rng([seed, 4099])
    short = np.sort(1.0 + 0.3 * rng.uniform(size=n))
    long = np.geomspace(1.0, 12.0, n) * np.exp(rng.normal(0.0, 0.05, size=n))
    long = np.maximum.accumulate(np.maximum(long, 1.0))
    return [round(float(x), 6) for x in short], [round(float(x), 6) for x in long]


def phi3_config(a, cfg):
    """Phi3Config's keys as the published Phi-3 / Phi-4 configs carry them. rope_scaling, when LongRoPE,
    has exactly the three keys type / short_factor / long_factor: transformers 4.x's Phi3Config refuses
    any other set (and renames the legacy type "su" to "longrope")."""
    cfg.update({
        "original_max_position_embeddings": a.original_max_position_embeddings,
        "partial_rotary_factor": a.partial_rotary_factor,
        "sliding_window": a.sliding_window or None,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        # Phi3Config's default pad id (32000) would lie outside a small vocabulary; Phi-3 and Phi-4-mini
        # pad with their end-of-text id.
        "pad_token_id": a.eos_token_id if isinstance(a.eos_token_id, int) else a.eos_token_id[0],
    })
    if a.rope_scaling == "longrope":
        short, long = longrope_factors(phi3_rotary_dim(a) // 2, a.seed)
        cfg["rope_scaling"] = {"type": a.longrope_type_name, "short_factor": short, "long_factor": long}


def gemma_layer_types(a):
    """--layer-types (s / f / sliding / full / *_attention, comma-separated), else every
    sliding_window_pattern-th layer full, transformers' rule: layer i full when (i + 1) % pattern == 0."""
    if a.layer_types:
        names = {"s": "sliding_attention", "sliding": "sliding_attention", "sliding_attention": "sliding_attention",
                 "f": "full_attention", "full": "full_attention", "full_attention": "full_attention"}
        return [names[x.strip()] for x in a.layer_types.split(",")]
    return ["sliding_attention" if (i + 1) % a.sliding_window_pattern else "full_attention"
            for i in range(a.num_hidden_layers)]


def gemma_common_config(a, cfg):
    """The keys Gemma2Config and Gemma3TextConfig share, as the published configs carry them (no
    hidden_act: Gemma reads hidden_activation)."""
    del cfg["hidden_act"]
    cfg.update({
        "head_dim": a.head_dim,
        "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": int(a.query_pre_attn_scalar) if float(a.query_pre_attn_scalar).is_integer()
        else a.query_pre_attn_scalar,
        "sliding_window": a.sliding_window,
        "attention_bias": False,
        "attn_logit_softcapping": a.attn_logit_softcapping,
        "final_logit_softcapping": a.final_logit_softcapping,
        "pad_token_id": 0,
        "cache_implementation": "hybrid",
    })


def gemma2_config(a, cfg):
    """Gemma 2, with transformers' layer_types (layer i sliding when i is even) unless
    --gemma-layer-config pattern (older configs: no list)."""
    gemma_common_config(a, cfg)
    if a.gemma_layer_config in ("layer_types", "both"):
        cfg["layer_types"] = gemma_layer_types(a)


def gemma_config(a, cfg):
    """Gemma 3 text, with its local RoPE base (attn_logit_softcapping null, as in Gemma 3 configs)."""
    gemma_common_config(a, cfg)
    cfg["rope_local_base_freq"] = a.rope_local_base_freq
    if a.gemma_layer_config in ("layer_types", "both"):
        cfg["layer_types"] = gemma_layer_types(a)
    if a.gemma_layer_config in ("pattern", "both"):
        cfg["sliding_window_pattern"] = a.sliding_window_pattern


# Qwen2.5-VL's vision tower, tiny: 3 blocks (block 1 attends over the whole image, the others within
# 112-pixel windows), head_dim 16. Image token ids as in the published Qwen2.5-VL configs.
VISION_TINY = dict(depth=3, hidden_size=32, intermediate_size=48, num_heads=2, patch_size=14,
                   spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1],
                   tokens_per_second=2, in_chans=3, hidden_act="silu")
VISION_TOKENS = dict(vision_start_token_id=151652, vision_end_token_id=151653, vision_token_id=151654,
                     image_token_id=151655, video_token_id=151656)


def mrope_section(head_dim):
    """Temporal / height / width shares of the head_dim / 2 rotary frequencies, in the proportions of
    the published configs ([16, 24, 24] for head_dim 128)."""
    half = head_dim // 2
    t = max(1, half // 4)
    h = (half - t) // 2
    return [t, h, half - t - h]


def vision_model_config(a):
    vc = dict(VISION_TINY)
    vc["out_hidden_size"] = a.hidden_size
    vc["model_type"] = "qwen2_5_vl"
    out = {"vision_config": vc,
           "rope_scaling": {"type": "mrope", "mrope_section": mrope_section(a.head_dim)}}
    out.update(VISION_TOKENS)
    return out


def vision_tensors():
    """Qwen2.5-VL's vision tower in HF naming (visual.*)."""
    v = VISION_TINY
    d, f, c = v["hidden_size"], v["intermediate_size"], v["in_chans"]
    k = c * v["temporal_patch_size"] * v["patch_size"] ** 2
    m = d * v["spatial_merge_size"] ** 2
    t = [TensorSpec("visual.patch_embed.proj.weight",
                    (d, c, v["temporal_patch_size"], v["patch_size"], v["patch_size"]), "normal", 1.0 / np.sqrt(k))]
    for i in range(v["depth"]):
        p = f"visual.blocks.{i}."
        t.append(TensorSpec(p + "norm1.weight", (d,), "norm"))
        t.append(TensorSpec(p + "norm2.weight", (d,), "norm"))
        t.append(TensorSpec(p + "attn.qkv.weight", (3 * d, d), "normal", 1.5 / np.sqrt(d)))
        t.append(TensorSpec(p + "attn.qkv.bias", (3 * d,), "normal", 0.3))
        t.append(TensorSpec(p + "attn.proj.weight", (d, d), "normal", 1.0 / np.sqrt(d)))
        t.append(TensorSpec(p + "attn.proj.bias", (d,), "normal", 0.2))
        for n, shape, fan in (("gate_proj", (f, d), d), ("up_proj", (f, d), d), ("down_proj", (d, f), f)):
            t.append(TensorSpec(p + f"mlp.{n}.weight", shape, "normal", 1.0 / np.sqrt(fan)))
            t.append(TensorSpec(p + f"mlp.{n}.bias", (shape[0],), "normal", 0.2))
    t.append(TensorSpec("visual.merger.ln_q.weight", (d,), "norm"))
    t.append(TensorSpec("visual.merger.mlp.0.weight", (m, m), "normal", 1.0 / np.sqrt(m)))
    t.append(TensorSpec("visual.merger.mlp.0.bias", (m,), "normal", 0.2))
    t.append(TensorSpec("visual.merger.mlp.2.weight", (VISION_TINY_OUT[0], m), "normal", 1.0 / np.sqrt(m)))
    t.append(TensorSpec("visual.merger.mlp.2.bias", (VISION_TINY_OUT[0],), "normal", 0.2))
    return t


VISION_TINY_OUT = [0]  # out_hidden_size (the LM hidden size), set before vision_tensors() runs

# Qwen2-VL's chat format (ChatML; a default system turn; each image content part becomes
# <|vision_start|><|image_pad|><|vision_end|>, which the server expands to the image's tokens).
VL_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{%- endif -%}"
    "<|im_start|>{{ message['role'] }}\n"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or part['type'] == 'image_url' -%}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "<|im_end|>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}")


def write_vl_files(out, tokenizer_dir):
    """preprocessor_config.json, and the real Qwen tokenizer (copied from tokenizer_dir) with the
    chat template above: the folder is then all `dpserve serve` needs."""
    pre = {"image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
           "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True,
           "rescale_factor": 1 / 255, "resample": 3,
           "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
           "min_pixels": 3136, "max_pixels": 12845056, "patch_size": VISION_TINY["patch_size"],
           "temporal_patch_size": VISION_TINY["temporal_patch_size"],
           "merge_size": VISION_TINY["spatial_merge_size"]}
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f, indent=2)
        f.write("\n")
    if tokenizer_dir is None:
        return
    with open(os.path.join(tokenizer_dir, "tokenizer.json"), "rb") as src, \
            open(os.path.join(out, "tokenizer.json"), "wb") as dst:
        dst.write(src.read())
    with open(os.path.join(tokenizer_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        tc = json.load(f)
    tc["chat_template"] = VL_CHAT_TEMPLATE
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tc, f, indent=2, ensure_ascii=False)
        f.write("\n")


def is_sparse_layer(a, layer):
    if a.num_experts <= 0:
        return False
    if a.arch in ("mixtral", "olmoe", "minimax_m2"):
        return True
    if a.arch == "ernie4_5_moe":  # moe_layer_start_index, moe_layer_interval (moe_layer_end_index: the last layer)
        return layer >= a.first_k_dense_replace and (layer + 1) % a.decoder_sparse_step == 0
    if a.arch in DEEPSEEK + ("glm4_moe",):
        # DeepSeek: dense before first_k_dense_replace, then every moe_layer_freq-th layer (GLM: every layer).
        return layer >= a.first_k_dense_replace and layer % a.moe_layer_freq == 0
    # Qwen3-MoE rule: sparse unless listed in mlp_only_layers, and only every decoder_sparse_step-th.
    return layer not in a.mlp_only_layers and (layer + 1) % a.decoder_sparse_step == 0


def mlp_tensors(prefix, f, h, names=("gate_proj", "up_proj", "down_proj")):
    gate, up, down = names
    return [TensorSpec(f"{prefix}{gate}.weight", (f, h), "normal", 1.0 / np.sqrt(h)),
            TensorSpec(f"{prefix}{up}.weight", (f, h), "normal", 1.0 / np.sqrt(h)),
            TensorSpec(f"{prefix}{down}.weight", (h, f), "normal", 1.0 / np.sqrt(f))]


def mla_tensors(a, p):
    """DeepSeek-V2/V3 attention, HF names and shapes."""
    h, nq = a.hidden_size, a.num_attention_heads
    qd = a.qk_nope_head_dim + a.qk_rope_head_dim
    r, rd = a.kv_lora_rank, a.qk_rope_head_dim
    t = []
    if a.q_lora_rank:
        t.append(TensorSpec(p + "self_attn.q_a_proj.weight", (a.q_lora_rank, h), "normal", 1.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "self_attn.q_a_layernorm.weight", (a.q_lora_rank,), "norm"))
        t.append(TensorSpec(p + "self_attn.q_b_proj.weight", (nq * qd, a.q_lora_rank), "normal",
                            1.5 / np.sqrt(a.q_lora_rank)))
    else:
        t.append(TensorSpec(p + "self_attn.q_proj.weight", (nq * qd, h), "normal", 1.5 / np.sqrt(h)))
    t.append(TensorSpec(p + "self_attn.kv_a_proj_with_mqa.weight", (r + rd, h), "normal", 1.5 / np.sqrt(h)))
    t.append(TensorSpec(p + "self_attn.kv_a_layernorm.weight", (r,), "norm"))
    t.append(TensorSpec(p + "self_attn.kv_b_proj.weight", (nq * (a.qk_nope_head_dim + a.v_head_dim), r), "normal",
                        1.5 / np.sqrt(r)))
    t.append(TensorSpec(p + "self_attn.o_proj.weight", (h, nq * a.v_head_dim), "normal",
                        1.0 / np.sqrt(nq * a.v_head_dim)))
    return t


def deepseek_layer_body(a, i):
    """A DeepSeek decoder layer's tensors after input_layernorm: MLA, post_attention_layernorm and the
    MoE or dense MLP that layer index i gets."""
    h, p = a.hidden_size, f"model.layers.{i}."
    t = mla_tensors(a, p)
    t.append(TensorSpec(p + "post_attention_layernorm.weight", (h,), "norm"))
    if is_sparse_layer(a, i):
        # Router logits spread over several units so near-ties between experts are rare.
        t.append(TensorSpec(p + "mlp.gate.weight", (a.num_experts, h), "normal", 4.0 / np.sqrt(h)))
        if a.topk_method == "noaux_tc":
            # Non-negative, so sigmoid + bias never drops below the 0 that masked groups get.
            t.append(TensorSpec(p + "mlp.gate.e_score_correction_bias", (a.num_experts,), "bias"))
        for e in range(a.num_experts):
            t += mlp_tensors(f"{p}mlp.experts.{e}.", a.moe_intermediate_size, h)
        if a.n_shared_experts:
            t += mlp_tensors(p + "mlp.shared_experts.", a.moe_intermediate_size * a.n_shared_experts, h)
    else:
        t += mlp_tensors(p + "mlp.", a.intermediate_size, h)
    return t


def layer_tensors(a, i):
    """Decoder layer i's tensors, for build_tensors' families (not Gemma, Phi-3, gpt-oss or GLM-4)."""
    h, hd = a.hidden_size, a.head_dim
    nq, nkv = a.num_attention_heads, a.num_key_value_heads
    p = f"model.layers.{i}."
    t = []
    if a.arch not in ("olmo2", "olmo3", "exaone4"):  # OLMo 2 has no input norm
        t.append(TensorSpec(p + "input_layernorm.weight", (h,), "norm"))
    if a.arch in DEEPSEEK:
        return t + deepseek_layer_body(a, i)
    t.append(TensorSpec(p + "self_attn.q_proj.weight", (nq * hd, h), "normal", 1.5 / np.sqrt(h)))
    t.append(TensorSpec(p + "self_attn.k_proj.weight", (nkv * hd, h), "normal", 1.5 / np.sqrt(h)))
    t.append(TensorSpec(p + "self_attn.v_proj.weight", (nkv * hd, h), "normal", 1.0 / np.sqrt(h)))
    if a.arch in ("qwen2", "qwen2_5_vl", "qwen2_moe", "glm4_moe", "seed_oss"):
        t.append(TensorSpec(p + "self_attn.q_proj.bias", (nq * hd,), "normal", 0.5))
        t.append(TensorSpec(p + "self_attn.k_proj.bias", (nkv * hd,), "normal", 0.5))
        t.append(TensorSpec(p + "self_attn.v_proj.bias", (nkv * hd,), "normal", 0.3))
    t.append(TensorSpec(p + "self_attn.o_proj.weight", (h, nq * hd), "normal", 1.0 / np.sqrt(nq * hd)))
    if a.arch == "seed_oss" and a.attention_out_bias:
        t.append(TensorSpec(p + "self_attn.o_proj.bias", (h,), "normal", 0.3))
    if a.arch in ("qwen3", "qwen3_moe", "exaone4") or (a.arch == "glm4_moe" and a.use_qk_norm):
        t.append(TensorSpec(p + "self_attn.q_norm.weight", (hd,), "norm"))
        t.append(TensorSpec(p + "self_attn.k_norm.weight", (hd,), "norm"))
    if a.arch in ("olmo2", "olmo3", "olmoe", "minimax_m2"):
        t.append(TensorSpec(p + "self_attn.q_norm.weight", (nq * hd,), "norm"))
        t.append(TensorSpec(p + "self_attn.k_norm.weight", (nkv * hd,), "norm"))
    t.append(TensorSpec(p + "post_attention_layernorm.weight", (h,), "norm"))
    if a.arch in ("olmo2", "olmo3", "exaone4"):
        t.append(TensorSpec(p + "post_feedforward_layernorm.weight", (h,), "norm"))
    if a.arch == "mixtral":
        t.append(TensorSpec(p + "block_sparse_moe.gate.weight", (a.num_experts, h), "normal", 4.0 / np.sqrt(h)))
        for e in range(a.num_experts):
            t += mlp_tensors(f"{p}block_sparse_moe.experts.{e}.", a.intermediate_size, h, ("w1", "w3", "w2"))
    elif a.arch == "minimax_m2":
        q = f"{p}block_sparse_moe."
        t.append(TensorSpec(q + "gate.weight", (a.num_experts, h), "normal", 4.0 / np.sqrt(h)))
        # fp32 as released (modules_to_not_convert); non-negative as the released biases are.
        t.append(TensorSpec(q + "e_score_correction_bias", (a.num_experts,), "bias", dtype="f32"))
        for e in range(a.num_experts):
            t += mlp_tensors(f"{q}experts.{e}.", a.intermediate_size, h, ("w1", "w3", "w2"))
    elif a.arch == "llama4":
        t += llama4_layer_mlp(a, p, i)
    elif a.arch == "granite_moe":
        f, e = a.intermediate_size, a.num_experts
        q = f"{p}block_sparse_moe."
        t.append(TensorSpec(q + "router.layer.weight", (e, h), "normal", 4.0 / np.sqrt(h)))
        t.append(TensorSpec(q + "input_linear.weight", (e, 2 * f, h), "normal", 1.0 / np.sqrt(h)))
        t.append(TensorSpec(q + "output_linear.weight", (e, h, f), "normal", 1.0 / np.sqrt(f)))
    elif a.arch == "glm4_moe" and is_sparse_layer(a, i):
        f = a.moe_intermediate_size
        t.append(TensorSpec(p + "mlp.gate.weight", (a.num_experts, h), "normal", 4.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "mlp.gate.e_score_correction_bias", (a.num_experts,), "bias"))
        for e in range(a.num_experts):
            t += mlp_tensors(f"{p}mlp.experts.{e}.", f, h)
        t += mlp_tensors(p + "mlp.shared_experts.", f * a.n_shared_experts, h)
    elif a.arch == "ernie4_5_moe" and is_sparse_layer(a, i):
        f = a.moe_intermediate_size
        t.append(TensorSpec(p + "mlp.gate.weight", (a.num_experts, h), "normal", 4.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "mlp.moe_statics.e_score_correction_bias", (1, a.num_experts), "bias"))
        for e in range(a.num_experts):
            t += mlp_tensors(f"{p}mlp.experts.{e}.", f, h)
        t += mlp_tensors(p + "mlp.shared_experts.", f * a.n_shared_experts, h)
    elif a.arch in ("qwen3_moe", "qwen2_moe", "olmoe") and is_sparse_layer(a, i):
        f = a.intermediate_size if a.arch == "olmoe" else a.moe_intermediate_size
        # Router logits spread over several units so near-ties between experts are rare.
        t.append(TensorSpec(p + "mlp.gate.weight", (a.num_experts, h), "normal", 4.0 / np.sqrt(h)))
        for e in range(a.num_experts):
            q = f"{p}mlp.experts.{e}."
            t.append(TensorSpec(q + "gate_proj.weight", (f, h), "normal", 1.0 / np.sqrt(h)))
            t.append(TensorSpec(q + "up_proj.weight", (f, h), "normal", 1.0 / np.sqrt(h)))
            t.append(TensorSpec(q + "down_proj.weight", (h, f), "normal", 1.0 / np.sqrt(f)))
        if a.arch == "qwen2_moe":  # the shared expert and its gate (logits of a few units: sigmoid not saturated)
            t += mlp_tensors(p + "mlp.shared_expert.", a.shared_expert_intermediate_size, h)
            t.append(TensorSpec(p + "mlp.shared_expert_gate.weight", (1, h), "normal", 1.0 / np.sqrt(h)))
    else:
        f = a.intermediate_size
        t.append(TensorSpec(p + "mlp.gate_proj.weight", (f, h), "normal", 1.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "mlp.up_proj.weight", (f, h), "normal", 1.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "mlp.down_proj.weight", (h, f), "normal", 1.0 / np.sqrt(f)))
    return t


def build_tensors(a):
    """Tensor list in HF naming. Scales keep activations O(1): matrices ~ N(0, 1/fan_in) (q/k a bit
    larger so attention is not uniform), norm weights spread around 1 (a skipped norm weight shows),
    biases clearly nonzero, LM head scaled so logits spread over several units."""
    h, hd = a.hidden_size, a.head_dim
    nq, nkv = a.num_attention_heads, a.num_key_value_heads
    if a.arch in ("gemma2", "gemma3"):
        return gemma_tensors(a)
    if a.arch == "phi3":
        return phi3_tensors(a)
    if a.arch == "gpt_oss":
        return gpt_oss_tensors(a)
    if a.arch == "glm4":
        return glm4_tensors(a)
    t = [TensorSpec("model.embed_tokens.weight", (a.vocab_size, h), "normal", 1.0)]
    for i in range(a.num_hidden_layers):
        t += layer_tensors(a, i)
    t.append(TensorSpec("model.norm.weight", (h,), "norm"))
    if not a.tie_word_embeddings:
        t.append(TensorSpec("lm_head.weight", (a.vocab_size, h), "normal", 2.5 / np.sqrt(h)))
    # DeepSeek-V3's and GLM-4.5's multi-token-prediction layers, as their checkpoints store them: layer indices from
    # num_hidden_layers on, each a decoder layer plus the embedding copy, enorm / hnorm, eh_proj and
    # shared_head. Appended last, so the main model's values do not depend on them.
    for i in range(a.num_hidden_layers, a.num_hidden_layers + a.num_nextn_predict_layers):
        p = f"model.layers.{i}."
        t.append(TensorSpec(p + "embed_tokens.weight", (a.vocab_size, h), "normal", 1.0,
                            same_as="model.embed_tokens.weight"))
        t.append(TensorSpec(p + "enorm.weight", (h,), "norm"))
        t.append(TensorSpec(p + "hnorm.weight", (h,), "norm"))
        if a.nextn_echo:
            t.append(TensorSpec(p + "eh_proj.weight", (h, 2 * h), "eye"))
        else:
            t.append(TensorSpec(p + "eh_proj.weight", (h, 2 * h), "normal", 1.0 / np.sqrt(2 * h)))
        t += layer_tensors(a, i)
        t.append(TensorSpec(p + "shared_head.norm.weight", (h,), "norm"))
        if a.nextn_echo:
            t.append(TensorSpec(p + "shared_head.head.weight", (a.vocab_size, h), "normal", 1.0,
                                same_as="model.embed_tokens.weight"))
        else:
            t.append(TensorSpec(p + "shared_head.head.weight", (a.vocab_size, h), "normal", 2.5 / np.sqrt(h)))
    if a.arch == "qwen2_5_vl":
        VISION_TINY_OUT[0] = h
        t += vision_tensors()
    return t


def fused_mlp_tensors(p, f, h):
    """Phi-3's and GLM-4's MLP: gate and up rows fused in gate_up_proj (gate first), then down_proj."""
    return [TensorSpec(p + "mlp.gate_up_proj.weight", (2 * f, h), "normal", 1.0 / np.sqrt(h)),
            TensorSpec(p + "mlp.down_proj.weight", (h, f), "normal", 1.0 / np.sqrt(f))]


def final_tensors(a):
    """The final norm and, untied, the LM head."""
    h = a.hidden_size
    t = [TensorSpec("model.norm.weight", (h,), "norm")]
    if not a.tie_word_embeddings:
        t.append(TensorSpec("lm_head.weight", (a.vocab_size, h), "normal", 2.5 / np.sqrt(h)))
    return t


def glm4_tensors(a):
    """Glm4ForCausalLM in HF naming: four norms a layer (input_layernorm, post_self_attn_layernorm on the attention
    output, post_attention_layernorm before the MLP, post_mlp_layernorm on its output), q/k/v biases, the MLP's gate
    and up rows fused in gate_up_proj (gate first)."""
    h, hd, nq, nkv, f = a.hidden_size, a.head_dim, a.num_attention_heads, a.num_key_value_heads, a.intermediate_size
    t = [TensorSpec("model.embed_tokens.weight", (a.vocab_size, h), "normal", 1.0)]
    for i in range(a.num_hidden_layers):
        p = f"model.layers.{i}."
        t.append(TensorSpec(p + "input_layernorm.weight", (h,), "norm"))
        t.append(TensorSpec(p + "self_attn.q_proj.weight", (nq * hd, h), "normal", 1.5 / np.sqrt(h)))
        t.append(TensorSpec(p + "self_attn.k_proj.weight", (nkv * hd, h), "normal", 1.5 / np.sqrt(h)))
        t.append(TensorSpec(p + "self_attn.v_proj.weight", (nkv * hd, h), "normal", 1.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "self_attn.q_proj.bias", (nq * hd,), "normal", 0.5))
        t.append(TensorSpec(p + "self_attn.k_proj.bias", (nkv * hd,), "normal", 0.5))
        t.append(TensorSpec(p + "self_attn.v_proj.bias", (nkv * hd,), "normal", 0.3))
        t.append(TensorSpec(p + "self_attn.o_proj.weight", (h, nq * hd), "normal", 1.0 / np.sqrt(nq * hd)))
        for n in ("post_self_attn_layernorm", "post_attention_layernorm", "post_mlp_layernorm"):
            t.append(TensorSpec(p + n + ".weight", (h,), "norm"))
        t += fused_mlp_tensors(p, f, h)
    return t + final_tensors(a)


def gemma_tensors(a):
    """Gemma3ForCausalLM in HF naming. Norm weights are offsets from 1 (Gemma scales by 1 + w; HF
    initialises them to 0): drawn N(0, 0.25) so a missing "+1" or a missing norm shows (q_norm /
    k_norm too: centred higher, they make attention peakier and the bf16 rounding error of a correct
    runtime grows with it, to max 0.09 x the logit std at +0.5). The embedding is N(0, (0.5 / sqrt(h))^2): after
    Gemma's sqrt(h) scale the residual stream starts at rms 0.5, below what each layer adds (its
    post-norms output rms ~1), because with a larger share the tied LM head makes every position
    predict its own token. The final norm's offsets are around 3 (a scale of ~4, as trained Gemmas
    have large final-norm weights), which spreads the logits over a few units."""
    h, hd = a.hidden_size, a.head_dim
    nq, nkv, f = a.num_attention_heads, a.num_key_value_heads, a.intermediate_size
    t = [TensorSpec("model.embed_tokens.weight", (a.vocab_size, h), "normal", 0.5 / np.sqrt(h))]
    for i in range(a.num_hidden_layers):
        p = f"model.layers.{i}."
        t.append(TensorSpec(p + "input_layernorm.weight", (h,), "offset", 0.25))
        t.append(TensorSpec(p + "self_attn.q_proj.weight", (nq * hd, h), "normal", 1.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "self_attn.k_proj.weight", (nkv * hd, h), "normal", 1.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "self_attn.v_proj.weight", (nkv * hd, h), "normal", 1.0 / np.sqrt(h)))
        t.append(TensorSpec(p + "self_attn.o_proj.weight", (h, nq * hd), "normal", 1.0 / np.sqrt(nq * hd)))
        if a.arch == "gemma3":  # Gemma 2 has no q_norm / k_norm
            t.append(TensorSpec(p + "self_attn.q_norm.weight", (hd,), "offset", 0.25))
            t.append(TensorSpec(p + "self_attn.k_norm.weight", (hd,), "offset", 0.25))
        t.append(TensorSpec(p + "post_attention_layernorm.weight", (h,), "offset", 0.25))
        t.append(TensorSpec(p + "pre_feedforward_layernorm.weight", (h,), "offset", 0.25))
        t.append(TensorSpec(p + "post_feedforward_layernorm.weight", (h,), "offset", 0.25))
        t += mlp_tensors(p + "mlp.", f, h)
    t.append(TensorSpec("model.norm.weight", (h,), "offset", 0.25, loc=3.0))
    if not a.tie_word_embeddings:
        t.append(TensorSpec("lm_head.weight", (a.vocab_size, h), "normal", 0.5 / np.sqrt(h)))
    return t


def phi3_tensors(a):
    """Phi3ForCausalLM in HF naming: per layer ONE qkv_proj of [(heads + 2 kv_heads) * head_dim, hidden]
    (query rows, then key rows, then value rows) and ONE gate_up_proj of [2 * intermediate, hidden] (gate
    rows, then up rows); no biases. Scales as build_tensors' (the fused qkv drawn at the q/k scale)."""
    h, hd, f = a.hidden_size, a.head_dim, a.intermediate_size
    nq, nkv = a.num_attention_heads, a.num_key_value_heads
    t = [TensorSpec("model.embed_tokens.weight", (a.vocab_size, h), "normal", 1.0)]
    for i in range(a.num_hidden_layers):
        p = f"model.layers.{i}."
        t.append(TensorSpec(p + "input_layernorm.weight", (h,), "norm"))
        t.append(TensorSpec(p + "self_attn.qkv_proj.weight", ((nq + 2 * nkv) * hd, h), "normal", 1.5 / np.sqrt(h)))
        t.append(TensorSpec(p + "self_attn.o_proj.weight", (h, nq * hd), "normal", 1.0 / np.sqrt(nq * hd)))
        t.append(TensorSpec(p + "post_attention_layernorm.weight", (h,), "norm"))
        t += fused_mlp_tensors(p, f, h)
    return t + final_tensors(a)


class Sampler:
    """Draws tensor values. Normal matrices go through a 65536-entry table of N(0,1) quantiles
    indexed by random uint16s: exact enough for random weights and fast for billions of values
    (no float64 arrays of the tensor's size)."""

    CHUNK = 1 << 24

    def __init__(self, seed, dtype):
        self.seed, self.dtype = seed, dtype
        # Quantiles of N(0,1) at (i+0.5)/65536 via the sorted values of a big deterministic sample
        # would drift with the seed; use an inverse-CDF (Acklam's rational approximation) instead.
        p = (np.arange(65536, dtype=np.float64) + 0.5) / 65536.0
        self.normal_table = _norm_ppf(p)
        self._tables = {}

    def _table(self, scale):
        key = float(scale)
        if key not in self._tables:
            vals = (self.normal_table * scale).astype(np.float32)
            if self.dtype == "bf16":
                self._tables[key] = f32_to_bf16_bits(vals).astype("<u2")
            elif self.dtype == "f16":
                self._tables[key] = vals.astype("<f2")
            else:
                self._tables[key] = vals.astype("<f4")
        return self._tables[key]

    def write(self, f, spec, index):
        if spec.kind in ("mxfp4_blocks", "mxfp4_scales"):
            blocks, scales = spec.mx.draw(self.seed)
            f.write((blocks if spec.kind == "mxfp4_blocks" else scales).tobytes())
            return
        if spec.kind == "mxfp4_dense":  # exact in bf16 / f16 / f32 (FP4 values times powers of two)
            f.write(encode(spec.mx.dense(self.seed).ravel(), self.dtype))
            return
        rng = np.random.default_rng([self.seed, index])
        if spec.kind == "norm":
            # Around 1 with visible spread: a norm whose weight is ignored changes the logits.
            vals = rng.uniform(0.6, 1.4, size=spec.numel)
            f.write(encode(vals, self.dtype))
            return
        if spec.kind == "eye":  # [I 0]: passes the first shape[0] inputs through
            f.write(encode(np.eye(spec.shape[0], spec.shape[1]).ravel(), self.dtype))
            return
        if spec.kind == "bias":  # MiniMax-M2's fp32 router biases in a bf16 folder
            f.write(encode(rng.uniform(0.0, 0.3, size=spec.numel), spec.file_dtype(self.dtype)))
            return
        if spec.kind == "offset":  # around loc (Gemma's norm weights: offsets from 1)
            f.write(encode(rng.normal(spec.loc, spec.scale, size=spec.numel), self.dtype))
            return
        if spec.kind == "uniform":  # in [loc, loc + scale]
            f.write(encode(rng.uniform(spec.loc, spec.loc + spec.scale, size=spec.numel), self.dtype))
            return
        table = self._table(spec.scale)
        left = spec.numel
        while left > 0:
            n = min(left, self.CHUNK)
            idx = rng.integers(0, 65536, size=n, dtype=np.uint16)
            f.write(table[idx].tobytes())
            left -= n


def _norm_ppf(p):
    # Acklam's inverse normal CDF approximation (relative error < 1.2e-9), written out here to
    # avoid depending on SciPy.
    a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
         1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
    b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
         6.680131188771972e+01, -1.328068155288572e+01]
    c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
         -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
    d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
         3.754408661907416e+00]
    lo, hi = 0.02425, 1 - 0.02425
    out = np.empty_like(p)
    m = p < lo
    q = np.sqrt(-2 * np.log(p[m]))
    out[m] = (((((c[0]*q+c[1])*q+c[2])*q+c[3])*q+c[4])*q+c[5]) / ((((d[0]*q+d[1])*q+d[2])*q+d[3])*q+1)
    m = p > hi
    q = np.sqrt(-2 * np.log(1 - p[m]))
    out[m] = -(((((c[0]*q+c[1])*q+c[2])*q+c[3])*q+c[4])*q+c[5]) / ((((d[0]*q+d[1])*q+d[2])*q+d[3])*q+1)
    m = (p >= lo) & (p <= hi)
    q = p[m] - 0.5
    r = q * q
    out[m] = (((((a[0]*r+a[1])*r+a[2])*r+a[3])*r+a[4])*r+a[5])*q / (((((b[0]*r+b[1])*r+b[2])*r+b[3])*r+b[4])*r+1)
    return out


# Qwen2's pre-tokenizer split pattern (tokenizer.json of Qwen/Qwen2-*), used with byte-level BPE.
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2 = config's bos/eos ids
GEMMA_SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>"]  # Gemma's ids: pad 0, eos 1, bos 2


def _byte_to_unicode():
    # GPT-2 byte-level alphabet: printable bytes stand for themselves, the rest map to U+0100...
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(0x100 + extra)
            extra += 1
    return table


def build_tokenizer(vocab_size, seed, specials=SPECIAL_TOKENS):
    """A valid byte-level BPE tokenizer.json of exactly vocab_size ids: 3 special tokens, the 256
    byte symbols, then merges that grow lowercase words (with and without a leading space).
    It makes the folder complete (text prompts, chat, HTTP tests); its merges mean nothing."""
    n_merges = vocab_size - len(specials) - 256
    if n_merges < 0:
        return None
    b2u = _byte_to_unicode()
    vocab = {t: i for i, t in enumerate(specials)}
    for b in range(256):
        vocab[b2u[b]] = len(vocab)
    rng = np.random.default_rng([seed, 7919])
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    space = b2u[ord(" ")]
    merges, grown = [], [space] + letters
    while len(merges) < n_merges:
        left = grown[int(rng.integers(len(grown)))]
        right = letters[int(rng.integers(26))]
        if left + right in vocab:
            continue
        merges.append(f"{left} {right}")
        vocab[left + right] = len(vocab)
        grown.append(left + right)
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(specials)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": _QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def write_tokenizer(out, vocab_size, seed, gemma=False):
    tok = build_tokenizer(vocab_size, seed, GEMMA_SPECIAL_TOKENS if gemma else SPECIAL_TOKENS)
    if tok is None:
        print(f"make_hf_model: vocab_size {vocab_size} < 259: no tokenizer written", file=sys.stderr)
        return
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    bos, eos, unk, pad = ("<bos>", "<eos>", None, "<pad>") if gemma else ("<s>", "</s>", "<unk>", None)
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
           "unk_token": unk, "pad_token": pad, "add_bos_token": False, "add_eos_token": False,
           "model_max_length": 4096, "clean_up_tokenization_spaces": False,
           "chat_template": ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
                             "{% if add_generation_prompt %}<s>assistant\n{% endif %}")}
    if gemma:
        cfg["chat_template"] = cfg["chat_template"].replace("</s>", eos).replace("<s>", bos)
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")



def tensor_bytes(t, dtype):
    return t.numel * DTYPES[t.file_dtype(dtype)][1]


def split_shards(tensors, dtype, n_shards):
    """Contiguous groups of tensors with roughly equal byte counts (HF shards the same way).
    May return fewer groups than asked when a few tensors dominate the size."""
    target = sum(tensor_bytes(t, dtype) for t in tensors) / n_shards
    shards, acc = [[]], 0
    for t in tensors:
        if shards[-1] and acc >= target * len(shards) and len(shards) < n_shards:
            shards.append([])
        shards[-1].append(t)
        acc += tensor_bytes(t, dtype)
    return shards


def write_safetensors(path, tensors, sampler, dtype, index_of, progress):
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for t in tensors:
        n = tensor_bytes(t, dtype)
        header[t.name] = {"dtype": DTYPES[t.file_dtype(dtype)][0], "shape": list(t.shape),
                          "data_offsets": [off, off + n]}
        off += n
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)  # data starts 8-byte aligned, as the reference writer does
    with open(path, "wb") as f:
        f.write(len(hjson).to_bytes(8, "little"))
        f.write(hjson)
        for t in tensors:
            sampler.write(f, t, index_of[t.same_as or t.name])
            progress(tensor_bytes(t, dtype))
    return off


def check_layer_types(ap, a):
    """--layer-types names known types, one per layer."""
    try:
        types = gemma_layer_types(a)
    except KeyError as e:
        ap.error(f"--layer-types: unknown type {e}")
    if len(types) != a.num_hidden_layers:
        ap.error(f"--layer-types lists {len(types)} layers, not num_hidden_layers {a.num_hidden_layers}")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                    help="shape preset; explicit shape flags override it")
    ap.add_argument("--arch", choices=sorted(ARCHITECTURES))
    ap.add_argument("--dtype", choices=sorted(TORCH_DTYPE))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shards", type=int, default=1, help="number of safetensors files (>1 writes an index)")
    for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim", "num_experts", "num_experts_per_tok",
                 "moe_intermediate_size", "decoder_sparse_step", "max_position_embeddings",
                 "original_max_position_embeddings", "sliding_window", "q_lora_rank", "kv_lora_rank",
                 "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_shared_experts",
                 "first_k_dense_replace", "moe_layer_freq", "n_group", "topk_group"):
        ap.add_argument("--" + name.replace("_", "-"), type=int, dest=name)
    ap.add_argument("--num-nextn-predict-layers", type=int, dest="num_nextn_predict_layers", default=0,
                    help="deepseek_v3, glm4_moe: multi-token-prediction layers to write after the decoder layers (0)")
    ap.add_argument("--nextn-echo", action="store_true",
                    help="the MTP layer predicts the token it is given again (eh_proj passes the embedding half, "
                         "shared_head.head is the embedding); with --tie-word-embeddings and a small "
                         "--residual-out-scale the main model repeats its last token too, so NEXTN drafts hold")
    ap.add_argument("--topk-method", dest="topk_method", choices=["greedy", "group_limited_greedy", "noaux_tc"])
    ap.add_argument("--scoring-func", dest="scoring_func", choices=["softmax", "sigmoid"])
    ap.add_argument("--routed-scaling-factor", dest="routed_scaling_factor", type=float)
    ap.add_argument("--beta-fast", dest="beta_fast", type=float)
    ap.add_argument("--beta-slow", dest="beta_slow", type=float)
    ap.add_argument("--yarn-mscale", dest="yarn_mscale", type=float)
    ap.add_argument("--yarn-mscale-all-dim", dest="yarn_mscale_all_dim", type=float)
    ap.add_argument("--mlp-only-layers", dest="mlp_only_layers",
                    help="comma-separated layer indices that stay dense (Qwen3-MoE)")
    ap.add_argument("--norm-topk-prob", dest="norm_topk_prob", choices=["true", "false"])
    ap.add_argument("--use-qk-norm", dest="use_qk_norm", action="store_true", default=None,
                    help="glm4_moe: per-head q_norm / k_norm (GLM-4.5 355B has them, Air does not)")
    ap.add_argument("--llama-4-scaling-beta", dest="llama_4_scaling_beta", type=float, default=0.1,
                    help="ministral3: the queries' temperature slope (0.1)")
    ap.add_argument("--attention-out-bias", dest="attention_out_bias", action="store_true", default=False,
                    help="seed_oss: an o_proj bias (attention_out_bias true; the release has none)")
    ap.add_argument("--shared-expert-intermediate-size", dest="shared_expert_intermediate_size", type=int,
                    help="qwen2_moe: the sigmoid-gated shared expert's width")
    ap.add_argument("--rms-norm-eps", dest="rms_norm_eps", type=float)
    ap.add_argument("--rope-theta", dest="rope_theta", type=float)
    ap.add_argument("--rope-scaling", dest="rope_scaling", choices=["none", "llama3", "linear", "yarn", "longrope"],
                    help="longrope: phi3 only (short / long factors drawn from the seed)")
    ap.add_argument("--partial-rotary-factor", dest="partial_rotary_factor", type=float,
                    help="phi3: share of each head that RoPE rotates (1.0; Phi-4-mini 0.75)")
    ap.add_argument("--longrope-type-name", dest="longrope_type_name", choices=["longrope", "su"],
                    help="phi3 --rope-scaling longrope: the rope_scaling type written (\"su\" as the first "
                         "Phi-3-128k configs; default longrope)")
    ap.add_argument("--rope-factor", dest="rope_factor", type=float)
    ap.add_argument("--low-freq-factor", dest="low_freq_factor", type=float)
    ap.add_argument("--high-freq-factor", dest="high_freq_factor", type=float)
    ap.add_argument("--tie-word-embeddings", dest="tie_word_embeddings", action="store_true", default=None)
    ap.add_argument("--query-pre-attn-scalar", dest="query_pre_attn_scalar", type=float,
                    help="gemma3: attention scores are scaled by query_pre_attn_scalar**-0.5 (48)")
    ap.add_argument("--rope-local-base-freq", dest="rope_local_base_freq", type=float,
                    help="gemma3: RoPE base of the sliding layers (10000)")
    ap.add_argument("--sliding-window-pattern", dest="sliding_window_pattern", type=int,
                    help="gemma3: every N-th layer is full attention, the others sliding (3)")
    ap.add_argument("--layer-types", dest="layer_types",
                    help="gemma3 / gpt_oss / olmo3 / exaone4: comma-separated sliding / full (or s / f) per layer, instead of "
                         "the pattern (gpt_oss: alternating, sliding first; olmo3: sliding but every fourth)")
    ap.add_argument("--gemma-layer-config", dest="gemma_layer_config", default="layer_types",
                    choices=["layer_types", "pattern", "both"],
                    help="gemma3: write config.json's layer_types list (transformers >= 4.53), the older "
                         "sliding_window_pattern, or both (layer_types is what transformers uses then)")
    ap.add_argument("--final-logit-softcapping", dest="final_logit_softcapping", type=float,
                    help="gemma2 / gemma3: final_logit_softcapping (gemma2 tiny: 4.0; gemma3: null, as in "
                         "Gemma 3 configs, unless given); 0 writes null")
    ap.add_argument("--attn-logit-softcapping", dest="attn_logit_softcapping", type=float,
                    help="gemma2: attn_logit_softcapping (tiny: 2.5); 0 writes null")
    ap.add_argument("--swiglu-limit", dest="swiglu_limit", type=float,
                    help="gpt_oss: swiglu_limit, the experts' clamp of gate (above) and up (both sides) "
                         "(tiny: 3.0 so that it acts on the tiny experts; gpt-oss ships 7.0)")
    ap.add_argument("--mxfp4", action="store_true",
                    help="gpt_oss: store the experts as the published checkpoints do (gate_up_proj / down_proj "
                         "_blocks and _scales, U8, MXFP4) with their quantization_config; the same seed without "
                         "it writes exactly these weights dequantized (dense gate_up_proj / down_proj)")
    ap.add_argument("--yarn-truncate", dest="yarn_truncate", choices=["true", "false"],
                    help="gpt_oss: rope_scaling.truncate (false, as gpt-oss: the YaRN ramp bounds are not "
                         "rounded to integers)")
    ap.add_argument("--no-tokenizer", dest="tokenizer", action="store_false",
                    help="do not write tokenizer.json / tokenizer_config.json")
    for name in ("depth", "hidden_size", "intermediate_size", "num_heads"):
        ap.add_argument("--vision-" + name.replace("_", "-"), type=int, dest="vision_" + name,
                        help=f"qwen2_5_vl: vision_config {name} (default {VISION_TINY[name]})")
    ap.add_argument("--tokenizer-dir", dest="tokenizer_dir",
                    help="qwen2_5_vl: folder with the real Qwen tokenizer.json / tokenizer_config.json to copy "
                         "(default: $DPSERVE_SHARED_DIR/tokenizers/qwen3)")
    ap.add_argument("--bos-token-id", dest="bos_token_id", type=int, default=None,
                    help="config.json's bos_token_id (match the tokenizer served with --tokenizer-path)")
    ap.add_argument("--eos-token-id", dest="eos_token_id", type=int, default=None, help="config.json's eos_token_id")
    ap.add_argument("--residual-out-scale", dest="residual_out_scale", type=float, default=1.0,
                    help="multiply the init scale of every o_proj / down_proj by this (e.g. 0.05 with "
                         "--tie-word-embeddings: a model whose greedy output repeats its last token)")
    ap.add_argument("--no-rope-layers", dest="no_rope_layers",
                    help="smollm3: config.json's no_rope_layers, comma-separated 1 (RoPE) / 0 (none); '' writes no "
                         "list, only no_rope_layer_interval")
    ap.add_argument("--no-rope-layer-interval", dest="no_rope_layer_interval", type=int,
                    help="smollm3: no_rope_layer_interval (4)")
    for name in ("embedding_multiplier", "attention_multiplier", "residual_multiplier", "logits_scaling"):
        ap.add_argument("--" + name.replace("_", "-"), dest=name, type=float, help="granite: config.json's " + name)
    ap.add_argument("--intermediate-size-mlp", dest="intermediate_size_mlp", type=int,
                    help="llama4: the dense layers' width (344)")
    ap.add_argument("--interleave-moe-layer-step", dest="interleave_moe_layer_step", type=int,
                    help="llama4: every N-th layer has experts, the others are dense (1)")
    ap.add_argument("--attention-chunk-size", dest="attention_chunk_size", type=int,
                    help="llama4: the rotated layers attend within chunks of this many positions (6)")
    ap.add_argument("--floor-scale", dest="floor_scale", type=int, help="llama4: the query temperature's period (8)")
    ap.add_argument("--attn-scale", dest="attn_scale", type=float, help="llama4: the query temperature's slope (0.1)")
    ap.add_argument("--no-qk-norm", dest="no_qk_norm", action="store_true", default=None,
                    help="llama4: use_qk_norm false (Maverick)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    # GLM-4.7-Flash is DeepSeek-V3 in everything but its names: built as deepseek_v3, named as itself.
    a.named_arch = a.arch
    if a.arch == "glm4_moe_lite":
        a.arch = "deepseek_v3"

    preset = dict(PRESETS[a.preset])
    arch = a.arch or preset.get("arch") or "llama"
    if a.arch and preset.get("arch") and a.arch != preset["arch"]:
        ap.error(f"--preset {a.preset} is a {preset['arch']} model, not {a.arch}")
    a.arch = arch
    a.named_arch = a.named_arch or arch
    a.dtype = a.dtype or preset.get("dtype") or "f32"
    vl = arch == "qwen2_5_vl"
    VISION_TINY.update(preset.get("vision", {}))
    for name in ("depth", "hidden_size", "intermediate_size", "num_heads"):
        if getattr(a, "vision_" + name) is not None:
            if not vl:
                ap.error(f"--vision-{name.replace('_', '-')} is for --arch qwen2_5_vl")
            VISION_TINY[name] = getattr(a, "vision_" + name)
    if vl and (VISION_TINY["hidden_size"] // VISION_TINY["num_heads"]) % 4:
        ap.error("the vision head size (hidden_size / num_heads) must be a multiple of 4 (2-D RoPE)")
    if vl and "fullatt_block_indexes" not in preset.get("vision", {}):
        VISION_TINY["fullatt_block_indexes"] = [i for i in range(VISION_TINY["depth"]) if i % 2 == 1]
    gemma = arch in ("gemma2", "gemma3")
    if a.bos_token_id is None:
        a.bos_token_id = 151643 if vl else 2 if gemma else 1  # Qwen: <|endoftext|>; Gemma: <bos>
    if a.eos_token_id is None:
        a.eos_token_id = 151645 if vl else [1, 106] if gemma else 2  # Qwen: <|im_end|>; Gemma: <eos>, <end_of_turn>
    if vl and a.tokenizer:
        if a.tokenizer_dir is None and os.environ.get("DPSERVE_SHARED_DIR"):
            a.tokenizer_dir = os.path.join(os.environ["DPSERVE_SHARED_DIR"], "tokenizers", "qwen3")
        if a.tokenizer_dir is None or not os.path.isfile(os.path.join(a.tokenizer_dir, "tokenizer.json")):
            ap.error("--arch qwen2_5_vl copies the real Qwen tokenizer: give --tokenizer-dir (a folder with "
                     "tokenizer.json and tokenizer_config.json), set DPSERVE_SHARED_DIR, or pass --no-tokenizer")
    base = dict(
        rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling="none", rope_factor=8.0,
        low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=64,
        max_position_embeddings=4096, tie_word_embeddings=False, num_experts=0, num_experts_per_tok=0,
        moe_intermediate_size=0, shared_expert_intermediate_size=0, norm_topk_prob="true", decoder_sparse_step=1, mlp_only_layers="",
        sliding_window=0, q_lora_rank=0, kv_lora_rank=0, qk_nope_head_dim=0, qk_rope_head_dim=0, v_head_dim=0,
        n_shared_experts=0, first_k_dense_replace=0, moe_layer_freq=1, n_group=1, topk_group=1,
        topk_method="greedy", scoring_func="softmax", routed_scaling_factor=1.0, beta_fast=32.0, beta_slow=1.0,
        yarn_mscale=1.0, yarn_mscale_all_dim=0.0, query_pre_attn_scalar=256.0, rope_local_base_freq=10000.0,
        sliding_window_pattern=6, layer_types="", partial_rotary_factor=1.0, longrope_type_name="longrope",
        attn_logit_softcapping=None, final_logit_softcapping=None, swiglu_limit=7.0, yarn_truncate="false",
        no_rope_layers="", no_rope_layer_interval=4, use_qk_norm=False, embedding_multiplier=1.0, attention_multiplier=1.0,
        residual_multiplier=1.0, logits_scaling=1.0, intermediate_size_mlp=344, interleave_moe_layer_step=1,
        attention_chunk_size=6, floor_scale=8, attn_scale=0.1, no_qk_norm=False)
    if a.preset == "tiny":
        base.update(TINY[arch])
    base.update({k: v for k, v in preset.items() if k not in ("arch", "dtype", "vision")})
    a.explicit = {k for k in base if getattr(a, k, None) is not None}
    for k, v in base.items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    a.norm_topk_prob = a.norm_topk_prob in (True, "true")
    if isinstance(a.mlp_only_layers, str):
        a.mlp_only_layers = [int(x) for x in a.mlp_only_layers.split(",") if x.strip()]
    if a.num_nextn_predict_layers < 0 or (a.num_nextn_predict_layers and arch not in ("deepseek_v3", "glm4_moe")):
        ap.error("--num-nextn-predict-layers is for --arch deepseek_v3 and glm4_moe (>= 0)")
    if arch in DEEPSEEK:
        if not (a.kv_lora_rank > 0 and a.qk_nope_head_dim > 0 and a.qk_rope_head_dim > 0 and a.v_head_dim > 0):
            ap.error("deepseek needs positive --kv-lora-rank, --qk-nope-head-dim, --qk-rope-head-dim, --v-head-dim")
        if a.qk_rope_head_dim % 2:
            ap.error("qk_rope_head_dim must be even (RoPE rotates pairs)")
        if a.rope_scaling not in ("none", "yarn"):
            ap.error("deepseek models take --rope-scaling none or yarn")
        a.head_dim = a.qk_nope_head_dim + a.qk_rope_head_dim  # only for the checks below
        a.num_key_value_heads = a.num_attention_heads
        if a.num_experts and a.topk_method != "greedy":
            if a.num_experts % a.n_group or a.topk_group > a.n_group or \
                    a.num_experts_per_tok > a.topk_group * (a.num_experts // a.n_group):
                ap.error("n_group must divide the experts, topk_group <= n_group, and the kept groups hold "
                         "at least num_experts_per_tok experts")
    elif a.rope_scaling == "yarn":
        if arch == "qwen2_5_vl":
            ap.error("--rope-scaling yarn does not combine with qwen2_5_vl's M-RoPE")
        if {"yarn_mscale", "yarn_mscale_all_dim"} & a.explicit:
            ap.error("--yarn-mscale / --yarn-mscale-all-dim are for DeepSeek's YaRN (--arch deepseek_v2/v3)")
    if a.head_dim is None:
        if a.hidden_size % a.num_attention_heads:
            ap.error("hidden_size must be a multiple of num_attention_heads (or give --head-dim)")
        a.head_dim = a.hidden_size // a.num_attention_heads
    if arch in ("llama", "qwen2", "qwen2_moe", "qwen2_5_vl", "mistral", "mixtral", "phi3", "smollm3", "granite", "granite_moe",
                "olmo2", "olmo3", "exaone4", "olmoe", "ernie4_5", "ernie4_5_moe") and \
            a.head_dim * a.num_attention_heads != a.hidden_size:
        ap.error(f"{arch} has no head_dim field: head_dim must be hidden_size / num_attention_heads")
    if a.num_attention_heads % a.num_key_value_heads:
        ap.error("num_attention_heads must be a multiple of num_key_value_heads")
    if a.head_dim % 2:
        ap.error("head_dim must be even (RoPE rotates pairs)")
    if arch not in ("qwen3_moe", "qwen2_moe", "mixtral", "gpt_oss", "granite_moe", "olmoe", "glm4_moe",
                    "ernie4_5_moe", "minimax_m2", "llama4") + DEEPSEEK:
        a.num_experts = 0
    elif not (0 < a.num_experts_per_tok <= a.num_experts):
        ap.error("need 0 < num_experts_per_tok <= num_experts")
    if a.shards < 1:
        ap.error("--shards must be >= 1")
    if a.attention_out_bias and arch != "seed_oss":
        ap.error("--attention-out-bias is for --arch seed_oss")
    if "llama_4_scaling_beta" in a.explicit and arch != "ministral3":
        ap.error("--llama-4-scaling-beta is for --arch ministral3")
    if arch == "ministral3" and a.rope_scaling != "none":
        ap.error("ministral3 writes its own yarn rope_parameters (--rope-factor, --original-max-position-embeddings)")
    llama4_only = {"intermediate_size_mlp", "interleave_moe_layer_step", "attention_chunk_size", "floor_scale",
                   "attn_scale", "no_qk_norm"}
    if arch != "llama4" and llama4_only & a.explicit:
        ap.error("--intermediate-size-mlp, --interleave-moe-layer-step, --attention-chunk-size, --floor-scale, "
                 "--attn-scale and --no-qk-norm are for --arch llama4")
    if arch == "llama4" and min(a.interleave_moe_layer_step, a.attention_chunk_size, a.floor_scale) < 1:
        ap.error("llama4's --interleave-moe-layer-step, --attention-chunk-size and --floor-scale must be positive")
    if arch != "smollm3" and {"no_rope_layers", "no_rope_layer_interval"} & a.explicit:
        ap.error("--no-rope-layers and --no-rope-layer-interval are for --arch smollm3")
    if arch == "smollm3":
        a.no_rope_layers = [int(x) for x in a.no_rope_layers.split(",") if x.strip()] \
            if isinstance(a.no_rope_layers, str) else a.no_rope_layers
        if a.no_rope_layers and (len(a.no_rope_layers) != a.num_hidden_layers or set(a.no_rope_layers) - {0, 1}):
            ap.error("--no-rope-layers lists a 0 or 1 for each layer")
        if a.no_rope_layer_interval < 1:
            ap.error("--no-rope-layer-interval must be positive")
    granite_only = {"embedding_multiplier", "attention_multiplier", "residual_multiplier", "logits_scaling"}
    if arch not in ("granite", "granite_moe") and granite_only & a.explicit:
        ap.error("--embedding-multiplier, --attention-multiplier, --residual-multiplier and --logits-scaling are for "
                 "--arch granite")
    if arch in ("granite", "granite_moe") and min(getattr(a, k) for k in granite_only) <= 0:
        ap.error("granite's multipliers must be positive")
    phi3 = arch == "phi3"
    if arch in ("glm4_moe", "glm4", "minimax_m2"):
        rot = phi3_rotary_dim(a)
        if not 0.0 < a.partial_rotary_factor <= 1.0 or rot < 2 or rot % 2:
            ap.error(f"--partial-rotary-factor must be in (0, 1] and leave an even rotary dim, not {rot}")
    if not phi3 and ({"longrope_type_name"} & a.explicit or a.rope_scaling == "longrope" or
                     ("partial_rotary_factor" in a.explicit and arch not in ("glm4_moe", "glm4", "minimax_m2"))):
        ap.error("--partial-rotary-factor, --longrope-type-name and --rope-scaling longrope are for --arch phi3")
    if phi3:
        if a.rope_scaling not in ("none", "longrope"):
            ap.error("phi3 takes --rope-scaling none or longrope (Phi3Config refuses other types)")
        if "longrope_type_name" in a.explicit and a.rope_scaling != "longrope":
            ap.error("--longrope-type-name goes with --rope-scaling longrope")
        rot = phi3_rotary_dim(a)
        if not 0.0 < a.partial_rotary_factor <= 1.0 or rot < 2 or rot % 2:
            ap.error(f"--partial-rotary-factor must be in (0, 1] and leave an even rotary dim, not {rot}")
        if a.original_max_position_embeddings < 1 or a.max_position_embeddings < 1:
            ap.error("phi3 needs positive --original-max-position-embeddings and --max-position-embeddings")
    gpt_oss = arch == "gpt_oss"
    gemma_only = {"query_pre_attn_scalar", "rope_local_base_freq", "sliding_window_pattern", "layer_types"} & a.explicit
    if gpt_oss or arch in ("olmo3", "exaone4"):
        gemma_only -= {"layer_types"}
    if arch in ("olmo3", "exaone4") and a.layer_types:
        check_layer_types(ap, a)
    if not gemma and (gemma_only or a.gemma_layer_config != "layer_types" or a.final_logit_softcapping is not None):
        ap.error("--query-pre-attn-scalar, --rope-local-base-freq, --sliding-window-pattern, --layer-types, "
                 "--gemma-layer-config and --final-logit-softcapping are for --arch gemma2 / gemma3 "
                 "(--layer-types: gemma3 / gpt_oss)")
    if not gpt_oss and ({"swiglu_limit", "yarn_truncate"} & a.explicit or a.mxfp4):
        ap.error("--swiglu-limit, --yarn-truncate and --mxfp4 are for --arch gpt_oss")
    if gpt_oss:
        a.sliding_window_pattern = 2  # GptOssConfig's default layer_types: layer i sliding when (i + 1) % 2
        if a.hidden_size % 32 or a.intermediate_size % 32:
            ap.error("gpt_oss: hidden_size and intermediate_size must be multiples of 32 (the experts are drawn "
                     "as MXFP4 blocks of 32, dense or not)")
        if a.sliding_window < 1 or a.swiglu_limit <= 0:
            ap.error("gpt_oss needs sliding_window >= 1 and swiglu_limit > 0")
        if a.rope_scaling != "yarn":
            ap.error("gpt_oss takes --rope-scaling yarn only (what a config without rope_scaling means differs "
                     "between transformers versions)")
        if a.max_position_embeddings != a.rope_factor * a.original_max_position_embeddings:
            # transformers 4.5x derives YaRN's factor from this ratio when original_max_position_embeddings is
            # given, later versions take rope_scaling's factor: equal, as in the gpt-oss configs, both agree.
            ap.error(f"gpt_oss: max_position_embeddings ({a.max_position_embeddings}) must be rope factor x "
                     f"original_max_position_embeddings ({a.rope_factor} x {a.original_max_position_embeddings})")
        if a.layer_types:
            check_layer_types(ap, a)
    if arch != "gemma2" and a.attn_logit_softcapping is not None:
        ap.error("--attn-logit-softcapping is for --arch gemma2")
    if arch == "gemma2":
        if {"rope_local_base_freq", "sliding_window_pattern"} & a.explicit or a.gemma_layer_config == "both":
            ap.error("gemma2 has no --rope-local-base-freq / --sliding-window-pattern (its layers alternate)")
        a.sliding_window_pattern = 2  # transformers' Gemma2Config: layer i sliding when (i + 1) % 2
    if gemma:
        for k in ("attn_logit_softcapping", "final_logit_softcapping"):
            if getattr(a, k) is not None and getattr(a, k) <= 0:
                setattr(a, k, None)
        if a.sliding_window < 1 or a.sliding_window_pattern < 1 or a.query_pre_attn_scalar <= 0:
            ap.error(f"{arch} needs sliding_window >= 1, sliding_window_pattern >= 1, query_pre_attn_scalar > 0")
        if a.layer_types:
            check_layer_types(ap, a)
            if a.gemma_layer_config == "pattern":
                ap.error("--gemma-layer-config pattern writes no layer_types: --layer-types would be lost")
    return a


def main(argv):
    a = parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    cfg = build_config(a)
    tensors = build_tensors(a)
    if a.residual_out_scale != 1.0:
        # What each layer adds to the residual stream shrinks: with tied embeddings the model then
        # mostly predicts its last token again (a repeating model for speculative-decoding benches).
        for t in tensors:
            if t.name.endswith(("o_proj.weight", "down_proj.weight", ".w2.weight")):
                t.scale *= a.residual_out_scale
    # Each tensor's random stream is keyed by its index; MXFP4 expert tensors draw from their own stream
    # (MxfpExperts) and are left out, so a dense and an --mxfp4 folder of one seed share every weight.
    plain = [t for t in tensors if not t.kind.startswith("mxfp4_")]
    index_of = {t.name: i for i, t in enumerate(plain)}
    index_of.update({t.name: None for t in tensors if t.kind.startswith("mxfp4_")})
    total = sum(tensor_bytes(t, a.dtype) for t in tensors)
    sampler = Sampler(a.seed, a.dtype)
    start = time.time()
    done = [0]
    tty = sys.stderr.isatty() and not a.quiet

    def progress(n):
        done[0] += n
        if tty:
            sys.stderr.write(f"\rmake_hf_model: {done[0] / 2**20:9.1f} / {total / 2**20:.1f} MiB")
            sys.stderr.flush()

    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": a.bos_token_id, "eos_token_id": a.eos_token_id, "do_sample": False}, f, indent=2)
        f.write("\n")
    if a.arch == "qwen2_5_vl":
        write_vl_files(a.out, a.tokenizer_dir if a.tokenizer else None)
    elif a.tokenizer:
        write_tokenizer(a.out, a.vocab_size, a.seed, gemma=a.arch in ("gemma2", "gemma3"))
    for old in os.listdir(a.out):  # a rerun with another shard count must not leave stale files
        if old.endswith(".safetensors") or old == "model.safetensors.index.json":
            os.remove(os.path.join(a.out, old))
    if a.shards == 1:
        write_safetensors(os.path.join(a.out, "model.safetensors"), tensors, sampler, a.dtype, index_of, progress)
    else:
        groups = split_shards(tensors, a.dtype, a.shards)
        weight_map = {}
        for k, group in enumerate(groups):
            fname = f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
            write_safetensors(os.path.join(a.out, fname), group, sampler, a.dtype, index_of, progress)
            for t in group:
                weight_map[t.name] = fname
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
            f.write("\n")
    if tty:
        sys.stderr.write("\n")
    if not a.quiet:
        n_params = sum(t.numel * (2 if t.kind == "mxfp4_blocks" else 0 if t.kind == "mxfp4_scales" else 1)
                       for t in tensors)
        print(f"make_hf_model: wrote {cfg['architectures'][0]} {a.dtype} {n_params / 1e6:.2f}M params "
              f"({total / 2**20:.1f} MiB, {a.shards} file(s)) to {a.out} in {time.time() - start:.1f}s",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
