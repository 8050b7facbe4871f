#!/usr/bin/python3
"""One large echo + logprobs + n request beside a small one, against the real `dpserve serve`
(run_e2e.sh starts it) over a real socket. Judged in engine steps and prefix-cache counters from
/metrics, never in wall-clock time.

What must hold (issue 36, "one request holds everyone up"):
  * the small request, sent while the large one runs, is served within a few engine steps: it is not
    queued behind the large request's n prompt recomputations (before: n x prompt rows of
    prompt-logprob work, ~110 rows a step over a 151936-entry vocabulary, ahead of it);
  * the large request's prompt is computed once: its other n - 1 choices find it in the prefix cache
    (the hit-token counters grow by at least (n - 1) x (prompt - one page)), in the same DP group
    under DP attention;
  * every choice still reports the prompt's logprobs, the same entries as a separate n = 1 request
    computes for itself (prompt-logprob requests take nothing from the cache), and greedy choices agree.
FAIR_PAGE: the server's --page-size (default 16).
"""
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request

URL = os.environ["DPSERVE_URL"]
PAGE = int(os.environ.get("FAIR_PAGE", "16"))
PROMPT_LEN, N, TOP = 1200, 12, 20
STEP_BOUND = 40  # steps the small request may take; the old scheduler needed > 100 here
failures = []


def check(cond, what):
    print(("ok:   " if cond else "FAIL: ") + what)
    if not cond:
        failures.append(what)


def post(path, body, timeout=600):
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def metrics():
    with urllib.request.urlopen(URL + "/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^(\w+)(\{[^}]*\})? (\S+)$', line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))  # summed over labels
    return out


# Ids 1000.. are ordinary tokens in both the Llama and the Qwen3 vocabularies used here.
prompt = [1000 + (i * 7919) % 20000 for i in range(PROMPT_LEN)]
large = {"prompt": prompt, "n": N, "echo": True, "logprobs": TOP, "max_tokens": 4, "temperature": 0}
small = {"prompt": [1001, 1002, 1003], "max_tokens": 2, "temperature": 0}

before = metrics()
result = {}


def run_large():
    result["large"] = post("/v1/completions", large)


t = threading.Thread(target=run_large)
t.start()
deadline = time.time() + 120
while time.time() < deadline and metrics().get("dpserve_num_running_reqs", 0) < 1:
    time.sleep(0.05)
m0 = metrics()
check(m0.get("dpserve_num_running_reqs", 0) >= 1, "the large request is running")
s0 = m0["dpserve_engine_steps_total"]
status, body = post("/v1/completions", small, timeout=300)
s1 = metrics()["dpserve_engine_steps_total"]
check(status == 200, f"small request: {status}")
large_running = t.is_alive()
print(f"small request served in {s1 - s0:.0f} engine steps (large request still running: {large_running})")
check(s1 - s0 <= STEP_BOUND, f"small request within {STEP_BOUND} steps beside the large one (took {s1 - s0:.0f})")
t.join(timeout=600)
check("large" in result and result["large"][0] == 200, f"large request: {result.get('large', ('none',))[0]}")
after = metrics()

hits = after.get("dpserve_prefix_cache_hit_tokens_total", 0) - before.get("dpserve_prefix_cache_hit_tokens_total", 0)
want_hits = (N - 1) * (PROMPT_LEN - PAGE)
check(hits >= want_hits, f"prompt computed once: {hits:.0f} prefix-cache hit tokens, want >= {want_hits}")

if "large" in result and result["large"][0] == 200:
    choices = sorted(result["large"][1]["choices"], key=lambda c: c["index"])
    check(len(choices) == N, f"{len(choices)} choices, want {N}")
    # A separate request computes the same prompt's logprobs itself.
    st, one = post("/v1/completions", dict(large, n=1))
    check(st == 200, f"n=1 reference request: {st}")
    ref = one["choices"][0]["logprobs"]
    for ch in choices:
        lp = ch["logprobs"]
        label = f"choice {ch['index']}"
        ok = len(lp["tokens"]) >= PROMPT_LEN and lp["tokens"][:PROMPT_LEN] == ref["tokens"][:PROMPT_LEN]
        check(ok, f"{label}: the prompt's {PROMPT_LEN} echoed tokens")
        if not ok:
            continue
        worst = 0.0
        for i in range(1, PROMPT_LEN):
            worst = max(worst, abs(lp["token_logprobs"][i] - ref["token_logprobs"][i]))
            if set(lp["top_logprobs"][i]) != set(ref["top_logprobs"][i]):
                worst = float("inf")
                break
        check(lp["token_logprobs"][0] is None, f"{label}: first prompt entry is null")
        check(worst <= 1e-4, f"{label}: prompt logprobs and alternatives as computed alone (max diff {worst:.2g})")
        check(ch["text"] == choices[0]["text"], f"{label}: greedy text equals choice 0's")

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
