"""/metrics against a running server (run by run_e2e.sh: DPSERVE_URL), read with the independent
format checker prom_text.py: the text is valid exposition format before, during and after load, and the
numbers are the ones the clients were told.
  * after completions and /generate calls, the token counters (dpserve_*, dpserve_http_* and sglang:*)
    grew by exactly the usage the answers reported, and the request and latency counts by the number
    of choices; a 400 counts under its route and status;
  * a max_tokens 0 request (echo, prompt scoring as lm-eval-harness sends) generates no token: usage
    says 0, and so must dpserve_generation_tokens_total and sglang:generation_tokens_total (SGLang's
    counter counts the output tokens of finished requests; the engine's dropped token used to count);
  * n = 2 counts its prompt once in dpserve_http_prompt_tokens_total, as usage does;
  * a client that disconnects mid-stream ends one choice; scraping concurrently with generation never
    fails, never sees a counter go down, and running / queued / in-flight gauges return to 0 after;
  * sglang:gen_throughput (plotted by SGLang's Grafana dashboard) is above 0 right after generation and 0
    once nothing was generated for longer than its 5 s window;
  * with several DP groups (DP_GROUPS), every per-group family has one series per dp_rank;
  * SGLang's /get_load (sgl-router polls it) has one entry per dp_rank, consistent counts, all 0 when
    idle, and shows the request and its tokens while a stream runs.
"""
import http.client
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prom_text  # noqa: E402

host, port = os.environ["DPSERVE_URL"].rsplit("//", 1)[1].split(":")
port = int(port)
groups = int(os.environ.get("DP_GROUPS", "1"))
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def request(method, path, body=None, timeout=120):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=None if body is None else json.dumps(body),
                  headers={"Content-Type": "application/json"} if body is not None else {})
        r = c.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw), r.getheader("Content-Type")
        except ValueError:
            return r.status, raw.decode(errors="replace"), r.getheader("Content-Type")
    finally:
        c.close()


def scrape(where):
    status, text, ctype = request("GET", "/metrics")
    if status != 200:
        check(False, f"{where}: /metrics answered {status}")
        return {}
    fams, errors = prom_text.parse(text)
    check(not errors, f"{where}: exposition format ({len(fams)} families) {errors[:4]}")
    check(ctype is not None and ctype.startswith("text/plain") and "version=0.0.4" in ctype,
          f"{where}: Content-Type {ctype!r}")
    return fams


V = prom_text.value


def grew(before, after, name, want, **labels):
    got = V(after, name, **labels) - V(before, name, **labels)
    check(got == want, f"{name}{labels or ''} grew by {got:g}, want {want}")


# The checker itself refuses what the format forbids (else a lenient checker would pass anything).
for bad in ['# TYPE a_total counter\na_total 1\n# TYPE b gauge\nb 1\na_total 2\n',  # family split in two
            '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
            '# HELP g x\n# TYPE g gauge\ng{l="a\\qb"} 1\n',  # an escape the format does not have
            '# HELP c x\n# TYPE c counter\nc 1\n',  # a counter not named *_total
            '# HELP g x\n# TYPE g gauge\ng 1\ng 2\n']:  # the same series twice
    check(prom_text.parse(bad)[1] != [], f"the checker rejects {bad!r}")

m0 = scrape("idle")
for fam in ["dpserve_num_running_reqs", "dpserve_num_queue_reqs", "dpserve_kv_pages_used",
            "sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage", "sglang:cache_hit_rate",
            "sglang:gen_throughput"]:
    ranks = sorted(s[1].get("dp_rank") for s in m0.get(fam, {"samples": []})["samples"])
    check(ranks == [str(g) for g in range(groups)], f"{fam}: dp_rank series {ranks}, want 0..{groups - 1}")

# Known work: every token count comes from the answers' usage.
prompt = completion = choices = 0
for i in range(3):
    st, b, _ = request("POST", "/v1/completions", {"prompt": "Once upon a time" + " there" * i, "max_tokens": 3 + i,
                                                   "temperature": 0})
    check(st == 200, f"/v1/completions {i}: {st}")
    prompt += b["usage"]["prompt_tokens"]
    completion += b["usage"]["completion_tokens"]
    choices += 1
st, b, _ = request("POST", "/generate", {"text": "Lily went to", "sampling_params": {"max_new_tokens": 4,
                                                                                     "temperature": 0}})
check(st == 200, f"/generate: {st}")
prompt += b["meta_info"]["prompt_tokens"]
completion += b["meta_info"]["completion_tokens"]
choices += 1
st, _, _ = request("POST", "/v1/completions", {"prompt": "x", "max_tokens": -1})
check(st == 400, f"max_tokens -1: {st}")
# dpserve_http_requests_total is counted by the access logger, which runs once the answer is written:
# a scrape sent the moment an answer arrives may come before it. Wait (bounded) for the last request's.
deadline = time.time() + 5
while True:
    m1 = scrape("after known work")
    req = "dpserve_http_requests_total"
    logged = [V(m1, req, route=r, status=c) > V(m0, req, route=r, status=c)
              for r, c in [("/v1/completions", "400"), ("/generate", "200")]]
    if all(logged) or time.time() > deadline:
        break
    time.sleep(0.05)
for name in ["dpserve_prompt_tokens_total", "dpserve_http_prompt_tokens_total", "sglang:prompt_tokens_total"]:
    grew(m0, m1, name, prompt)
for name in ["dpserve_generation_tokens_total", "dpserve_http_completion_tokens_total",
             "sglang:generation_tokens_total"]:
    grew(m0, m1, name, completion)
for name in ["dpserve_engine_requests_finished_total", "sglang:num_requests_total",
             "dpserve_e2e_request_latency_seconds_count", "sglang:e2e_request_latency_seconds_count",
             "dpserve_time_to_first_token_seconds_count", "sglang:time_to_first_token_seconds_count"]:
    grew(m0, m1, name, choices)
grew(m0, m1, "dpserve_finished_choices_total", choices)
# Per-group series add up to the whole: every prompt was looked up once in its group's prefix cache.
grew(m0, m1, "dpserve_prefix_cache_query_tokens_total", prompt)
grew(m0, m1, "dpserve_http_requests_total", 1, route="/v1/completions", status="400")
grew(m0, m1, "dpserve_http_requests_total", 1, route="/generate", status="200")

# max_tokens 0 (echo): the prompt is read, nothing is generated.
for path, body in [("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 0, "echo": True, "logprobs": 1}),
                   ("/generate", {"text": "Once upon a time", "sampling_params": {"max_new_tokens": 0}})]:
    a = scrape(f"before {path} max 0")
    st, b, _ = request("POST", path, body)
    check(st == 200, f"{path} max 0: {st}")
    usage = b["usage"] if "usage" in b else b["meta_info"]
    check(usage["completion_tokens"] == 0, f"{path} max 0: usage completion_tokens {usage['completion_tokens']}")
    c = scrape(f"after {path} max 0")
    for name in ["dpserve_generation_tokens_total", "sglang:generation_tokens_total",
                 "dpserve_http_completion_tokens_total"]:
        grew(a, c, name, 0)
    for name in ["dpserve_prompt_tokens_total", "sglang:prompt_tokens_total", "dpserve_http_prompt_tokens_total"]:
        grew(a, c, name, usage["prompt_tokens"])

# n = 2: usage counts the prompt once; so does the HTTP counter. The engine ran it twice (as SGLang counts).
a = scrape("before n 2")
st, b, _ = request("POST", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 3, "n": 2,
                                               "temperature": 0})
check(st == 200, f"n 2: {st}")
c = scrape("after n 2")
grew(a, c, "dpserve_http_prompt_tokens_total", b["usage"]["prompt_tokens"])
grew(a, c, "dpserve_http_completion_tokens_total", b["usage"]["completion_tokens"])
grew(a, c, "dpserve_prompt_tokens_total", 2 * b["usage"]["prompt_tokens"])
grew(a, c, "dpserve_engine_requests_finished_total", 2)

# A stream the client walks away from: one choice ends (abort, or length if it was quicker).
a = scrape("before disconnect")
s = socket.create_connection((host, port), timeout=60)
payload = json.dumps({"prompt": "Once", "max_tokens": 200, "stream": True, "temperature": 0})
s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          f"Content-Length: {len(payload)}\r\n\r\n{payload}".encode())
check(s.recv(4096).startswith(b"HTTP/1.1 200"), "stream started")
s.close()

# Load with a concurrent scraper: every scrape valid, no counter ever lower than the one before.
stop = threading.Event()
problems = []
scrapes = [0]


def scraper():
    last = {}
    while not stop.is_set():
        try:
            st, text, _ = request("GET", "/metrics", timeout=60)
        except OSError as e:
            problems.append(f"scrape failed: {e!r}")
            continue
        fams, errors = prom_text.parse(text) if st == 200 else ({}, [f"status {st}"])
        problems.extend(errors[:3])
        scrapes[0] += 1
        for fam in fams.values():
            if fam["type"] not in ("counter", "histogram"):
                continue
            for name, labels, v in fam["samples"]:
                key = (name, tuple(sorted(labels.items())))
                if key in last and v < last[key]:
                    problems.append(f"{key} went down {last[key]} -> {v}")
                last[key] = v


def load(i):
    st, _, _ = request("POST", "/v1/completions", {"prompt": "Tim and Sue", "max_tokens": 24, "n": 2,
                                                   "temperature": 0.8, "seed": i})
    if st != 200:
        problems.append(f"load request {i}: {st}")


th = threading.Thread(target=scraper)
th.start()
workers = [threading.Thread(target=load, args=(i,)) for i in range(6)]
for w in workers:
    w.start()
for w in workers:
    w.join(timeout=300)
stop.set()
# sglang:gen_throughput (SGLang's dashboard plots it): tokens generated over the last 5 s, so non-zero
# right after tokens were made (a value, not a speed: any rate above 0 passes).
just_after = scrape("right after load")
check(V(just_after, "sglang:gen_throughput") > 0,
      f"sglang:gen_throughput right after load: {V(just_after, 'sglang:gen_throughput')}")
th.join(timeout=120)
check(not problems and scrapes[0] > 0, f"{scrapes[0]} scrapes under load: {problems[:4]}")

# Idle again: the gauges come back to 0 (the engine reports at its next step; allow it a few seconds).
IDLE = ["dpserve_num_running_reqs", "dpserve_num_queue_reqs", "sglang:num_running_reqs", "sglang:num_queue_reqs",
        "dpserve_http_requests_inflight", "dpserve_http_sequences_inflight", "dpserve_http_tokens_inflight",
        "sglang:num_used_tokens"]
deadline = time.time() + 30
while True:
    c = scrape("idle after load")
    busy = {n: V(c, n) for n in IDLE if V(c, n) != 0}
    if not busy or time.time() > deadline:
        break
    time.sleep(0.5)
check(not busy, f"idle gauges back to 0: {busy}")
# Nothing generated for longer than the window: the throughput reads 0 again.
time.sleep(6)
idle = scrape("idle past the throughput window")
check(V(idle, "sglang:gen_throughput") == 0, f"sglang:gen_throughput when idle: {V(idle, 'sglang:gen_throughput')}")
grew(a, c, "dpserve_finished_choices_total", 1 + 12)
grew(a, c, "dpserve_engine_requests_finished_total", 1 + 12)
for fam in ["dpserve_num_running_reqs", "sglang:num_running_reqs"]:
    check(len(c[fam]["samples"]) == groups, f"{fam}: {len(c[fam]['samples'])} series, want {groups}")



def get_load(where):
    st, loads, _ = request("GET", "/get_load", timeout=60)
    check(st == 200 and isinstance(loads, list), f"/get_load {where}: status {st}")
    if st != 200 or not isinstance(loads, list):
        return []
    check([x.get("dp_rank") for x in loads] == list(range(groups)), f"/get_load {where}: one entry per DP group: {loads}")
    counts = ("num_reqs", "num_waiting_reqs", "num_tokens", "num_pending_tokens")
    bad = [x for x in loads if not (all(isinstance(x.get(k), int) and x[k] >= 0 for k in counts) and
                                    x["num_waiting_reqs"] <= x["num_reqs"] and
                                    x["num_pending_tokens"] <= x["num_tokens"] and isinstance(x.get("ts_tic"), float))]
    check(not bad, f"/get_load {where}: counts and their bounds: {bad}")
    return [] if bad else loads


idle_loads = get_load("when idle")
check(all(x["num_reqs"] == 0 and x["num_tokens"] == 0 for x in idle_loads), f"/get_load when idle: all 0: {idle_loads}")
# While a long stream runs (its first bytes are out, so it is in a group), some group reports it and the
# KV positions it holds. The engine's figures are as of its last step: polled for a little while.
s = socket.create_connection((host, port), timeout=60)
payload = json.dumps({"prompt": "Once upon a time", "max_tokens": 400, "stream": True, "temperature": 0,
                      "ignore_eos": True})
s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          f"Content-Length: {len(payload)}\r\n\r\n{payload}".encode())
check(s.recv(4096).startswith(b"HTTP/1.1 200"), "the long stream started")
busy = []
for _ in range(50):
    busy = get_load("while a stream runs")
    if sum(x["num_reqs"] for x in busy) >= 1:
        break
    time.sleep(0.01)
check(sum(x["num_reqs"] for x in busy) == 1 and max((x["num_tokens"] for x in busy), default=0) >= 4,
      f"/get_load while one request streams: one request, its tokens held: {busy}")
s.close()

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("all ok")
