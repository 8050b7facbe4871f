#!/usr/bin/python3
"""A long prompt's step scratch is held once per rank, not once per layer.

The MoE layers' gated rows (T x k x moe_ffn floats) and the MLA layers' queries, latents and
decompressed keys and values (about T x heads x 900 floats for a T-token prompt) are sized by the
step. Layers run one after another, so one buffer serves them all; a copy per layer multiplies the
largest step's scratch by the layer count (a 12k-token prompt on an 8-layer DeepSeek-V2-Lite-like
model: 6.8 GB resident where a shared scratch needs 2.5 GB).

For a Qwen3-MoE and a DeepSeek-V2 (MLA) model, each made twice by tools/make_hf_model.py with the
same shape but 2 and 6 layers, `dpserve bench offline` prefills one 2000-token prompt; the test
reads each process's peak resident set (wait4's ru_maxrss). Four more layers add their weights
and KV rows (measured +14 MB MoE, +58 MB MLA), and must not add their own scratch: the growth has to stay under a
quarter of what four layers' scratch would take, computed from the shape below (MoE 4 x 62.5 MiB,
MLA 4 x 118 MiB). A scratch per layer fails it (measured: MoE +265 MB, MLA +546 MB).

  /usr/bin/python3 tests/model/test_step_scratch_memory.py --dpserve DPSERVE --make-model tools/make_hf_model.py --work DIR
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading

PROMPT = 2000
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

# The shapes, and the scratch one layer of each would hold for PROMPT rows (floats of 4 bytes).
MOE = dict(args=["--arch", "qwen3_moe", "--dtype", "bf16", "--hidden-size", "64", "--num-attention-heads", "4",
                 "--num-key-value-heads", "2", "--head-dim", "16", "--num-experts", "8", "--num-experts-per-tok", "8",
                 "--moe-intermediate-size", "1024", "--intermediate-size", "1024"],
           layer_scratch=PROMPT * 8 * 1024 * 4)  # gated rows: T x k x moe_ffn
HEADS, NOPE, ROPE, VD, RANK = 16, 128, 64, 128, 512
MLA = dict(args=["--preset", "deepseek-v2-lite-bench", "--hidden-size", "256", "--intermediate-size", "512",
                 "--num-experts", "4", "--num-experts-per-tok", "2", "--moe-intermediate-size", "128",
                 "--vocab-size", "397"],
           # The decompressed form a 2000-token prompt takes: queries, outputs, keys, values, the
           # rebuilt k_nope | v rows, and two latent copies.
           layer_scratch=4 * PROMPT * (HEADS * (NOPE + ROPE) + HEADS * VD + HEADS * (NOPE + ROPE) + HEADS * VD
                                       + HEADS * (NOPE + VD) + 2 * (RANK + ROPE)))


def make(a, name, shape, layers):
    out = os.path.join(a.work, f"{name}-{layers}")
    cmd = [sys.executable, a.make_model, *shape["args"], "--num-hidden-layers", str(layers),
           "--max-position-embeddings", "4096", "--no-tokenizer", "--quiet", "--out", out]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stderr[-2000:]}")
    return out


def peak_rss_mb(a, model):
    """The peak resident set of one `dpserve bench offline` run over model, in MiB."""
    cmd = [a.dpserve, "bench", "offline", "--model-path", model, "--batch-size", "1", "--input-len", str(PROMPT),
           "--output-len", "1", "--num-batches", "1", "--warmup-batches", "0", "--threads", "2",
           "--chunked-prefill-size", "4096", "--max-prefill-tokens", "4097", "--max-total-tokens", "8192", "--json"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=ENV)
        timer = threading.Timer(600, p.kill)  # bounded: a hung run is killed and fails below
        timer.start()
        _, status, usage = os.wait4(p.pid, 0)  # this child's own rusage (ru_maxrss in KiB)
        timer.cancel()
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise SystemExit(f"FAIL: {' '.join(cmd)} exited {code}\n{err.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dpserve", required=True)
    ap.add_argument("--make-model", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    failures = 0
    for name, shape in (("qwen3-moe", MOE), ("deepseek-v2", MLA)):
        rss = {layers: peak_rss_mb(a, make(a, name, shape, layers)) for layers in (2, 6)}
        growth = rss[6] - rss[2]
        bound = 4 * shape["layer_scratch"] / 2**20 / 4
        ok = growth < bound
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: peak RSS 2 layers {rss[2]:.0f} MB, 6 layers {rss[6]:.0f} MB: "
              f"+{growth:.0f} MB for 4 more layers (bound {bound:.0f} MB: a quarter of their own scratch, "
              f"{4 * shape['layer_scratch'] / 2**20:.0f} MB)")
    if failures:
        sys.exit(1)
    shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
