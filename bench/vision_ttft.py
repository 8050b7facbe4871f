#!/usr/bin/python3
"""Time to first token of a one-image request, split into decode, preprocess, encoder and prefill.

Starts `dpserve serve` once per configuration and round (configurations alternate inside each round,
so a change in the machine's load hits them all), sends each image once as a /generate request
(max_new_tokens 1), and reads the split from the server's per-request log line (docs/api.md:
images= image_decode_ms= image_preprocess_ms= image_encoder_ms= prefill_ms=). Prints every sample
and, per configuration and image, the medians and the encoder time relative to the first
configuration.

  bench/vision_ttft.py --bin build/bin/dpserve --model DIR --rounds 2 --sizes 640x480,1280x960 \
      --config tp1: --config "tp2-replicated:--tp-size 2 --vision-tower replicated" \
      --config "tp2-sharded:--tp-size 2 --vision-tower sharded"

The images are photo-like JPEGs (bench/make_photos.py's generator) made here with Pillow.
"""
import argparse
import base64
import io
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_photos import photo  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402

PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the picture.<|im_end|>\n" \
         "<|im_start|>assistant\n"
FIELDS = ("image_decode_ms", "image_preprocess_ms", "image_encoder_ms", "prefill_ms")


def serve_and_send(a, flags, images, log_path):
    try:
        srv = ServeProcess(a.bin, "--model-path", a.model, "--max-total-tokens", "16384", "--context-length", "16384",
                           *flags, log=log_path, health_timeout=600, quiet=True)
    except ServeError as e:
        raise SystemExit(f"{e}\nsee {log_path}")
    url = srv.url
    try:
        walls = []
        for data in images:
            body = {"text": PROMPT, "image_data": base64.b64encode(data).decode(),
                    "sampling_params": {"max_new_tokens": 1, "temperature": 0}}
            req = urllib.request.Request(url + "/generate", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            t0 = time.time()
            with urllib.request.urlopen(req, timeout=1800) as r:
                r.read()
            walls.append(time.time() - t0)
    finally:
        srv.stop(timeout=120)
    lines = [ln for ln in open(log_path) if "image_encoder_ms=" in ln]
    if len(lines) != len(images):
        raise SystemExit(f"expected {len(images)} request lines with image fields in {log_path}, got {len(lines)}")
    out = []
    for ln, wall in zip(lines, walls):
        row = {k: float(re.search(k + r"=([0-9.]+)", ln).group(1)) for k in FIELDS}
        row["wall_ms"] = 1000 * wall
        out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--config", action="append", required=True, help="NAME:FLAGS (flags split on spaces)")
    ap.add_argument("--sizes", default="640x480,1280x960")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default=tempfile.gettempdir())
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    sizes = [tuple(map(int, s.split("x"))) for s in a.sizes.split(",")]
    images = []
    for w, h in sizes:
        buf = io.BytesIO()
        photo(w, h, rng).save(buf, "JPEG", quality=90)
        images.append(buf.getvalue())
    configs = [(c.split(":", 1)[0], c.split(":", 1)[1].split()) for c in a.config]
    samples = {(c, s): [] for c, _ in configs for s in sizes}
    for rnd in range(a.rounds):
        for name, flags in configs:
            rows = serve_and_send(a, flags, images, os.path.join(a.work, f"vision_ttft-{name}-{rnd}.log"))
            for s, row in zip(sizes, rows):
                samples[(name, s)].append(row)
                print(f"round {rnd} {name:16s} {s[0]}x{s[1]}: " +
                      " ".join(f"{k}={row[k]:.0f}" for k in FIELDS + ("wall_ms",)), flush=True)
    print("\nmedians (ms); encoder ratio vs " + configs[0][0])
    print("| config | image | decode | preprocess | encoder | prefill | client TTFT | encoder ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for s in sizes:
        base = statistics.median(r["image_encoder_ms"] for r in samples[(configs[0][0], s)])
        for name, _ in configs:
            rows = samples[(name, s)]
            med = {k: statistics.median(r[k] for r in rows) for k in FIELDS + ("wall_ms",)}
            print(f"| {name} | {s[0]}x{s[1]} | {med['image_decode_ms']:.0f} | {med['image_preprocess_ms']:.0f} | "
                  f"{med['image_encoder_ms']:.0f} | {med['prefill_ms']:.0f} | {med['wall_ms']:.0f} | "
                  f"{med['image_encoder_ms'] / base:.2f} |")


if __name__ == "__main__":
    main()
