#!/usr/bin/python3
"""Pipelined image transfer over real MPI ranks (engine/image_transfer.h, issue 18).

A tiny random Qwen2.5-VL folder (tools/make_hf_model.py) and two images made here with Pillow: a
"large" 560 x 420 JPEG (705,600 RGB bytes once resized, which already is a multiple of 28) and a
small 230 x 170 PNG. Three prompts: the large image, the small one, text only. With
--tp-size 4 --dp-size 2 --enable-dp-attention the round-robin router puts them in groups 0, 1, 0
(ranks {0,1} and {2,3}). With --image-bytes-per-step 65536 the large image crosses in 11 chunks
over 11 steps. Checks, for the global and the group-leader dispatch:
  1. the output ids equal one rank's with the images inside the step message
     (`dpserve generate --image --image-transfer step-message`, the path before pipelining; the
     pipelined one-rank path is held to the NumPy reference by multirank_qwen2_5_vl);
  2. each rank received exactly its group's image bytes (ranks 0-1: the large image, ranks 2-3: the
     small one), rank 0 sent each image once to each other rank of its group and nothing to the
     others, and the large image arrived in at least 11 chunks;
  3. a request cancelled while its image is still crossing: `dpserve serve` (tp=2 dp=2, DP
     attention) with --image-bytes-per-step 8, so the large image needs 88,200 steps to reach
     rank 1: while it crosses, /metrics counts it as waiting in group 1; /abort_request then ends it
     with "abort", and afterwards a tiny 56 x 56 image, sent to each group, answers as on one rank
     (no stale chunk or held request is left behind).

usage: test_image_pipeline.py DPSERVE_BIN SHARED_DIR SCRATCH_DIR MAKE_MODEL_PY
"""
import base64
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402

BIN, SHARED, SCRATCH, MAKE_MODEL = sys.argv[1:5]
os.makedirs(SCRATCH, exist_ok=True)
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
IMG = "<|im_start|>user <|vision_start|><|image_pad|><|vision_end|>Describe it.<|im_end|><|im_start|>assistant"
TEXT = "<|im_start|>user Say something.<|im_end|><|im_start|>assistant"
BUDGET = 65536
SLOW = 8  # bytes per step in the cancel case: the large image needs 88,200 steps, the tiny one 1,176
N = 6


def run(args, timeout=240):
    p = subprocess.run([BIN, "generate", "--json", "--ignore-eos", "-n", str(N), "--threads", "1"] + args,
                       capture_output=True, text=True, env=ENV, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: dpserve generate {' '.join(args)} exited {p.returncode}\n{p.stderr[-3000:]}")
    outs = [json.loads(line)["output_ids"] for line in p.stdout.splitlines() if line.strip()]
    stats = {}
    for m in re.finditer(r"image_transfer rank=(\d+) bytes_in=(\d+) chunks_in=(\d+) bytes_sent=(\d+)", p.stderr):
        stats[int(m.group(1))] = tuple(int(x) for x in m.group(2, 3, 4))
    return outs, stats


def smart_resize(h, w, factor=28, min_pixels=3136, max_pixels=12845056):
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    assert min_pixels <= hb * wb <= max_pixels
    return hb, wb


def post(url, body, timeout=120):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode())


def queued(url, group):
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        m = re.search(r'dpserve_num_queue_reqs\{dp_rank="%d"\} (\d+)' % group, r.read().decode())
    return int(m.group(1)) if m else -1


def cancel_while_crossing(model, paths, failures):
    # The server tokenizes /generate's text without a BOS; generate prepends one unless --no-bos.
    tiny_ref, _ = run(["--model-path", model, "--prompt", IMG, "--image", paths["tiny"], "--no-bos",
                       "--image-transfer", "step-message"])
    try:
        srv = ServeProcess(BIN, "--threads", "1", "--model-path", model, "--tp-size", "2", "--dp-size", "2",
                           "--enable-dp-attention", "--image-bytes-per-step", SLOW,
                           log=os.path.join(SCRATCH, "serve.log"), env=ENV, quiet=True)
    except ServeError as e:
        failures.append(f"server: {e}")
        return
    url = srv.url
    sp = {"max_new_tokens": N, "temperature": 0, "ignore_eos": True}
    try:
        post(url + "/generate", {"text": "Hi", "sampling_params": {"max_new_tokens": 1}})  # group 0: big goes to 1
        big = {}
        body = {"text": IMG, "rid": "big", "sampling_params": sp,
                "image_data": base64.b64encode(open(paths["large"], "rb").read()).decode()}
        t = threading.Thread(target=lambda: big.update(post(url + "/generate", body)))
        t.start()
        # Held on its group's ranks until the last byte arrives: counted as waiting meanwhile.
        deadline = time.time() + 60
        while queued(url, 1) != 1 and t.is_alive() and time.time() < deadline:
            time.sleep(0.005)
        if queued(url, 1) != 1:
            failures.append("cancel while crossing: the request never showed as waiting in group 1")
        aborted = post(url + "/abort_request", {"rid": "big"})
        t.join(120)
        reason = big.get("meta_info", {}).get("finish_reason", {}).get("type")
        if aborted.get("aborted") != 1 or reason != "abort":
            failures.append(f"cancel while crossing: /abort_request said {aborted}, the request ended {reason!r} "
                            f"(expected 1 and 'abort')")
        tiny = base64.b64encode(open(paths["tiny"], "rb").read()).decode()
        for g in (0, 1):
            out = post(url + "/generate", {"text": IMG, "image_data": tiny, "sampling_params": sp})
            if out["output_ids"] != tiny_ref[0]:
                failures.append(f"after the cancel, the tiny image (group {g}) gave {out['output_ids']}, one rank "
                                f"{tiny_ref[0]}")
        if not any(f.startswith(("cancel", "after the cancel")) for f in failures):
            print("serve: cancelled while its image crossed (counted as waiting meanwhile), then both groups "
                  "answer as one rank")
    except OSError as e:
        failures.append(f"server: {e}")
    finally:
        srv.stop()


def main():
    model = os.path.join(SCRATCH, "tiny-vl")
    subprocess.run(["/usr/bin/python3", MAKE_MODEL, "--arch", "qwen2_5_vl", "--seed", "3", "--quiet",
                    "--max-position-embeddings", "1024", "--tokenizer-dir",
                    os.path.join(SHARED, "tokenizers", "qwen3"), "--out", model], check=True, timeout=120)
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:420, 0:560]
    large = np.stack([yy * 0.5, xx * 0.4, (yy + xx) * 0.25], axis=-1) + rng.integers(-30, 30, size=(420, 560, 3))
    small = rng.integers(0, 256, size=(170, 230, 3))
    paths = {"large": os.path.join(SCRATCH, "large.jpg"), "small": os.path.join(SCRATCH, "small.png"),
             "tiny": os.path.join(SCRATCH, "tiny.png")}
    Image.fromarray(rng.integers(0, 256, size=(56, 56, 3)).astype(np.uint8)).save(paths["tiny"])
    Image.fromarray(np.clip(large, 0, 255).astype(np.uint8)).save(paths["large"], quality=90)
    Image.fromarray(small.astype(np.uint8)).save(paths["small"])
    nbytes = {k: (lambda hw: hw[0] * hw[1] * 3)(smart_resize(*a.shape[:2])) for k, a in
              (("large", large), ("small", small))}
    pfile = os.path.join(SCRATCH, "prompts.txt")
    with open(pfile, "w") as f:
        f.write(IMG + "\n" + IMG + "\n" + TEXT + "\n")
    common = ["--model-path", model, "--prompts-file", pfile, "--image", paths["large"], "--image", paths["small"]]
    failures = []

    ref, _ = run(common + ["--image-transfer", "step-message"])
    print("tp1 step-message:", ref)
    for dispatch in ("global", "group-leader"):
        got, st = run(common + ["--tp-size", "4", "--dp-size", "2", "--enable-dp-attention", "--dispatch", dispatch,
                                "--image-bytes-per-step", str(BUDGET)])
        name = f"tp4 dp2 pipelined ({dispatch})"
        if got != ref:
            failures.append(f"{name}: outputs {got} differ from one rank's {ref}")
        else:
            print(f"{name}: outputs identical")
        if sorted(st) != [0, 1, 2, 3]:
            failures.append(f"{name}: image_transfer lines for ranks {sorted(st)}, expected 0-3")
            continue
        want_in = {0: nbytes["large"], 1: nbytes["large"], 2: nbytes["small"], 3: nbytes["small"]}
        for r in range(4):
            if st[r][0] != want_in[r]:
                failures.append(f"{name}: rank {r} received {st[r][0]} image bytes, its group's images hold "
                                f"{want_in[r]}")
        want_sent = nbytes["large"] + 2 * nbytes["small"]
        if st[0][2] != want_sent:
            failures.append(f"{name}: rank 0 sent {st[0][2]} bytes, expected {want_sent} (the large image to rank 1, "
                            f"the small one to ranks 2 and 3)")
        if st[1][1] < math.ceil(nbytes["large"] / BUDGET):
            failures.append(f"{name}: the large image arrived in {st[1][1]} chunks, expected at least "
                            f"{math.ceil(nbytes['large'] / BUDGET)}")
        print(f"{name}: per rank (bytes_in, chunks_in, bytes_sent): {st}")
    cancel_while_crossing(model, paths, failures)
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
