#!/usr/bin/python3
"""Speculative decoding (NGRAM, STANDALONE, NEXTN) changes how many tokens a step makes, never which tokens.

Offline (`dpserve generate --json`), every output with `--speculative-algorithm NGRAM` must equal,
token for token, the single-rank output without it:
  * greedy, on llama2.c stories260K, tiny random Qwen3 / Qwen3-MoE / DeepSeek-V2 (MLA) / DeepSeek-V3
    HF folders and an F16 GGUF, on one rank and over tp / DP attention / ep layouts; the single-rank
    run without speculation is itself checked against llama2.c's and NumPy's references elsewhere
    (tests/runtime, tests/model);
  * seeded sampling (temperature, top-p, repetition penalty): the verified rows draw from the
    request's own random stream in order, so a seed gives the same tokens;
  * with bf16 and int8 KV caches (stories260K, one rank and tp2 dp2);
  * with the drafts each request verified reported, and required to include accepted ones (a run in
    which every draft failed would prove nothing about the rows after the first).
STANDALONE (a draft model) likewise: the target as its own draft must have every draft accepted
(one rank, also under preemption and prefix-cache reuse), a Q4_0 copy and an unrelated model must
change nothing; on one rank and over tp / DP attention, for llama2.c, MLA and MoE models.
NEXTN (DeepSeek-V3's multi-token-prediction layer): the drafts the runner makes are the NumPy
reference's chain at every logged step (one rank), the output unchanged on one rank, tp2 and tp2 with
DP attention, also with an MTP layer built to predict well (make_hf_model --nextn-echo) whose drafts
are mostly accepted.
Start-up refuses what is not built, naming the flag.

usage: test_speculative.py DPSERVE_BIN SHARED_DIR SCRATCH_DIR MAKE_MODEL_PY CASE
"""
import json
import os
import subprocess
import sys

BIN, SHARED, SCRATCH, MAKE_MODEL, CASE = sys.argv[1:6]
os.makedirs(SCRATCH, exist_ok=True)
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
SPEC = ["--speculative-algorithm", "NGRAM"]
LAYOUTS = {
    "one": [],
    "tp2": ["--tp-size", "2"],
    "tp2_dp2": ["--tp-size", "2", "--dp-size", "2", "--enable-dp-attention"],
    "tp2_ep2": ["--tp-size", "2", "--ep-size", "2"],
}


def run(args, timeout=300):
    p = subprocess.run([BIN] + args, capture_output=True, text=True, env=ENV, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: dpserve {' '.join(args)[:300]} exited {p.returncode}\n{p.stderr[-3000:]}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def prompts_file(lines, name):
    path = os.path.join(SCRATCH, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def hf_model(arch):
    out = os.path.join(SCRATCH, f"tiny-{arch}")
    if not os.path.exists(os.path.join(out, "config.json")):
        extra = ["--num-attention-heads", "4", "--num-key-value-heads", "2"]
        if arch == "qwen3_moe":
            extra += ["--num-experts", "8", "--num-experts-per-tok", "2", "--decoder-sparse-step", "1"]
        subprocess.run(["/usr/bin/python3", MAKE_MODEL, "--arch", arch, "--preset", "tiny", "--dtype", "f32",
                        "--max-position-embeddings", "1024", "--seed", "7", "--out", out, "--quiet"] + extra,
                       check=True, timeout=120)
    return out


def gguf_model():
    out = os.path.join(SCRATCH, "tiny-llama-f16.gguf")
    if not os.path.exists(out):
        hf = hf_model("llama")
        subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(MAKE_MODEL), "hf_to_gguf.py"), hf,
                        "--outtype", "f16", "--out", out], check=True, timeout=120, stderr=subprocess.DEVNULL)
    return out


def id_prompts(vocab):
    """Token-id prompts: some repeat a phrase (the drafter finds it at once), some are pseudo-random
    (drafts come only once the output itself repeats)."""
    out, x = [], 4242
    for n, period in [(40, 5), (7, 0), (120, 9), (2, 0), (64, 3), (30, 0)]:
        ids = []
        for i in range(n):
            if period and i >= period:
                ids.append(ids[i - period])
                continue
            x = (x * 1103515245 + 12345) % (1 << 31)
            ids.append(3 + x % (vocab - 3))
        out.append(",".join(map(str, ids)))
    return out


def story_prompts():
    rep = "The dog ran to the park. The dog ran to the park. The dog ran to the"
    return ["Once upon a time", rep, "Lily and Tom went to the shop to buy a red ball.", "", "One day, a little"]


def compare(base, got, what):
    assert len(base) == len(got), f"{what}: {len(got)} outputs, expected {len(base)}"
    for i, (b, g) in enumerate(zip(base, got)):
        if b["output_ids"] != g["output_ids"] or b["finish_reason"] != g["finish_reason"]:
            raise SystemExit(f"FAIL: {what}: prompt {i} differs\n without: {b['output_ids']} {b['finish_reason']}\n"
                             f" with:    {g['output_ids']} {g['finish_reason']}")


def accepted(outs):
    return sum(o.get("spec_accepted_tokens", 0) for o in outs), sum(o.get("spec_draft_tokens", 0) for o in outs)


def check_model(common, layouts, samplings):
    for sampling in samplings:
        base = run(common + sampling + ["--threads", "1"])
        assert all(len(o["output_ids"]) > 0 for o in base)
        assert accepted(base) == (0, 0), "drafts reported without --speculative-algorithm"
        for name in layouts:
            for extra in ([], ["--speculative-num-steps", "7"]):
                got = run(common + sampling + LAYOUTS[name] + SPEC + extra + ["--threads", "1"])
                what = f"{name} {' '.join(sampling + extra)}"
                compare(base, got, what)
                acc, drafted = accepted(got)
                assert acc > 0, f"FAIL: {what}: no draft was accepted ({drafted} drafted): the test proves nothing"
                print(f"ok {what}: {len(got)} prompts identical, {acc} of {drafted} drafted tokens accepted")


GREEDY = [["--temperature", "0"]]
SAMPLED = [["--temperature", "0.8", "--seed", "5"],
           ["--temperature", "1.0", "--top-p", "0.9", "--repetition-penalty", "1.1", "--seed", "9"]]

if CASE == "stories":
    model = os.path.join(SHARED, "models/stories260K/stories260K.bin")
    if not os.path.exists(model):
        raise SystemExit(f"FAIL: {model} missing (DPSERVE_SHARED_DIR)")
    pf = prompts_file(story_prompts(), "stories.txt")
    common = ["generate", "--json", "--model-path", model, "--prompts-file", pf]
    check_model(common + ["-n", "64"], ["one", "tp2", "tp2_dp2"], GREEDY + SAMPLED)
    # Compact KV caches: rows of a verify pass read the bf16 / int8 cache exactly as decode steps do.
    for kv in ("bf16", "int8"):
        check_model(common + ["-n", "64", "--kv-cache-dtype", kv], ["one", "tp2_dp2"], GREEDY)
    # --max-tokens cuts a verified chain: every length from 1 up gives the prefix of the longest.
    longest = run(common + GREEDY[0] + SPEC + ["-n", "40"])
    for n in (1, 2, 3, 5, 8, 13):
        got = run(common + GREEDY[0] + SPEC + ["-n", str(n)])
        for a, b in zip(longest, got):
            assert b["output_ids"] == a["output_ids"][:n] or (b["finish_reason"] == "stop" and
                                                                b["output_ids"] == a["output_ids"][:len(b["output_ids"])]), \
                f"FAIL: -n {n}: {b['output_ids']} is not a prefix of {a['output_ids']}"
    print("ok -n 1..13 with speculation: prefixes of the longest output")
elif CASE in ("qwen3", "qwen3_moe", "deepseek_v2", "deepseek_v3", "gguf"):
    model = gguf_model() if CASE == "gguf" else hf_model(CASE)
    vocab = 397 if CASE == "gguf" else json.load(open(os.path.join(model, "config.json")))["vocab_size"]
    pf = prompts_file(id_prompts(vocab), f"{CASE}-ids.txt")
    common = ["generate", "--json", "--model-path", model, "--prompts-file", pf, "--prompts-are-ids", "-n", "48",
              "--ignore-eos"]
    layouts = ["one", "tp2", "tp2_dp2"]
    if CASE in ("qwen3_moe", "deepseek_v3"):
        layouts.append("tp2_ep2")
    check_model(common, layouts, GREEDY + (SAMPLED[:1] if CASE == "qwen3" else []))
elif CASE == "standalone":
    # STANDALONE: a draft model proposes, the target verifies. The target itself as its own draft
    # (one rank) must have every draft accepted: its drafts are the target's greedy choices only if
    # the draft cache holds the right KV at every position (after catch-up, after rejections, after
    # preemption and prefix-cache reuse); any stale or misplaced draft KV shows as a rejection.
    stories = os.path.join(SHARED, "models/stories260K/stories260K.bin")
    tok = os.path.join(SHARED, "models/stories260K/tok512.bin")
    pf = prompts_file(story_prompts(), "stories.txt")
    common = ["generate", "--json", "--model-path", stories, "--prompts-file", pf, "-n", "64", "--threads", "1"]

    def standalone(draft):
        return ["--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path", draft]

    def check_all_accepted(got, what):
        acc, drafted = accepted(got)
        assert drafted > 0 and acc == drafted, f"FAIL: {what}: the target as its own draft: {acc} of {drafted} accepted"
        print(f"ok {what}: every one of {drafted} drafted tokens accepted")

    for sampling in GREEDY + SAMPLED:
        base = run(common + sampling)
        got = run(common + sampling + standalone(stories))
        compare(base, got, f"self-draft one {' '.join(sampling)}")
        if sampling == GREEDY[0]:
            check_all_accepted(got, "self-draft greedy")
        for name in ("tp2", "tp2_dp2"):
            compare(base, run(common + sampling + LAYOUTS[name] + standalone(stories)),
                    f"self-draft {name} {' '.join(sampling)}")
    # Many requests in a pool of 24 pages: preemption, recompute and prefix-cache hits (repeated
    # prompts), prompts prefilled in chunks of 8 (the draft cache follows each chunk) while drafting;
    # still every draft accepted and the same tokens.
    crowd = prompts_file(story_prompts() * 4, "crowd.txt")
    tight = ["--max-total-tokens", "384", "--page-size", "16", "--max-running-requests", "12", "--temperature", "0",
             "--chunked-prefill-size", "8"]
    c_common = ["generate", "--json", "--model-path", stories, "--prompts-file", crowd, "-n", "80", "--threads", "1"]
    base = run(c_common + tight)
    got = run(c_common + tight + standalone(stories) + ["--speculative-num-steps", "6"])
    compare(base, got, "self-draft under preemption")
    check_all_accepted(got, "self-draft under preemption")
    # A quantized copy of the target (Q4_0 GGUF, the common CPU set-up): some drafts fail.
    q4 = os.path.join(SCRATCH, "stories260K-q4_0.gguf")
    if not os.path.exists(q4):
        subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(MAKE_MODEL), "hf_to_gguf.py"), "--llama2c",
                        stories, "--tokenizer", tok, "--out", q4, "--outtype", "q4_0"], check=True, timeout=120,
                       stderr=subprocess.DEVNULL)
    for sampling in GREEDY + SAMPLED[:1]:
        base = run(common + sampling)
        for name in ("one", "tp2_dp2"):
            got = run(common + sampling + LAYOUTS[name] + standalone(q4))
            compare(base, got, f"q4_0 draft {name} {' '.join(sampling)}")
            acc, drafted = accepted(got)
            assert acc > 0, f"FAIL: q4_0 draft {name}: no draft accepted ({drafted} drafted)"
            print(f"ok q4_0 draft {name} {' '.join(sampling)}: identical, {acc} of {drafted} accepted")
    # Other families: MLA's latent cache and MoE as their own drafts; a smaller, unrelated Qwen3 draft
    # (one layer, other weights: its drafts fail, which must change nothing).
    for arch in ("deepseek_v2", "qwen3_moe"):
        model = hf_model(arch)
        vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"]
        ids = prompts_file(id_prompts(vocab), f"{arch}-ids.txt")
        ic = ["generate", "--json", "--model-path", model, "--prompts-file", ids, "--prompts-are-ids", "-n", "40",
              "--ignore-eos", "--temperature", "0", "--threads", "1"]
        base = run(ic)
        got = run(ic + standalone(model))
        compare(base, got, f"{arch} self-draft")
        check_all_accepted(got, f"{arch} self-draft")
        compare(base, run(ic + LAYOUTS["tp2_dp2"] + standalone(model)), f"{arch} self-draft tp2_dp2")
    target = hf_model("qwen3")
    other = os.path.join(SCRATCH, "tiny-qwen3-draft")
    if not os.path.exists(os.path.join(other, "config.json")):
        subprocess.run(["/usr/bin/python3", MAKE_MODEL, "--arch", "qwen3", "--preset", "tiny", "--dtype", "f32",
                        "--num-hidden-layers", "1", "--num-attention-heads", "4", "--num-key-value-heads", "2",
                        "--max-position-embeddings", "1024", "--seed", "8", "--out", other, "--quiet"],
                       check=True, timeout=120)
    ids = prompts_file(id_prompts(397), "qwen3-ids.txt")
    ic = ["generate", "--json", "--model-path", target, "--prompts-file", ids, "--prompts-are-ids", "-n", "40",
          "--ignore-eos", "--threads", "1"]
    for sampling in GREEDY + SAMPLED[:1]:
        base = run(ic + sampling)
        for name in ("one", "tp2"):
            got = run(ic + sampling + LAYOUTS[name] + standalone(other))
            compare(base, got, f"unrelated draft {name} {' '.join(sampling)}")
            acc, drafted = accepted(got)
            assert drafted > 0, f"FAIL: unrelated draft {name}: nothing drafted"
            print(f"ok unrelated draft {name} {' '.join(sampling)}: identical, {acc} of {drafted} accepted")
elif CASE == "nextn":
    # NEXTN: DeepSeek-V3's own multi-token-prediction layer drafts from the target's hidden states.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model", "reference"))
    import ref_forward as rf  # noqa: E402
    import ref_nextn as rn  # noqa: E402
    import numpy as np  # noqa: E402
    NEXTN = ["--speculative-algorithm", "NEXTN"]

    def v3(name, extra):
        out = os.path.join(SCRATCH, name)
        if not os.path.exists(os.path.join(out, "config.json")):
            subprocess.run(["/usr/bin/python3", MAKE_MODEL, "--arch", "deepseek_v3", "--preset", "tiny", "--dtype",
                            "f32", "--max-position-embeddings", "1024", "--seed", "7", "--num-nextn-predict-layers",
                            "1", "--out", out, "--quiet"] + extra, check=True, timeout=120)
        return out

    def check_drafts(model, ref, prompts, tag, min_checked):
        """Serves each prompt with and without NEXTN: output unchanged, and the drafts dpserve's NEXTN
        runner makes (DPSERVE_NEXTN_DRAFT_LOG) are the NumPy reference's chain
        (tests/model/reference/ref_nextn.py) for the request's tokens at that step, wherever the
        reference's top-2 gap is clear of float error."""
        checked = 0
        for i, prompt in enumerate(prompts):
            log = os.path.join(SCRATCH, f"drafts-{tag}-{i}.log")
            if os.path.exists(log):
                os.remove(log)
            ic = ["generate", "--json", "--model-path", model, "--prompts-file",
                  prompts_file([prompt], f"one-{tag}-{i}.txt"), "--prompts-are-ids", "-n", "40",
                  "--ignore-eos", "--temperature", "0", "--threads", "1"]
            base = run(ic)
            ENV["DPSERVE_NEXTN_DRAFT_LOG"] = log
            try:
                # Odd prompts prefilled in chunks of 8: the MTP layer reads each chunk's pairs as it runs,
                # the pair across a chunk boundary included.
                got = run(ic + NEXTN + (["--chunked-prefill-size", "8"] if i % 2 else []))
            finally:
                del ENV["DPSERVE_NEXTN_DRAFT_LOG"]
            compare(base, got, f"nextn {tag} prompt {i}")
            toks = [int(t) for t in prompt.split(",")] + base[0]["output_ids"]
            lines = open(log).read().split()
            assert len(lines) >= 3, f"FAIL: {tag} prompt {i}: no drafts logged"
            for j in range(0, len(lines), 3):
                n, drafts = int(lines[j + 1]), [int(d) for d in lines[j + 2].split(",")]
                logits, want = rn.nextn_forward(ref, toks[:n], draft=len(drafts))
                scale = float(logits.std())
                for k in range(len(drafts)):
                    srt = np.sort(logits[n - 2 + k])
                    if srt[-1] - srt[-2] <= 1e-3 * scale:
                        break  # a near tie: this draft and the ones after it may differ legitimately
                    assert drafts[k] == want[k], \
                        f"FAIL: {tag} prompt {i}, {n} tokens: dpserve drafted {drafts}, the reference {want} (draft {k})"
                    checked += 1
        assert checked >= min_checked, f"FAIL: {tag}: only {checked} drafts were checked against the reference"
        print(f"ok NEXTN drafts of {tag} equal the NumPy reference's chain: {checked} drafted tokens checked")

    # 1. Random weights: DeepSeek-V3's MTP layer, then GLM-4.5's (a Glm4Moe decoder layer).
    rand = v3("tiny-v3-mtp", [])
    ref = rf.RefModel(rand)
    prompts = id_prompts(ref.vocab)
    check_drafts(rand, ref, prompts[:4], "deepseek_v3", 10)
    glm = os.path.join(SCRATCH, "tiny-glm45-mtp")
    if not os.path.exists(os.path.join(glm, "config.json")):
        subprocess.run(["/usr/bin/python3", MAKE_MODEL, "--arch", "glm4_moe", "--dtype", "f32", "--use-qk-norm",
                        "--max-position-embeddings", "1024", "--seed", "8", "--num-nextn-predict-layers", "1",
                        "--out", glm, "--quiet"], check=True, timeout=120)
    glm_ref = rf.RefModel(glm)
    check_drafts(glm, glm_ref, id_prompts(glm_ref.vocab)[:2], "glm4_moe", 5)
    gpf = prompts_file(id_prompts(glm_ref.vocab), "glm-mtp-ids.txt")
    common = ["generate", "--json", "--model-path", glm, "--prompts-file", gpf, "--prompts-are-ids", "-n", "24",
              "--ignore-eos", "--temperature", "0", "--threads", "1"]
    compare(run(common), run(common + LAYOUTS["tp2_dp2"] + NEXTN), "nextn glm4_moe tp2_dp2")
    print("ok nextn glm4_moe tp2_dp2: identical")
    # The same model over tp2 and tp2 with DP attention: unchanged output.
    pf = prompts_file(prompts, "v3-mtp-ids.txt")
    common = ["generate", "--json", "--model-path", rand, "--prompts-file", pf, "--prompts-are-ids", "-n", "48",
              "--ignore-eos", "--temperature", "0"]
    base = run(common + ["--threads", "1"])
    for name in ("one", "tp2", "tp2_dp2"):
        got = run(common + LAYOUTS[name] + NEXTN + ["--threads", "1"])
        compare(base, got, f"nextn random {name}")
        acc, drafted = accepted(got)
        assert drafted > 0, f"FAIL: nextn random {name}: nothing drafted"
        print(f"ok nextn random {name}: identical, {acc} of {drafted} drafted tokens accepted")
    # 2. An MTP layer built to predict well (make_hf_model --nextn-echo: it predicts the token it is
    # given again, and the main model with tied embeddings and a small residual repeats its last
    # token): drafts are accepted, so verified rows after the first are exercised, and the output
    # is unchanged on every layout, also with 7 drafts a step.
    echo = v3("tiny-v3-mtp-echo", ["--nextn-echo", "--tie-word-embeddings", "--residual-out-scale", "0.05"])
    common = ["generate", "--json", "--model-path", echo, "--prompts-file", pf, "--prompts-are-ids", "-n", "48",
              "--ignore-eos", "--temperature", "0"]
    base = run(common + ["--threads", "1"])
    for name in ("one", "tp2", "tp2_dp2"):
        for extra in ([], ["--speculative-num-steps", "7"]):
            got = run(common + LAYOUTS[name] + NEXTN + extra + ["--threads", "1"])
            compare(base, got, f"nextn echo {name} {' '.join(extra)}")
            acc, drafted = accepted(got)
            assert acc > 0.5 * drafted, f"FAIL: nextn echo {name}: {acc} of {drafted} accepted"
            print(f"ok nextn echo {name} {' '.join(extra)}: identical, {acc} of {drafted} drafted tokens accepted")
    # 3. Refused by name: NEXTN without the layer, with a draft model, and SGLang's other spelling.
    plain = hf_model("deepseek_v3")
    for args, words in (([plain] + NEXTN, ["num_nextn_predict_layers", "NEXTN"]),
                        ([rand] + NEXTN + ["--speculative-draft-model-path", rand],
                         ["--speculative-draft-model-path", "NEXTN"]),
                        ([rand, "--speculative-algorithm", "MTP"], ["MTP", "NEXTN"])):
        p = subprocess.run([BIN, "generate", "--model-path"] + args + ["--prompt", "Hi", "-n", "2"],
                           capture_output=True, text=True, env=ENV, timeout=60)
        out = p.stdout + p.stderr
        assert p.returncode != 0, f"FAIL: {' '.join(args)} was accepted"
        for w in words:
            assert w in out, f"FAIL: the error for {' '.join(args)} does not name '{w}':\n{out[-1500:]}"
        print(f"ok refused: {' '.join(args[1:])}")
elif CASE == "flags":
    model = os.path.join(SHARED, "models/stories260K/stories260K.bin")
    for bad, words in ((["--speculative-algorithm", "EAGLE"], ["--speculative-algorithm", "EAGLE"]),
                       (["--speculative-algorithm", "FOO"], ["--speculative-algorithm", "FOO"]),
                       (SPEC + ["--speculative-eagle-topk", "4"], ["--speculative-eagle-topk"]),
                       (SPEC + ["--speculative-num-steps", "3", "--speculative-num-draft-tokens", "8"],
                        ["--speculative-num-draft-tokens"]),
                       (["--speculative-num-steps", "3"], ["--speculative-num-steps", "--speculative-algorithm"]),
                       (["--speculative-algorithm", "STANDALONE"], ["--speculative-draft-model-path"]),
                       (SPEC + ["--speculative-draft-model-path", model], ["--speculative-draft-model-path", "STANDALONE"]),
                       (["--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path", "/nonexistent/draft"],
                        ["--speculative-draft-model-path", "/nonexistent/draft"]),
                       # A draft whose vocabulary (397 ids) cannot hold the target's drafts (512).
                       (["--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path", hf_model("llama")],
                        ["--speculative-draft-model-path", "vocabulary"])):
        p = subprocess.run([BIN, "generate", "--model-path", model, "--prompt", "Hi", "-n", "2"] + bad,
                           capture_output=True, text=True, env=ENV, timeout=60)
        out = p.stdout + p.stderr
        assert p.returncode != 0, f"FAIL: {' '.join(bad)} was accepted"
        for w in words:
            assert w in out, f"FAIL: the error for {' '.join(bad)} does not name '{w}':\n{out[-1500:]}"
        print(f"ok refused: {' '.join(bad)}")
else:
    raise SystemExit(f"unknown case {CASE}")
print("PASS")
