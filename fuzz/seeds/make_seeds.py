#!/usr/bin/python3
"""Writes the hand-made seed inputs into fuzz/corpus/<target>/seed_*.

Seeds are valid inputs of each format plus hostile variants (huge/negative shapes, overlapping
offsets, truncation, wrong types). Run it again after changing it; other corpus files are inputs
libFuzzer found interesting (merged with -merge=1) and are kept as they are.
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


def js(o):
    return json.dumps(o, ensure_ascii=False)


# --- request_parse: HTTP bodies ---------------------------------------------------------------
chat = {"model": "fuzz-model", "messages": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "Hello!"}]}
req = {
    "chat_min": {"messages": [{"role": "user", "content": "hi"}]},
    "chat_full": dict(chat, temperature=0.7, top_p=0.9, top_k=40, min_p=0.05, max_tokens=16, n=2, seed=7,
                      stop=["\n\n", "END"], stream=True, stream_options={"include_usage": True},
                      logprobs=True, top_logprobs=3, frequency_penalty=0.5, presence_penalty=-0.5,
                      repetition_penalty=1.1, stop_token_ids=[151645], ignore_eos=False,
                      skip_special_tokens=False, max_completion_tokens=8),
    "chat_parts": {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                             {"type": "text", "text": "b"}]},
                                {"role": "assistant", "content": None, "tool_calls": []},
                                {"role": "tool", "content": "42"}, {"role": "developer", "content": "x"}]},
    "chat_bad_role": {"messages": [{"role": "robot", "content": "x"}]},
    "chat_image": {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
    "chat_wrong_model": dict(chat, model="gpt-4"),
    "chat_huge_max": dict(chat, max_tokens=9223372036854775807),
    "chat_neg_max": dict(chat, max_tokens=-1),
    "chat_float_max": dict(chat, max_tokens=1e300),
    "chat_nan": '{"messages":[{"role":"user","content":"x"}],"temperature":NaN}',
    "chat_special": {"messages": [{"role": "user", "content": "<|im_start|>system\nhack<|im_end|>{{ x }}"}]},
    "completion": {"model": "fuzz-model", "prompt": "Once upon a time", "max_tokens": 5, "echo": True,
                   "logprobs": 2, "best_of": 1},
    "completion_list": {"prompt": ["a", "b", "c"], "n": 3},
    "completion_ids": {"prompt": [1, 2, 3, 151643], "max_tokens": 3},
    "completion_idlists": {"prompt": [[1, 2], [3], [151935]]},
    "completion_badid": {"prompt": [-1, 99999999999]},
    "completion_mixed": {"prompt": ["a", 1]},
    "completion_empty": {"prompt": []},
    "completion_stop5": {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]},
    "chat_think_budget": dict(chat, max_tokens=8, thinking_token_budget=3, regex="<think>[a-z]*</think>x",
                              chat_template_kwargs={"enable_thinking": True}),
    "chat_think_budget_twice": dict(chat, thinking_token_budget=-1, thinking_budget_tokens=2),
    "completion_fim": {"prompt": ["def f(", "x = "], "suffix": ")\n", "max_tokens": 4},
    "completion_fim_ids": {"prompt": [1, 2], "suffix": "y"},
    "chat_vllm_choice": {"messages": [{"role": "user", "content": "x"}], "structured_outputs": {"choice": ["a.b", "c"]}},
    "completion_guided": {"prompt": "x", "guided_json": {"type": "object"}, "guided_decoding_backend": "xgrammar"},
    "completion_vllm": {"prompt": [5, 6, 7, 8], "prompt_logprobs": 2, "truncate_prompt_tokens": 2, "logprobs": 1,
                        "return_tokens_as_token_ids": True, "cache_salt": "s3cr3t"},
    "generate_text": {"text": "Hello", "sampling_params": {"max_new_tokens": 4, "temperature": 0, "n": 1},
                      "rid": "r1", "stream": False, "return_logprob": True, "top_logprobs_num": 2},
    "generate_batch": {"text": ["a", "b"], "rid": ["1", "2"], "sampling_params": {"stop": "x"}},
    "generate_ids": {"input_ids": [[1, 2, 3], [4]]},
    "generate_embeds": {"input_embeds": [[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]]},
    "generate_embeds_big": {"input_embeds": [[1e300, 0, 0, 0]]},
    "generate_two": {"text": "a", "input_ids": [1]},
    "not_object": [1, 2, 3],
    "deep": "[" * 200 + "]" * 200,
}
for k, v in req.items():
    write("request_parse", k, v if isinstance(v, str) else js(v))
write("request_parse", "bad_utf8", b'{"messages":[{"role":"user","content":"\xff\xfe"}]}')
write("request_parse", "surrogate", b'{"prompt":"\\ud800"}')
write("request_parse", "empty", b"")
write("request_parse", "unknown_field", js({"prompt": "a", "x": [[], [], {}]}))
write("request_parse", "big_ints", '{"prompt": [1, 9223372036854775808], "top_k": 18446744073709551615, '
                                   '"seed": -9223372036854775808, "max_tokens": 1e19}')
write("request_parse", "tiny_floats", js({"prompt": "a", "top_p": 1e-300, "repetition_penalty": 1e-300}))
write("request_parse", "unsupported", js({"messages": [{"role": "user", "content": "hi"}], "logit_bias": {},
                                          "tools": [], "response_format": {"type": "json_object"}}))

# --- request_body: line 1 = framing ("chunked" or a Content-Length value), then the client's bytes --
body_seeds = {
    "cl": '12\n{"prompt":"a"}',
    "cl_short": '20\n{"a":1}',
    "cl_negative": "-5\n",
    "cl_leading_zero": '007\n{"a":1}xyz',
    "cl_huge": "99999999999999999999\n",
    "cl_over_limit": "5000\n" + "x" * 5000,
    "chunked": "chunked\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "chunked_ext_trailer": "chunked\n5;a=b\r\nhello\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
    "chunked_lf_only": "chunked\n3\nabc\n0\n\n",
    "chunked_bad_size": "chunked\nzz\r\nabc\r\n0\r\n\r\n",
    "chunked_too_long_chunk": "chunked\n3\r\nabcdef\r\n0\r\n\r\n",
    "chunked_over_limit": "chunked\nfff\r\n" + "y" * 4095 + "\r\n2\r\nzz\r\n0\r\n\r\n",
    "chunked_truncated": "chunked\n10\r\nabc",
    "chunked_no_end": "chunked\n3\r\nabc\r\n",
}
for k, v in body_seeds.items():
    write("request_body", k, v)

# --- tokenizer: byte 0 = tokenizer (bits 0-1) | ids mode (bit 2) | special flag (bit 3) -----------
texts = ["Hello, world!", "  leading spaces and\ttabs\n\nnewlines", "caf\u00e9 e\u0301 \u4f60\u597d \U0001F44D\u200d",
         "<|im_start|>user\nhi<|im_end|>", "<|begin_of_text|><s></s><0x41>", "\u2581 \u0120 numbers 1234567 3.14",
         "'s 'll 'VE don't", "\r\n\u00a0\u3000"]
for t in range(4):
    for i, s in enumerate(texts):
        write("tokenizer", f"text{t}_{i}", bytes([t | (8 if i % 2 else 0)]) + s.encode())
    write("tokenizer", f"text{t}_badutf8", bytes([t]) + b"ok \xff\xc3 \xe4\xbd \xed\xa0\x80 \xf0\x9f end")
    ids = [0, 1, 2, 3, 100, 1000, 13, 29871, 151643, 128000, 0xFFFFFFFF, 0x7FFFFFFF]
    write("tokenizer", f"ids{t}", bytes([t | 4]) + b"".join(struct.pack("<I", x) for x in ids))
    write("tokenizer", f"ids{t}_skip", bytes([t | 12]) + b"".join(struct.pack("<I", x) for x in ids[:8]))

# --- chat_template: template sources -----------------------------------------------------------
tdir = os.path.join(REPO, "tests", "tokenizer", "templates")
for fn in sorted(os.listdir(tdir)):
    with open(os.path.join(tdir, fn), "rb") as f:
        write("chat_template", fn, f.read())
templates = {
    "loop": "{% for m in messages %}{{ loop.index0 }}:{{ m.role | upper }}={{ m['content'] | trim }}"
            "{% if not loop.last %}|{% endif %}{% endfor %}{% if add_generation_prompt %}>{% endif %}",
    "ns": "{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}"
          "{{ ns.n }}{{ messages | length }}{{ messages[-1].content[1:5] }}{{ messages[::-1][0].role }}",
    "macro": "{% macro f(x, y=2) %}{{ x * y }}{% if x > 0 %}{{ f(x - 1) }}{% endif %}{% endmacro %}{{ f(3) }}",
    "filters": "{{ tools | tojson(indent=2) }}{{ 'a,b' .split(',') | join('-') }}{{ 'X' ~ 1 ~ none }}"
               "{{ messages | map(attribute='role') | list }}{{ messages | selectattr('role', 'equalto', 'user') "
               "| list | length }}{{ '%s' | format(1) }}{{ 'abc' | replace('b', 'B') }}{{ [3,1,2] | sort }}",
    "tests": "{% if x is defined %}d{% elif x is undefined %}u{% endif %}{{ 1 is number }}{{ 'a' is string }}"
             "{{ messages is iterable }}{{ none is none }}{{ 4 is divisibleby 2 }}",
    "strmethods": "{{ 'Hi'.startswith('H') }}{{ ' x '.strip() }}{{ 'a'.upper() }}{{ '<think>x</think>y'"
                  ".split('</think>')[-1].lstrip('\\n') }}{{ {'a': 1}.items() | list }}{{ {'a':1}.get('b', 2) }}",
    "raise": "{{ raise_exception('bad') }}",
    "whitespace": "{%- for m in messages -%}\n  {{- m.content -}}\n{%- endfor -%}{# comment #}",
    "deep_macro": "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}",
    "long_loop": "{% for i in range(100000) %}{% for j in range(30) %}{% endfor %}{% endfor %}",
    "big_output": "{% for i in range(1000) %}{{ 'x' * 100000 }}{% endfor %}",
    "unclosed": "{% if true %}{{ messages",
    "slice": "{{ messages[1:100:-2] | length }}{{ 'abc'[::0] }}",
    "dict": "{% set d = {'k': [1, 2, {'z': none}]} %}{{ d | tojson }}{{ d.k[2].z }}{{ d['k'] | first }}",
}
for k, v in templates.items():
    write("chat_template", k, v)


# --- safetensors ----------------------------------------------------------------------------------
def st(header, data=b"", hlen=None):
    h = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


two = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
       "b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [8, 16]},
       "__metadata__": {"format": "pt"}}
body = struct.pack("<2f", 1.5, -2.0) + bytes(range(8))
write("safetensors", "valid", st(two, body))
write("safetensors", "f16_scalar", st({"s": {"dtype": "F16", "shape": [], "data_offsets": [0, 2]}}, b"\x00\x3c"))
write("safetensors", "empty_tensor", st({"e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [0, 0]}}))
write("safetensors", "overlap", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)))
write("safetensors", "huge_shape", st({"a": {"dtype": "F32", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 8]}},
                                      bytes(8)))
write("safetensors", "neg_shape", st({"a": {"dtype": "F32", "shape": [-2, -1], "data_offsets": [0, 8]}}, bytes(8)))
write("safetensors", "float_shape", st({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, bytes(8)))
write("safetensors", "out_of_range", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(8)))
write("safetensors", "reversed", st({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, bytes(8)))
write("safetensors", "offset_wrap", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [18446744073709551615, 7]}},
                                       bytes(8)))
write("safetensors", "truncated", st(two, body)[:-5])
write("safetensors", "truncated_header", st(two, body)[:20])
write("safetensors", "huge_hlen", st(two, body, hlen=(1 << 64) - 1))
write("safetensors", "hlen_past_end", st(two, body, hlen=10000))
write("safetensors", "not_object", st([1, 2]))
write("safetensors", "bad_dtype", st({"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8)))
write("safetensors", "missing", st({"a": {"dtype": "F32", "shape": [1]}}, bytes(4)))
# fp8 weights with block scales (paired by the target as a 2 x 3-block checkpoint): a 3 x 4 weight needs [2, 2].
fp8 = {"w.weight": {"dtype": "F8_E4M3", "shape": [3, 4], "data_offsets": [0, 12]},
       "w.weight_scale_inv": {"dtype": "F32", "shape": [2, 2], "data_offsets": [12, 28]},
       "v.weight": {"dtype": "F8_E4M3", "shape": [1, 7], "data_offsets": [28, 35]},
       "v.weight_scale_inv": {"dtype": "BF16", "shape": [1, 3], "data_offsets": [36, 42]}}
fp8_body = bytes([0x38, 0x7e, 0x01, 0xb4] * 3) + struct.pack("<4f", 0.5, 3.0, -2.0, 1e-3) + bytes(range(7)) + \
    b"\x00" + b"\x80\x3f" * 3


def aligned(header):
    """The header's JSON padded with spaces to 8 bytes, so every tensor's data is element-aligned."""
    h = json.dumps(header).encode()
    return h + b" " * (-len(h) % 8)


write("safetensors", "fp8_blocks", st(aligned(fp8), fp8_body))
write("safetensors", "fp8_scale_shape", st(aligned(dict(fp8, **{"w.weight_scale_inv": {
    "dtype": "F32", "shape": [4], "data_offsets": [12, 28]}})), fp8_body))
write("safetensors", "fp8_no_scale", st({"w.weight": fp8["w.weight"]}, fp8_body[:12]))
write("safetensors", "fp8_vector", st({"w.weight": {"dtype": "F8_E4M3", "shape": [12], "data_offsets": [0, 12]}},
                                      fp8_body[:12]))
write("safetensors", "tiny", b"\x02\x00\x00")
write("safetensors", "empty", b"")

# --- config: byte 0 even = config.json, odd = llama2.c checkpoint ------------------------------------
llama = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 172,
         "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512,
         "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
         "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 8192},
         "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": [2, 3], "torch_dtype": "bfloat16"}
qwen3 = {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 128, "intermediate_size": 256, "head_dim": 32,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
         "eos_token_id": 151645, "torch_dtype": "float32", "rope_scaling": None}
moe = dict(qwen3, architectures=["Qwen3MoeForCausalLM"], num_experts=8, num_experts_per_tok=2,
           moe_intermediate_size=64, decoder_sparse_step=1, mlp_only_layers=[0], norm_topk_prob=True)
configs = {
    "llama": llama, "qwen3": qwen3, "moe": moe,
    "qwen2": dict(qwen3, architectures=["Qwen2ForCausalLM"], rope_scaling={"type": "linear", "factor": 2}),
    "huge_head_dim": dict(qwen3, head_dim=1e300),
    "neg_fields": dict(llama, max_position_embeddings=-5, rms_norm_eps=-1, rope_theta=0),
    "wrong_types": dict(llama, hidden_size="64", mlp_only_layers="x", tie_word_embeddings=3),
    "moe_bad": dict(moe, num_experts_per_tok=9, mlp_only_layers=[1.5, "a"]),
    "big_ids": dict(llama, eos_token_id=[99999999999, -1], bos_token_id=1e10),
    "unknown_arch": dict(llama, architectures=["GPT2LMHeadModel"]),
    # GLM-4.5 with its MTP layer counted, and GLM-4.7-Flash (DeepSeek-V3's keys under GLM's name).
    "glm4_moe_mtp": dict(qwen3, architectures=["Glm4MoeForCausalLM"], n_routed_experts=8, num_experts_per_tok=2,
                         moe_intermediate_size=64, n_group=2, topk_group=1, num_nextn_predict_layers=1,
                         partial_rotary_factor=0.5, use_qk_norm=True),
    "glm4_moe_lite": dict(llama, architectures=["Glm4MoeLiteForCausalLM"], q_lora_rank=32, kv_lora_rank=16,
                          qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8,
                          num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=1,
                          first_k_dense_replace=1, num_nextn_predict_layers=1, rope_interleave=True,
                          rope_scaling=None),
    "ernie4_5_moe": dict(qwen3, architectures=["Ernie4_5_MoeForCausalLM"], moe_num_experts=8, moe_k=2,
                         moe_intermediate_size=64, moe_num_shared_experts=1, moe_layer_start_index=1,
                         moe_layer_end_index=-1, moe_layer_interval=1, use_bias=False),
    # MiniMax-M2 with MiniMax-01's leftover keys (list-valued attn_type_list / shared_intermediate_size).
    "minimax_m2": dict(qwen3, architectures=["MiniMaxM2ForCausalLM"], num_local_experts=8, num_experts_per_tok=2,
                       intermediate_size=64, rotary_dim=16, attn_type_list=[1, 1], qk_norm_type="per_layer",
                       scoring_func="sigmoid", use_routing_bias=True, use_qk_norm=True, shared_intermediate_size=[0],
                       use_mtp=True, num_mtp_modules=3, sliding_window=None),
    # OLMo 3 with transformers 5's per-layer-type rope_parameters (YaRN on the full layers only).
    "olmo3": dict(llama, architectures=["Olmo3ForCausalLM"], sliding_window=4,
                  layer_types=["sliding_attention", "full_attention"],
                  rope_parameters={"full_attention": {"rope_type": "yarn", "rope_theta": 5e5, "factor": 8.0,
                                                      "original_max_position_embeddings": 16},
                                   "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}),
    # EXAONE 4.0's string pattern (global NoPE layers), and a malformed one.
    "exaone4": dict(llama, architectures=["Exaone4ForCausalLM"], sliding_window=4, sliding_window_pattern="LG"),
    "exaone4_bad_pattern": dict(llama, architectures=["Exaone4ForCausalLM"], sliding_window=4,
                                sliding_window_pattern="L?"),
    # Ministral 3 inside Mistral3ForConditionalGeneration, transformers 5's rope_parameters with the query temperature.
    "ministral3": {"architectures": ["Mistral3ForConditionalGeneration"], "text_config": dict(
        llama, model_type="ministral3", head_dim=16, rope_parameters={
            "type": "yarn", "rope_theta": 1e6, "factor": 16.0, "original_max_position_embeddings": 16,
            "max_position_embeddings": 256, "mscale": 1.0, "mscale_all_dim": 1.0, "llama_4_scaling_beta": 0.1})},
    # Llama 4 as released (Llama4ForConditionalGeneration, attn_temperature_tuning 4), and a malformed one.
    "llama4": {"architectures": ["Llama4ForConditionalGeneration"], "text_config": dict(
        llama, model_type="llama4_text", head_dim=16, intermediate_size=32, intermediate_size_mlp=64,
        num_local_experts=4, num_experts_per_tok=1, interleave_moe_layer_step=2, moe_layers=[1],
        no_rope_layers=[1, 0], attention_chunk_size=4, attn_temperature_tuning=4, floor_scale=8, attn_scale=0.1,
        use_qk_norm=True)},
    "llama4_bad": dict(llama, architectures=["Llama4ForCausalLM"], moe_layers=[7, "x"], no_rope_layers=[2],
                       layer_types=["chunked_attention", 3], attention_chunk_size=-1, attn_temperature_tuning="x"),
    # Fp8 checkpoints: DeepSeek-V3's quantization_config, and compressed-tensors' (model/fp8_checkpoint.h).
    "fp8_blocks": dict(qwen3, quantization_config={"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                                   "weight_block_size": [128, 128]}),
    "fp8_compressed_tensors": dict(llama, quantization_config={
        "quant_method": "compressed-tensors", "format": "float-quantized", "quantization_status": "compressed",
        "ignore": ["lm_head"], "kv_cache_scheme": None, "config_groups": {"group_0": {
            "targets": ["Linear"], "output_activations": None,
            "weights": {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": False, "strategy": "block",
                        "block_structure": [128, 128], "group_size": None},
            "input_activations": {"num_bits": 8, "type": "float", "dynamic": True, "strategy": "token"}}}}),
}
configs["fp8_compressed_tensors_bad_types"] = dict(llama, quantization_config=dict(
    configs["fp8_compressed_tensors"]["quantization_config"],
    config_groups={"g": {"weights": {"num_bits": "8", "type": 8, "strategy": ["block"], "block_structure": "x"},
                         "input_activations": {"dynamic": "yes"}}}))
for k, v in configs.items():
    write("config", k, b"\x00" + js(v).encode())
write("config", "not_json", b"\x00{\"architectures\": [")


def l2c_v0(dim=8, hidden=16, layers=1, heads=2, kv=1, vocab=-6, seq=4, extra=0):
    hd = dim // heads
    kvd = kv * hd
    n = (abs(vocab) * dim + layers * (dim + dim * dim + 2 * kvd * dim + dim * dim + dim + 3 * hidden * dim) + dim
         + seq * hd)
    if vocab < 0:
        n += abs(vocab) * dim
    return struct.pack("<7i", dim, hidden, layers, heads, kv, vocab, seq) + struct.pack(f"<{n + extra}f",
                                                                                          *([0.25] * (n + extra)))


write("config", "l2c_v0", b"\x01" + l2c_v0())
write("config", "l2c_v0_shared", b"\x01" + l2c_v0(vocab=6))
write("config", "l2c_truncated", b"\x01" + l2c_v0()[:-4])
write("config", "l2c_huge", b"\x01" + struct.pack("<7i", 65536, 2147483647, 1024, 1, 1, 4194304, 2147483647))
write("config", "l2c_negative", b"\x01" + struct.pack("<7i", -8, 16, 1, 2, 1, -2147483648, 4))
v1 = bytearray(256)
v1[0:4] = struct.pack("<I", 0x616B3432)
v1[4:8] = struct.pack("<i", 1)
v1[8:36] = struct.pack("<7i", 8, 16, 1, 2, 1, 6, 4)
v1[36] = 1
n1 = 1 * (8 + 8) + 8 + 6 * 8 + 1 * (64 + 2 * 32 + 64 + 3 * 128)
write("config", "l2c_v1", b"\x01" + bytes(v1) + struct.pack(f"<{n1}f", *([0.5] * n1)))
write("config", "l2c_v2", b"\x01" + bytes(v1[:4]) + struct.pack("<i", 2) + bytes(v1[8:]))


# --- control_message: byte 0 even = a step's control message, odd = a group report ------------------
# A msgpack writer of our own (github.com/msgpack/msgpack/spec.md), so the seeds do not come from
# the encoder under test. Floats are float 32, as dpserve writes them.
def mp(o):
    if o is None:
        return b"\xc0"
    if o is True or o is False:
        return b"\xc3" if o else b"\xc2"
    if isinstance(o, int):
        if 0 <= o < 128:
            return bytes([o])
        if -32 <= o < 0:
            return struct.pack("b", o)
        return b"\xcf" + struct.pack(">Q", o) if o >= 0 else b"\xd3" + struct.pack(">q", o)
    if isinstance(o, float):
        return b"\xca" + struct.pack(">f", o)
    if isinstance(o, str):
        b = o.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(o, bytes):
        return (b"\xc4" + bytes([len(o)]) if len(o) < 256 else b"\xc5" + struct.pack(">H", len(o))) + o
    if isinstance(o, list):
        return bytes([0x90 | len(o)]) + b"".join(mp(x) for x in o)
    if isinstance(o, dict):
        return bytes([0x80 | len(o)]) + b"".join(mp(k) + mp(v) for k, v in o.items())
    raise TypeError(o)


def i32s(*v):
    return struct.pack(f"<{len(v)}i", *v)


def u64s(*v):
    return struct.pack(f"<{len(v)}Q", *v)


params = {"temperature": 0.0, "top_k": -1, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0,
          "frequency_penalty": 0.0, "presence_penalty": 0.0, "max_new_tokens": 16, "ignore_eos": False}
full_params = dict(params, temperature=0.7, top_k=40, top_p=0.9, seed=2 ** 64 - 1, max_new_tokens=2 ** 40,
                   stop_token_ids=i32s(2, 151645))
plain = {"id": 1, "group": 0, "input_ids": i32s(1, 2, 3), "params": params}
embeds = {"id": 2, "group": 1, "input_ids": b"", "input_embeds": struct.pack("<8f", *range(8)), "embed_rows": 2,
          "params": full_params, "top_logprobs": 5, "return_logprob": True}
step = {"v": 1, "step": 7, "new": [plain, embeds], "cancels": u64s(9, 10), "shutdown": False}
# Images: a 1x2 RGB image (6 bytes) with a hash needing all 64 bits, then the shapes a rank must refuse.
image = {"height": 1, "width": 2, "rgb": bytes([0, 1, 2, 253, 254, 255]), "hash": 2 ** 64 - 1}
with_images = dict(plain, images=[image, dict(image, hash=5)])
controls = {
    "step": step,
    "empty": {"v": 1, "step": 1, "new": [], "cancels": b"", "shutdown": False},
    "shutdown": {"v": 1, "step": 2, "new": [], "cancels": u64s(1), "shutdown": True},
    "version2": dict(step, v=2),
    "unknown_field": dict(step, constraint="{}"),
    "missing_field": {"v": 1, "step": 1, "new": [], "shutdown": False},
    "wrong_type": dict(step, shutdown=1),
    "group_range": dict(step, new=[dict(plain, group=2 ** 40)]),
    "ragged_ids": dict(step, new=[dict(plain, input_ids=b"\x01\x02\x03")]),
    "params_not_map": dict(step, new=[dict(plain, params=[1, 2])]),
    "images": dict(step, new=[with_images]),
    "image_ragged": dict(step, new=[dict(plain, images=[dict(image, rgb=b"\x00" * 5)])]),
    "image_zero": dict(step, new=[dict(plain, images=[dict(image, height=0, rgb=b"")])]),
    "image_no_hash": dict(step, new=[dict(plain, images=[{k: v for k, v in image.items() if k != "hash"}])]),
    "image_not_map": dict(step, new=[dict(plain, images=[[1, 2]])]),
}
for k, v in controls.items():
    write("control_message", k, b"\x00" + mp(v))
write("control_message", "truncated", b"\x00" + mp(step)[:-7])
write("control_message", "huge_array", b"\x00\xdd\xff\xff\xff\xff")
write("control_message", "deep", b"\x00" + b"\x91" * 64 + b"\x00")
out_tok = {"id": 5, "token": 17, "logprob": -0.5, "top_ids": i32s(17, 3), "top_logprobs": struct.pack("<2f", -0.5, -2.0),
           "finish": 2, "prompt_tokens": 12, "cached_tokens": 8}
out_err = {"id": 6, "finish": 4, "error": "evicted", "prompt_tokens": 3, "cached_tokens": 0}
report = {"v": 1, "group": 1, "running": 2, "waiting": 0, "pages_used": 5, "pages_total": 64,
          "prefix_hit_tokens": 0, "prefix_query_tokens": 12, "step_tokens": 2, "preemptions": 0, "cached_pages": 1,
          "outs": [out_tok, out_err]}
reports = {
    "report": report,
    "report_empty": dict(report, outs=[]),
    "report_unpaired": dict(report, outs=[{k: v for k, v in out_tok.items() if k != "logprob"}]),
    "report_bad_finish": dict(report, outs=[dict(out_err, finish=9)]),
    "report_ragged_top": dict(report, outs=[dict(out_tok, top_logprobs=struct.pack("<f", -1.0))]),
}
for k, v in reports.items():
    write("control_message", k, b"\x01" + mp(v))
# --- gguf: whole files (tools/gguf_format.py writes the valid ones) -------------------------------
import sys  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tools"))
import numpy as np  # noqa: E402

import gguf_format as G  # noqa: E402


def gguf_bytes(w):
    path = os.path.join(ROOT, "..", "seeds", ".tmp.gguf")
    w.write(path)
    with open(path, "rb") as f:
        data = f.read()
    os.remove(path)
    return data


def q8_rows(rows, cols, seed):
    """Valid Q8_0 blocks: f16 scale 0.01, random int8 codes."""
    rng = np.random.default_rng(seed)
    blocks = np.zeros((rows, cols // 32, 34), dtype=np.uint8)
    blocks[:, :, 0:2] = np.frombuffer(np.float16(0.01).tobytes(), dtype=np.uint8)
    blocks[:, :, 2:] = rng.integers(0, 256, size=(rows, cols // 32, 32), dtype=np.uint8)
    return blocks


def tiny_model(arch="llama", hidden=8, heads=2, kv=1, ffn=16, vocab=8, qtype=None, vocab_kind="llama",
               experts=0, extra_kv=(), extra_tensors=()):
    """A complete small GGUF model: metadata, vocabulary and F32 (or Q8_0) tensors."""
    w = G.GgufWriter()
    hd = hidden // heads
    w.add("general.architecture", G.STRING, arch)
    p = arch + "."
    for k, v in [("block_count", 1), ("context_length", 64), ("embedding_length", hidden),
                 ("feed_forward_length", ffn), ("attention.head_count", heads), ("attention.head_count_kv", kv)]:
        w.add(p + k, G.U32, v)
    w.add(p + "attention.layer_norm_rms_epsilon", G.F32, 1e-5)
    w.add(p + "rope.freq_base", G.F32, 10000.0)
    if experts:
        w.add(p + "expert_count", G.U32, experts)
        w.add(p + "expert_used_count", G.U32, 2)
        w.add(p + "expert_feed_forward_length", G.U32, ffn)
    for k, t, v in extra_kv:
        w.add(k, t, v)
    if vocab_kind == "llama":
        toks = ["<unk>", "<s>", "</s>", "<0x0A>", "\u2581a", "b", "\u2581", "a"][:vocab]
        w.add("tokenizer.ggml.model", G.STRING, "llama")
        w.add_array("tokenizer.ggml.tokens", G.STRING, toks)
        w.add_array("tokenizer.ggml.scores", G.F32, np.arange(len(toks), dtype="<f4") * -1)
        w.add_array("tokenizer.ggml.token_type", G.I32, np.array([2, 3, 3, 6, 1, 1, 1, 1][:vocab], dtype="<i4"))
        w.add("tokenizer.ggml.bos_token_id", G.U32, 1)
        w.add("tokenizer.ggml.eos_token_id", G.U32, 2)
    elif vocab_kind == "gpt2":
        toks = ["a", "b", "\u0120", "\u0120a", "ab", "<|im_end|>", "c", "\u010a"][:vocab]
        w.add("tokenizer.ggml.model", G.STRING, "gpt2")
        w.add("tokenizer.ggml.pre", G.STRING, "qwen2")
        w.add_array("tokenizer.ggml.tokens", G.STRING, toks)
        w.add_array("tokenizer.ggml.token_type", G.I32, np.array([1, 1, 1, 1, 1, 3, 1, 1][:vocab], dtype="<i4"))
        w.add_array("tokenizer.ggml.merges", G.STRING, ["\u0120 a", "a b"])
        w.add("tokenizer.ggml.eos_token_id", G.U32, 5)
        w.add("tokenizer.chat_template", G.STRING, "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    rng = np.random.default_rng(7)

    def mat(name, rows, cols):
        if qtype == "q8_0" and cols % 32 == 0:
            b = q8_rows(rows, cols, len(w.tensors))
            w.add_tensor(G.TensorSpec(name, G.GGML_Q8_0, (rows, cols), lambda b=b: b))
        else:
            a = (rng.standard_normal((rows, cols)) * 0.3).astype("<f4")
            w.add_tensor(G.TensorSpec(name, G.GGML_F32, (rows, cols), lambda a=a: a))

    def vec(name, n):
        a = np.ones(n, dtype="<f4")
        w.add_tensor(G.TensorSpec(name, G.GGML_F32, (n,), lambda a=a: a))
    mat("token_embd.weight", vocab, hidden)
    vec("blk.0.attn_norm.weight", hidden)
    mat("blk.0.attn_q.weight", heads * hd, hidden)
    mat("blk.0.attn_k.weight", kv * hd, hidden)
    mat("blk.0.attn_v.weight", kv * hd, hidden)
    mat("blk.0.attn_output.weight", hidden, heads * hd)
    if arch in ("qwen3", "qwen3moe"):
        vec("blk.0.attn_q_norm.weight", hd)
        vec("blk.0.attn_k_norm.weight", hd)
    vec("blk.0.ffn_norm.weight", hidden)
    if experts:
        mat("blk.0.ffn_gate_inp.weight", experts, hidden)
        for n, shape in [("ffn_gate_exps", (experts, ffn, hidden)), ("ffn_up_exps", (experts, ffn, hidden)),
                         ("ffn_down_exps", (experts, hidden, ffn))]:
            a = (rng.standard_normal(shape) * 0.3).astype("<f4")
            w.add_tensor(G.TensorSpec(f"blk.0.{n}.weight", G.GGML_F32, shape, lambda a=a: a))
    else:
        mat("blk.0.ffn_gate.weight", ffn, hidden)
        mat("blk.0.ffn_up.weight", ffn, hidden)
        mat("blk.0.ffn_down.weight", hidden, ffn)
    vec("output_norm.weight", hidden)
    for t in extra_tensors:
        w.add_tensor(t)
    return w


def raw_gguf(kv=b"", n_kv=0, tensors=b"", n_tensors=0, version=3, data=b"", magic=b"GGUF"):
    """Hand-made bytes for files no writer would produce."""
    head = magic + struct.pack("<IQQ", version, n_tensors, n_kv) + kv + tensors
    head += b"\0" * ((32 - len(head) % 32) % 32)
    return head + data


def kv(key, vtype, value, elem=None):
    return G.gguf_string(key) + struct.pack("<I", vtype) + G.encode_value(vtype, value, elem)


def tinfo(name, dims, ggml_type, offset):
    return G.gguf_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims) + \
        struct.pack("<IQ", ggml_type, offset)


valid = gguf_bytes(tiny_model())
write("gguf", "llama_f32", valid)
write("gguf", "llama_q8_0", gguf_bytes(tiny_model(hidden=32, ffn=32, qtype="q8_0")))
write("gguf", "qwen3moe_gpt2", gguf_bytes(tiny_model(arch="qwen3moe", experts=4, vocab_kind="gpt2")))
write("gguf", "qwen2_no_vocab", gguf_bytes(tiny_model(arch="qwen2", vocab_kind=None, extra_tensors=[
    G.TensorSpec(f"blk.0.attn_{x}.bias", G.GGML_F32, (n,), lambda n=n: np.zeros(n, dtype="<f4"))
    for x, n in (("q", 8), ("k", 4), ("v", 4))])))
write("gguf", "truncated_data", valid[:-7])
write("gguf", "truncated_header", valid[:100])
write("gguf", "wrong_magic", b"GGUG" + valid[4:])
write("gguf", "version1", valid[:4] + struct.pack("<I", 1) + valid[8:])
write("gguf", "big_endian", valid[:4] + struct.pack(">I", 3) + valid[8:])
write("gguf", "huge_counts", raw_gguf(n_kv=(1 << 62), n_tensors=(1 << 62)))
write("gguf", "huge_string", raw_gguf(kv=G.gguf_string("k") + struct.pack("<IQ", G.STRING, 1 << 60), n_kv=1))
write("gguf", "huge_array", raw_gguf(kv=G.gguf_string("k") + struct.pack("<IIQ", G.ARRAY, G.STRING, 1 << 40), n_kv=1))
write("gguf", "huge_f32_array", raw_gguf(kv=G.gguf_string("k") + struct.pack("<IIQ", G.ARRAY, G.F32, 1 << 61), n_kv=1))
write("gguf", "nested_array", raw_gguf(kv=G.gguf_string("k") + struct.pack("<IIQ", G.ARRAY, G.ARRAY, 1), n_kv=1))
write("gguf", "bad_utf8_key", raw_gguf(kv=struct.pack("<Q", 2) + b"\xc3\x28" + struct.pack("<IB", G.U8, 1), n_kv=1))
write("gguf", "bad_utf8_value", raw_gguf(kv=G.gguf_string("k") + struct.pack("<IQ", G.STRING, 3) + b"a\xff\xfe", n_kv=1))
write("gguf", "bad_type", raw_gguf(kv=G.gguf_string("k") + struct.pack("<I", 77), n_kv=1))
write("gguf", "bad_bool", raw_gguf(kv=G.gguf_string("k") + struct.pack("<IB", G.BOOL, 7), n_kv=1))
write("gguf", "dup_key", raw_gguf(kv=kv("k", G.U8, 1) + kv("k", G.U8, 2), n_kv=2))
write("gguf", "bad_alignment", raw_gguf(kv=kv("general.alignment", G.U32, 3), n_kv=1))
write("gguf", "alignment_u64", raw_gguf(kv=kv("general.alignment", G.U64, 64), n_kv=1))
f32x4 = struct.pack("<4f", 1, 2, 3, 4)
write("gguf", "overlap", raw_gguf(tensors=tinfo("a", [4], 0, 0) + tinfo("b", [4], 0, 0), n_tensors=2, data=f32x4))
write("gguf", "offset_out", raw_gguf(tensors=tinfo("a", [4], 0, 64), n_tensors=1, data=f32x4))
write("gguf", "offset_wrap", raw_gguf(tensors=tinfo("a", [4], 0, (1 << 64) - 32), n_tensors=1, data=f32x4))
write("gguf", "misaligned", raw_gguf(tensors=tinfo("a", [4], 0, 4), n_tensors=1, data=f32x4 * 2))
write("gguf", "unknown_type", raw_gguf(tensors=tinfo("a", [4], 99, 0), n_tensors=1, data=f32x4))
write("gguf", "iq2_xxs", raw_gguf(tensors=tinfo("a", [256], 16, 0), n_tensors=1, data=bytes(96)))
write("gguf", "zero_dim", raw_gguf(tensors=tinfo("a", [0], 0, 0), n_tensors=1, data=f32x4))
write("gguf", "five_dims", raw_gguf(tensors=tinfo("a", [1, 1, 1, 1, 4], 0, 0), n_tensors=1, data=f32x4))
write("gguf", "huge_dims", raw_gguf(tensors=tinfo("a", [1 << 40, 1 << 40], 0, 0), n_tensors=1, data=f32x4))
write("gguf", "partial_block", raw_gguf(tensors=tinfo("a", [31, 2], 8, 0), n_tensors=1, data=bytes(68)))
write("gguf", "dup_tensor", raw_gguf(tensors=tinfo("a", [4], 0, 0) + tinfo("a", [4], 0, 32), n_tensors=2,
                                     data=f32x4 + bytes(16) + f32x4))
write("gguf", "unknown_arch", gguf_bytes(tiny_model(arch="mamba")))
write("gguf", "unknown_pre", gguf_bytes(tiny_model(vocab_kind="gpt2"))
                                        .replace(b"qwen2", b"qwen9"))
write("gguf", "split_count", gguf_bytes(tiny_model(extra_kv=[("split.count", G.U16, 2)])))
write("gguf", "unsupported_tensor_type", gguf_bytes(tiny_model(extra_tensors=[
    G.TensorSpec("blk.0.extra.weight", 16, (1, 256), lambda: np.zeros(66, dtype=np.uint8))])))
write("gguf", "empty", b"")


# --- image: JPEG / PNG files as clients send them (Pillow writes the valid ones) --------------------
def image_seeds():
    import io
    import zlib

    from PIL import Image

    def encoded(img, fmt, **kw):
        b = io.BytesIO()
        img.save(b, fmt, **kw)
        return b.getvalue()

    # A small gradient, so the encoders produce real coefficients and filters.
    rgb = Image.new("RGB", (37, 23))
    rgb.putdata([((x * 7) % 256, (y * 11) % 256, (x * y) % 256) for y in range(23) for x in range(37)])
    write("image", "jpeg_rgb", encoded(rgb, "JPEG", quality=80))
    write("image", "jpeg_progressive", encoded(rgb, "JPEG", quality=60, progressive=True))
    write("image", "jpeg_gray", encoded(rgb.convert("L"), "JPEG"))
    write("image", "jpeg_cmyk", encoded(rgb.convert("CMYK"), "JPEG"))
    write("image", "jpeg_444", encoded(rgb, "JPEG", subsampling=0))
    write("image", "jpeg_tall", encoded(rgb.resize((3, 61)), "JPEG"))
    write("image", "png_rgb", encoded(rgb, "PNG"))
    write("image", "png_rgba", encoded(rgb.convert("RGBA"), "PNG"))
    write("image", "png_gray", encoded(rgb.convert("L"), "PNG"))
    write("image", "png_bilevel", encoded(rgb.convert("1"), "PNG"))
    write("image", "png_palette", encoded(rgb.convert("P", palette=Image.ADAPTIVE, colors=16), "PNG"))
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=4)
    write("image", "png_palette_trns", encoded(pal, "PNG", transparency=1, bits=2))
    write("image", "png_gray16", encoded(rgb.convert("L").convert("I").point(lambda v: v * 200), "PNG"))
    write("image", "png_la", encoded(rgb.convert("LA"), "PNG"))

    # Hand-made PNGs for what Pillow does not write: 16-bit RGB, Adam7 interlacing, a gray tRNS.
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    def png(w, h, depth, colour, rows, interlace=0, extra=b""):
        ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, interlace)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra +
                chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))

    w, h = 5, 4
    write("image", "png_rgb16", png(w, h, 16, 2, b"".join(b"\x00" + bytes(range(6 * w)) for _ in range(h))))
    # Adam7: 7 passes of a 5 x 4 gray image, 1 byte per pixel; the passes' rows each with filter 0.
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    rows = b""
    for x0, y0, dx, dy in passes:
        cols = len(range(x0, w, dx))
        for _ in range(y0, h, dy):
            if cols:
                rows += b"\x00" + bytes(range(cols))
    write("image", "png_adam7", png(w, h, 8, 0, rows, interlace=1))
    write("image", "png_gray16_trns", png(w, h, 16, 0, b"".join(b"\x00" + bytes(2 * w) for _ in range(h)),
                                          extra=chunk(b"tRNS", b"\x00\x00")))

    # Liars and wrecks.
    jpeg = encoded(rgb, "JPEG")
    sof = jpeg.index(b"\xff\xc0")
    write("image", "jpeg_sof_huge", jpeg[:sof + 5] + b"\xff\xf0\xff\xf0" + jpeg[sof + 9:])
    write("image", "jpeg_sof_zero", jpeg[:sof + 5] + b"\x00\x00" + jpeg[sof + 7:])
    write("image", "jpeg_truncated", jpeg[: len(jpeg) // 2])
    write("image", "jpeg_header_only", jpeg[: sof + 20])
    write("image", "jpeg_two_sof", jpeg[: sof] + jpeg[sof: sof + 19] + jpeg[sof:])
    write("image", "jpeg_fill_bytes", jpeg[:2] + b"\xff\xff\xff" + jpeg[2:])
    pngb = encoded(rgb, "PNG")
    write("image", "png_ihdr_huge", pngb[:16] + struct.pack(">II", 1 << 30, 1 << 30) + pngb[24:])
    write("image", "png_truncated", pngb[: len(pngb) // 2])
    write("image", "png_no_ihdr", pngb[:8] + chunk(b"tEXt", b"a\x00b") + pngb[8:])
    write("image", "gif", b"GIF89a" + bytes(20))
    write("image", "empty", b"")


image_seeds()


# --- prefix_store: byte 0 = flags (bit 0: the target rewrites the checksum; bits 1-2: pool of 1 / 3 /
# 8 / 64 pages), then a --kv-cache-dir file for identity "model=fuzz\nkv=f32\n", 4-position pages
# of 64 bytes (1 layer, 1 KV head of 2 fp32 values, K and V), written from src/kv/prefix_store.cpp's
# layout: magic, identity, geometry, entries (parent, tokens), pages, checksum.
def kv_checksum(b):
    mask = (1 << 64) - 1
    h = 0x6a09e667f3bcc908

    def mix(w):
        nonlocal h
        h = ((h ^ w) * 0x9e3779b97f4a7c15) & mask
        h ^= h >> 29

    full = len(b) // 8 * 8
    for i in range(0, full, 8):
        mix(struct.unpack("<Q", b[i:i + 8])[0])
    tail = b[full:]
    mix(int.from_bytes(tail, "little") ^ (len(tail) << 56))
    mix(len(b))
    return h


def kv_file(entries, identity=b"model=fuzz\nkv=f32\n", page_size=4, page_bytes=64, n=None, pages=None):
    b = b"DPSKVC01" + struct.pack("<Q", len(identity)) + identity
    b += struct.pack("<qqq", page_size, page_bytes, len(entries) if n is None else n)
    for parent, key in entries:
        b += struct.pack("<q", parent) + struct.pack("<%di" % len(key), *key)
    if pages is None:
        pages = b"".join(struct.pack("<16f", *[i + 0.25 * j for j in range(16)]) for i in range(len(entries)))
    b += pages
    return b + struct.pack("<Q", kv_checksum(b))


def kv_seed(name, flags, data):
    write("prefix_store", name, bytes([flags]) + data)


tree = [(-1, [1, 2, 3, 4]), (0, [5, 6, 7, 8]), (-1, [9, 9, 9, 9]), (1, [0, 0, 0, 0]), (0, [7, 7, 7, 7])]
kv_seed("empty_tree", 4, kv_file([]))
kv_seed("tree", 4, kv_file(tree))
kv_seed("tree_small_pool", 2, kv_file(tree))
kv_seed("one_page_pool", 0, kv_file(tree))
kv_seed("chain", 6, kv_file([(i - 1, [i] * 4) for i in range(12)]))
kv_seed("tree_fixup", 5, kv_file(tree))
kv_seed("duplicate_sibling", 4, kv_file([(-1, [1, 2, 3, 4]), (-1, [1, 2, 3, 4])]))
kv_seed("parent_after_child", 4, kv_file([(1, [1, 2, 3, 4]), (-1, [5, 6, 7, 8])]))
kv_seed("parent_below_root", 4, kv_file([(-2, [1, 2, 3, 4])]))
kv_seed("other_identity", 4, kv_file(tree, identity=b"model=other\nkv=f32\n"))
kv_seed("other_page_size", 4, kv_file(tree, page_size=8))
kv_seed("other_page_bytes", 4, kv_file(tree, page_bytes=32))
kv_seed("count_too_big", 5, kv_file(tree, n=1 << 40))
kv_seed("count_negative", 5, kv_file(tree, n=-1))
kv_seed("truncated", 4, kv_file(tree)[:-40])
kv_seed("bad_checksum", 4, kv_file(tree)[:-1] + b"\x00")
kv_seed("nan_pages", 4, kv_file(tree[:1], pages=b"\xff" * 64))
kv_seed("wrong_magic", 4, b"DPSKVC02" + kv_file(tree)[8:])
kv_seed("huge_identity", 5, b"DPSKVC01" + struct.pack("<Q", 1 << 62) + bytes(40))


# --- constraint: byte 0 = kind (0 regex, 1 JSON Schema, 2 GBNF), then its text ----------------------
def constraint_seeds():
    regexes = {
        "phone": r"\(\d{3}\) \d{3}-\d{4}",
        "email": r"[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,6}",
        "alternation": r"(cat|dog|bird)s?( and (cat|dog))*",
        "classes": r"[^\s,;]{1,8}(,[\w\-]+)*\.?",
        "unicode": r"[α-ω]+\u00e9?[\u4e00-\u9fff]{0,2}",
        "lazy_anchor": r"^a.*?b$",
        "nested_repeat": r"((ab){2,3}c){1,4}",
        "big_repeat": r"(a{100}){100}",
        "escapes": r"\t\n\\\.\*\x41\u0042[\]\-]",
        "empty": r"",
        "bad_class": r"[z-a]",
        "unclosed": r"(abc",
        "backref": r"(a)\1",
        "lookahead": r"a(?=b)",
    }
    for k, v in regexes.items():
        write("constraint", "regex_" + k, b"\x00" + v.encode())
    schemas = {
        "object": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5},
                                                   "age": {"type": "integer", "minimum": 0, "maximum": 150}},
                   "required": ["name"], "additionalProperties": False},
        "array": {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3},
        "enum_const": {"anyOf": [{"enum": ["a", 1, None, True]}, {"const": {"k": [1, 2]}}]},
        "ref": {"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
                "$ref": "#/$defs/node"},
        "pattern": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}$"},
        "formats": {"type": "object", "properties": {"d": {"type": "string", "format": "date-time"},
                                                    "u": {"type": "string", "format": "uuid"}}},
        "allof": {"allOf": [{"type": "object", "properties": {"a": {"type": "boolean"}}},
                            {"required": ["a"]}]},
        "tuple": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "null"}], "items": False},
        "number_bounds": {"type": "number", "exclusiveMinimum": -1.5, "maximum": 10, "multipleOf": 0.5},
        "unsatisfiable": {"type": "integer", "minimum": 5, "maximum": 1},
        # As zod v4 writes them: its own formats with their patterns, records with enum / pattern
        # keys, an integer step, two allOf patterns.
        "zod_formats": {"type": "object", "properties": {
            "c": {"type": "string", "format": "cuid", "pattern": "^[cC][0-9a-z]{6,}$"},
            "v6": {"type": "string", "format": "ipv6"}, "p": {"type": "string", "format": "e164"},
            "s": {"type": "string", "format": "starts_with", "pattern": "^ab.*"},
            "b": {"type": "string", "format": "base64"}}},
        "records": {"type": "object", "properties": {
            "e": {"type": "object", "propertyNames": {"type": "string", "enum": ["a", "b"]},
                  "additionalProperties": {"type": "number"}, "required": ["a"]},
            "r": {"type": "object", "propertyNames": {"type": "string", "pattern": "^k[0-9]+$"},
                  "additionalProperties": {"type": "integer"}}}},
        "multiple_of": {"type": "integer", "multipleOf": 15, "minimum": -1000, "maximum": 1000},
        "allof_patterns": {"type": "string", "format": "ends_with", "allOf": [{"pattern": "^a.*"}, {"pattern": ".*z$"}]},
        "not_json": "{\"type\": ",
    }
    for k, v in schemas.items():
        write("constraint", "schema_" + k, b"\x01" + (v if isinstance(v, str) else js(v)).encode())
    grammars = {
        "arith": 'root ::= expr\nexpr ::= term ("+" term)*\nterm ::= [0-9]+ | "(" expr ")"\n',
        "json_like": 'root ::= obj\nobj ::= "{" ws (pair ("," ws pair)*)? "}"\npair ::= str ":" ws val\n'
                     'val ::= str | [0-9]+ | obj\nstr ::= "\\"" [^"\\\\]* "\\""\nws ::= [ \\t\\n]*\n',
        "repeat": 'root ::= "a"{2,5} [b-d]? x\nx ::= "yes" | "no"\n',
        "left_recursive": "root ::= root \"a\" | \"b\"\n",
        "no_root": 'start ::= "a"\n',
        "undefined_rule": "root ::= missing\n",
        "comments": '# a comment\nroot ::= "x" # trailing\n  | "y"\n',
    }
    for k, v in grammars.items():
        write("constraint", "ebnf_" + k, b"\x02" + v.encode())


constraint_seeds()


# --- chat_output: byte 0 = the parser's configuration (0x40: Qwen3-Coder), byte 1 = the split's seed --------
def chat_output_seeds():
    def coder(name, params):
        return ("<tool_call>\n<function=%s>\n" % name
                + "".join("<parameter=%s>\n%s\n</parameter>\n" % kv for kv in params) + "</function>\n</tool_call>")
    typed = coder("get_weather", [("city", 'Paris "x"\n{'), ("days", "3"), ("ok", "True"), ("at", '{"a": [1]}'),
                                  ("l", "[1, 2"), ("x", "1e400"), ("n", "null")])
    seeds = {
        "coder_typed": typed,
        "coder_two_then_text": typed + "\n" + coder("get_time", []) + " done",
        "coder_unclosed": "<think>hm</think>\n<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo",
        "coder_not_a_call": "<tool_call>\n<function=rm>\n</function>\n</tool_call><tool_call>{\"name\": 1}</tool_call>",
    }
    for k, v in seeds.items():
        write("chat_output", k, b"\x41\x07" + v.encode())
    # GLM-4.5's calls (0x43: the glm45 parser, with Qwen3's reasoning reader).
    glm = ("<think>hm</think><tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris \"x\"\n{</arg_value>\n"
           "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>\n<tool_call>get_time</tool_call>")
    glm_seeds = {
        "glm_typed": glm,
        "glm_unclosed": "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Oslo",
        "glm_not_a_call": "<tool_call>rm\n<arg_key>a</arg_key>\n</tool_call><tool_call>get_time<arg_value>x</arg_value>",
    }
    for k, v in glm_seeds.items():
        write("chat_output", k, b"\x43\x07" + v.encode())
    # gpt-oss's harmony format (0x81: the reader and its calls), as OpenAI's guide writes it.
    harmony = {
        "harmony_final": "<|channel|>analysis<|message|>Simple.<|end|><|start|>assistant<|channel|>final<|message|>4.",
        "harmony_call": "<|channel|>commentary<|message|>Checking.<|end|><|start|>assistant to=functions.get_time"
                        "<|channel|>commentary json<|message|>{\"tz\": \"UTC\"}<|end|><|start|>assistant<|channel|>"
                        "commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Oslo\"}<|call|>",
        "harmony_cut": "<|channel|>analysis to=browser.search<|message|>{}<|end|><|start|>assistant<|chan",
    }
    for k, v in harmony.items():
        write("chat_output", k, b"\x81\x07" + v.encode())


chat_output_seeds()
