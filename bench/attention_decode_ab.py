#!/usr/bin/env python3
"""Before/after ratios of attention_decode_bench: two builds of it (e.g. one at the parent
commit, one at this one) run in turn, `--turns` times each, on the same points; each point keeps
its fastest time per binary, and the ratio before / after is printed (> 1: after is faster).
MLA's latent shape runs as each build's model runs it: --before-mla / --after-mla.

  DPSERVE_SPIN_US=0 bench/attention_decode_ab.py /tmp/before/attention_decode_bench \
      build/bin/attention_decode_bench --turns 4 -- --contexts 1024,8192,32768 --kv fp32,bf16,int8 --threads 2

DPSERVE_SPIN_US=0 parks waiting members at once, so the CPU-time columns count work, not spinning.
"""
import argparse
import subprocess


def run(binary, mla, extra):
    out = subprocess.run([binary, "--mla", mla] + extra, check=True, capture_output=True, text=True, timeout=1800).stdout
    pts = {}
    for line in out.splitlines()[2:]:
        f = line.split()
        # (shape, context, queries, kv): wall us, CPU us of all members, CPU us of the busiest member
        pts[(f[0], int(f[1]), int(f[2]), f[3])] = (float(f[4]), float(f[7]), float(f[8]))
    return pts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--before-mla", default="heads")
    ap.add_argument("--after-mla", default="team")
    a, extra = ap.parse_known_args()  # the rest goes to both binaries
    extra = [x for x in extra if x != "--"]
    best = {"before": {}, "after": {}}
    for _ in range(a.turns):
        for name, binary, mla in (("before", a.before, a.before_mla), ("after", a.after, a.after_mla)):
            for k, v in run(binary, mla, extra).items():
                old = best[name].get(k, v)
                best[name][k] = tuple(min(x, y) for x, y in zip(v, old))
    print("wall: fastest wall time per call; cpu max: the busiest member's CPU time per call (least); "
          "cpu all: CPU time summed over the members; ratios before / after")
    print(f"{'shape':20} {'context':>8} {'queries':>7} {'kv':>5} {'wall before':>12} {'wall after':>11} {'ratio':>6} "
          f"{'cpu max bef':>12} {'cpu max aft':>12} {'ratio':>6} {'cpu all bef':>12} {'cpu all aft':>12} {'ratio':>6}")
    for k in sorted(best["before"], key=lambda k: (k[0], k[3], k[2], k[1])):
        b, f = best["before"][k], best["after"][k]
        print(f"{k[0]:20} {k[1]:8d} {k[2]:7d} {k[3]:>5} {b[0]:12.1f} {f[0]:11.1f} {b[0] / f[0]:6.2f} "
              f"{b[2]:12.1f} {f[2]:12.1f} {b[2] / f[2]:6.2f} {b[1]:12.1f} {f[1]:12.1f} {b[1] / f[1]:6.2f}")


if __name__ == "__main__":
    main()
