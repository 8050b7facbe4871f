#!/usr/bin/python3
"""Qwen2.5-VL in dpserve against the independent float64 reference (reference/ref_qwen2_5_vl.py).

A tiny random checkpoint (tools/make_hf_model.py --arch qwen2_5_vl, f32) and two images: one of
16 x 12 patches (8 x 6 merged tokens: four 4 x 4-token attention windows, two of them partial,
so windowed and full-attention blocks differ) and one of 4 x 6 patches. dpserve_vision_probe
runs the tower on each image (image_patches rows), then the prompt with both images prefilled in
chunks of 7 rows (chunks cut through the images) and 6 greedy decode steps.

Checks, each relative to the standard deviation of the reference values compared:
  tower output of each image   max abs error <= 1e-4 (fp32 against float64 leaves ~1e-6)
  logits of every prompt row and every decode row   max abs error <= 1e-4
  greedy tokens = the reference argmax where its top-2 gap exceeds 2 x the tolerance
and that the same tolerance rejects each deliberate deviation of the reference (windows ignored,
windows too wide, 2-D RoPE axes swapped, M-RoPE sections swapped, M-RoPE ignored, tanh GELU):
the test demonstrably fails on those bugs.

  /usr/bin/python3 tests/model/test_qwen2_5_vl.py --probe PROBE --work DIR
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
import ref_qwen2_5_vl as rv  # noqa: E402

MAKE = os.path.join(HERE, "..", "..", "tools", "make_hf_model.py")
TOL = 1e-4
VISION_BREAKS = ["full_attention", "window_2x", "rope2d_swap", "merge_gelu_tanh"]
LM_BREAKS = ["mrope_swap", "mrope_1d"]


def write_ppm(path, img):
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (img.shape[1], img.shape[0]))
        f.write(img.astype(np.uint8).tobytes())


def make_image(rng, gh, gw):
    """Smooth gradients plus noise: neighbouring patches differ, so positions matter."""
    h, w = gh * 14, gw * 14
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([yy * 255 / h, xx * 255 / w, (yy + xx) * 127 / (h + w)], axis=-1)
    return np.clip(base + rng.integers(-40, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)


def rel_err(got, want):
    return float(np.max(np.abs(got - want)) / np.std(want))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    model = os.path.join(a.work, "model")
    subprocess.run([sys.executable, MAKE, "--arch", "qwen2_5_vl", "--no-tokenizer", "--seed", "5", "--quiet",
                    "--out", model], check=True)
    ref = rv.RefVL(model)
    cfg = ref.cfg
    rng = np.random.default_rng(3)
    images = [make_image(rng, 16, 12), make_image(rng, 4, 6)]
    paths = []
    for i, img in enumerate(images):
        paths.append(os.path.join(a.work, f"img{i}.ppm"))
        write_ppm(paths[-1], img)
    vs, ve, pad = cfg["vision_start_token_id"], cfg["vision_end_token_id"], cfg["image_token_id"]
    text = [int(t) for t in rng.integers(100, 150000, size=12)]
    prompt = [151644] + text[:3] + [vs, pad, ve] + text[3:7] + [vs, pad, ve] + text[7:] + [151645]
    out_e, out_l = os.path.join(a.work, "embeds.bin"), os.path.join(a.work, "logits.bin")
    cmd = [a.probe, "--model-path", model, "--tokens", json.dumps(prompt), "--out-embeds", out_e,
           "--out-logits", out_l, "--chunk", "7", "--decode", "6", "--threads", "2"]
    for p in paths:
        cmd += ["--image", p]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        sys.exit(f"probe failed: {r.stderr}")
    res = json.loads(r.stdout)
    H, V = cfg["hidden_size"], cfg["vocab_size"]
    failures = []

    # Tower.
    embeds = np.fromfile(out_e, dtype=np.float32).astype(np.float64)
    ref_embeds, grids, off = [], [], 0
    for img in images:
        pix, grid = rv.pixel_values(img)
        want = ref.vision(pix, grid[1], grid[2])
        got = embeds[off:off + want.size].reshape(want.shape)
        off += want.size
        e = rel_err(got, want)
        print(f"tower {grid[1]}x{grid[2]} patches: max err {e:.2e} x std")
        if e > TOL:
            failures.append(f"tower output of the {grid[1]}x{grid[2]} image: {e:.2e} x std")
        for b in VISION_BREAKS:
            eb = rel_err(got, ref.vision(pix, grid[1], grid[2], breaks=(b,)))
            if grid[1] == 16:
                print(f"  broken reference {b}: {eb:.2e} x std")
                if eb <= TOL:
                    failures.append(f"tolerance does not catch vision break {b} ({eb:.2e})")
        ref_embeds.append(want)
        grids.append(grid)
    if off != embeds.size:
        failures.append(f"probe wrote {embeds.size} embedding values, expected {off}")

    # Language model with M-RoPE: prompt rows then decode rows.
    ids = res["tokens"] + res["generated"]
    n_prompt = len(res["tokens"])
    logits = np.fromfile(out_l, dtype=np.float32).astype(np.float64).reshape(-1, V)
    want, pos = ref.logits(ids, n_prompt, ref_embeds, grids)
    want = want[:logits.shape[0]]
    if res["positions"] != pos[:, :n_prompt].T.reshape(-1).tolist():
        failures.append("M-RoPE positions differ from get_rope_index")
    e = rel_err(logits, want)
    print(f"logits ({logits.shape[0]} rows, {n_prompt} prompt): max err {e:.2e} x std")
    if e > TOL:
        failures.append(f"logits: {e:.2e} x std")
    scale = np.std(want)
    for i, g in enumerate(res["generated"]):
        row = want[n_prompt - 1 + i]
        top2 = np.sort(row)[-2:]
        if top2[1] - top2[0] > 2 * TOL * scale and int(np.argmax(row)) != g:
            failures.append(f"greedy token {i}: {g}, reference argmax {int(np.argmax(row))}")
    for b in LM_BREAKS:
        eb = rel_err(logits, ref.logits(ids, n_prompt, ref_embeds, grids, breaks=(b,))[0][:logits.shape[0]])
        print(f"  broken reference {b}: {eb:.2e} x std")
        if eb <= TOL:
            failures.append(f"tolerance does not catch LM break {b} ({eb:.2e})")
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
