#!/usr/bin/python3
"""The Qwen2.5-VL vision tower sharded by windows over a request's group is bit-identical to one rank.

A tiny random Qwen2.5-VL (tools/make_hf_model.py: 3 blocks, block 1 full attention, 112-pixel
windows = 4 x 4 merged tokens) and four images whose windows do not split evenly over two ranks:
  a.png 230 x 170 -> 4 windows of 64, 64, 32, 32 patch rows
  b.png 336 x 112 -> 3 windows of 64 rows (an odd count)
  c.png  56 x  56 -> 1 window (the second rank of a pair gets no rows at all)
  d.jpg 300 x 200 -> 6 windows of 64, 64, 48, 48, 48, 36 rows
in three prompts (b and c in the same one). `dpserve generate --dump-image-embeds` makes every rank
that runs the tower write each request's embeddings; checked, byte for byte against tp=1:
  tp=1 on 2 threads (the team's split of the work); tp=2 with --vision-tower sharded (and 16-token
  prefill chunks cutting through the images) and replicated; tp=2 dp=2 with DP attention (groups of
  one rank); tp=4 dp=2 with DP attention (groups of two, sharded). Each request must be encoded by exactly the ranks of its group, and all of them
  must hold the whole image's rows (the final all-gather).

usage: test_vision_sharded.py DPSERVE_BIN SHARED_DIR SCRATCH_DIR MAKE_MODEL_PY
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image

BIN, SHARED, SCRATCH, MAKE_MODEL = sys.argv[1:5]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
ONE = "<|im_start|>user <|vision_start|><|image_pad|><|vision_end|>What is it?<|im_end|><|im_start|>assistant"
TWO = "<|im_start|>user <|vision_start|><|image_pad|><|vision_end|> or <|vision_start|><|image_pad|>" \
      "<|vision_end|>?<|im_end|><|im_start|>assistant"


def run(name, model, pfile, images, flags):
    out = os.path.join(SCRATCH, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    args = [BIN, "generate", "--json", "--ignore-eos", "-n", "1", "--model-path", model,
            "--prompts-file", pfile, "--dump-image-embeds", out] + ([] if "--threads" in flags else ["--threads", "1"])
    for im in images:
        args += ["--image", im]
    t0 = time.time()
    p = subprocess.run(args + flags, capture_output=True, text=True, env=ENV, timeout=240)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: {name}: dpserve generate exited {p.returncode}\n{p.stderr[-3000:]}")
    dumps = {}
    for f in glob.glob(os.path.join(out, "rank*-req*.f32")):
        rank, req = map(int, re.match(r"rank(\d+)-req(\d+)\.f32", os.path.basename(f)).groups())
        dumps.setdefault(req, {})[rank] = open(f, "rb").read()
    print(f"{name}: {time.time() - t0:.1f} s, requests {sorted(dumps)} encoded by ranks "
          f"{[sorted(dumps[r]) for r in sorted(dumps)]}")
    return dumps


def main():
    os.makedirs(SCRATCH, exist_ok=True)
    model = os.path.join(SCRATCH, "tiny-vl")
    subprocess.run(["/usr/bin/python3", MAKE_MODEL, "--arch", "qwen2_5_vl", "--seed", "5", "--quiet",
                    "--max-position-embeddings", "1024", "--tokenizer-dir",
                    os.path.join(SHARED, "tokenizers", "qwen3"), "--out", model], check=True, timeout=120)
    rng = np.random.default_rng(11)
    images = []
    for name, (h, w) in (("a.png", (170, 230)), ("b.png", (112, 336)), ("c.png", (56, 56)), ("d.jpg", (200, 300))):
        path = os.path.join(SCRATCH, name)
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)).save(path)
        images.append(path)
    pfile = os.path.join(SCRATCH, "prompts.txt")
    with open(pfile, "w") as f:
        f.write("\n".join([ONE, TWO, ONE]) + "\n")

    ref = run("tp1", model, pfile, images, [])
    failures = []
    if sorted(ref) != [1, 2, 3] or any(sorted(v) != [0] for v in ref.values()):
        failures.append(f"tp1 dumped {[(r, sorted(v)) for r, v in ref.items()]}, expected requests 1-3 on rank 0")
    # (name, flags, ranks of the group that holds request r)
    layouts = [
        ("tp1_threads2", ["--threads", "2"], lambda r: [0]),
        ("tp2_sharded_chunked16", ["--tp-size", "2", "--vision-tower", "sharded", "--chunked-prefill-size", "16"],
         lambda r: [0, 1]),
        ("tp2_replicated", ["--tp-size", "2", "--vision-tower", "replicated"], lambda r: [0, 1]),
        ("tp2_dp2_dpattn", ["--tp-size", "2", "--dp-size", "2", "--enable-dp-attention", "--vision-tower", "sharded"],
         lambda r: [(r - 1) % 2]),
        ("tp4_dp2_dpattn", ["--tp-size", "4", "--dp-size", "2", "--enable-dp-attention", "--vision-tower", "sharded"],
         lambda r: [2 * ((r - 1) % 2), 2 * ((r - 1) % 2) + 1]),
    ]
    for name, flags, group in layouts:
        got = run(name, model, pfile, images, flags)
        for req, want in ref.items():
            ranks = got.get(req, {})
            if sorted(ranks) != group(req):
                failures.append(f"{name}: request {req} encoded by ranks {sorted(ranks)}, expected {group(req)}")
            for rank, data in ranks.items():
                if data != want[0]:
                    a = np.frombuffer(data, dtype=np.float32)
                    b = np.frombuffer(want[0], dtype=np.float32)
                    why = f"{a.size} floats, tp1 {b.size}" if a.size != b.size else \
                        f"{int(np.sum(a != b))} of {a.size} floats differ, max |diff| {float(np.max(np.abs(a - b))):.3g}"
                    failures.append(f"{name}: rank {rank}'s embeddings of request {req} differ from tp1's: {why}")
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("OK: every layout's image embeddings are bit-identical to tp1's on every rank of the group")
    return 0


if __name__ == "__main__":
    sys.exit(main())
