#!/usr/bin/python3
"""What loading an fp8 checkpoint costs against its bf16 cast: start-up time and peak RSS of
`dpserve generate` (one token) on the two folders, side by side in alternating rounds.

Writes a TinyLlama-1.1B-shaped bf16 model (--layers of its 22, default 6), its fp8 checkpoint (128 x 128
block scales, DeepSeek-V3's layout) and the checkpoint's bf16 cast (tests/model/test_fp8_checkpoint.py
writes both) into --work, then runs each folder --repeat times and prints the minimum wall time, the
"weights: prepared in" time dpserve reports, and the largest peak RSS, with the ratios fp8 / cast.
With --quantization q8_0 both load quantized.

  /usr/bin/python3 bench/fp8_load.py --dpserve build/bin/dpserve --work /tmp/fp8-bench [--layers 6] [--repeat 3]
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "model"))
import test_fp8_checkpoint as fp8  # noqa: E402


def run(dpserve, folder, extra):
    cmd = ["/usr/bin/time", "-f", "TIME %e %M", dpserve, "generate", "--model-path", folder, "--prompt-ids",
           "1,2,3", "--max-new-tokens", "1", "--threads", "2", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    wall, rss_kb = re.search(r"TIME ([\d.]+) (\d+)", p.stderr).groups()
    prep = re.search(r"weights: prepared in ([\d.]+) s", p.stderr)
    return float(wall), float(prep.group(1)) if prep else float("nan"), int(rss_kb) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dpserve", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quantization", default="none")
    a = ap.parse_args()
    base, f8, cast = (os.path.join(a.work, n) for n in ("bf16", "fp8", "cast"))
    if not os.path.exists(os.path.join(f8, "config.json")):
        subprocess.run([sys.executable, fp8.MAKE, "--out", base, "--preset", "tinyllama-1.1b", "--num-hidden-layers",
                        str(a.layers), "--seed", "7", "--quiet"], check=True)
        n = len(fp8.write_fp8_pair(base, f8, cast, [128, 128], others="BF16"))
        print(f"wrote {n} fp8 matrices and their bf16 cast into {a.work}", flush=True)
    extra = ["--quantization", a.quantization] if a.quantization != "none" else []
    best = {"fp8": [1e9, 1e9, 0.0], "cast": [1e9, 1e9, 0.0]}
    for r in range(a.repeat):
        for name, folder in (("fp8", f8), ("cast", cast)) if r % 2 == 0 else (("cast", cast), ("fp8", f8)):
            wall, prep, rss = run(a.dpserve, folder, extra)
            b = best[name]
            b[0], b[1], b[2] = min(b[0], wall), min(b[1], prep), max(b[2], rss)
            print(f"round {r} {name}: {wall:.2f} s wall, weights prepared in {prep:.2f} s, peak RSS {rss:.0f} MiB",
                  flush=True)
    f, c = best["fp8"], best["cast"]
    print(f"fp8 / cast ({a.layers} TinyLlama layers, --quantization {a.quantization}): wall {f[0]:.2f} / {c[0]:.2f} s "
          f"= {f[0] / c[0]:.2f}x, weights prepared {f[1]:.2f} / {c[1]:.2f} s = {f[1] / c[1]:.2f}x, "
          f"peak RSS {f[2]:.0f} / {c[2]:.0f} MiB = {f[2] / c[2]:.2f}x")


if __name__ == "__main__":
    main()
