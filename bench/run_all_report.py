#!/usr/bin/python3
"""Turns one bench/run-all results folder into the generated section of docs/benchmarks.md (between
<!-- run-all:begin --> and <!-- run-all:end -->) and the SVG charts beside it.

Every figure is printed next to the limit the machine sets, measured in the same run:
  decode   tok/s vs min(B x bandwidth / weight bytes read per step, bf16 peak / flops per token)
  prefill  tok/s vs bf16 peak / flops per token (matmul flops; attention is small at these lengths)
  serving  the run's duration vs the ideal one: every prompt token at bf16 peak, plus each wave's
           decode steps at the batch roofline above

usage: run_all_report.py RESULTS_DIR OUT_MD
  RESULTS_DIR holds machine.json, kernels.json, offline.jsonl, serve.jsonl, models.json (and race.json)
"""
import datetime
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot_svg import Series, line_chart  # noqa: E402

BEGIN, END = "<!-- run-all:begin -->", "<!-- run-all:end -->"


def load_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# --- what a model costs per token -------------------------------------------------------------

class ModelCost:
    """Weights read and flops per token from config.json (bf16/f16 = 2 bytes, f32 = 4)."""

    def __init__(self, cfg, bytes_per_weight):
        h = cfg["hidden_size"]
        nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
        hd = cfg.get("head_dim") or h // nh
        attn = h * nh * hd + 2 * h * nkv * hd + nh * hd * h
        layers = cfg["num_hidden_layers"]
        n_exp = cfg.get("num_experts", 0) or 0
        top_k = cfg.get("num_experts_per_tok", 0) or 0
        sparse_step = cfg.get("decoder_sparse_step", 1) or 1
        mlp_only = cfg.get("mlp_only_layers") or []
        if isinstance(mlp_only, str):
            mlp_only = [int(x) for x in mlp_only.split(",") if x.strip()]
        dense_mlp = 3 * h * cfg["intermediate_size"]
        expert = 3 * h * cfg.get("moe_intermediate_size", 0) if n_exp else 0
        self.dense = cfg["vocab_size"] * h  # LM head, read every step
        self.sparse_layers = 0
        for layer in range(layers):
            self.dense += attn
            if n_exp and layer not in mlp_only and (layer + 1) % sparse_step == 0:
                self.sparse_layers += 1
                self.dense += h * n_exp  # router
            else:
                self.dense += dense_mlp
        self.n_exp, self.top_k, self.expert = n_exp, top_k, expert
        self.bpw = bytes_per_weight
        self.active = self.dense + self.sparse_layers * top_k * expert  # weights one token multiplies

    def bytes_per_step(self, batch):
        """Weights a decode step of `batch` tokens reads: the dense part once, plus the experts the
        batch routes to (expected distinct experts of uniform top-k routing)."""
        experts = 0.0
        if self.n_exp:
            experts = self.n_exp * (1 - (1 - self.top_k / self.n_exp) ** batch)
        return (self.dense + self.sparse_layers * experts * self.expert) * self.bpw

    def flops_per_token(self):
        return 2.0 * self.active


def decode_roofline(cost, batch, bw, peak):
    limits = [batch * bw / cost.bytes_per_step(batch)]
    if peak > 0:
        limits.append(peak / cost.flops_per_token())
    return min(limits)


def step_seconds(cost, batch, bw, peak):
    return batch / decode_roofline(cost, batch, bw, peak)


# --- formatting -----------------------------------------------------------------------------

def pct(x):
    return f"{100 * x:.0f} %" if x is not None and math.isfinite(x) else "n/a"


def num(x, digits=1):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}"


def kv_per_token(j):
    m = re.search(r"x ([0-9.]+ [KMG]iB)/token", j.get("layout", ""))
    return m.group(1) if m else "?"


def layout_name(j):
    tp, dp = j.get("tp_size", 1), j.get("dp_size", 1)
    name = f"tp={tp}"
    if dp > 1:
        name += f" dp={dp}"
    if j.get("enable_dp_attention"):
        name += " DP-attn"
    return name


def main():
    res_dir, out_md = sys.argv[1], sys.argv[2]
    with open(os.path.join(res_dir, "machine.json")) as f:
        machine = json.load(f)
    with open(os.path.join(res_dir, "models.json")) as f:
        models = json.load(f)  # key -> {"path": ..., "label": ...}
    bw, peak = machine["bandwidth_bytes_s"], machine["bf16_flops"]
    costs = {}
    for key, m in models.items():
        with open(os.path.join(m["path"], "config.json")) as f:
            cfg = json.load(f)
        bpw = {"bfloat16": 2, "float16": 2, "float32": 4}.get(cfg.get("torch_dtype", "bfloat16"), 2)
        costs[key] = ModelCost(cfg, bpw)
    path_to_key = {os.path.realpath(m["path"]): k for k, m in models.items()}

    def model_key(j):
        return path_to_key.get(os.path.realpath(j.get("model_path", "")), os.path.basename(j.get("model_path", "?")))

    out_dir = os.path.dirname(os.path.abspath(out_md))
    L = [BEGIN, ""]
    mode = "quick (small counts: a smoke run, not a measurement)" if machine.get("quick") else "full"
    L.append(f"## Generated by `bench/run-all` ({machine['date']}, commit {machine['commit']}, {mode})")
    L.append("")
    both = ""
    if "bandwidth_end" in machine:
        both = (f" (start {machine['bandwidth_start'] / 1e9:.1f} GB/s, {machine['bf16_start'] / 1e9:.0f} GFLOP/s; "
                f"end {machine['bandwidth_end'] / 1e9:.1f} GB/s, {machine['bf16_end'] / 1e9:.0f} GFLOP/s)")
    L.append(f"Machine: {machine['cpu']}, {machine['threads']} threads; read bandwidth **{bw / 1e9:.1f} GB/s**, "
             f"bf16 peak **{peak / 1e9:.0f} GFLOP/s**: the higher of the measurements at the start and the end of "
             f"the run{both} (bench/roofline.cpp, best of many short runs). Load average at start / end: "
             f"{machine.get('load_start', '?')} / {machine.get('load_end', '?')}"
             " — the machine is shared, so figures taken while others work are low and noisy.")
    L.append("")
    L.append("| model | weights | read per decode step (batch 1) | flops per token |")
    L.append("|---|---:|---:|---:|")
    for key, c in costs.items():
        total = (c.dense + c.sparse_layers * c.n_exp * c.expert) * c.bpw
        L.append(f"| {models[key]['label']} | {total / 1e9:.2f} GB | {c.bytes_per_step(1) / 1e9:.2f} GB | "
                 f"{c.flops_per_token() / 1e9:.2f} GFLOP |")
    L.append("")

    # Kernels.
    kj = os.path.join(res_dir, "kernels.json")
    if os.path.exists(kj):
        with open(kj) as f:
            kb = json.load(f)
        rows = []
        for b in kb.get("benchmarks", []):
            name = b["name"].replace("/real_time", "").replace("/iterations:1", "")
            if "error_occurred" in b and b["error_occurred"]:
                continue
            if name.startswith("BM_Gemv"):
                rows.append(f"| gemv {name[8:]} | {b['GB/s']:.1f} GB/s | {b['bw_GB/s']:.1f} GB/s | "
                            f"{pct(b['frac_bw'])} (best {pct(b['best_frac_bw'])}) |")
            elif name.startswith("BM_Gemm"):
                rows.append(f"| gemm {name[8:]} | {b['GFLOP/s']:.0f} GFLOP/s | {b['peak_GFLOP/s']:.0f} GFLOP/s | "
                            f"{pct(b['frac_peak'])} (best {pct(b['best_frac_peak'])}) |")
            elif name.startswith("BM_AttentionDecode"):
                rows.append(f"| paged attention decode {name[19:]} | {b['KV_GB/s']:.1f} GB/s of KV | "
                            f"{bw / 1e9:.1f} GB/s | {pct(b['frac_bw'])} |")
        if rows:
            L += ["### Kernels (`kernels_bench`, bf16 weights, TinyLlama shapes)", "",
                  "| kernel | measured | roofline | ratio (mean, best) |", "|---|---:|---:|---:|"] + rows + [""]

    # Offline.
    off = load_jsonl(os.path.join(res_dir, "offline.jsonl"))
    if off:
        L += ["### Offline: `dpserve bench offline` (engine without HTTP, fixed batches)", "",
              "Prefill is compared with the bf16 peak, decode with the batch roofline "
              "min(B x bandwidth / bytes per step, peak / flops per token).", "",
              "| model | layout | batch | in / out | prefill tok/s (of peak) | decode tok/s (of roofline) | "
              "decode step ms | output tok/s | ITL p50 / p99 ms |",
              "|---|---|---:|---|---:|---:|---:|---:|---|"]
        for j in off:
            key = model_key(j)
            c = costs.get(key)
            B = j["batch_size"]
            pf_roof = peak / c.flops_per_token() if c and peak > 0 else None
            dec_roof = decode_roofline(c, B, bw, peak) if c else None
            L.append(f"| {models.get(key, {}).get('label', key)} | {layout_name(j)} | {B} | "
                     f"{j['input_len']} / {j['output_len']} | "
                     f"{num(j['prefill_tok_s'])} ({pct(j['prefill_tok_s'] / pf_roof if pf_roof else None)}) | "
                     f"{num(j['decode_tok_s'])} ({pct(j['decode_tok_s'] / dec_roof if dec_roof else None)} of "
                     f"{num(dec_roof)}) | {num(j['decode_step_ms'])} | {num(j['output_tok_s'])} | "
                     f"{num(j['itl_ms_p50'])} / {num(j['itl_ms_p99'])} |")
        L.append("")
        # DP attention vs plain TP on the same model and batch.
        by = {}
        for j in off:
            by[(model_key(j), j["batch_size"], layout_name(j))] = j
        for (key, B, lay), j in by.items():
            if "DP-attn" in lay:
                base = by.get((key, B, f"tp={j['tp_size']}"))
                if base:
                    L.append(f"DP attention on {models.get(key, {}).get('label', key)}, batch {B}: "
                             f"{lay} decodes {j['decode_tok_s']:.1f} tok/s vs {base['decode_tok_s']:.1f} for "
                             f"tp={j['tp_size']} alone (**{j['decode_tok_s'] / base['decode_tok_s']:.2f}x**, "
                             f"issue 8's target 1.2x at 32+ requests); KV cache per token on a rank "
                             f"{kv_per_token(j)} vs {kv_per_token(base)}, KV pool {j['kv_tokens_per_rank']} vs "
                             f"{base['kv_tokens_per_rank']} positions per rank.")
                    L.append("")

    # Serving.
    serve = load_jsonl(os.path.join(res_dir, "serve.jsonl"))
    if serve:
        L += ["### Serving: `dpserve bench serve` against `dpserve serve`"
              + (" and a peer server" if any(s.get("peer") for s in serve) else ""), "",
              "Random prompts, `--request-rate inf`, `ignore_eos`; *of ideal* = the ideal duration (prompt "
              "tokens at bf16 peak + one wave of decode steps at the batch roofline per `concurrency` "
              "requests) over the measured one.", "",
              "| server | conc. | prompts ok/fail | out tok/s | of ideal | TTFT p50 / p90 / p99 ms | "
              "ITL p50 / p90 / p99 ms | E2E p50 ms |",
              "|---|---:|---:|---:|---:|---|---|---:|"]
        series_tp, lat_rows = {}, {}
        for s in serve:
            conc = s.get("max_concurrency") or s["num_prompts"]
            key = s.get("model_key")
            c = costs.get(key)
            ideal = None
            if c and s["completed"] and s["duration"] > 0 and peak > 0:
                out_per_req = s["total_output_tokens"] / s["completed"]
                waves = math.ceil(s["completed"] / conc)
                t_ideal = s["total_input_tokens"] * c.flops_per_token() / peak
                t_ideal += waves * out_per_req * step_seconds(c, min(conc, s["completed"]), bw, peak)
                ideal = t_ideal / s["duration"]
            tag = s.get("tag") or s.get("base_url")
            L.append(f"| {tag} | {conc} | {s['completed']}/{s['failed']} | {num(s['output_throughput'], 2)} | "
                     f"{pct(ideal)} | {s['median_ttft_ms']:.0f} / {s['p90_ttft_ms']:.0f} / {s['p99_ttft_ms']:.0f} | "
                     f"{s['median_itl_ms']:.1f} / {s['p90_itl_ms']:.1f} / {s['p99_itl_ms']:.1f} | "
                     f"{s['median_e2e_latency_ms']:.0f} |")
            series_tp.setdefault(tag, []).append((conc, s["output_throughput"]))
            lat_rows.setdefault(tag, []).append((conc, s))
        L.append("")

        # Charts.
        ideal_pts = []
        first = serve[0]
        c = costs.get(first.get("model_key"))
        if c and peak > 0:
            for conc in sorted({p[0] for pts in series_tp.values() for p in pts}):
                rows = [s for s in serve if (s.get("max_concurrency") or s["num_prompts"]) == conc
                        and s.get("model_key") == first.get("model_key") and s["completed"]]
                if not rows:
                    continue
                s = rows[0]
                out_per_req = s["total_output_tokens"] / s["completed"]
                in_per_req = s["total_input_tokens"] / s["completed"]
                n = min(conc, s["completed"])
                t = n * in_per_req * c.flops_per_token() / peak + out_per_req * step_seconds(c, n, bw, peak)
                ideal_pts.append((conc, n * out_per_req / t))
        tp_series = [Series(name, pts) for name, pts in series_tp.items()]
        if ideal_pts:
            tp_series.append(Series("ideal (roofline)", ideal_pts, colour="#888888", dash="4,4", marker="square"))
        sub = (f"{models.get(first.get('model_key'), {}).get('label', '')}; bandwidth {bw / 1e9:.1f} GB/s, "
               f"bf16 peak {peak / 1e9:.0f} GFLOP/s; {machine['date']}")
        line_chart(os.path.join(out_dir, "bench-throughput.svg"), "Output tokens/s vs concurrency",
                   "concurrent requests", "output tokens / s", tp_series, log_x=True, subtitle=sub)
        lat_series = []
        colours = {"TTFT": ["#9ecae1", "#3182bd", "#08519c"], "ITL": ["#fdae6b", "#e6550d", "#a63603"]}
        markers = ["circle", "square", "triangle"]
        tags = list(lat_rows)
        shown = tags[:1] + [t for t in tags[1:] if any(s.get("peer") for _, s in lat_rows[t])]
        for ti, tag in enumerate(shown):
            for metric, field in (("TTFT", "ttft"), ("ITL", "itl")):
                for pi, p in enumerate(("median", "p90", "p99")):
                    pts = [(conc, s[f"{p}_{field}_ms"]) for conc, s in lat_rows[tag]]
                    lat_series.append(Series(f"{tag} {metric} {'p50' if p == 'median' else p}", pts,
                                             colour=colours[metric][pi], dash="" if ti == 0 else "6,3",
                                             marker=markers[pi]))
        line_chart(os.path.join(out_dir, "bench-latency.svg"), "TTFT and ITL percentiles vs concurrency",
                   "concurrent requests", "milliseconds (log scale)", lat_series, log_x=True, log_y=True,
                   subtitle=sub, width=820)
        L += ["![output tokens/s vs concurrency](bench-throughput.svg)", "",
              "![TTFT and ITL p50/p90/p99 vs concurrency](bench-latency.svg)", ""]

    # The race against llama.cpp (bench/race.py, with --peer-bin).
    rj = os.path.join(res_dir, "race.json")
    if os.path.exists(rj):
        with open(rj) as f:
            race = json.load(f)
        names = {"tg": "single-stream decode (llama-bench tg)", "pp": "prefill (llama-bench pp)",
                 "b32": "32 sequences, decode (llama-batched-bench S_TG)"}
        L += [f"### Against llama.cpp {race['peer_commit']} (`bench/race.py`, {race['rounds']} rounds, "
              f"A/B alternated, {race['threads']} threads)", "",
              "| model | measure | dpserve tok/s (median) | llama.cpp tok/s (median) | dpserve / llama.cpp: median (range) |",
              "|---|---|---:|---:|---:|"]
        for k, v in race["summary"].items():
            key, _, meas = k.partition("/")
            L.append(f"| {key} | {names.get(meas, meas)} | {v['dpserve_median']:.1f} | {v['peer_median']:.1f} | "
                     f"**{v['ratio_median']:.2f}** ({v['ratio_min']:.2f}-{v['ratio_max']:.2f}) |")
        ls, le = race["limits_start"], race["limits_end"]
        L += ["", f"Limits in the race's own run (start / end): read {ls['bandwidth_gb_s']:.1f} / "
              f"{le['bandwidth_gb_s']:.1f} GB/s, bf16 peak {ls['bf16_gflop_s']:.0f} / {le['bf16_gflop_s']:.0f} GFLOP/s; "
              f"load {' '.join(race['load_start'])} / {' '.join(race['load_end'])}.", ""]
        L += ["Race commands:", "", "```"] + sorted(set(race["commands"].values())) + ["```", ""]

    L.append("Commands (from `bench/run-all`):")
    L.append("")
    L.append("```")
    L += machine.get("commands", [])
    L.append("```")
    L += ["", END]
    section = "\n".join(L) + "\n"

    text = open(out_md).read() if os.path.exists(out_md) else "# Benchmarks\n"
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        text = pre + section.rstrip("\n") + post
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(out_md, "w") as f:
        f.write(text)
    print(f"run_all_report: wrote {out_md} and charts in {out_dir}")


if __name__ == "__main__":
    main()
