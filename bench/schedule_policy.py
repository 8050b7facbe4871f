#!/usr/bin/python3
"""--schedule-policy fcfs vs lpm on a shared-prefix workload, each against a real `dpserve serve`.

G groups of R requests share a P-token prefix per group (each request adds S tokens of its own);
they are sent all at once, interleaved (g0 r0, g1 r0, ..., g0 r1, ...), to a server with few
running slots and a KV pool that holds only a couple of prefixes, so whether a group's prefix is
still in the radix tree when its next member is admitted depends on the admission order. Reported
per policy: the prompt tokens served from the prefix cache (meta_info.cached_tokens) over all
prompt tokens, and the prompt tokens the server had to compute; the wall time is printed too, for
information only (it is this machine's, under whatever else runs).

  bench/schedule_policy.py --dpserve build/bin/dpserve --model-path build/constrain_models/qwen3-tiny
Needs only the Python standard library (and tools/serve_process.py).
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402


def post(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    c.request("POST", "/generate", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = json.loads(r.read())
    c.close()
    if r.status != 200:
        raise RuntimeError(out)
    return out


def run(args, policy, prompts):
    try:
        srv = ServeProcess(args.dpserve, "--model-path", args.model_path, "--skip-tokenizer-init", "--schedule-policy",
                           policy, "--max-running-requests", args.running, "--max-total-tokens", args.kv_tokens,
                           "--threads", args.threads, quiet=True)
    except ServeError as e:
        raise RuntimeError(f"{policy}: {e}")
    port = srv.port
    try:
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
            futs = []
            for p in prompts:  # submitted in order, a few ms apart, so the arrival order is the list's
                futs.append(pool.submit(post, port, {"input_ids": p, "sampling_params":
                                                     {"max_new_tokens": args.new_tokens, "temperature": 0,
                                                      "ignore_eos": True}}))
                time.sleep(0.005)
            outs = [f.result() for f in futs]
        wall = time.time() - t0
    finally:
        srv.stop()
    prompt = sum(o["meta_info"]["prompt_tokens"] for o in outs)
    cached = sum(o["meta_info"]["cached_tokens"] for o in outs)
    return {"policy": policy, "prompt_tokens": prompt, "cached_tokens": cached, "computed_prompt_tokens": prompt - cached,
            "hit_rate": cached / prompt, "wall_s": round(wall, 2), "outputs": [o["output_ids"] for o in outs]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dpserve", required=True)
    ap.add_argument("--model-path", required=True)
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--per-group", type=int, default=4)
    ap.add_argument("--prefix", type=int, default=512)
    ap.add_argument("--suffix", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--running", type=int, default=2)
    ap.add_argument("--kv-tokens", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    prompts = []
    for r in range(a.per_group):
        for g in range(a.groups):
            prefix = [1000 + 37 * g + i for i in range(a.prefix)]
            prompts.append(prefix + [90000 + 100 * g + 10 * r + i for i in range(a.suffix)])
    res = [run(a, p, prompts) for p in ("fcfs", "lpm")]
    same = res[0]["outputs"] == res[1]["outputs"]  # prompt by prompt: the order changes nothing in them
    for r in res:
        r.pop("outputs")
        print(json.dumps(r))
    print(json.dumps({"outputs_identical": same}))


if __name__ == "__main__":
    main()
