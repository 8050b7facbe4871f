#!/usr/bin/env python3
"""Greedy outputs must not depend on how the model is spread over ranks.

Runs `dpserve generate --json --prompts-file` for prompts of very different lengths
under several layouts (single rank; tp=2; tp=2 dp=2 and tp=4 dp=2 / dp=4 with DP
attention; DP attention off with replicas; each padding mode; the TCP transport; compact KV
caches) and
requires token-for-token equality with the single-rank run, which is itself checked
against llama2.c's reference for stories260K (tests/runtime) and the NumPy reference
for the HF architectures (tests/model).

usage: test_layouts.py DPSERVE_BIN SHARED_DIR SCRATCH_DIR MAKE_MODEL_PY CASE
"""
import json
import os
import subprocess
import sys

BIN, SHARED, SCRATCH, MAKE_MODEL, CASE = sys.argv[1:6]
os.makedirs(SCRATCH, exist_ok=True)
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def run(args, env=None, timeout=240):
    p = subprocess.run([BIN] + args, capture_output=True, text=True, env=env or ENV, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: dpserve {' '.join(args)} exited {p.returncode}\n{p.stderr[-3000:]}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def prompts_file(lines, name):
    path = os.path.join(SCRATCH, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def story_prompts():
    long = " ".join(["Once upon a time, there was a little dog named Max who liked to run in the park."] * 12)
    return ["", "Lily", "The cat sat on the mat and looked at the big red ball.", long,
            "Tom and Sue went to the shop.", long[: len(long) // 2], "A", "One day"]


def hf_model(arch):
    out = os.path.join(SCRATCH, f"tiny-{arch}")
    if not os.path.exists(os.path.join(out, "config.json")):
        extra = ["--num-attention-heads", "4", "--num-key-value-heads", "2"]
        if arch == "qwen3_moe":
            extra += ["--num-experts", "8", "--num-experts-per-tok", "2", "--decoder-sparse-step", "1"]
        if arch == "mixtral":
            extra += ["--sliding-window", "64"]
        if arch == "olmo3":  # YaRN on the full layers only
            extra += ["--rope-scaling", "yarn", "--rope-factor", "4", "--original-max-position-embeddings", "16"]
        if arch == "gpt_oss":  # YaRN's factor 4 fixes the original context at a quarter of the 1024 positions
            extra += ["--original-max-position-embeddings", "256"]
        if arch == "phi3":  # Phi-4-mini-like: fused projections split per rank, partial rotary, LongRoPE
            extra += ["--rope-scaling", "longrope", "--partial-rotary-factor", "0.75",
                      "--original-max-position-embeddings", "64", "--sliding-window", "48"]
        subprocess.run(["/usr/bin/python3", MAKE_MODEL, "--arch", arch, "--preset", "tiny", "--dtype", "f32",
                        "--max-position-embeddings", "1024", "--seed", "3", "--out", out, "--quiet"] + extra,
                       check=True, timeout=120)
    return out


def gguf_model():
    """The tiny llama (Q/K permuted for adjacent-pair RoPE) as an F16 GGUF from our own writer."""
    out = os.path.join(SCRATCH, "tiny-llama-f16.gguf")
    if not os.path.exists(out):
        hf = hf_model("llama")
        subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(MAKE_MODEL), "hf_to_gguf.py"), hf,
                        "--outtype", "f16", "--out", out], check=True, timeout=120, stderr=subprocess.DEVNULL)
    return out


def id_prompts(vocab, n, max_len=250):
    # Deterministic pseudo-random token ids, lengths from 1 to several hundred (at most max_len).
    lens = [min(L, max_len) for L in [1, 3, 17, 250, 40, 7, 120, 2][:n]]
    out, x = [], 12345
    for L in lens:
        ids = []
        for _ in range(L):
            x = (x * 1103515245 + 12345) % (1 << 31)
            ids.append(str(3 + x % (vocab - 3)))
        out.append(ids)
    return out


LAYOUTS = {
    "tp2": ["--tp-size", "2"],
    "tp2_dp2": ["--tp-size", "2", "--dp-size", "2", "--enable-dp-attention"],
    "tp4_dp2": ["--tp-size", "4", "--dp-size", "2", "--enable-dp-attention"],
    "tp4_dp4": ["--tp-size", "4", "--dp-size", "4", "--enable-dp-attention"],
    "dp2_replicas": ["--tp-size", "1", "--dp-size", "2"],
    # MoE: whole experts per rank (expert parallel) instead of every expert split (the default).
    "tp2_ep2": ["--tp-size", "2", "--ep-size", "2"],
    "tp4_dp2_ep4": ["--tp-size", "4", "--dp-size", "2", "--enable-dp-attention", "--ep-size", "4"],
    "tp4_dp2_ep2": ["--tp-size", "4", "--dp-size", "2", "--enable-dp-attention", "--ep-size", "2"],
}


def compare(base, got, what):
    assert len(base) == len(got), f"{what}: {len(got)} outputs, expected {len(base)}"
    for i, (b, g) in enumerate(zip(base, got)):
        if b["output_ids"] != g["output_ids"]:
            raise SystemExit(f"FAIL: {what}: prompt {i} differs\n single: {b['output_ids']}\n layout: {g['output_ids']}")


def check_layouts(common, layouts, extra_modes=False, env=None):
    base = run(common + ["--threads", "1"])
    assert all(len(o["output_ids"]) > 0 for o in base)
    for name in layouts:
        got = run(common + LAYOUTS[name] + ["--threads", "1"], env=env)
        compare(base, got, name)
        print(f"ok {name}: {len(got)} prompts identical")
    if extra_modes:
        for name in ["tp2_dp2", "tp4_dp2"]:
            got = run(common + LAYOUTS[name] + ["--dispatch", "group-leader", "--threads", "1"])
            compare(base, got, f"{name} group-leader dispatch")
            print(f"ok {name} --dispatch group-leader")
        for method in ["shortest_queue", "least_tokens"]:
            got = run(common + LAYOUTS["tp2_dp2"] + ["--load-balance-method", method, "--threads", "1"])
            compare(base, got, f"tp2_dp2 {method}")
            print(f"ok tp2_dp2 --load-balance-method {method}")
        for mode in ["max_len", "sum_len", "sglang"]:
            got = run(common + LAYOUTS["tp2_dp2"] + ["--dp-padding-mode", mode, "--threads", "1"])
            compare(base, got, f"tp2_dp2 {mode}")
            print(f"ok tp2_dp2 padding {mode}")
    return base


if CASE == "stories":
    model = os.path.join(SHARED, "models/stories260K/stories260K.bin")
    if not os.path.exists(model):
        raise SystemExit(f"FAIL: {model} missing (DPSERVE_SHARED_DIR)")
    pf = prompts_file(story_prompts(), "stories.txt")
    common = ["generate", "--json", "--model-path", model, "--prompts-file", pf, "-n", "24", "--max-running-requests", "8"]
    check_layouts(common, ["tp2", "tp2_dp2", "tp4_dp2", "tp4_dp4", "dp2_replicas"], extra_modes=True)
    # A burst of 100 requests: every step still sends exactly one control message.
    pf = prompts_file([f"Story {i}: once upon a time" for i in range(100)], "burst.txt")
    for extra in ([], LAYOUTS["tp2_dp2"]):
        p = subprocess.run([BIN, "generate", "--json", "--model-path", model, "--prompts-file", pf, "-n", "4"] + extra,
                           capture_output=True, text=True, env=ENV, timeout=240)
        assert p.returncode == 0, p.stderr[-2000:]
        line = [l for l in p.stderr.splitlines() if l.startswith("steps=")][-1]
        stats = dict(kv.split("=") for kv in line.split())
        assert int(stats["steps"]) == int(stats["control_broadcasts"]), stats
        # Requests that arrive together ride one message (how many depends on when the step thread
        # woke up, so only "more than one" is certain).
        assert int(stats["max_new_requests_in_a_step"]) > 1, stats
        print(f"ok burst of 100 {' '.join(extra) or 'single rank'}: {stats}")
elif CASE == "tcp":
    model = os.path.join(SHARED, "models/stories260K/stories260K.bin")
    pf = prompts_file(story_prompts()[:4], "tcp.txt")
    common = ["generate", "--json", "--model-path", model, "--prompts-file", pf, "-n", "16"]
    env = dict(ENV, OMPI_MCA_btl="tcp,self", OMPI_MCA_pml="ob1", OMPI_MCA_btl_tcp_if_include="lo")
    check_layouts(common, ["tp2", "tp2_dp2"], env=env)
elif CASE == "imbalance":
    # One prompt in total with dp=4: three groups run idle batches every step.
    model = os.path.join(SHARED, "models/stories260K/stories260K.bin")
    common = ["generate", "--json", "--model-path", model, "--prompt", "Once upon a time", "-n", "40"]
    check_layouts(common, ["tp4_dp4"])
    # Many long prompts in one group, short ones elsewhere, groups finishing at different steps.
    pf = prompts_file([story_prompts()[3], "", story_prompts()[3], "", story_prompts()[3]], "imb.txt")
    common = ["generate", "--json", "--model-path", model, "--prompts-file", pf, "-n", "30"]
    check_layouts(common, ["tp2_dp2", "tp4_dp2"])
elif CASE in ("qwen3", "qwen3_moe", "llama", "deepseek_v2", "deepseek_v3", "mixtral", "gemma3", "phi3"):
    model = hf_model(CASE)
    with open(os.path.join(model, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    pf = prompts_file([",".join(p) for p in id_prompts(vocab, 6)], f"{CASE}-ids.txt")
    common = ["generate", "--json", "--model-path", model, "--prompts-file", pf, "--prompts-are-ids", "-n", "12",
              "--ignore-eos"]
    layouts = ["tp2", "tp2_dp2", "tp4_dp2", "tp4_dp4"]
    if CASE in ("qwen3_moe", "deepseek_v3"):
        layouts += ["tp2_ep2", "tp4_dp2_ep4", "tp4_dp2_ep2"]
    elif CASE == "deepseek_v2":  # MLA with TP / DP attention, experts split or whole
        layouts = ["tp2", "tp2_dp2", "tp4_dp4", "tp2_ep2"]
    elif CASE == "mixtral":
        layouts = ["tp2", "tp2_dp2", "tp2_ep2"]
    elif CASE in ("gemma3", "phi3"):  # sandwich norms after the all-reduce / DP scatter; fused rows per rank
        layouts = ["tp2", "tp2_dp2", "tp4_dp2"]
    check_layouts(common, layouts, extra_modes=(CASE == "qwen3_moe"))
elif CASE == "dump_logits":
    # `generate --dump-logits` on every layout: rank 0 writes the same rows (every prompt position,
    # then every decode step) as the single rank, so the reference-logit tests (tests/model, which
    # judge the single rank's dump against NumPy) carry over to tp / DP attention / ep. TP sums
    # partial products in another order: within 1e-3 of the logits' std (f32 weights; a row from
    # the wrong position or rank is off by ~the std), and each decode row's argmax is the token made.
    import numpy as np
    for arch, layouts in (("qwen3", ["tp2", "tp2_dp2", "tp4_dp2"]), ("qwen3_moe", ["tp2_ep2", "tp4_dp2_ep4"]),
                          ("deepseek_v2", ["tp2", "tp2_dp2"]), ("gemma3", ["tp2", "tp2_dp2"]),
                          ("phi3", ["tp2", "tp2_dp2"]),
                          ("gemma2", ["tp2", "tp2_dp2"]),  # soft-caps on each rank's heads and vocabulary slice
                          # the residual multiplier after the all-reduce / DP scatter, logits divided per slice
                          ("granite", ["tp2", "tp2_dp2"]),
                          ("granite_moe", ["tp2_ep2"]),  # experts split from JetMoE's stacked tensors per rank
                          # q / k norms over heads split between the ranks: sums of squares all-reduced
                          ("olmo2", ["tp2", "tp2_dp2"]),
                          ("olmo3", ["tp2_dp2"]),  # the same, with sliding layers and two RoPE tables
                          ("exaone4", ["tp2"]),  # per-head q / k norms, post-norms, unrotated full layers
                          ("seed_oss", ["tp2"]),  # q/k/v biases sliced with heads wider than hidden / heads
                          ("olmoe", ["tp2_ep2"]),  # the same norms, experts split over the ranks
                          # the gated shared expert split over the MLP ranks, each partial sum scaled by the gate
                          ("qwen2_moe", ["tp2_ep2", "tp2_dp2"]),
                          # DeepSeek-V3's router over ranks, partial RoPE on each rank's heads, q/k/v biases sliced
                          ("glm4_moe", ["tp2_ep2", "tp2_dp2"]),
                          ("glm4", ["tp2", "tp2_dp2"]),  # fused gate / up split per rank, adjacent-pair partial RoPE
                          # softmax routing with a selection bias, the shared expert split over the MLP ranks
                          ("ernie4_5_moe", ["tp2_ep2"]),
                          # whole-projection q / k norms over each rank's heads, sigmoid + bias routing, experts split
                          ("minimax_m2", ["tp2_ep2"]),
                          # expert inputs weighted per (token, expert) slot on each EP rank; chunked layers per rank
                          ("llama4", ["tp2_ep2", "tp2_dp2"]),
                          ("smollm3", ["tp2"]),  # NoPE layers on each rank's heads
                          # sinks sliced with the heads, o / down biases added on one rank, experts split or whole
                          ("gpt_oss", ["tp2", "tp2_dp2", "tp2_ep2"])):
        model = hf_model(arch)
        with open(os.path.join(model, "config.json")) as f:
            vocab = json.load(f)["vocab_size"]
        ids = id_prompts(vocab, 5)[4]  # 40 tokens
        n_new = 8

        def dump(flags, tag):
            path = os.path.join(SCRATCH, f"logits-{arch}-{tag}.bin")
            if os.path.exists(path):
                os.remove(path)
            out = run(["generate", "--json", "--model-path", model, "--prompt-ids", ",".join(ids), "-n", str(n_new),
                       "--ignore-eos", "--temperature", "0", "--threads", "1", "--dump-logits", path] + flags)
            rows = np.fromfile(path, dtype=np.float32)
            assert rows.size % vocab == 0, f"FAIL: {arch} {tag}: {rows.size} floats is not whole rows of {vocab}"
            return rows.reshape(-1, vocab), out[0]["output_ids"]

        base, base_out = dump([], "single")
        want_rows = len(ids) + n_new - 1
        assert base.shape[0] == want_rows, f"FAIL: {arch} single rank: {base.shape[0]} rows, want {want_rows}"
        scale = float(base.std())
        for name in layouts:
            got, out = dump(LAYOUTS[name], name)
            assert got.shape == base.shape, f"FAIL: {arch} {name}: {got.shape[0]} rows, single rank {base.shape[0]}"
            err = float(np.abs(got - base).max()) / scale
            assert err <= 1e-3, f"FAIL: {arch} {name}: logits differ from the single rank's by {err:.3g} x std"
            made = [int(r.argmax()) for r in got[len(ids) - 1:]]
            assert made == out, f"FAIL: {arch} {name}: decode rows' argmax {made} != output {out}"
            print(f"ok {arch} {name}: {got.shape[0]} rows, max diff {err:.2g} x std, argmax = output")
    # OLMo 2's k_norm spans every KV head: four attention ranks over its two KV heads would hold copies of one
    # head and count it twice, so that layout is refused at start-up naming the flag.
    p = subprocess.run([BIN, "generate", "--model-path", hf_model("olmo2"), "--prompt-ids", "1,2,3", "-n", "1",
                        "--tp-size", "4"], capture_output=True, text=True, env=ENV, timeout=240)
    assert p.returncode != 0 and "--tp-size" in p.stderr and "k_norm" in p.stderr, \
        f"FAIL: olmo2 at --tp-size 4 (2 KV heads) was not refused naming --tp-size: {p.stderr[-600:]}"
    print("ok olmo2 --tp-size 4 over 2 KV heads refused: " + [ln for ln in p.stderr.splitlines() if "k_norm" in ln][0])
elif CASE == "kv_dtype":
    # Compact KV caches (--kv-cache-dtype bf16 / int8 / fp8): every rank stores its own heads' rows
    # (each with its own scale) and MLA's latent row whole, so every layout equals the single rank.
    for arch, dtypes, layouts in (("llama", ["bf16", "int8", "fp8_e4m3"], ["tp2", "tp2_dp2"]),
                                  ("deepseek_v2", ["int8"], ["tp2", "tp2_dp2"])):
        model = hf_model(arch)
        with open(os.path.join(model, "config.json")) as f:
            vocab = json.load(f)["vocab_size"]
        pf = prompts_file([",".join(p) for p in id_prompts(vocab, 6)], f"kv-{arch}-ids.txt")
        for dtype in dtypes:
            common = ["generate", "--json", "--model-path", model, "--prompts-file", pf, "--prompts-are-ids", "-n",
                      "12", "--ignore-eos", "--kv-cache-dtype", dtype]
            check_layouts(common, layouts)
            print(f"ok {arch} --kv-cache-dtype {dtype}")
elif CASE == "constrained":
    # Structured output: every rank of a group advances the request's automaton from the same
    # tokens and masks alike, so constrained outputs (greedy and seeded sampling) are the same
    # token for token on one rank, on two ranks sharing a group (tp2, tp4_dp2) and with DP attention.
    model = hf_model("qwen3")  # its own byte-level tokenizer sits in the folder
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": -50, "maximum": 50},
                                               "tag": {"enum": ["red", "green"]},
                                               "xs": {"type": "array", "items": {"type": "string", "maxLength": 4},
                                                      "maxItems": 3}},
              "required": ["n", "tag", "xs"], "additionalProperties": False}
    pf = prompts_file(["hello", "a much longer prompt about the weather and the sea", "x", "json please"], "constrained.txt")
    for sampling in (["--temperature", "0"], ["--temperature", "1", "--seed", "11"]):
        common = ["generate", "--json", "--model-path", model, "--prompts-file", pf, "-n", "120",
                  "--json-schema", json.dumps(schema)] + sampling
        base = check_layouts(common, ["tp2", "tp2_dp2", "tp4_dp2"])
        for o in base:
            if o["finish_reason"] != "stop":
                continue
            v = json.loads(o["text"])
            assert set(v) == {"n", "tag", "xs"} and -50 <= v["n"] <= 50 and v["tag"] in ("red", "green"), o["text"]
            assert len(v["xs"]) <= 3 and all(isinstance(x, str) and len(x) <= 4 for x in v["xs"]), o["text"]
        print(f"ok constrained {' '.join(sampling)}: outputs valid, {sum(o['finish_reason'] == 'stop' for o in base)} complete")
elif CASE in ("gguf", "gguf_quantized"):
    # GGUF models: F16 (our writer), and llama-quantize's Q8_0 llama, Q4_0 Qwen3-MoE and MXFP4_MOE
    # gpt-oss (committed fixtures; their 32-element blocks split over 2 and 4 ranks; gpt-oss's experts
    # loaded as Q8_0, with their biases sliced or kept on one rank).
    if CASE == "gguf":
        models = [(gguf_model(), 397, ["tp2", "tp2_dp2", "tp4_dp2"])]
    else:
        fix = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model", "fixtures", "gguf")
        # (gpt-oss's context is 128 tokens: its prompts stop at 100.)
        models = [(os.path.join(fix, "llama-q-Q8_0.gguf"), 512, ["tp2", "tp2_dp2", "tp4_dp2"]),
                  (os.path.join(fix, "qwen3moe-q-Q4_0.gguf"), 320, ["tp2", "tp2_dp2", "tp2_ep2", "tp4_dp2_ep4"]),
                  (os.path.join(fix, "gpt_oss-MXFP4_MOE.gguf"), 397, ["tp2", "tp2_dp2", "tp2_ep2"], 100)]
    for model, vocab, layouts, *max_len in models:
        pf = prompts_file([",".join(p) for p in id_prompts(vocab, 6, *max_len)], f"{CASE}-{os.path.basename(model)}.txt")
        common = ["generate", "--json", "--model-path", model, "--prompts-file", pf, "--prompts-are-ids", "-n", "12",
                  "--ignore-eos"]
        check_layouts(common, layouts)
        print(f"ok {os.path.basename(model)}")
elif CASE == "quant":
    # Quantized on load (--quantization q4_k_m: Q4_K, Q6_K for the LM head and for v_proj /
    # down_proj of layers 2 and 3; then q8_0 and q4_0); every TP slice holds whole blocks
    # (o_proj's 16 heads x 64 and the FFN's 1024 columns split into multiples of 256 up to tp=4).
    #
    # Replicas (no partial sums across ranks) must match the single rank exactly: the kernels are
    # batch invariant. TP layouts sum partial products in another order (the MLP's two halves, then
    # the all-reduce), a difference of one rounding; when it moves an activation across an int8
    # rounding boundary the next layer sees a different code, so greedy tokens may part where the
    # single-rank run itself is nearly tied. (Verified: one rank computing down_proj as two halves
    # reproduces tp2_dp2's tokens exactly.) So where a TP layout parts from the single rank, both run
    # again on the single rank's history up to there: the layout's logits on that row must be within
    # a rounding-level PERTURB x the logits' std of the single rank's (a wrong shard or head errs by
    # about the std), and the single rank's margin between the two tokens must be within what that
    # perturbation can flip (twice its largest logit move). Measured 2026-12-06 on tp4_dp2: the layout
    # moves each of those rows' logits by up to 0.11-0.19 (std 2.44), on this and the previous
    # commit alike; partings came at single-rank margins of 0.007-0.12 (a fixed 0.1 had passed by luck).
    PERTURB = 0.15
    model = os.path.join(SCRATCH, "qwen3-quant")
    if not os.path.exists(os.path.join(model, "config.json")):
        subprocess.run(["/usr/bin/python3", MAKE_MODEL, "--arch", "qwen3", "--dtype", "bf16", "--hidden-size", "256",
                        "--intermediate-size", "1024", "--num-hidden-layers", "4", "--num-attention-heads", "16",
                        "--num-key-value-heads", "4", "--head-dim", "64", "--vocab-size", "512",
                        "--max-position-embeddings", "1024", "--seed", "5", "--out", model, "--quiet"],
                       check=True, timeout=120)
    prompts = id_prompts(512, 6)
    pf = prompts_file([",".join(p) for p in prompts], "quant-ids.txt")

    def last_logits(model_dir, method, ids, layout=()):
        """Logits after `ids` (all of them prefilled), on the single rank or on a layout."""
        import numpy as np
        path = os.path.join(SCRATCH, "logits.bin")
        p = subprocess.run([BIN, "generate", "--model-path", model_dir, "--prompt-ids", ",".join(map(str, ids)), "-n", "1",
                            "--quantization", method, "--dump-logits", path, "--threads", "1", *layout],
                           capture_output=True, text=True, env=ENV, timeout=240)
        assert p.returncode == 0, p.stderr[-2000:]
        return np.fromfile(path, dtype=np.float32).reshape(-1, 512)[len(ids) - 1].astype(np.float64)

    for method in ["q4_k_m", "q8_0", "q4_0"]:
        common = ["generate", "--json", "--model-path", model, "--prompts-file", pf, "--prompts-are-ids", "-n", "12",
                  "--ignore-eos", "--quantization", method]
        p = subprocess.run([BIN] + common + ["--threads", "1"], capture_output=True, text=True, env=ENV, timeout=240)
        assert p.returncode == 0 and f"--quantization {method}" in p.stderr, p.stderr[-2000:]
        print(f"{method}: " + [l for l in p.stderr.splitlines() if l.startswith("weights:")][0])
        base = [o["output_ids"] for o in run(common + ["--threads", "1"])]
        got = [o["output_ids"] for o in run(common + LAYOUTS["dp2_replicas"] + ["--threads", "1"])]
        assert got == base, f"FAIL: {method} dp2_replicas differs from the single rank"
        print(f"ok {method} dp2_replicas: identical")
        for name in (["tp2", "tp2_dp2", "tp4_dp2"] if method == "q4_k_m" else ["tp2_dp2"]):
            got = [o["output_ids"] for o in run(common + LAYOUTS[name] + ["--threads", "1"])]
            parted = 0
            for i, (b, g) in enumerate(zip(base, got)):
                if b == g:
                    continue
                k = next(j for j in range(len(b)) if b[j] != g[j])
                hist = [int(t) for t in prompts[i]] + b[:k]
                one = last_logits(model, method, hist)
                assert int(one.argmax()) == b[k], f"dump-logits disagrees with generate at {hist[-3:]}"
                m = float(one[b[k]] - one[g[k]])
                move = float(abs(last_logits(model, method, hist, LAYOUTS[name]) - one).max())
                assert move <= PERTURB * one.std(), f"FAIL: {method} {name}: prompt {i}: the layout moves the " \
                    f"logits after the same history by {move:.4f}, over {PERTURB} x their std {one.std():.3f}"
                assert m <= 2 * move, f"FAIL: {method} {name}: prompt {i} parts at token {k} where the single rank " \
                                      f"prefers {b[k]} over {g[k]} by {m:.4f}, more than the layout's logits move ({move:.4f}) can flip"
                parted += 1
                print(f"  {method} {name}: prompt {i} parts at token {k}: single-rank margin {m:.4f}, the layout "
                      f"moves that row's logits by up to {move:.4f} (std {one.std():.3f})")
            print(f"ok {method} {name}: {len(base) - parted} of {len(base)} prompts identical, the others part at "
                  f"near ties")
    # MoE (8 experts, top 2; expert FFN 256 = one Q4_K block; o_proj 8 heads x 64): experts split
    # whole (ep) or by columns.
    moe = os.path.join(SCRATCH, "qwen3-moe-quant")
    if not os.path.exists(os.path.join(moe, "config.json")):
        subprocess.run(["/usr/bin/python3", MAKE_MODEL, "--arch", "qwen3_moe", "--preset", "tiny", "--dtype", "bf16",
                        "--hidden-size", "256", "--num-attention-heads", "8", "--num-key-value-heads", "2",
                        "--head-dim", "64", "--num-experts", "8", "--num-experts-per-tok", "2",
                        "--moe-intermediate-size", "256", "--intermediate-size", "512", "--decoder-sparse-step", "1",
                        "--vocab-size", "512",
                        "--max-position-embeddings", "1024", "--seed", "6", "--out", moe, "--quiet"],
                       check=True, timeout=120)
    common = ["generate", "--json", "--model-path", moe, "--prompts-file", pf, "--prompts-are-ids", "-n", "12",
              "--ignore-eos", "--quantization", "q4_k_m"]
    base = [o["output_ids"] for o in run(common + ["--threads", "1"])]
    assert [o["output_ids"] for o in run(common + LAYOUTS["dp2_replicas"] + ["--threads", "1"])] == base, \
        "FAIL: MoE q4_k_m dp2_replicas differs from the single rank"
    for name, flags in [("tp2_ep2", LAYOUTS["tp2_ep2"]), ("tp2_dp2_ep2", LAYOUTS["tp2_dp2"] + ["--ep-size", "2"])]:
        got = [o["output_ids"] for o in run(common + flags + ["--threads", "1"])]
        for i, (b, g) in enumerate(zip(base, got)):
            if b != g:
                k = next(j for j in range(len(b)) if b[j] != g[j])
                m = margin_at(moe, "q4_k_m", [int(t) for t in prompts[i]] + b[:k], b[k], g[k])
                assert m < NEAR_TIE, f"FAIL: MoE {name}: prompt {i} parts at token {k} by {m:.4f} (not a near tie)"
                print(f"  MoE q4_k_m {name}: prompt {i} parts at token {k}, single-rank margin {m:.4f}")
        print(f"ok MoE q4_k_m {name}")
    # A TP slice that is not whole blocks is a start-up error naming --tp-size: the FFN's 1024
    # columns over 8 ranks are 128, half a Q4_K block.
    p = subprocess.run([BIN, "generate", "--model-path", model, "--prompt-ids", "1,2,3", "-n", "2", "--tp-size", "8",
                        "--quantization", "q4_k"], capture_output=True, text=True, env=ENV, timeout=240)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "--tp-size" in out and "Q4_K" in out, out[-2000:]
    print("ok: a TP slice of half a block names --tp-size")
elif CASE == "mla_absorbed":
    # MLA's two forms are equal in exact arithmetic but round differently, and `auto` picks one per
    # step by cost: a prompt prefilled whole (decompressed) and in small chunks (absorbed) gives other
    # logits. --mla-attention absorbed takes one form for every step, so the logits of every position
    # are the same bits whatever the chunking, on one rank and at tp 2.
    model = hf_model("deepseek_v2")
    prompt = "Once upon a time there was a little girl who lived in a village near the forest with a cat"
    def logits(chunk, mode, layout=()):
        path = os.path.join(SCRATCH, f"logits-{mode}-{chunk}-{len(layout)}.f32")
        run(["generate", "--json", "--model-path", model, "--prompt", prompt, "-n", "6", "--threads", "1",
             "--chunked-prefill-size", str(chunk), "--mla-attention", mode, "--dump-logits", path] + list(layout))
        with open(path, "rb") as f:
            return f.read()
    whole, pieces = logits(512, "auto"), logits(5, "auto")
    assert len(whole) == len(pieces) > 0
    assert whole != pieces, "premise: under auto, chunking changes the MLA logits' bits"
    base = logits(512, "absorbed")
    for chunk in (5, 17):
        assert logits(chunk, "absorbed") == base, f"--mla-attention absorbed: chunk {chunk} changed the logits"
    assert logits(7, "absorbed", LAYOUTS["tp2"]) == logits(512, "absorbed", LAYOUTS["tp2"]), "tp2: chunking changed them"
    print("ok: --mla-attention absorbed gives the same logits for every chunking (auto does not)")
    p = subprocess.run([BIN, "generate", "--model-path", os.path.join(SHARED, "models/stories260K/stories260K.bin"),
                        "-n", "2", "--mla-attention", "absorbed"], capture_output=True, text=True, env=ENV, timeout=60)
    assert p.returncode != 0 and "--mla-attention" in p.stderr, p.stderr[-2000:]
    print("ok: --mla-attention absorbed on a model without MLA names the flag")
elif CASE == "kv_pool_agree":
    # KV pools sized from memory: each rank reads MemAvailable at its own moment, so on a busy host
    # the ranks of a group can read different amounts (here rank 1 reads half of rank 0's). Their
    # pools must still hold the same pages: the group's schedulers run in lockstep, and a pool that
    # runs out on one rank first split their batches and stopped the job. A load beyond the smaller
    # pool (it preempts) must give the single-rank outputs.
    model = os.path.join(SHARED, "models/stories260K/stories260K.bin")
    long = story_prompts()[3]
    pf = prompts_file([long[i * 7:] for i in range(8)], "kv_pool.txt")
    common = ["generate", "--json", "--model-path", model, "--prompts-file", pf, "-n", "120", "--ignore-eos",
              "--max-running-requests", "8", "--threads", "1"]
    base = run(common + ["--max-total-tokens", "100000"])
    gen = common + ["--tp-size", "2", "--mem-fraction", "0.001"]
    cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
           "-np", "1", "-x", "DPSERVE_TEST_MEM_AVAILABLE=4000000000", BIN] + gen + [":",
           "-np", "1", "-x", "DPSERVE_TEST_MEM_AVAILABLE=2000000000", BIN] + gen
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=240)
    except subprocess.TimeoutExpired:
        raise SystemExit("FAIL: tp=2 with unequal memory readings hung")
    assert p.returncode == 0, f"tp=2 with unequal memory readings failed:\n{p.stderr[-3000:]}"
    compare(base, [json.loads(l) for l in p.stdout.splitlines() if l.strip()], "tp2 unequal MemAvailable")
    print("ok: ranks reading different MemAvailable share one pool size; outputs equal the single rank's")
elif CASE == "startup_failure":
    # One rank gets a model path that does not exist (MPMD launch): the whole job must end
    # non-zero with that rank's message instead of the healthy rank waiting forever.
    model = os.path.join(SHARED, "models/stories260K/stories260K.bin")
    cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root",
           "-np", "1", BIN, "generate", "--tp-size", "2", "--model-path", model, "-n", "4", ":",
           "-np", "1", BIN, "generate", "--tp-size", "2", "--model-path", "/nonexistent/rank1-model", "-n", "4"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=60)
    except subprocess.TimeoutExpired:
        raise SystemExit("FAIL: a rank failing at start-up left the job hanging")
    out = p.stdout + p.stderr
    assert p.returncode != 0, f"job exited 0 although rank 1 could not load its model:\n{out}"
    assert ("(rank 1)" in out or "rank 1:" in out) and "/nonexistent/rank1-model" in out, f"rank 1's message is missing:\n{out}"
    print("ok: start-up failure of rank 1 ended the job with its message")
    # Mismatched flags between ranks (tp-size 2 in a world of 3) fail at start too.
    cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", "3", BIN, "generate", "--tp-size", "2",
           "--model-path", model, "-n", "4"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=60)
    except subprocess.TimeoutExpired:
        raise SystemExit("FAIL: a world-size mismatch left the job hanging")
    assert p.returncode != 0 and "--tp-size" in (p.stdout + p.stderr), p.stdout + p.stderr
    print("ok: world size mismatch names --tp-size")
    # Bad input found on rank 0 after every rank has started (an id outside the vocabulary, a
    # prompt that does not fit): the other ranks are stopped too, and the job ends non-zero with
    # the message within seconds (it used to hang until killed).
    # Every other input rank 0 alone reads (an empty id list, a prompts file with an empty or a
    # malformed line, a missing file, -n 0) ends the job the same way, and so does the first case
    # under DP attention (4 ranks, where the other group's ranks wait on their own leader).
    empty_line = prompts_file(["1,2", ""], "empty_line.txt")
    bad_line = prompts_file(["1,2", "3,x"], "bad_line.txt")
    tp2 = ["--tp-size", "2"]
    dpa = ["--tp-size", "2", "--dp-size", "2", "--enable-dp-attention"]
    for layout, bad, words in ((tp2, ["--prompt-ids", "1,2,99999"], "99999"),
                               (tp2, ["--prompt-ids", ",".join(["1"] * 5000)], "context"),
                               (tp2, ["--prompt-ids", ","], "--prompt-ids"),
                               (tp2, ["--prompts-file", empty_line, "--prompts-are-ids"], "no token ids"),
                               (tp2, ["--prompts-file", bad_line, "--prompts-are-ids"], '"x"'),
                               (tp2, ["--prompts-file", os.path.join(SCRATCH, "missing.txt")], "missing.txt"),
                               (tp2, ["--max-new-tokens", "0"], "--max-new-tokens"),
                               (dpa, ["--prompt-ids", "1,2,99999"], "99999")):
        args = [BIN, "generate", "--model-path", model, "-n", "4"] + layout + bad
        if "--max-new-tokens" in bad:
            args.remove("-n"), args.remove("4")
        what = f"{' '.join(layout)} {' '.join(bad)[:50]}"
        try:
            p = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=60)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"FAIL: generate {what} left the job hanging")
        out = p.stdout + p.stderr
        assert p.returncode != 0, f"exited 0 for a bad prompt:\n{out}"
        assert words in out, f"the message does not name '{words}':\n{out[-2000:]}"
        print(f"ok: a bad input on {what} ends the job with its message")
else:
    raise SystemExit(f"unknown case {CASE}")
print("PASS")
