#!/usr/bin/python3
"""The multi-token-prediction (NEXTN) layer of DeepSeek-V3 and GLM-4.5 in dpserve against the float64 reference.

For tiny DeepSeek-V3 models written with `tools/make_hf_model.py --num-nextn-predict-layers 1` (f32
and bf16; the MTP layer MoE, and dense) and a GLM-4.5 one (f32), dpserve_nextn_probe runs the target over a token sequence,
then the NEXTN layer over the pairs (h_i, t_{i+1}) in one pass and in passes of 3 rows (its own
paged KV cache carrying the earlier rows), then a chain of drafts. Its logits must be within the
tolerances of test_hf_reference.py (max and rms error as multiples of the reference logits' std)
of tests/model/reference/ref_nextn.py's, its drafts the reference's argmax wherever the reference's
top-2 gap is clear. Each deliberately broken reference (ref_nextn.BREAKS: concatenation swapped,
the target's hidden state before the final norm, the chain's before shared_head.norm, the main norm
instead of shared_head.norm) must fail the same
comparison. And the main model must ignore the MTP layer: dpserve_forward_probe's logits on the
folder with it are bit-identical to those on the same folder written without it.

  /usr/bin/python3 tests/model/test_nextn_reference.py --work DIR --probe NEXTN_PROBE --forward-probe PROBE
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
sys.path.insert(0, HERE)
import ref_forward as rf  # noqa: E402
import ref_nextn as rn  # noqa: E402
from test_hf_reference import ROUTER_TIE, TOL, compare  # noqa: E402

MAKE = os.path.join(HERE, "..", "..", "tools", "make_hf_model.py")
TO_GGUF = os.path.join(HERE, "..", "..", "tools", "hf_to_gguf.py")
TIMEOUT = 120
DRAFT = 4

# name, dtype, tolerance key, extra make_hf_model arguments (--arch deepseek_v3 unless given)
CASES = [
    ("v3_moe_f32", "f32", "f32", []),
    ("v3_moe_bf16", "bf16", "bf16_mla", []),
    # Every layer dense (first_k_dense_replace past the MTP layer's index 3): the dense MLP path.
    ("v3_dense_f32", "f32", "f32", ["--first-k-dense-replace", "4"]),
    # GLM-4.5: the MTP layer is a Glm4Moe decoder layer (biased GQA, per-head q/k norms, half-head RoPE,
    # the V3 router over two groups, one kept).
    ("glm45_moe_f32", "f32", "f32", ["--arch", "glm4_moe", "--use-qk-norm", "--n-group", "2", "--topk-group", "1"]),
    # GLM-4.7-Flash (Glm4MoeLiteForCausalLM): DeepSeek-V3's MLA and MoE under GLM's names, no YaRN.
    ("glm47_lite_f32", "f32", "f32", ["--arch", "glm4_moe_lite", "--rope-scaling", "none"]),
]


def make(work, name, dtype, extra, nextn=1, seed=61):
    out = os.path.join(work, name)
    arch = [] if "--arch" in extra else ["--arch", "deepseek_v3"]
    subprocess.run([sys.executable, MAKE, *arch, "--dtype", dtype, "--seed", str(seed),
                    "--num-nextn-predict-layers", str(nextn), "--out", out, "--quiet", *extra],
                   check=True, timeout=TIMEOUT)
    return out


def run_probe(probe, model, toks, work, label, chunk=None):
    out = os.path.join(work, label + ".bin")
    cmd = [probe, "--model-path", model, "--tokens", ",".join(map(str, toks)), "--out", out,
           "--draft", str(DRAFT), "--threads", "2"]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    if p.returncode != 0:
        raise RuntimeError(f"{label}: probe failed ({p.returncode}): {p.stderr.strip()}")
    meta = json.loads(p.stdout)
    got = np.fromfile(out, dtype="<f4").reshape(-1, meta["vocab_size"])
    return meta, got


def clean_tokens(model, n, tie, seed):
    """n random token ids, drawn one at a time so that no router choice of the target (any
    position) or of the MTP layer (any pair, and a DRAFT-long chain) is within `tie` of flipping: a
    legitimate rounding difference must not pick other experts (as test_hf_reference's TokenSource)."""
    rng = np.random.default_rng(seed)
    toks = [int(rng.integers(model.vocab))]
    while len(toks) < n:
        for _ in range(64):
            cand = toks + [int(rng.integers(model.vocab))]
            main, mtp = [], []
            model.forward(cand, routing=main)
            rn.nextn_forward(model, cand, draft=DRAFT if len(cand) == n else 0, routing=mtp)
            if min(main) >= tie and min(mtp) >= tie:
                toks = cand
                break
        else:
            raise RuntimeError(f"no token keeps the routing clear of ties after {toks}")
    return toks


def clear_drafts(ref_logits, ref_drafts, pairs, scale, max_tol):
    """Indices of chain drafts whose reference top-2 gap exceeds 2 * the max tolerance (there no
    other argmax is possible within tolerance). The first draft is the last pair's argmax."""
    rows = [pairs - 1 + j for j in range(len(ref_drafts))]
    out = []
    for j, r in enumerate(rows):
        srt = np.sort(ref_logits[r])
        if srt[-1] - srt[-2] > 2 * max_tol * scale:
            out.append(j)
        else:
            break  # a later draft depends on this one
    return out


def check_case(a, name, dtype, tol, extra):
    failures = []
    model_dir = make(a.work, name, dtype, extra)
    model = rf.RefModel(model_dir)
    toks = clean_tokens(model, 24, ROUTER_TIE[dtype], 7)
    ref, ref_drafts = rn.nextn_forward(model, toks, draft=DRAFT)
    scale = float(ref.std())
    for chunk in (None, 3):
        label = f"{name}/chunk{chunk or 'all'}"
        meta, got = run_probe(a.probe, model_dir, toks, a.work, label.replace("/", "_"), chunk)
        # The chain's rows are scored along dpserve's own drafts: where a near-tie (bf16) made it draft
        # another token than the reference, its later rows read that token, and so must the reference's.
        # Their router choices can then be near a tie (clean_tokens cleared the reference's chain only):
        # rows from the first such one on are left out.
        margins = []
        follow, _ = rn.nextn_forward(model, toks, draft=DRAFT, follow=meta["drafts"], routing=margins)
        keep = next((i for i, v in enumerate(margins) if v < ROUTER_TIE[dtype]), len(follow))
        if keep < len(follow):
            print(f"note {label}: chain rows from {keep} on route near a tie along dpserve's drafts: not scored")
        ok, msg, _ = compare(label, follow[:keep], got[:keep], tol)
        print(("ok   " if ok else "FAIL ") + msg)
        if not ok:
            failures.append(msg)
        clear = clear_drafts(ref, ref_drafts, len(toks) - 1, scale, TOL[tol][0])
        bad = [j for j in clear if meta["drafts"][j] != ref_drafts[j]]
        print(f"{'ok  ' if not bad else 'FAIL'} {label}: drafts {meta['drafts']} reference {ref_drafts} "
              f"(clear {len(clear)}/{DRAFT})")
        # In bf16 the tolerance (0.2 std) is wider than most top-2 gaps: there only the clear ones count.
        if bad or (len(clear) == 0 and dtype == "f32"):
            failures.append(f"{label}: drafts {meta['drafts']} != reference {ref_drafts} at {bad} "
                            f"(clear: {clear})")
        if chunk is None:
            for br in rn.BREAKS:
                wrong, _ = rn.nextn_forward(model, toks, draft=DRAFT, breaks=[br], follow=meta["drafts"])
                b_ok, b_msg, _ = compare(f"{label} vs break {br}", wrong[:keep], got[:keep], tol)
                print(("FAIL (break passed) " if b_ok else "ok   (break caught) ") + b_msg)
                if b_ok:
                    failures.append(f"break {br} passed the comparison: {b_msg}")
    return failures


def check_main_ignores_mtp(a):
    """dpserve_forward_probe on the same seed with and without the MTP layer: identical bytes."""
    with_mtp = make(a.work, "main_with", "bf16", [], nextn=1, seed=62)
    without = make(a.work, "main_without", "bf16", [], nextn=0, seed=62)
    sched = {"steps": [{"run": [{"seq": 0, "tokens": [5, 17, 240, 3, 99, 301, 7]}]},
                       {"run": [{"seq": 0, "tokens": [11]}, {"seq": 1, "tokens": [1, 2, 3]}]}]}
    sp = os.path.join(a.work, "main_sched.json")
    with open(sp, "w") as f:
        json.dump(sched, f)
    outs = []
    for d in (with_mtp, without):
        out = os.path.join(a.work, os.path.basename(d) + ".bin")
        p = subprocess.run([a.forward_probe, "--model-path", d, "--schedule", sp, "--out", out, "--threads", "2"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        if p.returncode != 0:
            return [f"forward probe on {d} failed: {p.stderr.strip()}"]
        with open(out, "rb") as f:
            outs.append(f.read())
    same = outs[0] == outs[1] and len(outs[0]) > 0
    print(f"{'ok  ' if same else 'FAIL'} the main model ignores the MTP layer ({len(outs[0])} bytes of logits)")
    return [] if same else ["the main model's logits change when the folder carries the MTP layer"]


def check_refused(a):
    """The NEXTN probe on a checkpoint without the layer: a clear error naming the config key."""
    d = make(a.work, "no_mtp", "bf16", [], nextn=0, seed=63)
    p = subprocess.run([a.probe, "--model-path", d, "--tokens", "1,2,3", "--out", os.path.join(a.work, "x.bin")],
                       capture_output=True, text=True, timeout=TIMEOUT)
    ok = p.returncode != 0 and "num_nextn_predict_layers" in p.stderr
    print(f"{'ok  ' if ok else 'FAIL'} no MTP layer refused: {p.stderr.strip()}")
    return [] if ok else ["a checkpoint without num_nextn_predict_layers was not refused by name"]


def check_gguf(a):
    """GLM-4.5's and GLM-4.7-Flash's MTP layer as llama.cpp's converter keeps it in a GGUF file (blk.N.nextn.*
    beside the layer's own tensors, block_count counting it; llama.cpp 3f545bec loads such files:
    model_gguf_llamacpp_float's glm4moelite): the NEXTN probe on it gives the HF folder's logits and drafts
    bit for bit. A DeepSeek GGUF (llama.cpp drops its MTP layer) is refused with a pointer to the folder."""
    failures = []
    toks = [5, 17, 240, 3, 99, 301, 7, 11, 42, 250, 8, 77]
    for case, arch in (("glm45_moe_f32", "glm4moe"), ("glm47_lite_f32", "deepseek2")):
        folder = os.path.join(a.work, case)
        gguf = os.path.join(a.work, case + ".gguf")
        subprocess.run([sys.executable, TO_GGUF, folder, "--outtype", "f32", "--no-vocab", "--out", gguf],
                       check=True, timeout=TIMEOUT, capture_output=True)
        outs = []
        for m in (folder, gguf):
            meta, got = run_probe(a.probe, m, toks, a.work, "gguf_" + os.path.basename(m))
            outs.append((meta["drafts"], got.tobytes()))
        same = outs[0] == outs[1]
        print(f"{'ok  ' if same else 'FAIL'} {arch} GGUF with its MTP layer ({case}): NEXTN logits and drafts == "
              "the HF folder's")
        if not same:
            failures.append(f"the {arch} GGUF's NEXTN logits differ from its HF folder's ({case})")
    ds = os.path.join(a.work, "v3_dense_f32.gguf")
    subprocess.run([sys.executable, TO_GGUF, os.path.join(a.work, "v3_dense_f32"), "--outtype", "f32",
                    "--no-vocab", "--out", ds], check=True, timeout=TIMEOUT, capture_output=True)
    p = subprocess.run([a.probe, "--model-path", ds, "--tokens", "1,2,3", "--out", os.path.join(a.work, "x.bin")],
                       capture_output=True, text=True, timeout=TIMEOUT)
    ok = p.returncode != 0 and "Hugging Face folder" in p.stderr
    print(f"{'ok  ' if ok else 'FAIL'} a deepseek2 GGUF (no MTP layer) refused: {p.stderr.strip()[-200:]}")
    if not ok:
        failures.append("a deepseek2 GGUF under NEXTN was not refused with a pointer to the HF folder")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--probe", required=True, help="dpserve_nextn_probe")
    ap.add_argument("--forward-probe", required=True, help="dpserve_forward_probe")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    failures = check_main_ignores_mtp(a) + check_refused(a)
    for case in CASES:
        failures += check_case(a, *case)
    failures += check_gguf(a)
    if failures:
        print(f"\n{len(failures)} failure(s):\n  " + "\n  ".join(failures))
        return 1
    print("\nall NEXTN checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
