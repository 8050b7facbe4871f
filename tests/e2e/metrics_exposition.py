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
    idle, and shows the request and its tokens while a stream runs;
  * SGLang's /v1/loads (its supported load API) agrees with /get_load, /get_server_info and /metrics,
    derives its ratios from its counts as SGLang defines them, filters by dp_rank and include, speaks
    Prometheus text on request, and refuses bad parameters naming them.
"""
import datetime
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
def while_streaming(report, running):
    """Starts a long stream (its first bytes out, so it is in a group) and polls `report` a little while
    (the engine's figures are as of its last step) until `running` of it counts a request. Returns the
    last report and the open socket, to close when done."""
    s = socket.create_connection((host, port), timeout=60)
    payload = json.dumps({"prompt": "Once upon a time", "max_tokens": 400, "stream": True, "temperature": 0,
                          "ignore_eos": True})
    s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(payload)}\r\n\r\n{payload}".encode())
    check(s.recv(4096).startswith(b"HTTP/1.1 200"), "a long stream started")
    busy = []
    for _ in range(50):
        busy = report("while a stream runs")
        if sum(running(x) for x in busy) >= 1:
            break
        time.sleep(0.01)
    return busy, s


# While a long stream runs, some group reports it and the KV positions it holds.
busy, s = while_streaming(get_load, lambda x: x["num_reqs"])
check(sum(x["num_reqs"] for x in busy) == 1 and max((x["num_tokens"] for x in busy), default=0) >= 4,
      f"/get_load while one request streams: one request, its tokens held: {busy}")
s.close()


# /v1/loads. Its figures are the engine's as of its last step, like /get_load's; when idle they are still.
st, info, _ = request("GET", "/get_server_info")
CORE = ["dp_rank", "num_running_reqs", "num_waiting_reqs", "num_waiting_uncached_tokens", "num_used_tokens",
        "num_total_tokens", "max_total_num_tokens", "max_running_requests", "token_usage", "gen_throughput",
        "cache_hit_rate", "utilization"]


def v1_loads(where, query=""):
    st, r, ctype = request("GET", "/v1/loads" + query, timeout=60)
    check(st == 200 and isinstance(r, dict) and ctype.startswith("application/json"), f"/v1/loads{query} {where}: {st}")
    if st != 200 or not isinstance(r, dict):
        return []
    stamp = datetime.datetime.fromisoformat(r["timestamp"])
    check(stamp.utcoffset() == datetime.timedelta(0) and
          abs((stamp - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) < 600,
          f"/v1/loads {where}: timestamp {r['timestamp']} is now, in UTC")
    check(r["version"] == info["version"] and r["accelerator"] is None and r["num_accelerators"] == 0,
          f"/v1/loads {where}: version / accelerator fields {[r.get(k) for k in ('version', 'accelerator')]}")
    for x in r["loads"]:
        check(all(k in x for k in CORE), f"/v1/loads {where}: core fields {sorted(x)}")
        cap, used = x["max_total_num_tokens"], x["num_used_tokens"]
        check(cap == info["max_total_num_tokens"] and x["max_running_requests"] == info["max_running_requests"],
              f"/v1/loads {where}: capacity {cap} and max_running_requests as /get_server_info says")
        check(x["num_total_tokens"] == used + x["num_waiting_uncached_tokens"] and
              x["token_usage"] == round(used / cap, 4) and
              abs(x["utilization"] - max(x["num_running_reqs"] / x["max_running_requests"], used / cap / 0.9)) < 1e-4,
              f"/v1/loads {where}: totals and ratios from the counts: {x}")
    return r["loads"]


# (The stream above was closed by its client; the server stops it at its next write: polled, bounded.)
deadline = time.time() + 20
while True:
    idle = v1_loads("when idle")
    zero = all(x["num_running_reqs"] == x["num_waiting_reqs"] == x["num_used_tokens"] == 0 for x in idle)
    if zero or time.time() > deadline:
        break
    time.sleep(0.05)
check([x["dp_rank"] for x in idle] == list(range(groups)), f"/v1/loads: one entry per DP group: {idle}")
check(zero, f"/v1/loads when idle: all 0: {idle}")
m_idle = scrape("beside /v1/loads")
for x in idle:
    r = str(x["dp_rank"])
    check(x["cache_hit_rate"] == round(V(m_idle, "sglang:cache_hit_rate", dp_rank=r), 4),
          f"/v1/loads cache_hit_rate {x['cache_hit_rate']} is /metrics' sglang:cache_hit_rate for dp_rank {r}")
    mem = x.get("memory", {})
    check(mem.get("token_capacity") == x["max_total_num_tokens"] and mem.get("kv_cache_gb", 0) > 0 and
          mem.get("weight_gb", 0) > 0, f"/v1/loads memory section: {mem}")
    check(x.get("disaggregation", {}).get("mode") == "null", f"/v1/loads disaggregation section: {x}")
check(all("memory" not in x and "disaggregation" not in x for x in v1_loads("with include=core", "?include=core")),
      "/v1/loads?include=core: the core fields only")
only_mem = v1_loads("with include=memory", "?include=memory")
check(all("memory" in x and "disaggregation" not in x for x in only_mem), f"/v1/loads?include=memory: {only_mem}")
one = v1_loads("for one group", f"?dp_rank={groups - 1}")
check([x["dp_rank"] for x in one] == [groups - 1], f"/v1/loads?dp_rank={groups - 1}: {one}")
for query, param in [(f"?dp_rank={groups}", "dp_rank"), ("?dp_rank=x", "dp_rank"), ("?include=core,gpu", "include"),
                     ("?format=xml", "format"), ("?rank=0", "rank")]:
    st, body, _ = request("GET", "/v1/loads" + query)
    check(st == 400 and isinstance(body, dict) and body.get("error", {}).get("param") == param,
          f"/v1/loads{query}: a 400 naming {param}: {st} {body}")
st, text, ctype = request("GET", "/v1/loads?format=prometheus&include=core")
fams, errors = prom_text.parse(text) if st == 200 else ({}, ["status"])
check(st == 200 and not errors and ctype.startswith("text/plain"), f"/v1/loads?format=prometheus: {st} {errors[:3]}")
for x in idle:
    for k in ["num_running_reqs", "max_total_num_tokens", "token_usage"]:
        check(V(fams, "sglang_" + k, dp_rank=str(x["dp_rank"])) == x[k], f"/v1/loads prometheus sglang_{k} is the JSON's")

# While a stream runs, the group running it reports it, its KV tokens and the ratios they give.
busy, s = while_streaming(v1_loads, lambda x: x["num_running_reqs"])
check(sum(x["num_running_reqs"] for x in busy) == 1 and max((x["num_used_tokens"] for x in busy), default=0) >= 4 and
      max((x["utilization"] for x in busy), default=0) > 0,
      f"/v1/loads while one request streams: one request, its tokens held: {busy}")
s.close()

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("all ok")
