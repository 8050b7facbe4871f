#!/usr/bin/python3
"""SGLang's native /generate as SGLang's own clients speak it, against the real `dpserve serve`
(run_e2e.sh starts it: qwen3-tiny with the real Qwen3 tokenizer, --context-length 2048,
--max-running-requests 1) over a real socket.

The expected values come from SGLang's documented behaviour, not from dpserve's output:
  * the body SGLang's frontend (RuntimeEndpoint.generate) sends carries every sampling field at its
    default, and fields SGLang accepts but dpserve does not implement are a 400 naming them only when
    set to something else;
  * the EOS / stop_token_ids token that ends an answer stays in output_ids but its text is trimmed
    (SGLang's trim_matched_stop; vLLM does the same), unless no_stop_trim; a stop string likewise;
  * finish_reason objects: {"type": "stop", "matched": id}, {"type": "length", "length": max_new_tokens};
  * max_new_tokens: the default 128 shrinks to the context's room, null is the room, 0 the prompt alone;
  * input_token_logprobs start at logprob_start_len (default: the last prompt token) with a null first
    logprob; their values are the prompt logprobs /v1/completions' echo reports for the same prompt
    (e2e_echo_logprobs checks those against a NumPy forward);
  * a string rid names a batch's requests <rid>_0, <rid>_1 (SGLang's _normalize_rid);
  * an n > 1 request aborted while it waits (before its first token) ends every choice as abort;
  * /model_info's model_type is config.json's model_type;
  * without --random-seed, a request without a seed draws none of the small seeds' streams (SGLang
    picks a random seed at start).
"""
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

URL = os.environ["DPSERVE_URL"]
MODEL = os.environ.get("SGLANG_MODEL_DIR", "")
CONTEXT = 2048
EOS = 151645  # <|im_end|>, Qwen3's end of turn
failures = []


def check(cond, what):
    print(("ok:   " if cond else "FAIL: ") + what)
    if not cond:
        failures.append(what)


def call(path, body=None, method=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method or ("POST" if data else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read().decode()
        status = e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def gen(body, **kw):
    return call("/generate", body, **kw)


def detok(ids):
    s, b = call("/detokenize", {"tokens": ids, "skip_special_tokens": False})
    assert s == 200, b
    return b["text"]


def frontend_body():
    # What SGLang's frontend sends (lang/backend/runtime_endpoint.py, SglSamplingParams.to_srt_kwargs).
    body = {"text": "Hello there", "sampling_params": {
        "skip_special_tokens": True, "spaces_between_special_tokens": True, "max_new_tokens": 4,
        "min_new_tokens": 0, "n": 1, "stop": [], "stop_token_ids": [], "stop_regex": None, "temperature": 0,
        "top_p": 1.0, "top_k": -1, "min_p": 0.0, "frequency_penalty": 0.0, "presence_penalty": 0.0,
        "ignore_eos": False, "regex": None, "json_schema": None, "no_stop_trim": False,
        "structural_tag": None, "custom_params": None, "stream_interval": 1}}
    body.update({"return_logprob": True, "logprob_start_len": -1, "top_logprobs_num": 0,
                 "return_text_in_logprobs": False, "token_ids_logprob": None, "lora_path": None,
                 "custom_logit_processor": None, "return_hidden_states": False, "session_params": None,
                 "modalities": None, "priority": None, "log_metrics": True, "bootstrap_host": None,
                 "data_parallel_rank": None, "stream": False})
    return body


def test_unseeded_is_random():
    # Run first, on a fresh server. Without --random-seed a request without a seed must not draw the
    # stream of a small explicit seed (the k-th unseeded request of every run used to draw seed k's).
    body = {"input_ids": [11, 12, 13], "sampling_params": {"max_new_tokens": 12, "temperature": 1,
                                                           "ignore_eos": True}}
    s, free = gen(body)
    seeded = []
    for k in range(1, 9):
        s, b = gen(dict(body, sampling_params=dict(body["sampling_params"], seed=k)))
        seeded.append(b["output_ids"])
    check(free["output_ids"] not in seeded, "an unseeded request draws none of seeds 1..8's streams")
    s, again = gen(dict(body, sampling_params=dict(body["sampling_params"], seed=3)))
    check(again["output_ids"] == seeded[2], "a seeded request repeats")


def test_fields():
    s, b = gen(frontend_body())
    check(s == 200, f"the body SGLang's frontend sends is served (got {s} {str(b)[:200]})")
    refused = [("lora_path", "adapter-1", None), ("custom_logit_processor", "x", None),
               ("return_hidden_states", True, None), ("priority", 1, None),
               ("stream_interval", 4, "sampling_params")]
    for name, value, where in refused:
        body = {"text": "Hello", "sampling_params": {"max_new_tokens": 2}}
        (body[where] if where else body)[name] = value
        s, b = gen(body)
        param = b.get("error", {}).get("param") if isinstance(b, dict) else None
        check(s == 400 and param == name, f"{name}={value!r}: a 400 naming it (got {s} {param})")
    # A structural tag is served (structured_outputs.test.mjs checks its outputs); one without a format is not.
    s, b = gen({"text": "Hello", "sampling_params": {"max_new_tokens": 2, "structural_tag": "{}"}})
    param = b.get("error", {}).get("param") if isinstance(b, dict) else None
    check(s == 400 and param == "sampling_params.structural_tag" and "'format'" in b["error"]["message"],
          f"structural_tag '{{}}': a 400 naming it and the missing format (got {s} {b})")


def test_stop_token_trim():
    s, b = gen({"text": "Hello world", "sampling_params": {"max_new_tokens": 3, "temperature": 0,
                                                           "ignore_eos": True}})
    ids = b["output_ids"]
    stop = ids[1]
    k = ids.index(stop)
    s, b = gen({"text": "Hello world", "sampling_params": {"max_new_tokens": 3, "temperature": 0,
                                                           "stop_token_ids": [stop]}})
    check(b["output_ids"] == ids[:k + 1], "a stop_token_ids token stays in output_ids")
    check(b["text"] == detok(ids[:k]), f"... and its text is not in text ({b['text']!r})")
    check(b["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop},
          f"finish_reason names the matched token ({b['meta_info']['finish_reason']})")
    s, b = gen({"text": "Hello world", "sampling_params": {"max_new_tokens": 3, "temperature": 0,
                                                           "stop_token_ids": [stop], "no_stop_trim": True}})
    check(b["text"] == detok(ids[:k + 1]), "no_stop_trim keeps the stop token's text")
    # The OpenAI routes: SGLang's no_stop_trim and vLLM's include_stop_str_in_output, the same rule.
    for field in ("no_stop_trim", "include_stop_str_in_output"):
        s, c = call("/v1/completions", {"prompt": "Hello world", "max_tokens": 3, "temperature": 0,
                                        "stop_token_ids": [stop], field: True})
        check(s == 200 and c["choices"][0]["text"] == detok(ids[:k + 1]),
              f"/v1/completions {field} keeps the stop token's text ({str(c)[:200]})")
        s, c = call("/v1/completions", {"prompt": "Hello world", "max_tokens": 3, "temperature": 0,
                                        "stop_token_ids": [stop], field: False})
        check(s == 200 and c["choices"][0]["text"] == detok(ids[:k]), f"/v1/completions {field} false trims it")
        s, c = call("/v1/completions", {"prompt": "Hello world", "max_tokens": 3, field: "yes"})
        check(s == 400 and c.get("error", {}).get("param") == field, f"{field} not a boolean: 400 naming it ({s})")
    # EOS with special tokens shown: the text must not end in <|im_end|>, on every route.
    bias = {str(EOS): 100}
    s, b = gen({"text": "Hi", "sampling_params": {"max_new_tokens": 4, "logit_bias": bias,
                                                  "skip_special_tokens": False}})
    check(b["output_ids"] == [EOS] and b["text"] == "", f"EOS is not part of text ({b['text']!r})")
    check(b["meta_info"]["finish_reason"].get("matched") == EOS, "finish_reason.matched is the EOS id")
    s, c = call("/v1/completions", {"prompt": "Hi", "max_tokens": 4, "logit_bias": bias,
                                    "skip_special_tokens": False})
    check(s == 200 and c["choices"][0]["text"] == "" and c["choices"][0]["finish_reason"] == "stop",
          f"/v1/completions trims EOS too ({str(c)[:160]})")
    # A stop string: trimmed, or kept to its end with no_stop_trim.
    text = detok(ids[:2])
    if len(text.strip()) >= 2:
        stop_s = text.strip()[-2:]
        s, b = gen({"text": "Hello world", "sampling_params": {"max_new_tokens": 3, "temperature": 0,
                                                               "ignore_eos": True, "stop": [stop_s],
                                                               "no_stop_trim": True}})
        check(b["text"].endswith(stop_s) and b["meta_info"]["finish_reason"]["matched"] == stop_s,
              f"no_stop_trim keeps a stop string ({b['text']!r})")
        s, c = call("/v1/completions", {"prompt": "Hello world", "max_tokens": 3, "temperature": 0, "ignore_eos": True,
                                        "stop": [stop_s], "include_stop_str_in_output": True})
        check(s == 200 and c["choices"][0]["text"] == b["text"] and c["choices"][0]["finish_reason"] == "stop",
              f"/v1/completions include_stop_str_in_output keeps a stop string ({str(c)[:200]})")


def test_lengths():
    s, b = gen({"text": "Hello", "sampling_params": {"max_new_tokens": 3, "ignore_eos": True}})
    check(b["meta_info"]["finish_reason"] == {"type": "length", "length": 3}, "length names max_new_tokens")
    prompt = [1000 + i for i in range(CONTEXT - 48)]
    room = CONTEXT - len(prompt)
    for label, sp in (("absent", {}), ("null", {"max_new_tokens": None})):
        sp = dict(sp, ignore_eos=True)
        s, b = gen({"input_ids": prompt, "sampling_params": sp})
        got = b["meta_info"]["completion_tokens"] if s == 200 else (s, b)
        check(got == room, f"max_new_tokens {label} near the context: the room left, {room} (got {got})")
    s, b = gen({"input_ids": prompt, "sampling_params": {"max_new_tokens": 128}})
    check(s == 400 and b["error"]["param"] == "max_new_tokens", "a max_new_tokens given that does not fit: 400")
    s, b = gen({"input_ids": [1000 + i for i in range(100)], "sampling_params": {"max_new_tokens": None,
                                                                                "ignore_eos": True}})
    check(b["meta_info"]["completion_tokens"] == CONTEXT - 100, "max_new_tokens null is all the room, not 128")
    s, b = gen({"text": "Hello", "sampling_params": {"max_new_tokens": 0}})
    check(s == 200 and b["output_ids"] == [] and b["meta_info"]["finish_reason"]["type"] == "length",
          "max_new_tokens 0: the prompt alone")


def test_input_logprobs():
    text = "The quick brown fox jumps over the lazy dog"
    s, t = call("/tokenize", {"prompt": text})
    ids = t["tokens"]
    s, c = call("/v1/completions", {"prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 2})
    ref = c["choices"][0]["logprobs"]["token_logprobs"]
    s, b = gen({"input_ids": ids, "sampling_params": {"max_new_tokens": 0}, "return_logprob": True,
                "logprob_start_len": 0, "top_logprobs_num": 2})
    inp = b["meta_info"]["input_token_logprobs"]
    check([e[1] for e in inp] == ids and inp[0][0] is None, "input_token_logprobs from 0: every prompt id, first null")
    check(all(abs(e[0] - r) < 1e-5 for e, r in zip(inp[1:], ref[1:])) and len(inp) == len(ref),
          "input logprobs equal /v1/completions' echo logprobs")
    check(len(b["meta_info"]["input_top_logprobs"]) == len(ids) and b["meta_info"]["input_top_logprobs"][0] is None
          and all(len(a) == 2 for a in b["meta_info"]["input_top_logprobs"][1:]), "input_top_logprobs, 2 each")
    s, b = gen({"input_ids": ids, "sampling_params": {"max_new_tokens": 0}, "return_logprob": True,
                "logprob_start_len": 3})
    inp = b["meta_info"]["input_token_logprobs"]
    check([e[1] for e in inp] == ids[3:] and inp[0][0] is None and abs(inp[1][0] - ref[4]) < 1e-5,
          "logprob_start_len 3: positions 3.. of the prompt")
    s, b = gen({"input_ids": ids, "sampling_params": {"max_new_tokens": 2, "temperature": 0},
                "return_logprob": True, "return_text_in_logprobs": True})
    inp, out = b["meta_info"]["input_token_logprobs"], b["meta_info"]["output_token_logprobs"]
    check(inp == [[None, ids[-1], detok([ids[-1]])]], f"by default only the last prompt token ({inp})")
    check([e[2] for e in out] == [detok([e[1]]) for e in out], "return_text_in_logprobs: each token's text")
    s, b = gen({"input_ids": ids, "return_logprob": True, "logprob_start_len": len(ids)})
    check(s == 400 and b["error"]["param"] == "logprob_start_len", "logprob_start_len past the prompt: 400")


def test_rid_and_routes():
    s, b = gen({"text": ["a", "b"], "rid": "batch", "sampling_params": {"max_new_tokens": 1}})
    check([x["meta_info"]["id"] for x in b] == ["batch_0", "batch_1"], "a string rid names a batch's requests")
    s, b = call("/generate", {"text": "Hello", "sampling_params": {"max_new_tokens": 1}}, method="PUT")
    check(s == 200 and "text" in b, "PUT /generate")
    s, m = call("/model_info")
    if MODEL:
        with open(os.path.join(MODEL, "config.json")) as f:
            want = json.load(f)["model_type"]
        check(s == 200 and m.get("model_type") == want, f"/model_info model_type is config.json's ({m.get('model_type')})")
    s, i = call("/server_info")
    check(s == 200 and i.get("max_total_num_tokens", 0) > 0, "/server_info has max_total_num_tokens")


def test_stream_latency():
    req = urllib.request.Request(URL + "/generate", data=json.dumps(
        {"text": "Hello", "stream": True, "sampling_params": {"max_new_tokens": 4, "ignore_eos": True}}).encode())
    events = []
    with urllib.request.urlopen(req, timeout=60) as r:
        for line in r:
            line = line.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    check(len(events) >= 2 and all("e2e_latency" not in e["meta_info"] for e in events[:-1])
          and "e2e_latency" in events[-1]["meta_info"], "e2e_latency only in the last streamed event")


def test_abort_waiting_n():
    # The one running slot is held by a long request, so the n = 4 request waits, tokenless, when it
    # is aborted: every choice must end as abort, none may run afterwards.
    results = {}

    def filler():
        results["filler"] = gen({"input_ids": [7, 8, 9], "rid": "filler",
                                 "sampling_params": {"max_new_tokens": CONTEXT - 3, "ignore_eos": True}})

    def multi():
        results["multi"] = gen({"input_ids": [11, 12, 13], "rid": "multi",
                                "sampling_params": {"n": 4, "max_new_tokens": 64, "ignore_eos": True,
                                                    "temperature": 1}})
    threads = [threading.Thread(target=filler)]
    threads[0].start()
    time.sleep(0.3)
    threads.append(threading.Thread(target=multi))
    threads[1].start()
    time.sleep(0.3)
    s, a = call("/abort_request", {"rid": "multi"})
    check(s == 200 and a.get("aborted") == 1, f"the waiting request is aborted ({a})")
    threads[1].join(60)
    call("/abort_request", {"rid": "filler"})
    threads[0].join(60)
    s, b = results.get("multi", (0, None))
    reasons = [(x["meta_info"]["finish_reason"]["type"], x["meta_info"]["completion_tokens"]) for x in b] \
        if s == 200 else (s, b)
    check(reasons == [("abort", 0)] * 4, f"every choice of the aborted n=4 request ends abort, tokenless ({reasons})")


def main():
    for t in (test_unseeded_is_random, test_fields, test_stop_token_trim, test_lengths, test_input_logprobs, test_rid_and_routes,
              test_stream_latency, test_abort_waiting_n):
        try:
            t()
        except Exception as e:  # a crash in one group must not hide the others
            check(False, f"{t.__name__} raised {e!r}")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
