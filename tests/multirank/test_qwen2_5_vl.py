#!/usr/bin/python3
"""Qwen2.5-VL end to end through `dpserve generate --image` over real MPI ranks.

A tiny random Qwen2.5-VL folder (tools/make_hf_model.py, f32, the real Qwen tokenizer) and three
images made here with Pillow (two PNGs of 230 x 170 and a 300 x 200 JPEG, none a multiple of 28, so
the resize runs). Checks:
  1. one rank, one image: every logit row dpserve computes (--dump-logits: the prompt's rows and
     each decode step's) against the float64 reference (tests/model/reference/ref_qwen2_5_vl.py) on
     the image Pillow resizes as Qwen2VLImageProcessor does (smart_resize + BICUBIC); max error
     <= 1e-4 x std, and each greedy token is the reference argmax where its top-2 gap allows;
  2. greedy outputs identical for tp=1, tp=1 with 16-token prefill chunks (cut through the images),
     tp=2 and tp=2 dp=2 with DP attention, on a prompt with one image and a prompt with two;
  3. the prefix cache keys image tokens by the image: the same text with image A, then B, then A
     again, one request at a time (--max-running-requests 1), gives each the output it has alone
     (A and B differ, so reusing A's KV for B would show);
  4. `dpserve serve` (tp=2 dp=2, DP attention) answering /generate with the same text and the PNG as
     image_data gives the same output ids as `dpserve generate` (item 1's run).

usage: test_qwen2_5_vl.py DPSERVE_BIN SHARED_DIR SCRATCH_DIR MAKE_MODEL_PY
"""
import base64
import json
import math
import os
import subprocess
import sys
import urllib.request

import numpy as np
from PIL import Image

BIN, SHARED, SCRATCH, MAKE_MODEL = sys.argv[1:5]
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model", "reference"))
import ref_qwen2_5_vl as rv  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402

os.makedirs(SCRATCH, exist_ok=True)
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
TOL = 1e-4
PROMPT = "<|im_start|>user <|vision_start|><|image_pad|><|vision_end|>What is in the picture?<|im_end|>" \
         "<|im_start|>assistant"
PROMPT2 = "<|im_start|>user <|vision_start|><|image_pad|><|vision_end|> and <|vision_start|><|image_pad|>" \
          "<|vision_end|>: same?<|im_end|><|im_start|>assistant"
N = 8


def run(args, timeout=240):
    p = subprocess.run([BIN, "generate", "--json", "--ignore-eos", "-n", str(N), "--threads", "1"] + args,
                       capture_output=True, text=True, env=ENV, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: dpserve generate {' '.join(args)} exited {p.returncode}\n{p.stderr[-3000:]}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def smart_resize(h, w, factor=28, min_pixels=3136, max_pixels=12845056):
    """Qwen2-VL's published smart_resize (Python's round, as the processor uses)."""
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = math.floor(h / beta / factor) * factor, math.floor(w / beta / factor) * factor
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def processed(path):
    im = Image.open(path).convert("RGB")
    hb, wb = smart_resize(im.height, im.width)
    return np.asarray(im.resize((wb, hb), resample=Image.BICUBIC))


def main():
    model = os.path.join(SCRATCH, "tiny-vl")
    subprocess.run(["/usr/bin/python3", MAKE_MODEL, "--arch", "qwen2_5_vl", "--seed", "3", "--quiet",
                    "--max-position-embeddings", "1024", "--tokenizer-dir",
                    os.path.join(SHARED, "tokenizers", "qwen3"), "--out", model], check=True, timeout=120)
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:170, 0:230]
    grad = np.stack([yy * 1.5, xx * 1.1, (yy + xx) * 0.6], axis=-1)
    imgs = {"a.png": grad + rng.integers(-40, 40, size=grad.shape),
            "b.png": rng.integers(0, 256, size=grad.shape),
            "c.jpg": rng.integers(0, 256, size=(200, 300, 3))}
    paths = {}
    for name, arr in imgs.items():
        paths[name] = os.path.join(SCRATCH, name)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(paths[name])
    base = ["--model-path", model]
    failures = []

    # 1. One rank against the reference.
    dump = os.path.join(SCRATCH, "logits.bin")
    out = run(base + ["--prompt", PROMPT, "--image", paths["a.png"], "--dump-logits", dump])[0]
    ref = rv.RefVL(model)
    img = processed(paths["a.png"])
    pix, grid = rv.pixel_values(img)
    emb = ref.vision(pix, grid[1], grid[2])
    ids = out["prompt_ids"] + out["output_ids"]
    n_prompt = len(out["prompt_ids"])
    want, _ = ref.logits(ids, n_prompt, [emb], [grid])
    got = np.fromfile(dump, dtype=np.float32).astype(np.float64).reshape(-1, ref.cfg["vocab_size"])
    if got.shape[0] != len(ids) - 1:
        failures.append(f"dumped {got.shape[0]} logit rows, expected {len(ids) - 1}")
    else:
        err = float(np.max(np.abs(got - want[:-1])) / np.std(want))
        print(f"tp1 logits vs reference: {got.shape[0]} rows ({grid[1]}x{grid[2]} patches), max err {err:.2e} x std")
        if err > TOL:
            failures.append(f"logits differ from the reference: {err:.2e} x std")
        scale = np.std(want)
        for i, g in enumerate(out["output_ids"]):
            row = want[n_prompt - 1 + i]
            top2 = np.sort(row)[-2:]
            if top2[1] - top2[0] > 2 * TOL * scale and int(np.argmax(row)) != g:
                failures.append(f"greedy token {i} is {g}, the reference argmax {int(np.argmax(row))}")

    # 2. Layouts.
    pfile = os.path.join(SCRATCH, "prompts.txt")
    with open(pfile, "w") as f:
        f.write(PROMPT + "\n" + PROMPT2 + "\n")
    common = base + ["--prompts-file", pfile, "--image", paths["a.png"], "--image", paths["b.png"],
                     "--image", paths["c.jpg"]]
    tp1 = [o["output_ids"] for o in run(common)]
    print("tp1:", tp1)
    for name, flags in (("tp1_chunked16", ["--chunked-prefill-size", "16"]),
                        ("tp2", ["--tp-size", "2"]),
                        ("tp2_dp2", ["--tp-size", "2", "--dp-size", "2", "--enable-dp-attention"])):
        got = [o["output_ids"] for o in run(common + flags)]
        if got != tp1:
            failures.append(f"{name} outputs {got} differ from tp1 {tp1}")
        else:
            print(f"{name}: identical")

    # 3. Prefix cache keyed by the image.
    alone = {k: run(base + ["--prompt", PROMPT, "--image", paths[k]])[0]["output_ids"] for k in ("a.png", "b.png")}
    if alone["a.png"] == alone["b.png"]:
        failures.append("images A and B give the same output: the cache check below could not fail")
    with open(pfile, "w") as f:
        f.write((PROMPT + "\n") * 3)
    seq = [o["output_ids"] for o in run(base + ["--prompts-file", pfile, "--max-running-requests", "1",
                                                "--image", paths["a.png"], "--image", paths["b.png"],
                                                "--image", paths["a.png"]])]
    if seq != [alone["a.png"], alone["b.png"], alone["a.png"]]:
        failures.append(f"A, B, A one at a time gave {seq}, alone {alone}")
    else:
        print("prefix cache: A, B, A one at a time equal their runs alone")
    # 4. The server's answer equals generate's.
    srv = None
    try:
        srv = ServeProcess(BIN, "--threads", "1", "--tp-size", "2", "--dp-size", "2", "--enable-dp-attention", *base,
                           log=os.path.join(SCRATCH, "serve.log"), env=ENV, quiet=True)
        url = srv.url
        body = {"text": PROMPT, "image_data": base64.b64encode(open(paths["a.png"], "rb").read()).decode(),
                "sampling_params": {"max_new_tokens": N, "temperature": 0, "ignore_eos": True}}
        req = urllib.request.Request(url + "/generate", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            served = json.loads(r.read().decode())["output_ids"]
        if served != out["output_ids"]:
            failures.append(f"server /generate gave {served}, dpserve generate {out['output_ids']}")
        else:
            print("serve (tp2 dp2) /generate with image_data: equal to dpserve generate")
    except (OSError, ServeError) as e:
        failures.append(f"server: {e}")
    finally:
        if srv is not None:
            srv.stop()
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
