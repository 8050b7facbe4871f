#!/usr/bin/python3
"""Fixture for the OpenAI-client image test (tests/node/image_client.test.mjs): a tiny random
Qwen2.5-VL folder that `dpserve serve` takes with no other file (make_hf_model --arch qwen2_5_vl with
the real Qwen tokenizer and its chat template), two images made here with Pillow (a PNG and a JPEG,
neither a multiple of 28, so the resize runs) and the prompts the chat template renders for the
test's messages, rendered by jinja2 (an engine independent of dpserve's) into cases.json; and four
more images, each sent once by the /metrics check.

usage: vl_client_fixture.py MAKE_HF_MODEL QWEN3_TOKENIZER_DIR OUT_DIR
"""
import json
import os
import subprocess
import sys

import jinja2
import numpy as np
from PIL import Image

MAKE_MODEL, TOKENIZER, OUT = sys.argv[1:4]
os.makedirs(OUT, exist_ok=True)
model = os.path.join(OUT, "model")
subprocess.run([sys.executable, MAKE_MODEL, "--arch", "qwen2_5_vl", "--dtype", "bf16", "--seed", "3", "--quiet",
                "--max-position-embeddings", "1024", "--tokenizer-dir", TOKENIZER, "--out", model],
               check=True, timeout=120)

rng = np.random.default_rng(11)
yy, xx = np.mgrid[0:90, 0:130]
images = {
    "a.png": np.clip(np.stack([yy * 2.5, xx * 1.7, (yy + xx) * 0.9], -1) + rng.integers(-30, 30, (90, 130, 3)), 0, 255),
    "b.jpg": rng.integers(0, 256, (110, 75, 3)),
}
for name, arr in images.items():
    Image.fromarray(arr.astype(np.uint8)).save(os.path.join(OUT, name))
# Images sent once each (the /metrics check counts vision tower runs, which a prefix-cache hit skips).
fresh = []
for k, (h, w, ext) in enumerate([(48, 64, "png"), (90, 50, "jpg"), (120, 33, "png"), (70, 70, "jpg")]):
    fresh.append({"image": os.path.join(OUT, f"fresh{k}.{ext}"), "mime": "image/png" if ext == "png" else "image/jpeg"})
    Image.fromarray(rng.integers(0, 256, (h, w, 3)).astype(np.uint8)).save(fresh[-1]["image"])

with open(os.path.join(model, "tokenizer_config.json"), encoding="utf-8") as f:
    template = jinja2.Environment().from_string(json.load(f)["chat_template"])
TEXT = "What is in the picture?"
cases = []
# Each case: the message's parts in order, a string for a text part, a file name for an image. The
# template sees image parts as the server hands them over ({"type": "image"}).
for parts in ([TEXT, "a.png"], [TEXT, "b.jpg"], ["b.jpg", "Compare it with", "a.png"]):
    content = [{"type": "image"} if p in images else {"type": "text", "text": p} for p in parts]
    messages = [{"role": "user", "content": content}]
    cases.append({"parts": [{"image": os.path.join(OUT, p), "mime": "image/png" if p.endswith(".png") else "image/jpeg"}
                            if p in images else {"text": p} for p in parts],
                  "rendered": template.render(messages=messages, add_generation_prompt=True)})
# The model's vocabulary (151936 rows) is padded past the tokenizer's ids; logprobs are over tokens,
# so the test's log-softmax runs over the ids the tokenizer has.
with open(os.path.join(model, "tokenizer.json"), encoding="utf-8") as f:
    tj = json.load(f)
token_limit = 1 + max(max(tj["model"]["vocab"].values()), max(t["id"] for t in tj["added_tokens"]))
with open(os.path.join(OUT, "cases.json"), "w") as f:
    json.dump({"model": model, "token_limit": token_limit, "cases": cases, "fresh": fresh}, f, indent=1)
