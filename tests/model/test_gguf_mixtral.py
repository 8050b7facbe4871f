#!/usr/bin/python3
"""Mixtral as a GGUF file (llama.cpp's layout: `llama` with expert_count / expert_used_count, the
router blk.N.ffn_gate_inp, the experts stacked in blk.N.ffn_{gate,up,down}_exps) computes what the
Hugging Face folder it came from computes, on one rank and on two (TP, and TP with whole experts
per rank).

A tiny random Mixtral (tools/make_hf_model.py, bf16) goes through tools/hf_to_gguf.py twice:
  * bf16: llama.cpp's converter (and ours) store the router as F32, so the reference is the same
    folder with only its routers rewritten as F32 (in bf16 the router's input would be rounded to
    bf16 first; then the two are different computations). Every weight is then the same number in
    the same type. The converter permutes each head's Q/K rows for adjacent-pair RoPE, so the
    attention's q.k sums run in another order (fp32, relative 1e-7); where that moves an
    activation across a bf16 rounding boundary a row differs slightly. Measured: 147 of 153 rows
    bit for bit, max 0.0084 x the logits' standard deviation (a dense llama of the same shape:
    117 of 153, max 0.011); 137 of 153, max 0.0089 with AVX2's outer-product kernel (how many
    rows a boundary crossing reaches depends on each kernel's rounding). Required: 80 % of the
    rows equal, max 0.05 (a wrong weight or expert moves every row by far more); greedy ids equal
    on 1 rank, tp=2 and tp=2 ep=2.
  * Q8_0: the file's blocks are decoded here with NumPy (value = f16 scale x int8 code) into an f32
    folder; dpserve quantizes that folder on load (--quantization q8_0), which gives back the very
    same blocks (the largest code of a block is +-127, so the scale comes out unchanged). The logits
    are bit-equal to the GGUF's in most rows; the others differ where the permuted Q/K rows' fp32
    summation order (relative 1e-7) moved an int8 activation code by one step (3 of 116 rows,
    max 0.027 x scale, measured; a swapped expert moves every row by far more). Greedy ids equal
    on the three layouts.
  * The older per-expert layout (blk.N.ffn_gate.E.weight, `--experts split`) gives the stacked
    file's logits exactly. And the Q8_0 file stays the
    same model as the bf16 folder: logits within rms 0.08 x their standard deviation (Q8_0's own
    error, measured 0.057; a few rows more where quantization flips a token's near-tied second
    expert; llama.cpp's Q8_0 against F32 is rms 0.017 on tests/model/fixtures' dense llama).

usage: test_gguf_mixtral.py --probe BIN --dpserve BIN --work DIR
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
PY = "/usr/bin/python3"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
LAYOUTS = {"1 rank": [], "tp2": ["--tp-size", "2"], "tp2 ep2": ["--tp-size", "2", "--ep-size", "2"]}
failures = []


def check(ok, what):
    print(("ok " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(cmd, timeout=240):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stderr[-3000:]}")
    return p.stdout


# --- safetensors and GGUF, read and written here ----------------------------------------------------

def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack_from("<Q", raw)[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    for name, info in head.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dt = {"F32": "<f4", "BF16": "<u2"}[info["dtype"]]
        out[name] = (info["dtype"], np.frombuffer(raw, dt, (e - b) // np.dtype(dt).itemsize, 8 + n + b)
                     .reshape(info["shape"]))
    return out


def write_safetensors(path, tensors):
    """name -> (dtype "F32" / "BF16", array of float32 / uint16 bits)."""
    head, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, (dt, a) in tensors.items():
        b = np.ascontiguousarray(a, "<f4" if dt == "F32" else "<u2").tobytes()
        head[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(head).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_gguf(path):
    """Metadata (scalars and strings only) and tensors (type, shape slowest first, raw bytes)."""
    b = open(path, "rb").read()
    pos = [24]

    def u(fmt):
        v = struct.unpack_from(fmt, b, pos[0])[0]
        pos[0] += struct.calcsize(fmt)
        return v

    def s():
        n = u("<Q")
        pos[0] += n
        return b[pos[0] - n:pos[0]].decode()
    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def val(t):
        if t == 8:
            return s()
        if t == 9:
            et, n = u("<I"), u("<Q")
            return [val(et) for _ in range(n)]
        return u(scalar[t])
    n_t, n_kv = struct.unpack_from("<QQ", b, 8)
    kv = {}
    for _ in range(n_kv):
        k = s()
        kv[k] = val(u("<I"))
    infos = []
    for _ in range(n_t):
        name = s()
        dims = [u("<Q") for _ in range(u("<I"))]
        infos.append((name, u("<I"), tuple(reversed(dims)), u("<Q")))
    align = kv.get("general.alignment", 32)
    start = (pos[0] + align - 1) // align * align
    block = {0: (1, 4), 30: (1, 2), 8: (32, 34)}
    tensors = {}
    for name, typ, shape, off in infos:
        elems, nbytes = block[typ]
        n = int(np.prod(shape)) // elems * nbytes
        tensors[name] = (typ, shape, np.frombuffer(b, np.uint8, n, start + off))
    return kv, tensors


def decode(typ, shape, raw):
    """F32, BF16 or Q8_0 (per 32 elements: f16 scale d, then 32 int8 codes q; value d * q) -> fp32."""
    if typ == 0:
        return raw.view("<f4").reshape(shape)
    if typ == 30:
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    blk = raw.reshape(-1, 34)
    d = blk[:, :2].copy().view("<f2").astype(np.float32)
    q = blk[:, 2:].view(np.int8).astype(np.float32)
    return (d * q).reshape(shape)


def unpermute(w, n_head):
    """Undoes the converter's Q/K row order (adjacent RoPE pairs back to Hugging Face's halves)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_from_gguf(gguf, like, out):
    """An f32 Hugging Face Mixtral folder holding the GGUF's decoded weights (config and tokenizer
    from `like`)."""
    kv, t = read_gguf(gguf)
    c = json.load(open(os.path.join(like, "config.json")))
    assert kv["general.architecture"] == "llama" and kv["llama.expert_count"] == c["num_local_experts"]
    w = {k: decode(*v) for k, v in t.items()}
    st = {"model.embed_tokens.weight": w["token_embd.weight"], "model.norm.weight": w["output_norm.weight"],
          "lm_head.weight": w["output.weight"]}
    for layer in range(c["num_hidden_layers"]):
        g, h = f"blk.{layer}.", f"model.layers.{layer}."
        st[h + "input_layernorm.weight"] = w[g + "attn_norm.weight"]
        st[h + "post_attention_layernorm.weight"] = w[g + "ffn_norm.weight"]
        st[h + "self_attn.q_proj.weight"] = unpermute(w[g + "attn_q.weight"], c["num_attention_heads"])
        st[h + "self_attn.k_proj.weight"] = unpermute(w[g + "attn_k.weight"], c["num_key_value_heads"])
        st[h + "self_attn.v_proj.weight"] = w[g + "attn_v.weight"]
        st[h + "self_attn.o_proj.weight"] = w[g + "attn_output.weight"]
        st[h + "block_sparse_moe.gate.weight"] = w[g + "ffn_gate_inp.weight"]
        for hf, gg in (("w1", "ffn_gate_exps"), ("w3", "ffn_up_exps"), ("w2", "ffn_down_exps")):
            for e in range(c["num_local_experts"]):
                st[f"{h}block_sparse_moe.experts.{e}.{hf}.weight"] = w[f"{g}{gg}.weight"][e]
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(like):
        if not f.endswith(".safetensors"):
            shutil.copy(os.path.join(like, f), out)
    c["torch_dtype"] = "float32"
    json.dump(c, open(os.path.join(out, "config.json"), "w"), indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), {k: ("F32", v) for k, v in st.items()})
    return out


def f32_router_copy(hf, out):
    """The bf16 folder with each router (block_sparse_moe.gate) stored as F32, as the GGUF has it."""
    shutil.copytree(hf, out)
    st = read_safetensors(os.path.join(hf, "model.safetensors"))
    for name, (dt, a) in list(st.items()):
        if name.endswith("block_sparse_moe.gate.weight"):
            st[name] = ("F32", (a.astype(np.uint32) << 16).view(np.float32))
    write_safetensors(os.path.join(out, "model.safetensors"), st)
    return out


# --- running dpserve -------------------------------------------------------------------------------

def prompts(vocab):
    out, x = [], 4242
    for n in (1, 7, 30, 3, 64, 12):
        ids = []
        for _ in range(n):
            x = (x * 1103515245 + 12345) % (1 << 31)
            ids.append(3 + x % (vocab - 3))
        out.append(ids)
    return out


def probe_logits(a, model, ps, tag, vocab):
    """Every prompt prefilled in one ragged batch, then 6 decode steps of fixed tokens."""
    steps = [{"run": [{"seq": i, "tokens": p} for i, p in enumerate(ps)]}]
    steps += [{"run": [{"seq": i, "tokens": [5 + 7 * s + i]} for i in range(len(ps))]} for s in range(6)]
    sched = os.path.join(a.work, tag + ".sched.json")
    json.dump({"steps": steps}, open(sched, "w"))
    out = os.path.join(a.work, tag + ".logits")
    run([a.probe, "--model-path", model, "--schedule", sched, "--out", out, "--threads", "2", "--page-size", "8"])
    return np.fromfile(out, "<f4").reshape(-1, vocab)


# One KV cache dtype for every run: --kv-cache-dtype auto follows each file's weights (fp32 for an f32
# folder, bf16 for a bf16 folder or a GGUF), and the comparisons here are of the weights alone.
KV = ["--kv-cache-dtype", "fp32"]


def dumped_logits(a, model, p, tag, vocab, extra=()):
    out = os.path.join(a.work, tag + ".dump")
    run([a.dpserve, "generate", "--model-path", model, "--prompt-ids", ",".join(map(str, p)), "-n", "6",
         "--temperature", "0", "--ignore-eos", "--threads", "2", "--dump-logits", out] + KV + list(extra))
    return np.fromfile(out, "<f4").reshape(-1, vocab)


def greedy(a, model, pfile, layout, extra=()):
    out = run([a.dpserve, "generate", "--json", "--model-path", model, "--prompts-file", pfile, "--prompts-are-ids",
               "-n", "12", "--ignore-eos", "--temperature", "0", "--threads", "1"] + LAYOUTS[layout] + KV + list(extra))
    return [json.loads(line)["output_ids"] for line in out.splitlines() if line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", required=True)
    ap.add_argument("--dpserve", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    hf = os.path.join(a.work, "hf-mixtral-bf16")
    run([PY, os.path.join(REPO, "tools", "make_hf_model.py"), "--arch", "mixtral", "--dtype", "bf16", "--seed", "31",
         "--hidden-size", "128", "--max-position-embeddings", "1024", "--quiet", "--out", hf])
    vocab = json.load(open(os.path.join(hf, "config.json")))["vocab_size"]
    ggufs = {}
    for t in ("bf16", "q8_0"):
        ggufs[t] = os.path.join(a.work, f"mixtral-{t}.gguf")
        run([PY, os.path.join(REPO, "tools", "hf_to_gguf.py"), hf, "--outtype", t, "--out", ggufs[t]])
    kv, tensors = read_gguf(ggufs["q8_0"])
    check(kv["llama.expert_count"] == 8 and kv["llama.expert_used_count"] == 2
          and tensors["blk.0.ffn_down_exps.weight"][:2] == (8, (8, 128, 64))
          and tensors["blk.1.ffn_gate_exps.weight"][:2] == (8, (8, 64, 128))
          and tensors["blk.0.ffn_gate_inp.weight"][:2] == (0, (8, 128)),
          "the Q8_0 file is llama.cpp's Mixtral layout (expert keys, Q8_0 stacked experts, F32 router)")
    ps = prompts(vocab)
    pfile = os.path.join(a.work, "prompts.txt")
    with open(pfile, "w") as f:
        f.write("\n".join(",".join(map(str, p)) for p in ps) + "\n")

    # bf16: the same numbers in the same types -> the same logits, bit for bit.
    ref = f32_router_copy(hf, os.path.join(a.work, "hf-mixtral-bf16-f32router"))
    want = probe_logits(a, ref, ps, "hf-bf16", vocab)
    got = probe_logits(a, ggufs["bf16"], ps, "gguf-bf16", vocab)
    assert got.shape == want.shape, (got.shape, want.shape)
    row_err = np.abs(got.astype(np.float64) - want).max(axis=1) / want.std()
    same = int((row_err == 0).sum())
    check(same >= 0.8 * len(row_err) and row_err.max() <= 0.05,
          f"bf16 GGUF logits equal the folder's: {same} of {len(row_err)} rows bit for bit, the others within "
          f"{row_err.max():.4f} x scale (tolerance: 80 % equal, max 0.05)")
    # The older layout, one tensor per expert (blk.N.ffn_gate.E.weight): the same views, the same logits.
    split = os.path.join(a.work, "mixtral-bf16-split.gguf")
    run([PY, os.path.join(REPO, "tools", "hf_to_gguf.py"), hf, "--outtype", "bf16", "--experts", "split", "--out", split])
    got_split = probe_logits(a, split, ps, "gguf-bf16-split", vocab)
    check(np.array_equal(got_split, got), "bf16 GGUF with one tensor per expert: logits equal the stacked file's")
    base = greedy(a, ref, pfile, "1 rank")
    for layout in LAYOUTS:
        ids_hf = base if layout == "1 rank" else greedy(a, ref, pfile, layout)
        ids = greedy(a, ggufs["bf16"], pfile, layout)
        check(ids == ids_hf == base, f"bf16 GGUF greedy ids ({layout}) equal the folder's ({layout} and 1 rank)"
              + ("" if ids == ids_hf == base else f"\n   gguf {ids}\n   hf   {ids_hf}\n   base {base}"))

    # Q8_0: against the decoded blocks quantized again by dpserve (the very same blocks).
    dec = hf_from_gguf(ggufs["q8_0"], hf, os.path.join(a.work, "hf-mixtral-q8_0-decoded"))
    q8 = ["--quantization", "q8_0"]
    want = np.concatenate([dumped_logits(a, dec, ps[i], f"dec-{i}", vocab, q8) for i in (1, 2, 4)])
    got = np.concatenate([dumped_logits(a, ggufs["q8_0"], ps[i], f"q8-{i}", vocab) for i in (1, 2, 4)])
    assert got.shape == want.shape, (got.shape, want.shape)
    row_err = np.abs(got.astype(np.float64) - want).max(axis=1) / want.std()
    same = int((row_err == 0).sum())
    check(same >= 0.9 * len(row_err) and row_err.max() <= 0.05,
          f"Q8_0 GGUF logits equal the decoded folder's quantized on load: {same} of {len(row_err)} rows bit for "
          f"bit, the others within {row_err.max():.3f} x scale (tolerance: 90 % equal, max 0.05)")
    for layout in LAYOUTS:
        ids_dec = greedy(a, dec, pfile, layout, q8)
        ids = greedy(a, ggufs["q8_0"], pfile, layout)
        check(ids == ids_dec, f"Q8_0 GGUF greedy ids ({layout}) equal the decoded folder's"
              + ("" if ids == ids_dec else f"\n   gguf {ids}\n   hf   {ids_dec}"))

    # Q8_0 against the bf16 folder itself: only the quantization's error.
    want = probe_logits(a, ref, ps, "hf-bf16", vocab).astype(np.float64)
    got = probe_logits(a, ggufs["q8_0"], ps, "gguf-q8_0", vocab).astype(np.float64)
    scale = want.std()
    err = np.abs(got - want)
    mx, rms = err.max() / scale, np.sqrt((err ** 2).mean()) / scale
    check(rms <= 0.08, f"Q8_0 GGUF against the bf16 folder: rms {rms:.4f} x scale (tolerance 0.08), max {mx:.3f}")
    if failures:
        raise SystemExit(f"FAIL: {len(failures)} check(s): " + "; ".join(failures))
    print("PASS")


if __name__ == "__main__":
    main()
