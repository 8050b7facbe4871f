#!/usr/bin/python3
"""Speculative decoding over HTTP: two real `dpserve serve` processes on stories260K, one with
`--speculative-algorithm NGRAM` (or, with --standalone, a Q4_0 draft model), one without, asked the same things over real sockets
(with --nextn: a tiny DeepSeek-V3 with an MTP layer built to predict well, make_hf_model --nextn-echo,
drafting with --speculative-algorithm NEXTN). Every answer
must be the same, field by field (text, token ids, logprobs to the last bit, finish reasons, usage,
stop strings, max_tokens, n, seeded sampling, a regex constraint, streaming), while the speculating
server reports accepted drafts in /generate's meta_info and in /metrics.

usage: test_spec_server.py DPSERVE_BIN SHARED_DIR [--standalone | --nextn] [EXTRA SERVE FLAGS...]
"""
import json
import os
import re
import shutil
import sys
import subprocess
import tempfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402

BIN, SHARED = sys.argv[1:3]
EXTRA = [a for a in sys.argv[3:] if a not in ("--standalone", "--nextn")]
NEXTN = "--nextn" in sys.argv[3:]
MODEL = os.path.join(SHARED, "models/stories260K/stories260K.bin")
# Logs and generated models; removed when every check passed, kept (and named) for a failure.
tmp = tempfile.mkdtemp(prefix="spec-server-")
if NEXTN:
    MODEL = os.path.join(tmp, "v3-echo")
    subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                                                      "make_hf_model.py"),
                    "--arch", "deepseek_v3", "--dtype", "f32", "--seed", "7", "--max-position-embeddings", "1024",
                    "--num-nextn-predict-layers", "1", "--nextn-echo", "--tie-word-embeddings",
                    "--residual-out-scale", "0.05", "--out", MODEL, "--quiet"], check=True, timeout=120)
# --standalone: the speculating server drafts with a draft model (the target's own Q4_0 copy, so
# drafts are often but not always right) instead of NGRAM.
SPEC = (["--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path", MODEL,
         "--speculative-draft-model-quantization", "q4_0"] if "--standalone" in sys.argv[3:]
        else ["--speculative-algorithm", "NEXTN"] if NEXTN
        else ["--speculative-algorithm", "NGRAM"]) + ["--speculative-num-steps", "5"]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


class Server(ServeProcess):
    """The model on one thread with the run's flags; a failed start fails the test."""

    def __init__(self, args, log):
        try:
            super().__init__(BIN, "--model-path", MODEL, "--threads", "1", *EXTRA, *args, log=log, quiet=True)
        except ServeError as e:
            raise SystemExit(f"FAIL: server did not become healthy: {e}")

    def post(self, path, body, raw=False):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                data = r.read().decode()
                return r.status, (data if raw else json.loads(data))
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode())

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return r.read().decode()


def strip_volatile(x):
    """Ids, timestamps and latencies differ between any two answers; everything else must not."""
    if isinstance(x, dict):
        return {k: strip_volatile(v) for k, v in x.items()
                if k not in ("id", "created", "e2e_latency", "system_fingerprint") and not k.startswith("spec_")}
    if isinstance(x, list):
        return [strip_volatile(v) for v in x]
    return x


def sse_text(body):
    text, events = "", 0
    for line in body.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            ev = json.loads(line[6:])
            events += 1
            for c in ev.get("choices", []):
                text += c.get("text", "")
    return text, events


REP = "The dog ran to the park. The dog ran to the park. The dog ran to the park. The dog"
plain = Server([], os.path.join(tmp, "plain.log"))
spec = Server(SPEC, os.path.join(tmp, "spec.log"))
try:
    MODEL_NAME = json.loads(plain.get("/v1/models"))["data"][0]["id"]
    cases = [
        ("greedy with logprobs", "/v1/completions",
         {"model": MODEL_NAME, "prompt": REP, "max_tokens": 60, "temperature": 0, "logprobs": 3}),
        ("a story, greedy", "/v1/completions", {"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 80,
                                                 "temperature": 0}),

        ("stop string", "/v1/completions",
         {"model": MODEL_NAME, "prompt": REP, "max_tokens": 60, "temperature": 0, "stop": ["park. The"]}),
        ("stop string late", "/v1/completions",
         {"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 80, "temperature": 0, "stop": ["."]}),
        ("echo + logprobs", "/v1/completions",
         {"model": MODEL_NAME, "prompt": REP, "max_tokens": 20, "temperature": 0, "echo": True, "logprobs": 2}),
        ("n=3 seeded", "/v1/completions",
         {"model": MODEL_NAME, "prompt": REP, "max_tokens": 40, "temperature": 0.9, "seed": 4, "n": 3, "logprobs": 1}),
        ("penalties, top_p, seeded", "/v1/completions",
         {"model": MODEL_NAME, "prompt": REP, "max_tokens": 40, "temperature": 1.0, "top_p": 0.8, "seed": 12,
          "frequency_penalty": 0.3, "presence_penalty": 0.2}),
        ("logit_bias", "/v1/completions",
         {"model": MODEL_NAME, "prompt": REP, "max_tokens": 30, "temperature": 0, "logit_bias": {"300": 4.0, "13": -2.0}}),
        ("/generate regex", "/generate",
         {"text": REP, "sampling_params": {"max_new_tokens": 30, "temperature": 0, "regex": "( The dog ran)+"}}),
        ("/generate logprobs", "/generate",
         {"text": REP, "sampling_params": {"max_new_tokens": 40, "temperature": 0}, "return_logprob": True,
          "top_logprobs_num": 2}),
    ]
    for n in (1, 2, 3, 4, 7):
        cases.append((f"max_tokens {n}", "/v1/completions",
                      {"model": MODEL_NAME, "prompt": REP, "max_tokens": n, "temperature": 0}))
    for what, path, body in cases:
        a, b = plain.post(path, body), spec.post(path, body)
        check(a[0] == 200 and b[0] == 200, f"{what}: both answered 200 ({a[0]}, {b[0]})")
        same = strip_volatile(a[1]) == strip_volatile(b[1])
        check(same, f"{what}: the same answer with and without speculation")
        if not same:
            print(json.dumps(a[1])[:1500], "\n", json.dumps(b[1])[:1500])
    # min_new_tokens: a stop id that recurs in the repetitive output is masked in verified rows past the
    # first too, up to the minimum and no further.
    st, g = plain.post("/generate", {"text": REP, "sampling_params": {"max_new_tokens": 30, "temperature": 0}})
    stop = g["output_ids"][3] if st == 200 and len(g["output_ids"]) > 3 else 0
    body = {"text": REP, "return_logprob": True, "data_parallel_rank": 0,  # meta_info.dp_rank alike
            "sampling_params": {"max_new_tokens": 30, "temperature": 0, "min_new_tokens": 12, "stop_token_ids": [stop]}}
    a, b = plain.post("/generate", body), spec.post("/generate", body)
    check(a[0] == 200 and b[0] == 200 and a[1]["meta_info"]["completion_tokens"] >= 12
          and strip_volatile(a[1]) == strip_volatile(b[1]),
          f"min_new_tokens 12 with stop id {stop}: the same answer with and without speculation, >= 12 tokens "
          f"({a[0]}, {b[0]})")
    if strip_volatile(a[1]) != strip_volatile(b[1]):
        print(json.dumps(a[1])[:1500], "\n", json.dumps(b[1])[:1500])
    # max_tokens is honoured exactly though a chain would run past it.
    st, r = spec.post("/v1/completions", {"model": MODEL_NAME, "prompt": REP, "max_tokens": 3, "temperature": 0})
    check(r["usage"]["completion_tokens"] == 3 and r["choices"][0]["finish_reason"] == "length",
          f"max_tokens 3: 3 tokens, finish 'length' ({r['usage']}, {r['choices'][0]['finish_reason']})")
    # Seeded sampling, many seeds: the same tokens for each (the verified rows draw in order).
    diff = 0
    for seed in range(30):
        body = {"text": "Once upon a time", "sampling_params": {"max_new_tokens": 24, "temperature": 1.0, "seed": seed}}
        if plain.post("/generate", body)[1]["output_ids"] != spec.post("/generate", body)[1]["output_ids"]:
            diff += 1
    check(diff == 0, f"30 seeds: the same sampled tokens with and without speculation ({diff} differ)")
    # Streaming: the same text, the tokens of a verified chain arriving together.
    body = {"model": MODEL_NAME, "prompt": REP, "max_tokens": 60, "temperature": 0, "stream": True}
    ta, ea = sse_text(plain.post("/v1/completions", body, raw=True)[1])
    tb, eb = sse_text(spec.post("/v1/completions", body, raw=True)[1])
    check(ta == tb and ta, f"streaming: the same text ({len(ta)} chars; {ea} events without, {eb} with)")
    # What speculation did is visible: meta_info (SGLang's spec_verify_ct) and /metrics.
    st, g = spec.post("/generate", {"text": REP, "sampling_params": {"max_new_tokens": 60, "temperature": 0}})
    m = g["meta_info"]
    check(m.get("spec_verify_ct", 0) > 0 and 0 < m.get("spec_accepted_tokens", 0) <= m.get("spec_draft_tokens", 0),
          f"meta_info reports verification: {({k: v for k, v in m.items() if k.startswith('spec_')})}")
    st, g0 = plain.post("/generate", {"text": REP, "sampling_params": {"max_new_tokens": 60, "temperature": 0}})
    check("spec_verify_ct" not in g0["meta_info"], "no spec_ fields without speculation")
    info = json.loads(spec.get("/get_server_info"))
    want_algo = "STANDALONE" if "--standalone" in sys.argv[3:] else "NEXTN" if NEXTN else "NGRAM"
    check(info.get("speculative_algorithm") == want_algo and info.get("speculative_num_steps") == 5 and
          info.get("speculative_draft_model_path") == (MODEL if want_algo == "STANDALONE" else None),
          f"/get_server_info: {({k: v for k, v in info.items() if k.startswith('speculative_')})}")
    check(json.loads(plain.get("/get_server_info")).get("speculative_algorithm") is None,
          "/get_server_info without speculation: speculative_algorithm null")
    metrics = spec.get("/metrics")
    val = lambda name: float(re.search(rf"^{name} (\S+)$", metrics, re.M).group(1))
    drafted, acc, steps = val("dpserve_spec_draft_tokens_total"), val("dpserve_spec_accepted_tokens_total"), \
        val("dpserve_spec_verify_steps_total")
    check(0 < acc <= drafted and steps > 0, f"/metrics: {acc:.0f} of {drafted:.0f} drafted tokens accepted in {steps:.0f} verifications")
    check(abs(val("dpserve_spec_accept_length") - (1 + acc / steps)) < 1e-3, "/metrics: accept length = 1 + accepted / verifications")
    plain_drafted = re.search(r"^dpserve_spec_draft_tokens_total (\S+)$", plain.get("/metrics"), re.M)
    check(plain_drafted is not None and float(plain_drafted.group(1)) == 0, "/metrics without speculation: 0 drafts")
finally:
    plain.stop()
    spec.stop()

if "--standalone" in sys.argv[3:]:
    # A chain that reaches EOS with drafts taken past it: those are dropped from the output, and the
    # chain's tokens before them keep their alternatives and count as accepted (a self-move-assignment
    # once emptied their top_logprobs, and the dropped drafts counted). The model (a random Qwen3 whose
    # greedy text ends in EOS 13 tokens in, seed 9) drafts for itself, so its drafts run past its EOS.
    q3 = os.path.join(tmp, "q3-seed9")
    subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                                                      "make_hf_model.py"),
                    "--arch", "qwen3", "--dtype", "bf16", "--seed", "9", "--out", q3, "--quiet"], check=True, timeout=120)
    MODEL = q3
    body = {"prompt": "the cat sat on the mat. the cat sat on the mat. the cat sat on the mat. the cat",
            "max_tokens": 60, "temperature": 0, "logprobs": 3}
    answers = []
    for args in ([], ["--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path", q3,
                      "--speculative-num-steps", "8"]):
        srv = Server(args, os.path.join(tmp, f"q3-{len(args)}.log"))
        try:
            answers.append(strip_volatile(srv.post("/v1/completions", body)[1]))
            gen = srv.post("/generate", {"text": body["prompt"], "sampling_params": {"max_new_tokens": 60,
                                                                                     "temperature": 0}})[1]
        finally:
            srv.stop()
    a, b = answers
    check(a["choices"][0]["finish_reason"] == "stop", f"premise: the greedy text ends in EOS ({a['choices'][0]['finish_reason']})")
    check(a == b, "a chain past EOS: the same answer, top logprobs included "
          f"({[len(t) for t in a['choices'][0]['logprobs']['top_logprobs']]} vs "
          f"{[len(t) for t in b['choices'][0]['logprobs']['top_logprobs']]})")
    m = gen["meta_info"]
    check(m.get("spec_accepted_tokens", 0) <= m.get("completion_tokens", 0),
          f"a chain past EOS: accepted drafts count only output tokens ({m.get('spec_accepted_tokens')} accepted, "
          f"{m.get('completion_tokens')} tokens)")
if failures:
    print(f"{len(failures)} FAILED (servers' logs in {tmp})")
    sys.exit(1)
shutil.rmtree(tmp, ignore_errors=True)
print("PASS")
