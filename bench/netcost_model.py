#!/usr/bin/python3
"""Network cost model for dpserve past one machine: an alpha-beta fit of measured collectives and the
step time / throughput it predicts for TP vs DP attention on 2-64 nodes.

  /usr/bin/python3 bench/netcost_model.py [bench/netcost_data.csv] [--check TOL] [--markdown]

Input: the CSV written by bench/netcost_measure.py (bench/netcost_bench through dpserve's own
src/parallel wrappers, 2 "hosts" = network namespaces joined by a veth pair, and one host over TCP
loopback; the file's first line says when and under which load). Runs in well under a second.

1. Fit. Each collective is costed by the algorithm Open MPI 4.1's tuned component uses for it, as
   (latency terms) x alpha + (bytes on the critical path) x beta (+ reduced bytes x gamma):
     all-reduce      n < 64 KiB: recursive doubling  log2 p x (alpha + n beta + n gamma)
                     n >= 64 KiB: ring               2(p-1) alpha + 2(p-1)/p n beta + (p-1)/p n gamma
     all-gather-v    ring                            (p-1) alpha + (p-1)/p n beta      (n = gathered total)
     reduce-scatter  ring                            (p-1) alpha + (p-1)/p n (beta + gamma)
     broadcast       n < 64 KiB: binomial tree       log2 p x (alpha + n beta)
                     n >= 64 KiB: scatter+all-gather (log2 p + p - 1) alpha + 2(p-1)/p n beta
   alpha, beta, gamma are fitted per link (veth, lo) by non-negative least squares on relative error
   over the 2-rank points (one rank per host: each rank has its own core). The 4-rank points (two
   ranks per host, four processes on this machine's two cores) are predicted, not fitted: they show
   how far oversubscription inflates them. --check TOL exits non-zero unless the median |error| of
   the fitted veth points is at most TOL and every all-reduce / all-gather-v / reduce-scatter point is
   within a factor 3 (broadcast is left out: small broadcasts pipeline back to back in the
   measurement loop, so its fit is rough; it is one small call per step).
2. Predict. A node = one rank with this machine's measured compute rates (docs/benchmarks.md, the
   `kernels_bench` roofline run: GEMV 28.5 GB/s of weights, GEMM 337 GFLOP/s, paged-attention decode
   7.1 GB/s of KV) or --node-scale k times them. The target network: alpha = the collective's fitted
   per-step software cost + link latency; beta = 8 / bandwidth + the collective's fitted per-byte
   cost beyond all-gather-v's (the local reduction, / node-scale).
   A decode step of B requests (context C) per layer: weights read + KV read + the layer's
   collectives; then the LM head and the step's control broadcast.
     TP (attn_tp = N):     attention weights / N, KV heads split (replicated past n_kv_heads, MLA's
                           latent on every rank), 2 all-reduces of B x hidden fp32
                           (o_proj, MLP down), logits all-gather of B x vocab fp32, LM head / N.
     DP attention (dp=N):  attention weights whole on every node, B/N requests' KV per node, one
                           all-gather-v + one reduce-scatter of B x hidden fp32 (dp_gather /
                           dp_scatter), LM head whole per node (split inside the DP group of 1).
   MLP / MoE the same in both (split over N; MoE: the experts B tokens touch, as expected value).
   Throughput = B / step time at a fixed B, and at the largest B whose KV fits beside the weights
   in --node-mem-gib.
"""
import argparse
import csv
import math
import os
import sys

import numpy as np

FACTOR = 3  # --check: no data-moving collective's point off by more than this factor
SMALL = 64 * 1024  # Open MPI's switch from the latency-bound to the bandwidth-bound algorithm (approx.)


def terms(coll, n, p):
    """(latency steps, bytes per rank on the critical path) of one call on p ranks moving n bytes."""
    lg = math.log2(p)
    if coll == "allreduce":
        if n < SMALL:
            return lg, lg * n
        return 2 * (p - 1), 2 * (p - 1) / p * n
    if coll == "allgatherv":
        return p - 1, (p - 1) / p * n
    if coll == "reduce_scatter":
        return p - 1, (p - 1) / p * n
    if coll == "broadcast":
        if n < SMALL:
            return lg, lg * n
        return lg + p - 1, 2 * (p - 1) / p * n
    raise ValueError(coll)


def load(path):
    with open(path) as f:
        source = f.readline().lstrip("# ").strip()
        rows = list(csv.DictReader(f))
    for r in rows:
        r["ranks"], r["bytes"] = int(r["ranks"]), int(r["bytes"])
        r["t"] = float(r["min_us"]) * 1e-6
    return source, rows


def fit(rows):
    """Non-negative least squares of relative error for (alpha, beta) of one collective."""
    A = np.array([terms(r["collective"], r["bytes"], r["ranks"]) for r in rows]) / np.array([[r["t"]] for r in rows])
    b = np.ones(len(rows))
    best = None
    for idx in ([0, 1], [0], [1]):  # tiny NNLS: every support, best feasible
        x, *_ = np.linalg.lstsq(A[:, idx], b, rcond=None)
        if (x < 0).any():
            continue
        full = np.zeros(2)
        full[idx] = x
        res = float(np.sum((A @ full - b) ** 2))
        if best is None or res < best[0]:
            best = (res, full)
    return best[1]


def predict(params, coll, n, p):
    return float(np.dot(terms(coll, n, p), params[coll]))


# ---- models (Hugging Face config values) -------------------------------------------------------
MODELS = {
    "Llama-3-8B": dict(kind="dense", layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128, inter=14336,
                       vocab=128256),
    "Llama-3-70B": dict(kind="dense", layers=80, hidden=8192, heads=64, kv_heads=8, head_dim=128, inter=28672,
                        vocab=128256),
    "DeepSeek-V2-Lite": dict(kind="mla", layers=27, hidden=2048, heads=16, q_lora=0, kv_lora=512, rope=64,
                             nope=128, v_dim=128, experts=64, topk=6, shared=2, moe_inter=1408, dense_layers=1,
                             dense_inter=10944, vocab=102400),
    "DeepSeek-V3": dict(kind="mla", layers=61, hidden=7168, heads=128, q_lora=1536, kv_lora=512, rope=64, nope=128,
                        v_dim=128, experts=256, topk=8, shared=1, moe_inter=2048, dense_layers=3, dense_inter=18432,
                        vocab=129280),
}
WB = 2  # weight bytes (bf16)
KVB = 2  # KV cache bytes per element (bf16 cache)
ACT = 4  # activations cross ranks in fp32 (dpserve's hidden states)


def shapes(m):
    """Per layer: attention params, MLP params actually read for B tokens (function), KV bytes per token per
    rank as a function of how many ranks share the attention (attn_tp)."""
    h = m["hidden"]
    if m["kind"] == "dense":
        attn = h * m["heads"] * m["head_dim"] * 2 + 2 * h * m["kv_heads"] * m["head_dim"]

        def kv_tok(attn_tp):  # KV heads split, replicated once attn_tp exceeds them
            return 2 * max(m["kv_heads"] / attn_tp, 1) * m["head_dim"] * KVB

        def mlp_bytes(B, N):
            return 3 * h * m["inter"] * WB / N
        return attn, kv_tok, mlp_bytes, m["layers"]
    qk = m["nope"] + m["rope"]
    q = h * m["heads"] * qk if not m["q_lora"] else h * m["q_lora"] + m["q_lora"] * m["heads"] * qk
    attn = q + h * (m["kv_lora"] + m["rope"]) + m["kv_lora"] * m["heads"] * (m["nope"] + m["v_dim"]) + \
        m["heads"] * m["v_dim"] * h

    def kv_tok(attn_tp):  # one latent row per token, whole on every attention rank
        return (m["kv_lora"] + m["rope"]) * KVB

    L, E, k = m["layers"], m["experts"], m["topk"]
    expert = 3 * h * m["moe_inter"] * WB

    def mlp_bytes(B, N):  # averaged over layers: dense layers, shared experts, expected routed experts touched
        touched = E * (1 - (1 - k / E) ** B)
        moe = (touched + m["shared"]) * expert / N
        dense = 3 * h * m["dense_inter"] * WB / N
        return (m["dense_layers"] * dense + (L - m["dense_layers"]) * moe) / L
    return attn, kv_tok, mlp_bytes, L


def weights_per_node(m, N, mode):
    attn, _, _, L = shapes(m)
    h = m["hidden"]
    if m["kind"] == "dense":
        mlp = 3 * h * m["inter"] * L
    else:
        mlp = m["dense_layers"] * 3 * h * m["dense_inter"] + (L - m["dense_layers"]) * (m["experts"] + m["shared"]) * 3 * h * m["moe_inter"]
    a = attn * L * (1 if mode == "dp" else 1 / N)
    head = m["vocab"] * h * (1 if mode == "dp" else 1 / N)
    return (a + mlp / N + head + m["vocab"] * h / N) * WB  # + embedding (split)


def step_time(m, N, mode, B, ctx, net, node):
    """Decode step seconds for B requests over N nodes; returns (total, compute, network)."""
    attn, kv_tok, mlp_bytes, L = shapes(m)
    h, V = m["hidden"], m["vocab"]
    if mode == "tp":
        w_attn = attn * WB / N
        kv = B * ctx * kv_tok(N)
        coll = 2 * net("allreduce", B * h * ACT, N)
        head = V * h * WB / N
        logits = net("allgatherv", B * V * ACT, N)
    else:
        w_attn = attn * WB
        kv = math.ceil(B / N) * ctx * kv_tok(1)
        coll = net("allgatherv", B * h * ACT, N) + net("reduce_scatter", B * h * ACT, N)
        head = V * h * WB
        logits = 0.0
    compute = L * (w_attn / node["gemv"] + kv / node["kv"] + mlp_bytes(B, N) / node["gemv"]) + head / node["gemv"]
    network = L * coll + logits + net("broadcast", 64 * B, N)
    return compute + network, compute, network


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("data", nargs="?", default=os.path.join(here, "netcost_data.csv"))
    ap.add_argument("--check", type=float, default=None, help="fail unless the fit reproduces its input within TOL")
    ap.add_argument("--node-scale", type=float, default=1.0, help="node compute = k x this machine's rates")
    ap.add_argument("--node-mem-gib", type=float, default=256.0)
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--batch-per-node", type=int, default=32)
    args = ap.parse_args()
    source, rows = load(args.data)
    print(f"measurements: {args.data}\n  {source}\n")

    params, worst = {}, 0.0
    colls = ("allreduce", "allgatherv", "reduce_scatter", "broadcast")
    for link in ("veth", "lo"):
        params[link] = {c: fit([r for r in rows if r["link"] == link and r["ranks"] == 2 and r["collective"] == c])
                        for c in colls}
        print(f"## fit, {link} (2 ranks)\n")
        print("| collective | alpha us | beta ns/B | = GB/s |")
        print("|---|---|---|---|")
        for c in colls:
            a, b = params[link][c]
            print(f"| {c} | {a * 1e6:.1f} | {b * 1e9:.3f} | {1 / b / 1e9 if b else float('inf'):.2f} |")
        print("\n| collective | ranks | bytes | measured us | model us | model/measured |")
        print("|---|---|---|---|---|---|")
        errs = []
        for r in [r for r in rows if r["link"] == link]:
            pr = predict(params[link], r["collective"], r["bytes"], r["ranks"])
            ratio = pr / r["t"]
            if r["ranks"] == 2:
                errs.append(abs(ratio - 1))
                if r["collective"] != "broadcast" and link == "veth":
                    worst = max(worst, ratio, 1 / ratio)
            print(f"| {r['collective']} | {r['ranks']} | {r['bytes']} | {r['t'] * 1e6:.1f} | {pr * 1e6:.1f} | {ratio:.2f} |")
        med = float(np.median(errs))
        four = [predict(params[link], r["collective"], r["bytes"], 4) / r["t"] for r in rows
                if r["link"] == link and r["ranks"] == 4]
        print(f"\n{link}: 2-rank points (fitted): median |model/measured - 1| = {med:.0%}; 4-rank points (predicted "
              f"from the 2-rank fit): median model/measured = {float(np.median(four)):.2f}\n")
        if args.check is not None and link == "veth":
            if med > args.check or worst > FACTOR:
                print(f"FAIL: fit error median {med:.0%} (limit {args.check:.0%}); worst all-reduce / all-gather-v / "
                      f"reduce-scatter point off by a factor {worst:.2f} (limit {FACTOR})")
                return 1
            print(f"check passed: median {med:.0%} <= {args.check:.0%}; every all-reduce / all-gather-v / "
                  f"reduce-scatter point within a factor {worst:.2f} <= {FACTOR}\n")
    fitted = params["veth"]
    # Target network: each collective keeps its measured per-step software cost (alpha) and its
    # host-side per-byte cost beyond a plain transfer (the reduction, measured as that collective's beta
    # minus all-gather-v's); the wire adds the link latency per step and 8/bandwidth per byte.
    base_beta = fitted["allgatherv"][1]
    alpha_sw = {c: fitted[c][0] for c in colls}
    alpha_sw["broadcast"] = max(alpha_sw["broadcast"], alpha_sw["allgatherv"])  # one step per step: no pipelining
    extra_beta = {c: max(fitted[c][1] - base_beta, 0.0) / args.node_scale for c in colls}  # node work: scales

    def network(lat_us, gbps):
        p = {c: (alpha_sw[c] + lat_us * 1e-6, 8 / (gbps * 1e9) + extra_beta[c]) for c in colls}
        return lambda coll, n, ranks: predict(p, coll, n, ranks)

    # Compute rates of one node (this machine, docs/benchmarks.md roofline run), x node-scale.
    node = {"gemv": 28.5e9 * args.node_scale, "kv": 7.1e9 * args.node_scale}
    print(f"## predictions: node = {args.node_scale:g} x this machine (GEMV {node['gemv'] / 1e9:.0f} GB/s, KV "
          f"{node['kv'] / 1e9:.1f} GB/s), alpha = per-step software cost (all-reduce {alpha_sw['allreduce'] * 1e6:.0f} us, "
          f"all-gather-v {alpha_sw['allgatherv'] * 1e6:.0f} us) + link latency, beta = 8/bandwidth + reduction cost, "
          f"context {args.context}, {args.batch_per_node} requests per node, node memory {args.node_mem_gib:g} GiB\n")
    print("Decode tokens/s of the whole job, DP attention / TP (>1: DP attention wins); "
          "cell: fixed batch ratio (memory-limited batch ratio). '-' = weights do not fit.\n")
    nodes = [2, 4, 8, 16, 32, 64]
    for name, m in MODELS.items():
        print(f"### {name}\n")
        print("| latency us | Gb/s | " + " | ".join(f"{n} nodes" for n in nodes) + " |")
        print("|---|---|" + "---|" * len(nodes))
        for lat in (1, 10, 100):
            for gbps in (10, 100, 400):
                net = network(lat, gbps)
                cells = []
                for N in nodes:
                    B = args.batch_per_node * N
                    t_tp = step_time(m, N, "tp", B, args.context, net, node)[0]
                    t_dp = step_time(m, N, "dp", B, args.context, net, node)[0]
                    fixed = t_tp / t_dp
                    mem = args.node_mem_gib * 2 ** 30
                    caps = {}
                    for mode in ("tp", "dp"):
                        free = mem - weights_per_node(m, N, mode)
                        if free <= 0:
                            caps[mode] = 0
                            continue
                        _, kv_tok, _, L = shapes(m)
                        per_req = args.context * kv_tok(N if mode == "tp" else 1) * L
                        caps[mode] = int(free // per_req) * (1 if mode == "tp" else N)
                    if min(caps.values()) == 0:
                        cells.append(f"{fixed:.2f} (-)")
                        continue
                    thr = {mode: caps[mode] / step_time(m, N, mode, caps[mode], args.context, net, node)[0]
                           for mode in caps}
                    cells.append(f"{fixed:.2f} ({thr['dp'] / thr['tp']:.2f})")
                print(f"| {lat} | {gbps} | " + " | ".join(cells) + " |")
        print()
    # One worked step, for the reader: where the time goes.
    print("### Where a step's time goes (100 Gb/s, 10 us; fixed batch)\n")
    print("| model | nodes | mode | step ms | compute ms | network ms |")
    print("|---|---|---|---|---|---|")
    for name in ("Llama-3-8B", "DeepSeek-V2-Lite", "DeepSeek-V3"):
        for N in (8, 64):
            for mode in ("tp", "dp"):
                net = network(10, 100)
                t, c, w = step_time(MODELS[name], N, mode, args.batch_per_node * N, args.context, net, node)
                print(f"| {name} | {N} | {'TP' if mode == 'tp' else 'DP attention'} | {t * 1e3:.1f} | {c * 1e3:.1f} | {w * 1e3:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
