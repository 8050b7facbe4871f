#!/usr/bin/python3
"""The engine race: dpserve against llama.cpp on the same random-weight models, alternated.

For every model (dense, MoE) and every measure, each round runs the peer and dpserve back to back
(the order flips every round, so a drift in the machine's load hits both alike) and keeps the
ratio of that pair; the machine's read bandwidth and bf16 peak are measured at the start and the
end of the run. Measures:

  tg   single-stream decode: llama-bench -n 128 (no prompt)   vs bench offline -b 1, 1 in / 128 out
  pp   prefill of 512 tokens: llama-bench -p 512              vs bench offline -b 1, 512 in / 1 out
  b32  32 sequences, 128 in / 64 out: llama-batched-bench     vs bench offline -b 32 (decode tok/s)

  bench/race.py --dpserve BIN --kernels-bench BIN --peer-bin DIR --peer-commit SHA \\
      --model dense=HF_DIR,GGUF --model moe=HF_DIR,GGUF [--rounds 3] [--threads 2] \\
      [--model q4_0=FILE.gguf,FILE.gguf] \\
      [--measures tg,pp,b32] [--quick] --out race.json

For tg on a dense model (no experts) it also prints the rate each engine streamed the weights:
tok/s x the bytes of the matrices a token reads (dpserve's start-up lines count them; the
embedding table gives one row), next to the read bandwidth of the same run. Single-stream decode
cannot go faster than that bandwidth allows, so this says how much room each engine leaves. (A
MoE token reads only its experts: no figure is printed for those.)

The peer is only run, never built; its GGUF files are the same weights as the HF folders
(docs/benchmarks.md says how they were written). Needs only the Python standard library.
"""
import argparse
import json
import os
import re
import shlex
import statistics
import struct
import subprocess
import sys
import time


def log(msg):
    print(f"[race {time.strftime('%H:%M:%S', time.gmtime())}] {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p.stdout, p.stderr, time.time() - t0


# dpserve's start-up lines, e.g. "weights: 155 matrices repacked (598.8 MB -> 598.8 MB, ...)" and
# "weights: 155 bf16 matrices repacked into 8-row groups in huge pages (2068.8 MB)": the MB after
# the arrow (or the only one) is what the matrices take in memory, which a decoded token reads once.
WEIGHT_LINE = re.compile(r"^weights: \d+ .*?\((?:[\d.]+ MB -> )?([\d.]+) MB")


def matrix_bytes(stderr):
    mb = [float(m.group(1)) for line in stderr.splitlines() if (m := WEIGHT_LINE.match(line))]
    return sum(mb) * 1e6 if mb else None


def gguf_expert_count(path):
    """The `<arch>.expert_count` of a GGUF file's metadata (0 when it has none)."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version, _n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported here")
        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

        def string():
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n).decode("utf-8", "replace")

        def value(t):
            if t in scalar:
                fmt = "<" + scalar[t]
                return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
            if t == 8:
                return string()
            if t == 9:
                et, n = struct.unpack("<IQ", f.read(12))
                if et in scalar:  # skipped whole: vocabularies hold ~10^5 entries
                    f.seek(n * struct.calcsize("<" + scalar[et]), 1)
                    return None
                for _ in range(n):
                    value(et)
                return None
            raise ValueError(f"{path}: unknown GGUF value type {t}")

        for _ in range(n_kv):
            key = string()
            (t,) = struct.unpack("<I", f.read(4))
            v = value(t)
            if key.endswith(".expert_count"):
                return int(v)
    return 0


def has_experts(path):
    """Whether the model behind dpserve's --model-path (an HF folder or a GGUF file) is a MoE."""
    if path.endswith(".gguf"):
        return gguf_expert_count(path) > 0
    cfg = json.load(open(os.path.join(path, "config.json")))
    cfg = cfg.get("text_config", cfg)
    return any(cfg.get(k) for k in ("num_experts", "num_local_experts", "n_routed_experts"))


def limits(kb):
    out, _, _ = run([kb, "--benchmark_filter=BM_ReadBandwidth|BM_Bf16Peak", "--benchmark_format=json"], 600)
    j = json.loads(out)
    get = lambda n, k: next((b[k] for b in j["benchmarks"] if b["name"].startswith(n) and k in b), 0.0)
    return {"bandwidth_gb_s": get("BM_ReadBandwidth", "GB/s"), "bf16_gflop_s": get("BM_Bf16Peak", "GFLOP/s")}


def peer_cmd(a, measure, gguf, quick):
    t = str(a.threads)
    if measure == "tg":
        return [os.path.join(a.peer_bin, "llama-bench"), "-m", gguf, "-p", "0", "-n", "32" if quick else "128",
                "-t", t, "-r", "1", "-o", "json"]
    if measure == "pp":
        return [os.path.join(a.peer_bin, "llama-bench"), "-m", gguf, "-p", "128" if quick else "512", "-n", "0",
                "-t", t, "-r", "1", "-o", "json"]
    npl, npp, ntg = (8, 32, 16) if quick else (32, 128, 64)
    return [os.path.join(a.peer_bin, "llama-batched-bench"), "-m", gguf, "-c", str(npl * (npp + ntg) + 64),
            "-b", "2048", "-ub", "512", "-npp", str(npp), "-ntg", str(ntg), "-npl", str(npl), "-t", t,
            "--output-format", "jsonl"]


def peer_value(measure, out):
    if measure in ("tg", "pp"):
        return float(json.loads(out)[0]["avg_ts"])
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{") and "speed_tg" in line:
            return float(json.loads(line)["speed_tg"])
    raise RuntimeError("llama-batched-bench printed no jsonl result line")


def ours_cmd(a, measure, hf, quick):
    if measure == "tg":
        b, i, o = 1, 1, 32 if quick else 128
    elif measure == "pp":
        b, i, o = 1, 128 if quick else 512, 1
    else:
        b, i, o = (8, 32, 16) if quick else (32, 128, 64)
    chunk = b * i
    return [a.dpserve, "bench", "offline", "--model-path", hf, "--batch-size", str(b), "--input-len", str(i),
            "--output-len", str(o), "--threads", str(a.threads), "--chunked-prefill-size", str(chunk),
            "--max-prefill-tokens", str(chunk + b), "--json"]


def ours_value(measure, out):
    j = json.loads(out.strip().splitlines()[-1])
    return float(j["prefill_tok_s"] if measure == "pp" else j["decode_tok_s"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dpserve", required=True)
    ap.add_argument("--kernels-bench", required=True)
    ap.add_argument("--peer-bin", required=True, help="folder with llama-bench and llama-batched-bench")
    ap.add_argument("--peer-commit", default="unknown")
    ap.add_argument("--model", action="append", required=True, help="KEY=HF_DIR,GGUF (or KEY=GGUF,GGUF: dpserve loads the same file)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--measures", default="tg,pp,b32")
    ap.add_argument("--quick", action="store_true", help="small sizes: checks every step works")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    models = {}
    for m in a.model:
        key, _, paths = m.partition("=")
        hf, _, gguf = paths.partition(",")
        if not (key and hf and gguf):
            ap.error(f"--model {m!r}: expected KEY=HF_DIR,GGUF")
        # dpserve's side is an HF folder or a GGUF file (quantized races run both on one file).
        ours = hf if hf.endswith(".gguf") else os.path.join(hf, "config.json")
        for p in (ours, gguf):
            if not os.path.exists(p):
                ap.error(f"--model {key}: {p} does not exist")
        models[key] = (hf, gguf)
    measures = a.measures.split(",")
    for m in measures:
        if m not in ("tg", "pp", "b32"):
            ap.error(f"--measures: unknown measure {m!r} (tg, pp, b32)")

    res = {"peer_commit": a.peer_commit, "threads": a.threads, "quick": a.quick, "rounds": a.rounds,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_start": open("/proc/loadavg").read().split()[:3], "samples": [], "commands": {}}
    def save():  # after every sample: a run stopped early keeps what it measured
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)

    moe = {key: has_experts(hf) for key, (hf, _) in models.items()}
    token_bytes = {}  # key -> bytes a decoded token reads (dense models, from dpserve's start-up lines)
    log("machine limits (start)")
    res["limits_start"] = limits(a.kernels_bench)
    log(f"read {res['limits_start']['bandwidth_gb_s']:.1f} GB/s, bf16 peak {res['limits_start']['bf16_gflop_s']:.0f} GFLOP/s")
    save()
    for r in range(a.rounds):
        for key, (hf, gguf) in models.items():
            for m in measures:
                pair = [("peer", peer_cmd(a, m, gguf, a.quick), peer_value),
                        ("dpserve", ours_cmd(a, m, hf, a.quick), ours_value)]
                if r % 2 == 1:
                    pair.reverse()
                vals = {}
                for who, cmd, parse in pair:
                    out, err, secs = run(cmd, 3600)
                    vals[who] = parse(m, out)
                    res["commands"][f"{key}/{m}/{who}"] = shlex.join(cmd)
                    log(f"round {r + 1} {key} {m} {who}: {vals[who]:.2f} tok/s ({secs:.0f} s)")
                    if who == "dpserve" and m == "tg" and key not in token_bytes and not moe[key]:
                        token_bytes[key] = matrix_bytes(err)
                sample = {"round": r, "model": key, "measure": m, "peer": vals["peer"],
                          "dpserve": vals["dpserve"], "ratio": vals["dpserve"] / vals["peer"],
                          "load": open("/proc/loadavg").read().split()[:3]}
                if m == "tg" and token_bytes.get(key):
                    sample["bytes_per_token"] = token_bytes[key]
                    sample["peer_gb_s"] = vals["peer"] * token_bytes[key] / 1e9
                    sample["dpserve_gb_s"] = vals["dpserve"] * token_bytes[key] / 1e9
                res["samples"].append(sample)
                save()
    log("machine limits (end)")
    res["limits_end"] = limits(a.kernels_bench)
    res["load_end"] = open("/proc/loadavg").read().split()[:3]
    summary = {}
    for key in models:
        for m in measures:
            s = [x for x in res["samples"] if x["model"] == key and x["measure"] == m]
            summary[f"{key}/{m}"] = {
                "ratio_median": statistics.median(x["ratio"] for x in s),
                "ratio_min": min(x["ratio"] for x in s), "ratio_max": max(x["ratio"] for x in s),
                "peer_best": max(x["peer"] for x in s), "dpserve_best": max(x["dpserve"] for x in s),
                "peer_median": statistics.median(x["peer"] for x in s),
                "dpserve_median": statistics.median(x["dpserve"] for x in s)}
            if all("bytes_per_token" in x for x in s):
                summary[f"{key}/{m}"].update(
                    bytes_per_token=s[0]["bytes_per_token"],
                    peer_gb_s=[min(x["peer_gb_s"] for x in s), max(x["peer_gb_s"] for x in s)],
                    dpserve_gb_s=[min(x["dpserve_gb_s"] for x in s), max(x["dpserve_gb_s"] for x in s)])
    res["summary"] = summary
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    for k, v in summary.items():
        print(f"{k:12s} dpserve/peer median {v['ratio_median']:.2f} (range {v['ratio_min']:.2f}-{v['ratio_max']:.2f}); "
              f"best dpserve {v['dpserve_best']:.1f} peer {v['peer_best']:.1f} tok/s")
    ls, le = res["limits_start"], res["limits_end"]
    print(f"limits: read {ls['bandwidth_gb_s']:.1f}/{le['bandwidth_gb_s']:.1f} GB/s, "
          f"bf16 peak {ls['bf16_gflop_s']:.0f}/{le['bf16_gflop_s']:.0f} GFLOP/s (start/end)")
    bw = [ls["bandwidth_gb_s"], le["bandwidth_gb_s"]]
    for k, v in summary.items():
        if "bytes_per_token" not in v:
            continue
        frac = lambda r: f"{r[0]:.1f}-{r[1]:.1f} GB/s ({100 * r[0] / max(bw):.0f}-{100 * r[1] / min(bw):.0f} % of read)"
        print(f"{k:12s} weights streamed ({v['bytes_per_token'] / 1e6:.1f} MB a token): "
              f"dpserve {frac(v['dpserve_gb_s'])}, peer {frac(v['peer_gb_s'])}")


if __name__ == "__main__":
    main()
