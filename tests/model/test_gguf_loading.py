#!/usr/bin/python3
"""GGUF models through the real `dpserve` command: what loads and what is refused, and how.

  * stories260K (llama2.c's real weights) converted to GGUF by tools/hf_to_gguf.py greedily
    generates exactly llama2.c's reference ids (shared/models/stories260K/expected), with the
    vocabulary read from the GGUF itself;
  * the same model with general.alignment 256, as GGUF version 2, and as a split set (loaded from
    any of its files and from its folder) gives the same ids; a folder with two models is an
    error naming both;
  * bad files (truncated, wrong magic or version, lying sizes and offsets, overlapping tensors,
    absurd counts and dimensions, bad UTF-8, unknown or unsupported tensor types, unknown
    architectures, unknown pre-tokenizers) end dpserve with a message naming the problem, never
    a crash;
  * bad deepseek2 files (a missing MLA key, YaRN without its attention temperature, an unknown
    gating function, metadata and tensors of different kv_b layouts, a missing or stray tensor)
    are refused naming the key or tensor;
  * bad Mixtral files (llama with expert_count): routing keys that ask for another rule (groups,
    sigmoid, shared experts, a scale, no renormalisation, experts of another width), an
    expert_count the stacked tensors do not have, a missing router, a dense FFN tensor, and in the
    older per-expert layout a missing expert or one beyond expert_count;
  * a quantized model whose shard would cut a block names --tp-size;
  * YaRN in Qwen3 / Qwen2 GGUF files (our converter's, llama.cpp's keys) gives the logits of the HF
    folder it came from (checked against NumPy in model_reference_yarn), and the keys without a
    Hugging Face meaning are refused unless neutral;
  * a Gemma 3 folder written as gemma3 GGUF by our converter (llama.cpp's layout and keys) gives
    the folder's logits; its window keys matter; what the format cannot hold is refused.
  * a Gemma 2 folder written as gemma2 GGUF gives the folder's logits; its soft-cap and window keys
    matter; a null cap (which the format cannot hold) is refused by the converter.
  * a Phi-3 folder (LongRoPE, partial rotary, window) written as phi3 GGUF gives the folder's logits
    with either LongRoPE factor set, fused or split q/k/v, and with rope_scaling type "yarn" (which
    Phi3Config reads as LongRoPE); its rope keys and tensors matter; bad ones are refused naming them;
    the converter refuses a layout option of another architecture.
  * a gpt-oss folder written as gpt-oss GGUF gives the folder's logits bit for bit; its window keys
    matter; missing sinks, biases or window are refused naming them, and the converter refuses what
    the format cannot hold (another clamp, another layer pattern, YaRN unrounded).

usage: test_gguf_loading.py DPSERVE_BIN SHARED_DIR WORK_DIR
"""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

BIN, SHARED, WORK = sys.argv[1:4]
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools"))
import gguf_format as G  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
os.makedirs(WORK, exist_ok=True)
failures = []


def dpserve(args, timeout=120):
    return subprocess.run([BIN] + args, capture_output=True, text=True, timeout=timeout, env=ENV)


def check(ok, what):
    print(("ok " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def generate_ids(model, n=40):
    p = dpserve(["generate", "--json", "--model-path", model, "--prompt", "", "-n", str(n), "--temperature", "0",
                 "--ignore-eos", "--threads", "2"])
    if p.returncode != 0:
        return None, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1]), ""


def hf_to_gguf(args):
    subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "hf_to_gguf.py")] + args, check=True,
                   timeout=300, stderr=subprocess.DEVNULL)


# --- stories260K as GGUF against llama2.c's reference --------------------------------------------
stories = os.path.join(SHARED, "models", "stories260K")
gguf = os.path.join(WORK, "stories260K.gguf")
hf_to_gguf(["--llama2c", os.path.join(stories, "stories260K.bin"), "--tokenizer", os.path.join(stories, "tok512.bin"),
            "--outtype", "f32", "--out", gguf])
with open(os.path.join(stories, "expected", "stories260K_greedy_n200.ids.txt")) as f:
    expected = [int(x) for x in f.read().split()]
out, err = generate_ids(gguf, 60)
# llama2.c's ids start with BOS; the GGUF's vocabulary must supply that BOS (add_bos) itself.
check(out is not None and out["prompt_ids"] == expected[:1] and out["output_ids"] == expected[1:61],
      f"stories260K.gguf greedy == llama2.c's 60 reference ids {'' if out else err}")
text = dpserve(["tokenize", "--model-path", gguf, "--text", "Once upon a time", "--json"])
ref_tok = dpserve(["tokenize", "--model-path", os.path.join(stories, "stories260K.bin"), "--text", "Once upon a time",
                   "--json"])
check(text.returncode == 0 and json.loads(text.stdout) == json.loads(ref_tok.stdout) == [403, 407, 261, 378],
      "dpserve tokenize reads the GGUF's own vocabulary (same ids as tok512.bin)")

# --- general.alignment and GGUF version 2 (the same layout with another version number) -------------
aligned = os.path.join(WORK, "stories260K-align256.gguf")
hf_to_gguf(["--llama2c", os.path.join(stories, "stories260K.bin"), "--tokenizer", os.path.join(stories, "tok512.bin"),
            "--outtype", "f32", "--alignment", "256", "--out", aligned])
v2 = os.path.join(WORK, "stories260K-v2.gguf")
with open(gguf, "rb") as f:
    data = bytearray(f.read())
data[4:8] = struct.pack("<I", 2)
with open(v2, "wb") as f:
    f.write(data)
for path, what in [(aligned, "general.alignment 256"), (v2, "GGUF version 2")]:
    got, err = generate_ids(path, 60)
    check(got is not None and got["output_ids"] == expected[1:61], f"{what}: the same 60 ids {err}")

# --- split sets and folders ----------------------------------------------------------------------
split_dir = os.path.join(WORK, "split")
shutil.rmtree(split_dir, ignore_errors=True)
os.makedirs(split_dir)
hf_to_gguf(["--llama2c", os.path.join(stories, "stories260K.bin"), "--tokenizer", os.path.join(stories, "tok512.bin"),
            "--outtype", "f32", "--split-max-tensors", "20", "--out", os.path.join(split_dir, "stories")])
parts = sorted(os.listdir(split_dir))
check(len(parts) >= 3, f"split set written as {len(parts)} files")
base, _ = generate_ids(gguf, 16)
for target in [os.path.join(split_dir, parts[0]), os.path.join(split_dir, parts[-1]), split_dir]:
    got, err = generate_ids(target, 16)
    check(got is not None and got["output_ids"] == base["output_ids"], f"split set via {os.path.relpath(target, WORK)}")
os.remove(os.path.join(split_dir, parts[1]))
p = dpserve(["generate", "--model-path", split_dir, "--prompt-ids", "1", "-n", "1"])
check(p.returncode == 1 and "split file 2 of" in p.stderr and "missing" in p.stderr, "missing split file is named")
two = os.path.join(WORK, "two")
shutil.rmtree(two, ignore_errors=True)
os.makedirs(two)
shutil.copy(gguf, os.path.join(two, "a.gguf"))
shutil.copy(gguf, os.path.join(two, "b.gguf"))
p = dpserve(["generate", "--model-path", two, "--prompt-ids", "1", "-n", "1"])
check(p.returncode == 1 and "a.gguf" in p.stderr and "b.gguf" in p.stderr, "a folder of two GGUF models names both")
one = os.path.join(WORK, "one")
shutil.rmtree(one, ignore_errors=True)
os.makedirs(one)
shutil.copy(gguf, os.path.join(one, "model.gguf"))
got, err = generate_ids(one, 16)
check(got is not None and got["output_ids"] == base["output_ids"], "a folder holding one GGUF loads with nothing else")

# --- bad files -------------------------------------------------------------------------------------
with open(gguf, "rb") as f:
    good = f.read()


def raw(kv=b"", n_kv=0, tensors=b"", n_tensors=0, version=3, data=b""):
    head = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + kv + tensors
    head += b"\0" * ((32 - len(head) % 32) % 32)
    return head + data


def kv(key, vtype, value, elem=None):
    return G.gguf_string(key) + struct.pack("<I", vtype) + G.encode_value(vtype, value, elem)


def tinfo(name, dims, ggml_type, offset):
    return (G.gguf_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
            + struct.pack("<IQ", ggml_type, offset))


def patched_model(drop=(), extra_kv=(), replace_kv=None, extra_tensors=(), retype=None, base=None):
    """stories260K.gguf (or `base`) rewritten with changes, through our writer."""
    w = G.GgufWriter()
    src = open_gguf(base or gguf)
    for key, (vt, val, elem) in src["kv"].items():
        if key in drop:
            continue
        if replace_kv and key in replace_kv:
            vt, val, elem = replace_kv[key]
        w.add(key, vt, val, elem)
    for kv in extra_kv:  # (key, type, value) or, for an array, (key, ARRAY, values, element type)
        w.add(*kv)
    for name, (typ, shape, data) in src["tensors"].items():
        if name in drop:
            continue
        if retype and name == retype[0]:
            typ, data = retype[1], np.zeros(G.TensorSpec(name, retype[1], shape, None).nbytes, np.uint8)
        w.add_tensor(G.TensorSpec(name, typ, shape, lambda d=data: d))
    for t in extra_tensors:
        w.add_tensor(t)
    return w


def open_gguf(path):
    """Our own small reader of the files our writer made (metadata values and tensor bytes)."""
    b = open(path, "rb").read()
    pos = [24]

    def u(fmt):
        v = struct.unpack_from(fmt, b, pos[0])
        pos[0] += struct.calcsize(fmt)
        return v[0]

    def s():
        n = u("<Q")
        pos[0] += n
        return b[pos[0] - n:pos[0]].decode()

    def val(vt):
        if vt == G.STRING:
            return s(), None
        if vt == G.ARRAY:
            et, n = u("<I"), u("<Q")
            return [val(et)[0] for _ in range(n)], et
        return u(G._SCALAR[vt]), None
    n_t, n_kv = struct.unpack_from("<QQ", b, 8)
    out = {"kv": {}, "tensors": {}}
    for _ in range(n_kv):
        k = s()
        vt = u("<I")
        v, et = val(vt)
        out["kv"][k] = (vt, v, et)
    infos = []
    for _ in range(n_t):
        name = s()
        nd = u("<I")
        dims = [u("<Q") for _ in range(nd)]
        typ, off = u("<I"), u("<Q")
        infos.append((name, typ, tuple(reversed(dims)), off))
    start = (pos[0] + 31) // 32 * 32
    for name, typ, shape, off in infos:
        n = G.TensorSpec(name, typ, shape, None).nbytes
        out["tensors"][name] = (typ, shape, np.frombuffer(b, np.uint8, n, start + off))
    return out


def write(name, data_or_writer):
    path = os.path.join(WORK, name + ".gguf")
    if isinstance(data_or_writer, G.GgufWriter):
        data_or_writer.write(path)
    else:
        with open(path, "wb") as f:
            f.write(data_or_writer)
    return path


f32x4 = struct.pack("<4f", 1, 2, 3, 4)
BAD = [
    ("truncated", good[:-1000], "truncated"),
    ("truncated_header", good[:200], "truncated"),
    ("wrong_magic", b"GGUX" + good[4:], "not a GGUF file"),
    ("version1", good[:4] + struct.pack("<I", 1) + good[8:], "version 1"),
    ("version9", good[:4] + struct.pack("<I", 9) + good[8:], "unknown GGUF version 9"),
    ("big_endian", good[:4] + struct.pack(">I", 3) + good[8:], "big-endian"),
    ("huge_counts", raw(n_kv=1 << 62, n_tensors=1 << 62), "more than the file can hold"),
    ("huge_string_array", raw(kv=G.gguf_string("k") + struct.pack("<IIQ", G.ARRAY, G.STRING, 1 << 40), n_kv=1),
     "claims 1099511627776 strings"),
    ("huge_float_array", raw(kv=G.gguf_string("k") + struct.pack("<IIQ", G.ARRAY, G.F32, 1 << 61), n_kv=1),
     "more than the"),
    ("nested_array", raw(kv=G.gguf_string("k") + struct.pack("<IIQ", G.ARRAY, G.ARRAY, 1), n_kv=1), "array of arrays"),
    ("bad_utf8_key", raw(kv=struct.pack("<Q", 2) + b"\xc3\x28" + struct.pack("<IB", G.U8, 1), n_kv=1), "not valid UTF-8"),
    # "<s>" (length 3) in the tokens array becomes the 3 bytes "<\xff>"
    ("bad_utf8_token", good.replace(b"\x03\x00\x00\x00\x00\x00\x00\x00<s>", b"\x03\x00\x00\x00\x00\x00\x00\x00<\xff>", 1),
     "not valid UTF-8"),
    ("overlap", raw(tensors=tinfo("a", [4], 0, 0) + tinfo("b", [4], 0, 0), n_tensors=2, data=f32x4), "overlap"),
    ("offset_outside", raw(tensors=tinfo("a", [4], 0, 64), n_tensors=1, data=f32x4), "lies outside"),
    ("offset_wrap", raw(tensors=tinfo("a", [4], 0, (1 << 64) - 32), n_tensors=1, data=f32x4), "lies outside"),
    ("size_lie", raw(tensors=tinfo("a", [1 << 20], 0, 0), n_tensors=1, data=f32x4), "lies outside"),
    ("misaligned", raw(tensors=tinfo("a", [4], 0, 4), n_tensors=1, data=f32x4 * 2), "not a multiple of the alignment"),
    ("bad_alignment", raw(kv=kv("general.alignment", G.U32, 48), n_kv=1), "not a power of two"),
    ("unknown_type_id", raw(tensors=tinfo("a", [4], 99, 0), n_tensors=1, data=f32x4), "unknown GGML type id 99"),
    ("absurd_dims", raw(tensors=tinfo("a", [1 << 40, 1 << 40], 0, 0), n_tensors=1, data=f32x4), "impossibly large"),
    ("zero_dim", raw(tensors=tinfo("a", [0], 0, 0), n_tensors=1, data=f32x4), "dimension 0 of size 0"),
    ("partial_block", raw(tensors=tinfo("a", [31, 2], 8, 0), n_tensors=1, data=bytes(68)), "not a whole number"),
    ("unknown_arch", patched_model(replace_kv={"general.architecture": (G.STRING, "mamba", None)}),
     'architecture "mamba" is not one dpserve runs'),
    ("iq4_nl_tensor", patched_model(retype=("blk.0.attn_q.weight", 20)),
     'tensor "blk.0.attn_q.weight" has type IQ4_NL, which dpserve cannot compute with'),
    ("q4_1_tensor", patched_model(retype=("blk.0.ffn_up.weight", 3)), 'tensor "blk.0.ffn_up.weight" has type Q4_1'),
    ("missing_tensor", patched_model(drop=("blk.3.ffn_down.weight",)), 'tensor "blk.3.ffn_down.weight" is missing'),
    ("stray_tensor", patched_model(extra_tensors=[G.TensorSpec("blk.0.attn_q_norm.weight", 0, (8,),
                                                               lambda: np.ones(8, "<f4"))]),
     'tensor "blk.0.attn_q_norm.weight" is not used by this llama model'),
    ("missing_key", patched_model(drop=("llama.block_count",)), '"llama.block_count" is missing'),
    ("wrong_key_type", patched_model(replace_kv={"llama.block_count": (G.STRING, "five", None)}),
     '"llama.block_count" is a string, expected an integer'),
    # YaRN without its factor: a factor below 1 (absent: 0) is no YaRN.
    ("yarn", patched_model(extra_kv=[("llama.rope.scaling.type", G.STRING, "yarn")]), "YaRN needs llama.rope.scaling.factor >= 1"),
    ("rope_type", patched_model(extra_kv=[("llama.rope.scaling.type", G.STRING, "longrope")]),
     '"longrope" is not supported'),
]
# deepseek2: a tiny DeepSeek-V3-like model as our writer lays it out (llama.cpp's converter layout).
ds_hf = os.path.join(WORK, "hf-deepseek-v3")
subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", "deepseek_v3",
                "--quiet", "--out", ds_hf], check=True, timeout=300)
ds = os.path.join(WORK, "deepseek-v3.gguf")
hf_to_gguf([ds_hf, "--outtype", "bf16", "--out", ds])
BAD += [
    ("ds_missing_kv_lora", patched_model(drop=("deepseek2.attention.kv_lora_rank",), base=ds),
     '"deepseek2.attention.kv_lora_rank" is missing'),
    ("ds_yarn_no_log_mul", patched_model(drop=("deepseek2.rope.scaling.yarn_log_multiplier",), base=ds),
     "yarn_log_multiplier: missing"),
    ("ds_gating", patched_model(replace_kv={"deepseek2.expert_gating_func": (G.U32, 3, None)}, base=ds),
     "deepseek2.expert_gating_func: 3 is not supported"),
    # the older per-head layout (no *_mla keys) with the split tensors
    ("ds_layout", patched_model(drop=("deepseek2.attention.key_length_mla", "deepseek2.attention.value_length_mla"),
                                base=ds), "deepseek2.attention.head_count_kv is 1, expected 4"),
    ("ds_missing_v_b", patched_model(drop=("blk.1.attn_v_b.weight",), base=ds),
     'tensor "blk.1.attn_v_b.weight" is missing'),
    ("ds_stray_attn_k", patched_model(extra_tensors=[G.TensorSpec("blk.0.attn_k.weight", 0, (4, 128),
                                                                  lambda: np.ones((4, 128), "<f4"))], base=ds),
     "multi-head latent attention has no per-head K/V projections"),
]
# Mixtral as llama.cpp stores it (llama + expert_count / expert_used_count, stacked experts): routing
# keys llama.cpp's llama MoE would not honour either are refused by name, as are layouts it cannot be.
mix_hf = os.path.join(WORK, "hf-mixtral")
subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", "mixtral",
                "--quiet", "--out", mix_hf], check=True, timeout=300)
mix = os.path.join(WORK, "mixtral.gguf")
hf_to_gguf([mix_hf, "--outtype", "bf16", "--out", mix])
mix_split = os.path.join(WORK, "mixtral-split.gguf")
hf_to_gguf([mix_hf, "--outtype", "bf16", "--experts", "split", "--out", mix_split])
BAD += [
    ("mix_no_used", patched_model(drop=("llama.expert_used_count",), base=mix), '"llama.expert_used_count" is missing'),
    ("mix_groups", patched_model(extra_kv=[("llama.expert_group_count", G.U32, 2)], base=mix),
     '"llama.expert_group_count" asks for expert groups'),
    ("mix_sigmoid", patched_model(extra_kv=[("llama.expert_gating_func", G.U32, 2)], base=mix),
     '"llama.expert_gating_func" is 2, not 1 (softmax)'),
    ("mix_shared", patched_model(extra_kv=[("llama.expert_shared_feed_forward_length", G.U32, 64)], base=mix),
     '"llama.expert_shared_feed_forward_length" asks for shared experts'),
    ("mix_scale", patched_model(extra_kv=[("llama.expert_weights_scale", G.F32, 2.5)], base=mix),
     '"llama.expert_weights_scale" is 2.5'),
    ("mix_no_norm", patched_model(extra_kv=[("llama.expert_weights_norm", G.BOOL, False)], base=mix),
     '"llama.expert_weights_norm" is false'),
    ("mix_expert_ffn", patched_model(extra_kv=[("llama.expert_feed_forward_length", G.U32, 32)], base=mix),
     'llama experts are feed_forward_length (64) wide'),
    ("mix_expert_count", patched_model(replace_kv={"llama.expert_count": (G.U32, 4, None)}, base=mix),
     'must be 3-D [4 experts, rows, cols] (expert_count)'),
    ("mix_missing_router", patched_model(drop=("blk.1.ffn_gate_inp.weight",), base=mix),
     'tensor "blk.1.ffn_gate_inp.weight" is missing'),
    ("mix_split_missing", patched_model(drop=("blk.1.ffn_up.5.weight",), base=mix_split),
     'tensor "blk.1.ffn_up.5.weight" is missing (the layer stores its experts one tensor each)'),
    ("mix_split_range", patched_model(extra_tensors=[G.TensorSpec("blk.0.ffn_gate.8.weight", 0, (64, 96),
                                                                  lambda: np.ones((64, 96), "<f4"))], base=mix_split),
     'tensor "blk.0.ffn_gate.8.weight" must be expert < 8 (expert_count)'),
    ("mix_dense_ffn", patched_model(extra_tensors=[G.TensorSpec("blk.0.ffn_up.weight", 0, (64, 96),
                                                                lambda: np.ones((64, 96), "<f4"))], base=mix),
     'tensor "blk.0.ffn_up.weight" is not used by this llama model (the layer is a mixture of experts)'),
]
for name, data, expect in BAD:
    path = write("bad_" + name, data)
    p = dpserve(["generate", "--model-path", path, "--prompt-ids", "1", "-n", "1"])
    check(p.returncode == 1 and expect in p.stderr and "internal" not in p.stderr,
          f"{name}: exit {p.returncode}, message has '{expect}'" + ("" if p.returncode == 1 and expect in p.stderr
                                                                  else f"\n   stderr: {p.stderr[-600:]}"))

# A gpt2 vocabulary with an unknown pre-tokenizer: the tokenizer (not the weights) refuses it.
w = patched_model(drop=("tokenizer.ggml.model", "tokenizer.ggml.scores"),
                  extra_kv=[("tokenizer.ggml.model", G.STRING, "gpt2"), ("tokenizer.ggml.pre", G.STRING, "falcon")])
w.add_array("tokenizer.ggml.merges", G.STRING, [])
path = write("bad_pre", w)
p = dpserve(["tokenize", "--model-path", path, "--text", "hi"])
check(p.returncode == 1 and 'tokenizer.ggml.pre "falcon" is not a pre-tokenizer dpserve knows' in p.stderr,
      f"unknown pre-tokenizer is named: {p.stderr[-300:]}")

# --- YaRN in per-head GGUF models (Qwen3, Qwen2 with its own betas) -------------------------------
# The HF folders are the ones model_reference_yarn checks against the NumPy reference (tests/model:
# 1.5e-6 x std for f32); the GGUF written from each by our converter must give the same logits on a
# 60-token prompt (positions past the original context of 32). Dropping the YaRN keys from the file
# (plain RoPE) must change them: the comparison sees the scaling.
def dump_logits(model, ids, n_new=4):
    path = os.path.join(WORK, "logits.bin")
    if os.path.exists(path):
        os.remove(path)
    p = dpserve(["generate", "--json", "--model-path", model, "--prompt-ids", ",".join(map(str, ids)), "-n",
                 str(n_new), "--ignore-eos", "--temperature", "0", "--threads", "2", "--dump-logits", path])
    if p.returncode != 0:
        return None, p.stderr[-1500:]
    return np.fromfile(path, dtype=np.float32), json.loads(p.stdout.strip().splitlines()[-1])["output_ids"]


YARN = [("qwen3", ["--arch", "qwen3", "--rope-scaling", "yarn", "--rope-factor", "4",
                   "--original-max-position-embeddings", "32", "--max-position-embeddings", "128", "--seed", "23"]),
        ("qwen2", ["--arch", "qwen2", "--rope-scaling", "yarn", "--rope-factor", "4",
                   "--original-max-position-embeddings", "32", "--max-position-embeddings", "128", "--beta-fast", "16",
                   "--beta-slow", "2", "--rope-theta", "500", "--seed", "24"])]
for name, flags in YARN:
    hf = os.path.join(WORK, f"hf-{name}-yarn")
    subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), *flags, "--dtype", "f32",
                    "--quiet", "--out", hf], check=True, timeout=300)
    yg = os.path.join(WORK, f"{name}-yarn.gguf")
    hf_to_gguf([hf, "--outtype", "f32", "--out", yg])
    with open(os.path.join(hf, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    ids = [3 + (i * 37) % (vocab - 3) for i in range(60)]
    ref, ref_out = dump_logits(hf, ids)
    got, got_out = dump_logits(yg, ids)
    if ref is None or got is None:
        check(False, f"{name} yarn: generate failed: {ref_out if ref is None else got_out}")
        continue
    err = float(np.abs(got - ref).max() / ref.std()) if got.shape == ref.shape else float("inf")
    check(err <= 1e-5 and got_out == ref_out,
          f"{name} yarn GGUF == its HF folder: max diff {err:.2g} x std, greedy {got_out == ref_out}")
    plain = write(f"{name}-yarn-dropped", patched_model(
        drop=tuple(f"{name}.rope.scaling.{k}" for k in ("type", "factor", "original_context_length", "yarn_beta_fast",
                                                       "yarn_beta_slow")), base=yg))
    off, _ = dump_logits(plain, ids)
    off_err = float(np.abs(off - ref).max() / ref.std()) if off is not None and off.shape == ref.shape else 0.0
    check(off_err > 1e-2, f"{name}: the same file without its YaRN keys differs ({off_err:.2g} x std): the check sees it")
yq = os.path.join(WORK, "qwen3-yarn.gguf")
for bad_name, extra, expect in [
        ("yarn_ext", [("qwen3.rope.scaling.yarn_ext_factor", G.F32, 0.5)], "yarn_ext_factor is 0.5"),
        ("yarn_attn_mul", [("qwen3.rope.scaling.attn_factor", G.F32, 2.0)], "rope.scaling.attn_factor is 2"),
        ("yarn_log_mul", [("qwen3.rope.scaling.yarn_log_multiplier", G.F32, 0.1)], "deepseek2's YaRN key")]:
    path = write("bad_" + bad_name, patched_model(extra_kv=extra, base=yq))
    p = dpserve(["generate", "--model-path", path, "--prompt-ids", "1", "-n", "1"])
    check(p.returncode == 1 and expect in p.stderr, f"{bad_name}: refused naming it ({p.stderr[-300:].strip()})")

# --- gemma3: the Gemma 3 folder of model_reference_gemma3 (f32; layers sliding, sliding, full, sliding;
# linear RoPE scaling on the full layer, the local base on the others) written by our converter as
# llama.cpp's converter writes it (norms + 1, ffn_norm before the MLP, post_attention_norm /
# post_ffw_norm after, attention.sliding_window_pattern 3) gives the folder's logits. The file has no
# query_pre_attn_scalar (llama.cpp scales by head_dim), so the folder uses head_dim's. Dropping the
# window key (every layer full, global RoPE) or the pattern (the default period 6) must change them.
g3_hf = os.path.join(WORK, "hf-gemma3")
subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", "gemma3", "--dtype",
                "f32", "--query-pre-attn-scalar", "32", "--seed", "61", "--quiet", "--out", g3_hf], check=True,
               timeout=300)
g3 = os.path.join(WORK, "gemma3.gguf")
hf_to_gguf([g3_hf, "--outtype", "f32", "--out", g3])
g3_meta = {k: v for k, (_, v, _) in open_gguf(g3)["kv"].items()}
check(g3_meta.get("gemma3.attention.sliding_window_pattern") == 3 and g3_meta.get("gemma3.attention.sliding_window") == 6,
      f"gemma3 GGUF holds the window and its period: {[(k, v) for k, v in g3_meta.items() if 'sliding' in k]}")
with open(os.path.join(g3_hf, "config.json")) as f:
    g3_vocab = json.load(f)["vocab_size"]
g3_ids = [3 + (i * 37) % (g3_vocab - 3) for i in range(40)]
ref, ref_out = dump_logits(g3_hf, g3_ids)
got, got_out = dump_logits(g3, g3_ids)
if ref is None or got is None:
    check(False, f"gemma3: generate failed: {ref_out if ref is None else got_out}")
else:
    err = float(np.abs(got - ref).max() / ref.std()) if got.shape == ref.shape else float("inf")
    check(err <= 1e-5 and got_out == ref_out, f"gemma3 GGUF == its HF folder: max diff {err:.2g} x std")
    for what, drop in (("window", "gemma3.attention.sliding_window"),
                       ("pattern", "gemma3.attention.sliding_window_pattern")):
        off, _ = dump_logits(write(f"gemma3-no-{what}", patched_model(drop=(drop,), base=g3)), g3_ids)
        off_err = float(np.abs(off - ref).max() / ref.std()) if off is not None and off.shape == ref.shape else 0.0
        check(off_err > 1e-2, f"gemma3 without {drop} differs ({off_err:.2g} x std): the check sees it")
# --- gemma2: a Gemma 2 folder (f32; layers alternating sliding / full with window 6, the tiny model's
# caps 2.5 and 4.0) written by our converter as llama.cpp's writes it (norms + 1, the two caps as keys,
# the window; no pattern key: llama.cpp's default alternation) gives the folder's logits. Without the
# cap keys llama.cpp's defaults (50 / 30) apply, without the window key its default 4096: both change them.
g2_hf = os.path.join(WORK, "hf-gemma2")
subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", "gemma2", "--dtype",
                "f32", "--query-pre-attn-scalar", "32", "--seed", "81", "--quiet", "--out", g2_hf], check=True,
               timeout=300)
g2 = os.path.join(WORK, "gemma2.gguf")
hf_to_gguf([g2_hf, "--outtype", "f32", "--out", g2])
g2_meta = {k: v for k, (_, v, _) in open_gguf(g2)["kv"].items()}
check(g2_meta.get("gemma2.attn_logit_softcapping") == 2.5 and g2_meta.get("gemma2.final_logit_softcapping") == 4.0
      and g2_meta.get("gemma2.attention.sliding_window") == 6,
      f"gemma2 GGUF holds the caps and the window: {[(k, v) for k, v in g2_meta.items() if k.startswith('gemma2.')]}")
ref, ref_out = dump_logits(g2_hf, g3_ids)
got, got_out = dump_logits(g2, g3_ids)
if ref is None or got is None:
    check(False, f"gemma2: generate failed: {ref_out if ref is None else got_out}")
else:
    err = float(np.abs(got - ref).max() / ref.std()) if got.shape == ref.shape else float("inf")
    check(err <= 1e-5 and got_out == ref_out, f"gemma2 GGUF == its HF folder: max diff {err:.2g} x std")
    for drop in ("gemma2.attn_logit_softcapping", "gemma2.final_logit_softcapping", "gemma2.attention.sliding_window"):
        off, _ = dump_logits(write(f"gemma2-no-{drop}", patched_model(drop=(drop,), base=g2)), g3_ids)
        off_err = float(np.abs(off - ref).max() / ref.std()) if off is not None and off.shape == ref.shape else 0.0
        check(off_err > 1e-2, f"gemma2 without {drop} differs ({off_err:.2g} x std): the check sees it")
p = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", "gemma2",
                    "--dtype", "f32", "--attn-logit-softcapping", "0", "--quiet", "--out", g2_hf + "-nocap"],
                   capture_output=True, text=True, timeout=300)
p = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "hf_to_gguf.py"), g2_hf + "-nocap", "--outtype",
                    "f32", "--out", os.path.join(WORK, "gemma2-nocap.gguf")], capture_output=True, text=True,
                   timeout=300)
check(p.returncode != 0 and "attn_logit_softcapping null" in p.stderr,
      f"the converter refuses a null cap a gemma2 GGUF cannot hold (llama.cpp always caps): {p.stderr[-200:]}")
# A 62-layer file is Gemma 3 27B to llama.cpp, which then scales queries by 1/sqrt(hidden / heads)
# (168 for 27B's 5376 / 32; the 27B config's query_pre_attn_scalar): a tiny 62-layer folder whose
# query_pre_attn_scalar is hidden / heads (24, head_dim 32) gives the same logits through the file.
g3_62 = os.path.join(WORK, "hf-gemma3-62")
subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", "gemma3", "--dtype",
                "f32", "--num-hidden-layers", "62", "--sliding-window-pattern", "6", "--gemma-layer-config", "pattern",
                "--query-pre-attn-scalar", "24", "--seed", "62", "--quiet", "--out", g3_62], check=True, timeout=300)
hf_to_gguf([g3_62, "--outtype", "f32", "--out", os.path.join(WORK, "gemma3-62.gguf")])
ref, ref_out = dump_logits(g3_62, g3_ids[:20])
got, got_out = dump_logits(os.path.join(WORK, "gemma3-62.gguf"), g3_ids[:20])
err = float(np.abs(got - ref).max() / ref.std()) if got is not None and ref is not None and got.shape == ref.shape \
    else float("inf")
check(err <= 1e-5, f"gemma3, 62 layers (27B's query scale): GGUF == its HF folder: max diff {err:.2g} x std")
g3_48 = os.path.join(WORK, "hf-gemma3-48")
subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", "gemma3", "--dtype",
                "f32", "--quiet", "--out", g3_48], check=True, timeout=300)
p = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "hf_to_gguf.py"), g3_48, "--outtype", "f32",
                    "--out", os.path.join(WORK, "gemma3-48.gguf")], capture_output=True, text=True, timeout=300)
check(p.returncode != 0 and "query_pre_attn_scalar 48" in p.stderr,
      f"the converter refuses a query_pre_attn_scalar a gemma3 GGUF cannot hold: {p.stderr[-200:]}")
for bad_name, patch, expect in [
        ("gemma3_softcap", dict(extra_kv=[("gemma3.final_logit_softcapping", G.F32, 30.0)]),
         "final_logit_softcapping 30"),
        ("gemma3_pattern_array", dict(replace_kv={"gemma3.attention.sliding_window_pattern": (
            G.ARRAY, [1, 1, 0, 1], G.U32)}), 'sliding_window_pattern" is a array, expected an integer')]:
    path = write(bad_name, patched_model(base=g3, **patch))
    p = dpserve(["generate", "--model-path", path, "--prompt-ids", "1", "-n", "1"])
    check(p.returncode == 1 and expect in p.stderr, f"{bad_name}: refused naming it ({p.stderr[-300:].strip()})")

# --- phi3: a Phi-4-mini-like folder of model_reference_phi3 (f32; LongRoPE over an original context of 16,
# 64 positions; 0.75 of each head rotated; Phi-3's sliding window) written by our converter as llama.cpp's
# converter writes it (attn_qkv, ffn_up holding gate and up, rope_factors_long / rope_factors_short,
# rope.dimension_count 24 of 32, rope.scaling.attn_factor) gives the folder's logits, with the long set
# (the model's own context) and with the short one (--context-length 16); also with q, k, v as separate
# tensors. Without the factor tensors, the attention factor or the window, the logits must change.
p3_hf = os.path.join(WORK, "hf-phi3")
subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", "phi3", "--dtype",
                "f32", "--rope-scaling", "longrope", "--partial-rotary-factor", "0.75", "--sliding-window", "20",
                "--seed", "71", "--quiet", "--out", p3_hf], check=True, timeout=300)
p3 = os.path.join(WORK, "phi3.gguf")
hf_to_gguf([p3_hf, "--outtype", "f32", "--out", p3])
hf_to_gguf([p3_hf, "--outtype", "f32", "--qkv", "split", "--out", os.path.join(WORK, "phi3-split.gguf")])
p3_meta = {k: v for k, (_, v, _) in open_gguf(p3)["kv"].items()}
check(p3_meta.get("phi3.rope.dimension_count") == 24 and p3_meta.get("phi3.rope.scaling.original_context_length") == 16
      and "rope_factors_long.weight" in open_gguf(p3)["tensors"],
      f"phi3 GGUF holds the rotary width, the original context and the factors: "
      f"{[(k, v) for k, v in p3_meta.items() if 'rope' in k]}")
with open(os.path.join(p3_hf, "config.json")) as f:
    p3_vocab = json.load(f)["vocab_size"]
p3_ids = [3 + (i * 41) % (p3_vocab - 3) for i in range(40)]
def phi3_logits(model, ids, extra=()):
    path = os.path.join(WORK, "logits.bin")
    if os.path.exists(path):
        os.remove(path)
    p = dpserve(["generate", "--json", "--model-path", model, "--prompt-ids", ",".join(map(str, ids)), "-n", "4",
                 "--ignore-eos", "--temperature", "0", "--threads", "2", "--dump-logits", path, *extra])
    return np.fromfile(path, dtype=np.float32) if p.returncode == 0 else p.stderr[-500:]


def max_diff(got, ref):
    ok = isinstance(ref, np.ndarray) and isinstance(got, np.ndarray) and got.shape == ref.shape
    return (float(np.abs(got - ref).max() / ref.std()), "") if ok else \
        (float("inf"), ref if isinstance(ref, str) else got)


# The short set serves 16 positions: a 12-token prompt and 4 new tokens.
for label, ids, extra in (("long factors", p3_ids, []),
                          ("short factors (--context-length 16)", p3_ids[:12], ["--context-length", "16"])):
    ref = phi3_logits(p3_hf, ids, extra)
    for name in ("phi3", "phi3-split"):
        err, why = max_diff(phi3_logits(os.path.join(WORK, name + ".gguf"), ids, extra), ref)
        check(err <= 1e-5, f"{name} GGUF == its HF folder, {label}: max diff {err:.2g} x std {why}")
# Phi3Config reads rope_scaling type "yarn" as LongRoPE (its two factor lists), so does the converter.
p3y_hf = os.path.join(WORK, "hf-phi3-yarn-name")
os.makedirs(p3y_hf, exist_ok=True)
for fn in os.listdir(p3_hf):
    if fn != "config.json" and not os.path.exists(os.path.join(p3y_hf, fn)):
        os.symlink(os.path.join(p3_hf, fn), os.path.join(p3y_hf, fn))
with open(os.path.join(p3_hf, "config.json")) as f:
    p3y_cfg = json.load(f)
p3y_cfg["rope_scaling"]["type"] = "yarn"
p3y_cfg["rope_scaling"].pop("rope_type", None)
with open(os.path.join(p3y_hf, "config.json"), "w") as f:
    json.dump(p3y_cfg, f)
hf_to_gguf([p3y_hf, "--outtype", "f32", "--out", os.path.join(WORK, "phi3-yarn-name.gguf")])
err, why = max_diff(phi3_logits(os.path.join(WORK, "phi3-yarn-name.gguf"), p3_ids), phi3_logits(p3_hf, p3_ids))
check(err <= 1e-5, f"phi3 with rope_scaling type \"yarn\" converts as LongRoPE: max diff {err:.2g} x std {why}")
# A layout option of another architecture is refused, not ignored.
for folder, opt in ((mix_hf, ["--qkv", "split"]), (p3_hf, ["--experts", "split"]), (p3_hf, ["--kv-b", "joined"])):
    p = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "hf_to_gguf.py"), folder, "--outtype", "f32",
                        *opt, "--out", os.path.join(WORK, "wrong-option.gguf")], capture_output=True, text=True,
                       timeout=300)
    check(p.returncode != 0 and opt[0] in p.stderr, f"the converter refuses {' '.join(opt)} for "
          f"{os.path.basename(folder)}: {p.stderr[-200:].strip()}")
err, why = max_diff(phi3_logits(p3, p3_ids[:12]), phi3_logits(p3, p3_ids[:12], ["--context-length", "16"]))
check(1e-2 < err < float("inf"), f"phi3: the short factor set changes the logits ({err:.2g} x std) {why}")
ref, _ = dump_logits(p3, p3_ids)
for what, patch in (("factor tensors", dict(drop=("rope_factors_long.weight", "rope_factors_short.weight",
                                                  "phi3.rope.scaling.attn_factor"))),
                    ("attention factor", dict(drop=("phi3.rope.scaling.attn_factor",))),
                    ("window", dict(drop=("phi3.attention.sliding_window",)))):
    off, _ = dump_logits(write("phi3-no-" + what.replace(" ", "-"), patched_model(base=p3, **patch)), p3_ids)
    off_err = float(np.abs(off - ref).max() / ref.std()) if off is not None and ref is not None and off.shape == ref.shape \
        else 0.0
    check(off_err > 1e-2, f"phi3 without its {what} differs ({off_err:.2g} x std): the check sees it")
for bad_name, patch, expect in [
        ("phi3_one_factor_set", dict(drop=("rope_factors_short.weight",)), 'tensor "rope_factors_short.weight" is missing'),
        ("phi3_rot_odd", dict(replace_kv={"phi3.rope.dimension_count": (G.U32, 23, None)}),
         "rope.dimension_count is 23: RoPE rotates an even number"),
        ("phi3_attn_factor_alone", dict(drop=("rope_factors_long.weight", "rope_factors_short.weight")),
         "rope.scaling.attn_factor"),
        ("phi3_no_orig", dict(drop=("phi3.rope.scaling.original_context_length",)), "original_context_length")]:
    path = write(bad_name, patched_model(base=p3, **patch))
    p = dpserve(["generate", "--model-path", path, "--prompt-ids", "1", "-n", "1"])
    check(p.returncode == 1 and expect in p.stderr, f"{bad_name}: refused naming it ({p.stderr[-300:].strip()})")

# --- gpt-oss: what model_gguf_llamacpp's gpt_oss case compares with llama.cpp, here its keys, tensors and
# refusals. The window and the sliding / full pattern matter; a missing sink, bias or the window key is
# refused naming it; the converter refuses what a gpt-oss GGUF cannot hold (llama.cpp fixes the clamp at 7
# and alternates the layers from the first).
go_hf = os.path.join(WORK, "hf-gpt-oss")
make_go = ["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", "gpt_oss", "--dtype", "f32",
           "--yarn-truncate", "true", "--quiet"]
subprocess.run(make_go + ["--swiglu-limit", "7", "--seed", "83", "--out", go_hf], check=True, timeout=300)
go = os.path.join(WORK, "gpt-oss.gguf")
hf_to_gguf([go_hf, "--outtype", "f32", "--out", go])
go_ids = g3_ids[:24]
ref, ref_out = dump_logits(go_hf, go_ids)
got, got_out = dump_logits(go, go_ids)
err = float(np.abs(got - ref).max() / ref.std()) if got is not None and ref is not None and got.shape == ref.shape \
    else float("inf")
check(err == 0.0 and got_out == ref_out, f"gpt-oss GGUF == its HF folder bit for bit: max diff {err:.2g} x std")
for what, patch in (("window", dict(replace_kv={"gpt-oss.attention.sliding_window": (G.U32, 5, None)})),
                    ("pattern", dict(extra_kv=[("gpt-oss.attention.sliding_window_pattern", G.U32, 4)]))):
    off, _ = dump_logits(write("gpt-oss-other-" + what, patched_model(base=go, **patch)), go_ids)
    off_err = float(np.abs(off - ref).max() / ref.std()) if off is not None and ref is not None and off.shape == ref.shape \
        else 0.0
    check(off_err > 1e-2, f"gpt-oss with another {what} differs ({off_err:.2g} x std): the check sees it")
for bad_name, patch, expect in [
        ("gpt_oss_no_sinks", dict(drop=("blk.2.attn_sinks.weight",)), 'tensor "blk.2.attn_sinks.weight" is missing'),
        ("gpt_oss_no_down_bias", dict(drop=("blk.1.ffn_down_exps.bias",)),
         'tensor "blk.1.ffn_down_exps.bias" is missing'),
        ("gpt_oss_no_o_bias", dict(drop=("blk.0.attn_output.bias",)), 'tensor "blk.0.attn_output.bias" is missing'),
        ("gpt_oss_no_window", dict(drop=("gpt-oss.attention.sliding_window",)), "gpt-oss.attention.sliding_window"),
        ("gpt_oss_ffn_norm", dict(extra_tensors=[G.TensorSpec("blk.0.ffn_norm.weight", G.GGML_F32, (96,),
                                                              lambda: np.ones(96, np.float32))]),
         "post_attention_norm")]:
    path = write(bad_name, patched_model(base=go, **patch))
    p = dpserve(["generate", "--model-path", path, "--prompt-ids", "1", "-n", "1"])
    check(p.returncode == 1 and expect in p.stderr, f"{bad_name}: refused naming it ({p.stderr[-300:].strip()})")
for flags, expect in ((["--swiglu-limit", "3"], "swiglu_limit 3"), (["--layer-types", "f,s,f,s"], "layer_types"),
                      (["--yarn-truncate", "false"], "truncate false")):
    bad = go_hf + "-" + flags[0].strip("-")
    subprocess.run(make_go + ["--swiglu-limit", "7", "--seed", "83", "--out", bad] + flags, check=True, timeout=300)
    p = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "hf_to_gguf.py"), bad, "--outtype", "f32",
                        "--out", bad + ".gguf"], capture_output=True, text=True, timeout=300)
    check(p.returncode != 0 and expect in p.stderr, f"the converter refuses gpt-oss {' '.join(flags)}: {p.stderr[-200:]}")

# --- Q5_0 / Q5_1 tensors (llama-quantize's fallback in Q4_K_M / Q5_K_M files for rows not a multiple of
# 256) load as Q8_0. A tiny llama written as q5_0 and q5_1 by our converter (ggml's reference
# quantizers) is compared with its "Q8_0 twin", written here from the same blocks by this file's own
# decoder of the GGUF block layout: Q5_0 blocks become Q8_0 blocks of the same f16 scale and codes
# q - 16 (the same numbers: the logits must be bit-equal); Q5_1 blocks are decoded (d * q + m) and
# quantized to Q8_0 by ggml's reference rule (the loader's documented requantization: bit-equal too).
# The Q8_0 path itself is checked against llama.cpp's logits in model_gguf_llamacpp_quantized.
def q5_codes(blocks, qh_at):
    qh = blocks[:, qh_at:qh_at + 4].copy().view("<u4")[:, 0].astype(np.uint32)
    qs = blocks[:, qh_at + 4:qh_at + 20].astype(np.uint32)
    hi = ((qh[:, None] >> np.arange(32, dtype=np.uint32)) & 1) << 4
    return np.concatenate([qs & 15, qs >> 4], axis=1) | hi


def q8_twin(src_path, out_name):
    src = open_gguf(src_path)
    w = G.GgufWriter()
    for key, (vt, val, elem) in src["kv"].items():
        w.add(key, vt, 7 if key == "general.file_type" else val, elem)  # 7: mostly Q8_0
    for name, (typ, shape, data) in src["tensors"].items():
        if typ in (G.GGML_Q5_0, G.GGML_Q5_1):
            b = np.asarray(data).reshape(-1, 22 if typ == G.GGML_Q5_0 else 24)
            d = b[:, 0:2].copy().view("<f2")[:, 0].astype(np.float32)
            if typ == G.GGML_Q5_0:
                q8 = (q5_codes(b, 2).astype(np.int32) - 16).astype(np.int8).view(np.uint8)
                blocks = np.concatenate([b[:, 0:2], q8], axis=1)
            else:
                m = b[:, 2:4].copy().view("<f2")[:, 0].astype(np.float32)
                vals = (d[:, None] * q5_codes(b, 4).astype(np.float32) + m[:, None]).astype(np.float32)
                blocks = hf_to_gguf_mod.quantize_blocks(vals, G.GGML_Q8_0)
            typ, data = G.GGML_Q8_0, np.ascontiguousarray(blocks).reshape(-1)
        w.add_tensor(G.TensorSpec(name, typ, shape, lambda d=data: d))
    return write(out_name, w)


import hf_to_gguf as hf_to_gguf_mod  # noqa: E402  (tools/, for ggml's Q8_0 reference quantizer)

# Tied too: the converted token_embd is then also the LM head, whose repack releases the converted
# blocks (model/weight_store.h): the embedding rows must still read as they were.
for tie in ([], ["--tie-word-embeddings"]):
    tag = "-tied" if tie else ""
    q5_hf = os.path.join(WORK, "hf-llama-q5" + tag)
    subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", "llama", "--dtype",
                    "f32", "--hidden-size", "96", "--intermediate-size", "160", "--seed", "41", "--quiet", "--out", q5_hf]
                   + tie, check=True, timeout=300)
    with open(os.path.join(q5_hf, "config.json")) as f:
        q5_vocab = json.load(f)["vocab_size"]
    q5_ids = [3 + (i * 29) % (q5_vocab - 3) for i in range(24)]
    ref_f32, _ = dump_logits(q5_hf, q5_ids)
    for t in ("q5_0", "q5_1"):
        name = t + tag
        path = os.path.join(WORK, f"llama-{name}.gguf")
        hf_to_gguf([q5_hf, "--outtype", t, "--out", path])
        types = {typ for typ, _, _ in open_gguf(path)["tensors"].values()}
        want_type = G.GGML_Q5_0 if t == "q5_0" else G.GGML_Q5_1
        check(want_type in types, f"{name}: the file holds {t.upper()} tensors (types {sorted(types)})")
        got, got_out = dump_logits(path, q5_ids)
        twin, twin_out = dump_logits(q8_twin(path, f"llama-{name}-q8twin"), q5_ids)
        if got is None or twin is None or ref_f32 is None:
            check(False, f"{name}: generate failed: {got_out if got is None else twin_out}")
            continue
        check(np.array_equal(got, twin) and got_out == twin_out,
              f"{name} GGUF logits equal its Q8_0 twin's bit for bit (max diff {float(np.abs(got - twin).max()):.3g})")
        # And it is still the model: the prompt's logits within quantization error of the f32 folder's
        # (measured 0.175 / 0.165 x std rms; Q8_0 0.029, Q4_0 0.37). Only the prompt's rows: the greedy
        # continuations may part, and then later rows score other tokens.
        n = len(q5_ids) * q5_vocab
        rms = float(np.sqrt(np.mean((got[:n].astype(np.float64) - ref_f32[:n]) ** 2)) / ref_f32[:n].std())
        check(rms < 0.25, f"{name} GGUF prompt logits within {rms:.3f} x std (rms) of the f32 folder's (tolerance 0.25)")

# --- smollm3 / granite / granitemoe / olmo2 / olmoe / qwen2moe / glm4moe / glm4 / ernie4_5-moe / minimax-m2 / exaone4 /
# seed_oss / mistral3:
# what model_gguf_llamacpp's cases of them compare with llama.cpp, here
# against the HF folder (Q/K permuted: equal up to summation order), the keys that matter, and refusals.
# The converter refuses a SmolLM3 whose NoPE layers are not llama.cpp's every fourth.
for arch, flags in (("smollm3", ["--no-rope-layers", "", "--num-hidden-layers", "5"]), ("granite", []),
                    ("granitemoe", []), ("olmo2", []), ("olmoe", []), ("qwen2moe", ["--mlp-only-layers", ""]),
                    ("glm4moe", ["--use-qk-norm"]), ("glm4", []), ("ernie4_5-moe", []), ("minimax-m2", []),
                    ("exaone4", []), ("seed_oss", []), ("mistral3", []),
                    ("llama4", ["--attention-chunk-size", "8192", "--floor-scale", "8192", "--interleave-moe-layer-step",
                                "2"])):
    hf = os.path.join(WORK, f"hf-{arch}")
    hf_arch = {"granitemoe": "granite_moe", "qwen2moe": "qwen2_moe", "glm4moe": "glm4_moe",
               "ernie4_5-moe": "ernie4_5_moe", "minimax-m2": "minimax_m2", "mistral3": "ministral3"}.get(arch, arch)
    subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", hf_arch, "--dtype",
                    "f32", "--quiet", "--seed", "84", "--out", hf, *flags], check=True, timeout=300)
    gg = os.path.join(WORK, f"{arch}.gguf")
    hf_to_gguf([hf, "--outtype", "f32", "--out", gg])
    ids = g3_ids[:24]
    ref, ref_out = dump_logits(hf, ids)
    got, got_out = dump_logits(gg, ids)
    err, why = max_diff(got, ref)
    check(err <= 1e-5 and got_out == ref_out, f"{arch} GGUF == its HF folder: max diff {err:.2g} x std {why}")
    keys = {"smollm3": [], "granite": ["embedding_scale", "attention.scale", "residual_scale"],
            "granitemoe": ["residual_scale"], "olmo2": [], "olmoe": [], "qwen2moe": [], "glm4moe": [], "glm4": [],
            "ernie4_5-moe": [], "minimax-m2": [], "exaone4": [], "seed_oss": [],
            "mistral3": ["attention.temperature_scale"], "llama4": []}[arch]
    for key in keys:
        off, _ = dump_logits(write(f"{arch}-no-{key}", patched_model(base=gg, drop=(f"{arch}.{key}",))), ids)
        off_err, _ = max_diff(off, ref)
        check(1e-2 < off_err < float("inf"), f"{arch} without {key} differs ({off_err:.2g} x std): the check sees it")
    bads = [(f"{arch}_experts", dict(extra_kv=[(f"{arch}.expert_count", G.U32, 4)]), "expert_count is set")]
    if arch == "olmo2":
        # OLMo 3's window (attention.sliding_window) narrower than the prompt changes the sliding layers' logits: the
        # file is read as OLMo 3, not as OLMo 2 with the key ignored. (Its llama.cpp comparison: the olmo3 case.)
        win = [("olmo2.attention.sliding_window", G.U32, 4)]
        sw, _ = dump_logits(write("olmo2-window", patched_model(base=gg, extra_kv=win)), ids)
        sw_err, _ = max_diff(sw, ref)
        check(1e-2 < sw_err < float("inf"), f"olmo2 with a 4-token window differs ({sw_err:.2g} x std): it is applied")
        # A per-layer pattern of another length or type; a missing whole-projection norm.
        bads += [("olmo2_pattern_length", dict(extra_kv=win + [("olmo2.attention.sliding_window_pattern", G.ARRAY,
                                                                [True, False], G.BOOL)]), "sliding_window_pattern"),
                 ("olmo2_pattern_type", dict(extra_kv=win + [("olmo2.attention.sliding_window_pattern", G.ARRAY,
                                                              np.array([1, 0, 1], "<u4"), G.U32)]),
                  "sliding_window_pattern"),
                 ("olmo2_no_q_norm", dict(drop=("blk.1.attn_q_norm.weight",)), "blk.1.attn_q_norm.weight")]
    if arch == "ernie4_5-moe":  # routing llama.cpp does not run for it; shared experts dpserve cannot size
        bads = [("ernie_sigmoid", dict(extra_kv=[("ernie4_5-moe.expert_gating_func", G.U32, 2)]), "expert_gating_func"),
                ("ernie_shared_width", dict(replace_kv={"ernie4_5-moe.expert_shared_feed_forward_length":
                                                        (G.U32, 100, None)}), "expert_shared_feed_forward_length"),
                ("ernie_no_shexp", dict(drop=("blk.1.ffn_up_shexp.weight",)), "blk.1.ffn_up_shexp.weight")]
    if arch == "mistral3":  # the temperature's period is YaRN's original context; a negative slope
        bads += [("mistral3_no_period", dict(drop=("mistral3.rope.scaling.original_context_length",)),
                  "original_context_length"),
                 ("mistral3_negative", dict(replace_kv={"mistral3.attention.temperature_scale": (G.F32, -0.5, None)}),
                  "temperature_scale")]
    if arch == "seed_oss":  # an attention scale llama.cpp would apply; the MLP's input norm it names post_attention_norm
        bads += [("seed_oss_scale", dict(extra_kv=[("seed_oss.attention.scale", G.F32, 0.1)]), "attention.scale"),
                 ("seed_oss_no_mlp_norm", dict(drop=("blk.1.post_attention_norm.weight",)),
                  "blk.1.post_attention_norm.weight")]
    if arch == "exaone4":  # a per-layer pattern of another length; a missing per-head norm; another sliding base
        bads = [("exaone4_pattern_length", dict(replace_kv={"exaone4.attention.sliding_window_pattern":
                                                            (G.ARRAY, [True, False], G.BOOL)}),
                 "sliding_window_pattern"),
                ("exaone4_no_k_norm", dict(drop=("blk.2.attn_k_norm.weight",)), "blk.2.attn_k_norm.weight"),
                ("exaone4_swa_base", dict(extra_kv=[("exaone4.rope.freq_base_swa", G.F32, 123.0)]),
                 "rope.freq_base_swa")]
    if arch == "minimax-m2":  # routing llama.cpp does not run for it; the selection bias it requires
        bads = [("minimax_softmax", dict(replace_kv={"minimax-m2.expert_gating_func": (G.U32, 1, None)}),
                 "expert_gating_func"),
                ("minimax_groups", dict(extra_kv=[("minimax-m2.expert_group_count", G.U32, 2)]), "expert_group_count"),
                ("minimax_shared", dict(extra_kv=[("minimax-m2.expert_shared_count", G.U32, 1)]),
                 "expert_shared_count"),
                ("minimax_no_bias", dict(drop=("blk.1.exp_probs_b.bias",)), "blk.1.exp_probs_b.bias"),
                ("minimax_no_q_norm", dict(drop=("blk.0.attn_q_norm.weight",)), "blk.0.attn_q_norm.weight")]
    if arch == "olmoe":  # routing llama.cpp does not run for olmoe; a missing whole-projection norm
        bads = [("olmoe_renorm", dict(extra_kv=[("olmoe.expert_weights_norm", G.BOOL, True)]), "expert_weights_norm"),
                ("olmoe_shared", dict(extra_kv=[("olmoe.expert_shared_count", G.U32, 1)]), "expert_shared_count"),
                ("olmoe_no_k_norm", dict(drop=("blk.1.attn_k_norm.weight",)), "blk.1.attn_k_norm.weight")]
    if arch == "qwen2moe":  # routing llama.cpp does not run for qwen2moe; a missing shared-expert gate
        bads = [("qwen2moe_renorm", dict(extra_kv=[("qwen2moe.expert_weights_norm", G.BOOL, True)]),
                 "expert_weights_norm"),
                ("qwen2moe_two_shared", dict(extra_kv=[("qwen2moe.expert_shared_count", G.U32, 2)]),
                 "expert_shared_count"),
                ("qwen2moe_no_shexp_gate", dict(drop=("blk.2.ffn_gate_inp_shexp.weight",)),
                 "blk.2.ffn_gate_inp_shexp.weight")]
    if arch == "glm4moe":
        # An MTP layer after the decoder layers (block_count 4, nextn_predict_layers 1, as llama.cpp's converter
        # writes GLM-4.5): loaded past, not run, so the logits stay the 3-layer model's.
        src = open_gguf(gg)
        kv = src["kv"]
        more = {k: (kv[k][0], v, kv[k][2]) for k, v in (("glm4moe.block_count", 4), ("glm4moe.nextn_predict_layers", 1))}
        extra = [G.TensorSpec("blk.3." + n[len("blk.2."):], typ, shape, lambda d=data: d)
                 for n, (typ, shape, data) in src["tensors"].items() if n.startswith("blk.2.")]
        mtp, _ = dump_logits(write("glm4moe-mtp", patched_model(base=gg, replace_kv=more, extra_tensors=extra)), ids)
        err, why = max_diff(mtp, ref)
        check(err <= 1e-5, f"glm4moe with an MTP layer (nextn_predict_layers 1) == without: {err:.2g} x std {why}")
        # An MTP layer's own tensors are llama.cpp's six blk.N.nextn.* names; another is refused by name.
        norm = src["tensors"]["blk.2.attn_norm.weight"]
        odd = G.TensorSpec("blk.3.nextn.odd_norm.weight", norm[0], norm[1], lambda d=norm[2]: d)
        path = write("glm4moe-mtp-odd", patched_model(base=gg, replace_kv=more, extra_tensors=extra + [odd]))
        p = dpserve(["generate", "--model-path", path, "--prompt-ids", "1", "-n", "1"])
        check(p.returncode == 1 and "blk.3.nextn.odd_norm.weight" in p.stderr,
              f"glm4moe_mtp_odd: refused naming it ({p.stderr[-300:].strip()})")
        bads = [("glm4moe_no_experts", dict(drop=("glm4moe.expert_count",)), "expert_count"),
                ("glm4moe_no_mlp_norm", dict(drop=("blk.1.post_attention_norm.weight",)),
                 "blk.1.post_attention_norm.weight"),
                ("glm4moe_gating", dict(replace_kv={"glm4moe.expert_gating_func": (G.U32, 3, None)}),
                 "expert_gating_func")]
    if arch == "glm4":  # a missing output norm; an ffn_gate beside the fused ffn_up
        bads += [("glm4_no_post_ffw_norm", dict(drop=("blk.1.post_ffw_norm.weight",)), "blk.1.post_ffw_norm.weight")]
    if arch == "llama4":  # what llama.cpp's llama4 graph fixes, said otherwise; routers against the step; shared expert
        bads = [("llama4_window", dict(extra_kv=[("llama4.attention.sliding_window", G.U32, 6)]),
                 "attention.sliding_window"),
                ("llama4_pattern", dict(extra_kv=[("llama4.attention.sliding_window_pattern", G.U32, 2)]),
                 "sliding_window_pattern"),
                ("llama4_swa_base", dict(extra_kv=[("llama4.rope.freq_base_swa", G.F32, 123.0)]), "rope.freq_base_swa"),
                ("llama4_scale", dict(extra_kv=[("llama4.attention.scale", G.F32, 0.1)]), "attention.scale"),
                ("llama4_step", dict(replace_kv={"llama4.interleave_moe_layer_step": (G.U32, 1, None)}),
                 "interleave_moe_layer_step"),
                ("llama4_no_step", dict(drop=("llama4.interleave_moe_layer_step",)), "interleave_moe_layer_step"),
                ("llama4_no_shexp", dict(drop=("blk.1.ffn_up_shexp.weight",)), "blk.1.ffn_up_shexp.weight")]
    if arch == "granitemoe":  # GraniteMoeShared's shared experts
        bads = [("granitemoe_shared", dict(extra_kv=[("granitemoe.expert_shared_count", G.U32, 1)]),
                 "expert_shared_count")]
    if arch == "granite":
        bads += [("granite_no_logit_scale", dict(drop=("granite.logit_scale",)), '"granite.logit_scale" is missing'),
                 ("granite_no_rope", dict(extra_kv=[("granite.rope.scaling.finetuned", G.BOOL, False)]),
                  "rope.scaling.finetuned is false")]
    for bad_name, patch, expect in bads:
        path = write(bad_name, patched_model(base=gg, **patch))
        p = dpserve(["generate", "--model-path", path, "--prompt-ids", "1", "-n", "1"])
        check(p.returncode == 1 and expect in p.stderr, f"{bad_name}: refused naming it ({p.stderr[-300:].strip()})")


def converter_refuses(name, flags, expect, what):
    """make_hf_model.py FLAGS makes a folder tools/hf_to_gguf.py must refuse, naming `expect`."""
    hf = os.path.join(WORK, f"hf-{name}")
    subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "make_hf_model.py"), "--dtype", "f32", "--quiet",
                    "--out", hf, *flags], check=True, timeout=300)
    p = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "hf_to_gguf.py"), hf, "--outtype", "f32",
                        "--out", os.path.join(WORK, f"{name}.gguf")], capture_output=True, text=True, timeout=300)
    check(p.returncode != 0 and expect in p.stderr, f"the converter refuses {what}: {p.stderr[-200:].strip()}")


# llama.cpp's llama4 fixes its chunks at 8192; its smollm3 makes every fourth layer NoPE; its seed_oss reads no
# o_proj bias.
converter_refuses("llama4-chunk-6", ["--arch", "llama4"], "attention_chunk_size", "llama4 chunks of 6")
converter_refuses("smollm3-nope-1-3", ["--arch", "smollm3"], "no_rope_layers", "NoPE layers 1 and 3 for smollm3")
converter_refuses("seed_oss-o-bias", ["--arch", "seed_oss", "--attention-out-bias"], "attention_out_bias",
                  "an o_proj bias for seed_oss")

# --- block-aligned shards of quantized tensors ------------------------------------------------------
q4k = os.path.join(HERE, "fixtures", "gguf", "llama-q-Q4_K_M.gguf")
p = dpserve(["generate", "--model-path", q4k, "--prompt-ids", "1", "-n", "1", "--tp-size", "2"], timeout=240)
check(p.returncode != 0 and "--tp-size" in p.stderr and "256-element blocks" in p.stderr,
      f"Q4_K_M at --tp-size 2 (a 256-wide row cut at 128) names --tp-size: {p.stderr[-400:]}")

if failures:
    raise SystemExit(f"FAIL: {len(failures)} check(s): " + "; ".join(failures))
print("PASS")
