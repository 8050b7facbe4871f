#!/usr/bin/python3
"""Long-context race: dpserve against llama.cpp at prompt depths of 8k-32k tokens, alternated.

Both engines load the same GGUF file. For every depth N and every KV setting, each round runs

  prefill   llama-bench -p N -n 0                    vs  dpserve bench offline -b 1, N in / G out
  decode    llama-bench -d N -p 0 -n G (prefill of   vs  the same dpserve run: decode tok/s, from the
            the N-token depth not timed)                 first output token to the last (prefill excluded)

with G = 32 generated tokens. One dpserve run gives both figures (its prefill time ends at the
first token, so what follows does not change it), so a round costs the peer two runs and dpserve
one. The order flips every round: [peer prefill, dpserve, peer decode], then [peer decode, dpserve,
peer prefill], so each ratio pairs two neighbouring runs and a drift in the shared machine's load
hits both engines alike. KV settings:

  default   each engine's default cache: llama.cpp f16, flash attention as llama-bench chooses
            (-fa's default, auto); dpserve --kv-cache-dtype auto (bf16 for a GGUF model)
  8bit      llama.cpp -ctk q8_0 -ctv q8_0 -fa 1; dpserve --kv-cache-dtype int8

Each engine keeps its own warm-up (llama-bench's repeats the whole N-token prompt before a prefill
test; bench offline runs one unmeasured batch of the same shape); --no-warmup turns both off, for
depths where one more prefill costs minutes.

  bench/longctx_race.py --gguf MODEL.gguf --peer-bin LLAMA_CPP/build/bin [--peer-commit SHA]
      [--dpserve build/bin/dpserve] [--depths 8192,32768] [--kv default,8bit] [--rounds 2]
      [--gen 32] [--threads 2] [--timeout 3600] [--no-warmup] [--wait-quiet SECONDS] [--quick]
      [--out longctx.json]

--quick: depth 512, 8 generated tokens, one round, both KV settings: checks every step in a few
minutes. --summarize FILE reprints a saved or stopped run's tables. Each run also records how many CPUs other processes kept busy meanwhile (/proc/stat less
the run's own CPU time): on a shared 2-core host a run beside a busy compiler is not comparable;
--wait-quiet S waits up to S seconds before each run for other processes to go below 0.3 CPUs.
Prints each round's tok/s and ratio (dpserve / llama.cpp) as it goes, then a table of every pair
and one of the median ratios, over all rounds and over the quiet pairs alone (both runs beside
less than 0.25 CPUs of other work), which is what the target column judges where there are any; --out gets every sample, command and load average as JSON, rewritten after each
pair so a run stopped early keeps what it measured. A run that fails or passes --timeout is
recorded with its command and the end of its output, and the race goes on without that pair.
Needs only the Python standard library; the peer is only run, never built.
"""
import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QUIET_CPUS = 0.25  # a pair whose runs both had other processes below this many CPUs counts as quiet
KV = {  # setting -> (llama-bench flags, dpserve --kv-cache-dtype)
    "default": ([], "auto"),
    "8bit": (["-ctk", "q8_0", "-ctv", "q8_0", "-fa", "1"], "int8"),
}


def log(msg):
    print(f"[longctx {time.strftime('%H:%M:%S', time.gmtime())}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def cpu_busy_s():
    """Seconds of CPU time the whole machine has spent busy (all CPUs, /proc/stat, idle and iowait excluded)."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait, threshold=0.3, window=3.0):
    """Waits (at most max_wait seconds) until other processes keep less than threshold CPUs busy over a
    window; returns the seconds waited and the last window's busy CPUs."""
    t0 = time.time()
    while True:
        b0 = cpu_busy_s()
        time.sleep(window)
        busy = (cpu_busy_s() - b0) / window
        if busy < threshold or time.time() - t0 >= max_wait:
            return time.time() - t0, busy


def run(cmd, timeout):
    """(stdout, seconds, others) of a run, or raises RuntimeError naming the command and why it failed.

    others: the CPUs other processes kept busy during the run, on average (the machine's busy time
    less the run's own user + sys time, over its wall time). Both engines' threads wait for each
    other at every layer; a run whose others is near a whole CPU shared its cores, and an engine
    that spins at its barriers can lose far more than that share, so read such a pair with care."""
    t0, busy0 = time.time(), cpu_busy_s()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout} s: {shlex.join(cmd)}")
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {shlex.join(cmd)}\n{p.stdout[-1000:]}{p.stderr[-2000:]}")
    secs = time.time() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return p.stdout, secs, max(0.0, (cpu_busy_s() - busy0 - own) / secs)


def peer_cmd(a, measure, n, kv):
    cmd = [os.path.join(a.peer_bin, "llama-bench"), "-m", a.gguf, "-t", str(a.threads), "-r", "1", "-o", "json"]
    cmd += ["-p", str(n), "-n", "0"] if measure == "prefill" else ["-d", str(n), "-p", "0", "-n", str(a.gen)]
    return cmd + KV[kv][0] + (["--no-warmup"] if a.no_warmup else [])


def peer_value(out):
    t = json.loads(out)[0]
    return float(t["avg_ts"]), {k: t.get(k) for k in ("type_k", "type_v", "flash_attn", "n_batch", "n_ubatch")}


def ours_cmd(a, n, kv):
    return [a.dpserve, "bench", "offline", "--model-path", a.gguf, "-b", "1", "--input-len", str(n),
            "--output-len", str(a.gen), "--threads", str(a.threads), "--kv-cache-dtype", KV[kv][1],
            "--warmup-batches", "0" if a.no_warmup else "1", "--json"]


def ours_value(out):
    j = json.loads(out.strip().splitlines()[-1])
    return {"prefill": float(j["prefill_tok_s"]), "decode": float(j["decode_tok_s"]),
            "prefill_seconds": j["prefill_seconds"], "decode_seconds": j["decode_seconds"]}


def summarize(res):
    rows = []
    for n in res["depths"]:
        for kv in res["kv"]:
            for m in ("prefill", "decode"):
                s = [x for x in res["samples"] if x["depth"] == n and x["kv"] == kv and x["measure"] == m]
                if not s:
                    continue
                r = [x["ratio"] for x in s]
                q = [x["ratio"] for x in s if max(x["dpserve_others_cpus"], x["peer_others_cpus"]) < QUIET_CPUS]
                rows.append({"depth": n, "kv": kv, "measure": m, "rounds": len(s),
                             "quiet_rounds": len(q), "quiet_ratio_median": statistics.median(q) if q else None,
                             "ratio_median": statistics.median(r), "ratio_min": min(r), "ratio_max": max(r),
                             "dpserve_median": statistics.median(x["dpserve"] for x in s),
                             "peer_median": statistics.median(x["peer"] for x in s),
                             "others_cpus_max": max(max(x["dpserve_others_cpus"], x["peer_others_cpus"]) for x in s),
                             "target": res["target"],
                             "target_met": (statistics.median(q) if q else statistics.median(r)) >= res["target"]})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", help="the model both engines load")
    ap.add_argument("--peer-bin", help="llama.cpp's build/bin (with llama-bench)")
    ap.add_argument("--summarize", metavar="JSON", help="print the tables of a saved (or stopped) run's --out file")
    ap.add_argument("--peer-commit", default="unknown")
    ap.add_argument("--dpserve", default=os.path.join(HERE, "..", "build", "bin", "dpserve"))
    ap.add_argument("--depths", default="8192,32768", help="prompt depths N, comma-separated")
    ap.add_argument("--kv", default="default,8bit", help="KV settings: default, 8bit")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--gen", type=int, default=32, help="tokens generated at depth N")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds one engine run may take")
    ap.add_argument("--no-warmup", action="store_true", help="llama-bench --no-warmup, dpserve --warmup-batches 0")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="before each run, wait up to this long until other processes use < 0.3 CPUs")
    ap.add_argument("--target", type=float, default=2.5, help="ratio the table marks as met (issue 35: 2.5)")
    ap.add_argument("--quick", action="store_true", help="depth 512, 8 tokens, 1 round: checks every step works")
    ap.add_argument("--out", default="longctx.json")
    a = ap.parse_args()
    if a.summarize:
        sys.exit(report(json.load(open(a.summarize))))
    if not (a.gguf and a.peer_bin):
        ap.error("--gguf and --peer-bin are required (or --summarize FILE)")
    if a.quick:
        a.depths, a.gen, a.rounds = "512", 8, 1
    depths = [int(x) for x in a.depths.split(",")]
    kvs = a.kv.split(",")
    for k in kvs:
        if k not in KV:
            ap.error(f"--kv: unknown setting {k!r} ({', '.join(KV)})")
    if a.gen < 2:
        ap.error("--gen: at least 2 (dpserve's decode figure counts the tokens after the first)")
    for p in (a.gguf, a.dpserve, os.path.join(a.peer_bin, "llama-bench")):
        if not os.path.exists(p):
            ap.error(f"{p} does not exist")

    res = {"gguf": os.path.abspath(a.gguf), "peer_commit": a.peer_commit, "threads": a.threads, "gen": a.gen,
           "depths": depths, "kv": kvs, "rounds": a.rounds, "warmup": not a.no_warmup, "quick": a.quick,
           "wait_quiet": a.wait_quiet,
           "target": a.target, "start": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "load_start": loadavg(), "samples": [], "failures": [], "commands": {}, "peer_fields": {}}

    def save():
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)

    for r in range(a.rounds):
        for n in depths:
            for kv in kvs:
                order = ["peer:prefill", "dpserve", "peer:decode"]
                if r % 2 == 1:
                    order.reverse()
                got, secs, others = {}, {}, {}
                for who in order:
                    cmd = ours_cmd(a, n, kv) if who == "dpserve" else peer_cmd(a, who.split(":")[1], n, kv)
                    res["commands"][f"{n}/{kv}/{who}"] = shlex.join(cmd)
                    if a.wait_quiet > 0:
                        waited, busy = wait_quiet(a.wait_quiet)
                        if waited > 4:
                            log(f"waited {waited:.0f} s for a quiet machine (others {busy:.2f} CPUs)")
                    try:
                        out, secs[who], others[who] = run(cmd, a.timeout)
                        if who == "dpserve":
                            got[who] = ours_value(out)
                            msg = f"prefill {got[who]['prefill']:.1f} tok/s, decode {got[who]['decode']:.2f} tok/s"
                        else:
                            got[who], res["peer_fields"][f"{n}/{kv}/{who}"] = peer_value(out)
                            msg = f"{got[who]:.2f} tok/s"
                        log(f"round {r + 1} N={n} kv={kv} {who}: {msg} ({secs[who]:.0f} s, "
                            f"other processes {others[who]:.2f} CPUs)")
                    except (RuntimeError, ValueError, KeyError, IndexError) as e:
                        log(f"round {r + 1} N={n} kv={kv} {who} FAILED: {e}")
                        res["failures"].append({"round": r, "depth": n, "kv": kv, "who": who, "error": str(e),
                                                "load": loadavg()})
                        save()
                for m in ("prefill", "decode"):
                    if "dpserve" in got and f"peer:{m}" in got:
                        ours, peer = got["dpserve"][m], got[f"peer:{m}"]
                        res["samples"].append({
                            "round": r, "depth": n, "kv": kv, "measure": m, "dpserve": ours, "peer": peer,
                            "ratio": ours / peer, "dpserve_seconds": secs["dpserve"],
                            "peer_seconds": secs[f"peer:{m}"], "dpserve_others_cpus": others["dpserve"],
                            "peer_others_cpus": others[f"peer:{m}"], "load": loadavg()})
                        log(f"round {r + 1} N={n} kv={kv} {m}: dpserve / llama.cpp = {ours / peer:.2f}")
                save()
    res["end"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    res["load_end"] = loadavg()
    save()
    sys.exit(report(res, a.out))


def report(res, out=None):
    """Prints the summary as JSON and two tables (every pair; medians); writes it all into out if given."""
    res["summary"] = summarize(res)
    if out:
        with open(out, "w") as f:
            json.dump(res, f, indent=1)
    print(json.dumps({"summary": res["summary"], "failures": len(res["failures"])}))
    print(f"\n{os.path.basename(res['gguf'])}, {res['threads']} threads, {res['gen']} tokens decoded at depth, "
          f"{res['rounds']} round(s), {res['start']} - {res.get('end', '(stopped)')}, load "
          f"{' '.join(res['load_start'])} -> {' '.join(res.get('load_end', ['?']))}\n")
    print("| round | depth | KV | measure | dpserve tok/s | llama.cpp tok/s | dpserve / llama.cpp | "
          "other processes (CPUs) during dpserve / llama.cpp |")
    print("|---|---|---|---|---|---|---|---|")
    for x in res["samples"]:
        print(f"| {x['round'] + 1} | {x['depth']} | {x['kv']} | {x['measure']} | {x['dpserve']:.2f} | {x['peer']:.2f} | "
              f"{x['ratio']:.2f} | {x['dpserve_others_cpus']:.2f} / {x['peer_others_cpus']:.2f} |")
    t = res["target"]
    print(f"\n| depth | KV | measure | median ratio (rounds) | range | median of quiet pairs (rounds) | >= {t}x |")
    print("|---|---|---|---|---|---|---|")
    for s in res["summary"]:
        quiet = "-" if s["quiet_ratio_median"] is None else f"**{s['quiet_ratio_median']:.2f}** ({s['quiet_rounds']})"
        met = s["quiet_ratio_median"] if s["quiet_ratio_median"] is not None else s["ratio_median"]
        print(f"| {s['depth']} | {s['kv']} | {s['measure']} | {s['ratio_median']:.2f} ({s['rounds']}) | "
              f"{s['ratio_min']:.2f}-{s['ratio_max']:.2f} | {quiet} | {'yes' if met >= t else 'no'}"
              f"{'' if s['quiet_rounds'] else '*'} |")
    print(f"(quiet: both runs of the pair had other processes below {QUIET_CPUS} CPUs; the last column judges "
          "the quiet median where there is one; * = no quiet pair, judged on pairs that shared the CPUs)")
    for f in res["failures"]:
        print(f"FAILED round {f['round'] + 1} N={f['depth']} kv={f['kv']} {f['who']}: {f['error'].splitlines()[0]}")
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    main()
