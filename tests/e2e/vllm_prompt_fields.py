#!/usr/bin/python3
"""vLLM's prompt_logprobs, truncate_prompt_tokens, return_tokens_as_token_ids and cache_salt on /v1/completions and
/v1/chat/completions, against the real `dpserve serve` (run_e2e.sh starts it on the tiny f32 echo model,
ECHO_MODEL), over a real socket, judged by the NumPy reference forward (tests/model/reference/ref_forward.py).

What must hold (vLLM's protocol):
  * prompt_logprobs k: a list as long as the prompt, null first; then per position an object keyed by token
    id: the prompt's token with its logprob (the reference's log-softmax of the row before) and its rank in
    the vocabulary (1 + the ids at least as likely), and the reference's k best ids ranked 1..k, each with
    "decoded_token" (the token's text); on chat the list sits beside the choices. Its alternatives do not
    leak into the output's top_logprobs (their own count) or into echo's.
  * return_tokens_as_token_ids: logprobs name tokens "token_id:<id>", the ids the reference's greedy
    decode gives; with TOKENS_AS_IDS=1 the server runs with --return-tokens-as-token-ids and a request's
    false turns it off.
  * truncate_prompt_tokens k: the model sees the prompt's last k tokens (greedy output = the reference's
    on those, usage counts k, echo shows them), a prompt longer than the context is cut instead of refused.
  * cache_salt: a prompt's cached pages are found again (usage's cached_tokens) under the same salt only,
    never by another salt nor by unsalted requests, and salted requests never take the shared pages.
  * stream_options.continuous_usage_stats: with include_usage, every chunk's usage counts the tokens so far.
  * chat echo: an answer continuing the final assistant message (no generation prompt) starts with its
    text, then the same answer as without echo, streamed or whole; with a new turn nothing is added.
  * chat_template in the request: a 400 unless the server runs with --trust-request-chat-template
    (TRUST_TEMPLATE=1); then /tokenize and chat use it (the ids of the text it renders, written by hand
    here), and a template that does not parse or runs past the renderer's limits is a 400.
  * bad values are 400s naming the field.
"""
import json
import os
import sys
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
from check_tally import check as tally, finish  # noqa: E402
from echo_reference import MODEL, TOL, URL, VOCAB, post, ref  # noqa: E402

AS_IDS = os.environ.get("TOKENS_AS_IDS") == "1"
TRUST_TEMPLATE = os.environ.get("TRUST_TEMPLATE") == "1"
with open(os.path.join(MODEL, "tokenizer.json")) as f:
    _vocab = json.load(f)["model"]["vocab"]
TEXT = {i: s for s, i in _vocab.items()}
# Ids whose text is plain ASCII letters / digits: decoded alone they are their vocabulary string.
PLAIN = sorted(i for s, i in _vocab.items() if s.isascii() and s.isalnum())
rng = np.random.default_rng(11)


def check(cond, what):
    tally(what, cond)


def log_softmax_rows(ids):
    x = ref.forward(ids)[:, :VOCAB].astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))


def greedy(ids, n):
    out = []
    for _ in range(n):
        out.append(int(np.argmax(log_softmax_rows(ids + out)[-1])))
    return out


def name_ids(names, label):
    """The ids of logprobs' token names, which must all be "token_id:<id>"."""
    ok = all(isinstance(s, str) and s.startswith("token_id:") for s in names)
    check(ok, f"{label}: tokens are named token_id:<id> ({names[:4]})")
    return [int(s.split(":", 1)[1]) for s in names] if ok else []


def check_prompt_logprobs(label, plp, ids, k):
    check(isinstance(plp, list) and len(plp) == len(ids), f"{label}: one entry per prompt token "
          f"({len(plp) if isinstance(plp, list) else plp} for {len(ids)})")
    if not isinstance(plp, list) or len(plp) != len(ids):
        return
    check(plp[0] is None, f"{label}: the first position is null")
    rows = log_softmax_rows(ids)
    worst = 0.0
    for i in range(1, len(ids)):
        row, tok, e = rows[i - 1], ids[i], plp[i]
        own = e.get(str(tok)) if isinstance(e, dict) else None
        check(own is not None, f"{label}: position {i} has the prompt's token {tok} ({e})")
        if own is None:
            continue
        worst = max(worst, abs(own["logprob"] - row[tok]))
        # 1 + the ids at least as likely; ids within TOL of it may fall on either side.
        lo, hi = 1 + int((row > row[tok] + TOL).sum()), int((row >= row[tok] - TOL).sum())
        check(lo <= own["rank"] <= hi, f"{label}: position {i} rank {own['rank']} in [{lo}, {hi}]")
        if tok in PLAIN:
            check(own["decoded_token"] == TEXT[tok], f"{label}: position {i} decoded_token {own['decoded_token']!r}")
        best = np.sort(row)[::-1]
        ranked = {int(t): v for t, v in e.items() if v["rank"] <= k}
        check(len(ranked) == k and len(e) == k + (own["rank"] > k),
              f"{label}: position {i} has the {k} best and the prompt's token ({len(e)} keys)")
        for t, v in ranked.items():
            worst = max(worst, abs(v["logprob"] - row[t]), abs(v["logprob"] - best[v["rank"] - 1]))
            if t in PLAIN:
                check(v["decoded_token"] == TEXT[t], f"{label}: alternative {t} decoded_token {v['decoded_token']!r}")
        check(sorted(v["rank"] for v in ranked.values()) == list(range(1, k + 1)),
              f"{label}: position {i} ranks 1..{k}")
    check(worst < TOL, f"{label}: logprobs are the reference's (worst error {worst:.2e})")


def completions_prompt_logprobs():
    ids = [int(x) for x in rng.choice(PLAIN, 12)]
    want = greedy(ids, 3)
    s, b = post("/v1/completions", {"prompt": ids, "max_tokens": 3, "temperature": 0, "logprobs": 1,
                                    "prompt_logprobs": 3, "return_tokens_as_token_ids": True, "n": 2})
    check(s == 200, f"completions: 200 ({s} {str(b)[:300]})")
    if s != 200:
        return
    for c in b["choices"]:
        check_prompt_logprobs(f"completions choice {c['index']}", c.get("prompt_logprobs"), ids, 3)
        lp = c["logprobs"]
        got = name_ids(lp["tokens"], "completions")
        check(got == want, f"completions: the tokens are the reference's greedy ids ({got} vs {want})")
        check(all(len(t) == 1 for t in lp["top_logprobs"]),
              f"completions: logprobs 1 shows one alternative, not prompt_logprobs' 3 ({lp['top_logprobs']})")
        for t, w in zip(lp["top_logprobs"], want):
            check(list(t) == [f"token_id:{w}"], f"completions: the alternative is named by id ({t})")
    # echo + logprobs 2 beside prompt_logprobs 4: the echoed part keeps 2 alternatives.
    s, b = post("/v1/completions", {"prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": 2, "echo": True,
                                    "prompt_logprobs": 4})
    check(s == 200, f"echo: 200 ({s} {str(b)[:300]})")
    if s == 200:
        c = b["choices"][0]
        tops = c["logprobs"]["top_logprobs"]
        # Keyed by text, two alternatives of the same text (bytes of a character) share a key.
        check(tops[0] is None and all(1 <= len(t) <= 2 for t in tops[1:]) and any(len(t) == 2 for t in tops[1:]),
              f"echo: 2 alternatives per position, not 4 ({tops[:3]})")
        check_prompt_logprobs("echo's prompt_logprobs", c.get("prompt_logprobs"), ids, 4)
        names = c["logprobs"]["tokens"]
        check(not AS_IDS or names[:len(ids)] == [f"token_id:{i}" for i in ids],
              f"echo: the server's --return-tokens-as-token-ids names the echoed tokens too ({names[:3]})")
        check(AS_IDS or names[:len(ids)] == [TEXT[i] for i in ids], f"echo: tokens by text ({names[:3]})")
    # Without the field there is none.
    s, b = post("/v1/completions", {"prompt": ids, "max_tokens": 1})
    check(s == 200 and "prompt_logprobs" not in b["choices"][0], "completions without the field carry none")


def chat():
    messages = [{"role": "user", "content": "hello there"}]
    s, t = post("/tokenize", {"messages": messages})
    check(s == 200, f"/tokenize: 200 ({s} {t})")
    if s != 200:
        return
    ids = t["tokens"]
    s, b = post("/v1/chat/completions", {"messages": messages, "max_tokens": 2, "temperature": 0,
                                         "prompt_logprobs": 2, "logprobs": True, "top_logprobs": 1})
    check(s == 200, f"chat: 200 ({s} {str(b)[:300]})")
    if s != 200:
        return
    check("prompt_logprobs" not in b["choices"][0], "chat: prompt_logprobs beside the choices, not in them")
    check_prompt_logprobs("chat", b.get("prompt_logprobs"), ids, 2)
    content = b["choices"][0]["logprobs"]["content"]
    want = greedy(ids, len(content))
    if AS_IDS:
        got = name_ids([c["token"] for c in content], "chat (server flag)")
        check(got == want, f"chat: the tokens are the reference's greedy ids ({got} vs {want})")
    check(all(len(c["top_logprobs"]) == 1 for c in content), "chat: top_logprobs 1 shows one alternative")
    # A request's false overrides the server's flag; true names ids whatever the server says.
    for flag in (False, True):
        s, b = post("/v1/chat/completions", {"messages": messages, "max_tokens": 2, "temperature": 0,
                                             "logprobs": True, "return_tokens_as_token_ids": flag})
        names = [c["token"] for c in b["choices"][0]["logprobs"]["content"]] if s == 200 else []
        named = bool(names) and all(n.startswith("token_id:") for n in names)
        check(s == 200 and named == flag, f"chat: return_tokens_as_token_ids {flag} ({s} {names})")
        if flag and named:
            got = [int(n.split(":")[1]) for n in names]
            check(got == greedy(ids, len(got)), f"chat: named ids are the reference's greedy ids ({got})")


def truncation():
    ids = [int(x) for x in rng.choice(PLAIN, 40)]
    k = 10
    want = greedy(ids[-k:], 4)
    s, b = post("/v1/completions", {"prompt": ids, "max_tokens": 4, "temperature": 0, "truncate_prompt_tokens": k,
                                    "echo": True, "logprobs": 0, "return_tokens_as_token_ids": True})
    check(s == 200, f"truncate: 200 ({s} {str(b)[:300]})")
    if s == 200:
        c = b["choices"][0]
        names = c["logprobs"]["tokens"]
        got = name_ids(names[k:], "truncate")
        check(got == want, f"truncate: the output is the reference's greedy on the last {k} tokens ({got} vs {want})")
        check(name_ids(names[:k], "truncate echo") == ids[-k:], "truncate: the echoed tokens are the last k")
        check(c["text"].startswith("".join(TEXT[i] for i in ids[-k:])), f"truncate: echo shows them ({c['text']!r})")
        check(b["usage"]["prompt_tokens"] == k, f"truncate: usage counts {k} ({b['usage']})")
    # Longer than k: untouched.
    s, b = post("/v1/completions", {"prompt": ids[:5], "max_tokens": 1, "truncate_prompt_tokens": k})
    check(s == 200 and b["usage"]["prompt_tokens"] == 5, f"truncate: a shorter prompt stays whole ({s} {b.get('usage')})")
    # A prompt past the context is cut instead of refused.
    long = [int(x) for x in rng.choice(PLAIN, 5000)]
    s, b = post("/v1/completions", {"prompt": long, "max_tokens": 1})
    check(s == 400, f"a prompt past the context is refused without truncation ({s})")
    s, b = post("/v1/completions", {"prompt": long, "max_tokens": 1, "truncate_prompt_tokens": 100})
    check(s == 200 and b["usage"]["prompt_tokens"] == 100, f"truncate: cut to 100 ({s} {str(b)[:200]})")
    # Chat: the rendered prompt's last k tokens.
    messages = [{"role": "user", "content": "a b c d e f g h i j k l m n o p"}]
    s, t = post("/tokenize", {"messages": messages})
    s2, b = post("/v1/chat/completions", {"messages": messages, "max_tokens": 1, "truncate_prompt_tokens": 6,
                                          "prompt_logprobs": 0})
    check(s == 200 and s2 == 200 and b["usage"]["prompt_tokens"] == 6, f"chat truncate: 6 tokens ({s2} {str(b)[:200]})")
    if s == 200 and s2 == 200:
        check_prompt_logprobs("chat truncate", b.get("prompt_logprobs"), t["tokens"][-6:], 0)


def cache_salt():
    """vLLM's cache_salt: a prompt's cached pages are found again under the same salt only."""
    ids = [int(x) for x in rng.choice(PLAIN, 200)]
    want = greedy(ids, 1)

    def cached(salt):
        body = {"prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": 0, "return_tokens_as_token_ids": True,
                "data_parallel_rank": 0}  # one DP group's cache
        if salt is not None:
            body["cache_salt"] = salt
        s, b = post("/v1/completions", body)
        check(s == 200, f"cache_salt {salt!r}: 200 ({s} {str(b)[:200]})")
        if s != 200:
            return -1
        got = name_ids(b["choices"][0]["logprobs"]["tokens"], "cache_salt")
        check(got == want, f"cache_salt {salt!r}: the reference's greedy token ({got} vs {want})")
        return b["usage"]["prompt_tokens_details"]["cached_tokens"]

    check(cached("tenant-a") == 0, "cache_salt: a new salted prompt finds nothing")
    check(cached("tenant-a") > 0, "cache_salt: the same salt finds its pages")
    check(cached("tenant-b") == 0, "cache_salt: another salt finds nothing")
    check(cached(None) == 0, "cache_salt: an unsalted request finds nothing of the salted pages")
    check(cached(None) > 0, "cache_salt: unsalted requests share the shared cache")
    check(cached("tenant-c") == 0, "cache_salt: a salted request finds nothing of the shared pages")


def sse(path, body):
    """The JSON events of a streamed answer (without [DONE])."""
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    events = []
    with urllib.request.urlopen(req, timeout=120) as r:
        for raw in r:
            line = raw.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return events


def continuous_usage():
    """vLLM's stream_options.continuous_usage_stats: every chunk's usage counts the tokens so far."""
    ids = [int(x) for x in rng.choice(PLAIN, 12)]
    body = {"prompt": ids, "max_tokens": 5, "temperature": 0, "ignore_eos": True, "stream": True, "logprobs": 0,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    events = sse("/v1/completions", body)
    seen, ok = 0, bool(events)
    for e in events:
        u = e.get("usage")
        if e["choices"]:
            seen += len(e["choices"][0]["logprobs"]["tokens"])
        ok = ok and u is not None and u["prompt_tokens"] == 12 and u["completion_tokens"] == seen and \
            u["total_tokens"] == 12 + seen
    check(ok and seen == 5, f"continuous usage: every chunk counts the tokens so far ({[e.get('usage') for e in events]})")
    body["stream_options"] = {"include_usage": True}
    events = sse("/v1/completions", body)
    check(all(e.get("usage") is None for e in events[:-1]) and events[-1]["usage"]["completion_tokens"] == 5,
          "without continuous_usage_stats only the last chunk has usage")
    s, b = post("/v1/completions", dict(body, stream_options={"include_usage": True, "continuous_usage_stats": 1}))
    err = b.get("error", {}) if isinstance(b, dict) else {}
    check(s == 400 and err.get("param") == "stream_options.continuous_usage_stats", f"a non-boolean is a 400 ({s} {err})")


def chat_echo():
    """vLLM's chat echo: an answer continuing the final assistant message starts with its text."""
    messages = [{"role": "user", "content": "tell me"}, {"role": "assistant", "content": "Once upon"}]
    base = {"messages": messages, "max_tokens": 4, "temperature": 0, "add_generation_prompt": False}
    s0, plain = post("/v1/chat/completions", base)
    s1, echoed = post("/v1/chat/completions", dict(base, echo=True))
    check(s0 == 200 and s1 == 200, f"chat echo: 200 ({s0} {s1})")
    if s0 == 200 and s1 == 200:
        a, b = plain["choices"][0]["message"]["content"], echoed["choices"][0]["message"]["content"]
        check(b == "Once upon" + a, f"chat echo: the final message's text, then the same answer ({b!r} vs {a!r})")
        events = sse("/v1/chat/completions", dict(base, echo=True, stream=True))
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
        check(text == b, f"chat echo streamed: the same text ({text!r})")
    # A new assistant turn continues nothing: no echo.
    s2, fresh = post("/v1/chat/completions", {"messages": messages[:1], "max_tokens": 3, "temperature": 0, "echo": True})
    s3, fresh0 = post("/v1/chat/completions", {"messages": messages[:1], "max_tokens": 3, "temperature": 0})
    check(s2 == 200 and s3 == 200 and fresh["choices"][0]["message"]["content"] ==
          fresh0["choices"][0]["message"]["content"], "chat echo with a generation prompt adds nothing")
    s, b = post("/v1/chat/completions", dict(base, echo="yes"))
    err = b.get("error", {}) if isinstance(b, dict) else {}
    check(s == 400 and err.get("param") == "echo", f"chat echo: a non-boolean is a 400 ({s} {err})")


def request_template():
    """vLLM's chat_template in the request: refused unless the server trusts clients with it
    (TRUST_TEMPLATE=1: --trust-request-chat-template); then the prompt is that template's rendering."""
    messages = [{"role": "user", "content": "hi there"}]
    tmpl = ("{% for m in messages %}<<{{ m.role }}>>{{ m.content | upper }}\n{% endfor %}"
            "{% if add_generation_prompt %}<<assistant>>{% endif %}")
    want_text = "<<user>>HI THERE\n<<assistant>>"  # the template rendered by hand
    forms = [{"chat_template": tmpl}, {"chat_template_kwargs": {"chat_template": tmpl}}]
    if not TRUST_TEMPLATE:
        for extra in forms:
            s, b = post("/v1/chat/completions", dict(messages=messages, max_tokens=1, **extra))
            err = b.get("error", {}) if isinstance(b, dict) else {}
            check(s == 400 and "chat_template" in (err.get("param") or "") and "--trust-request-chat-template" in
                  err.get("message", ""), f"an untrusted request template is refused ({s} {err})")
        return
    s, want = post("/tokenize", {"prompt": want_text, "add_special_tokens": False})
    check(s == 200, f"/tokenize of the expected text: 200 ({s})")
    for extra in forms:
        s, got = post("/tokenize", dict(messages=messages, **extra))
        check(s == 200 and got["tokens"] == want["tokens"], f"/tokenize renders the request's template ({s} {got})")
        s, b = post("/v1/chat/completions", dict(messages=messages, max_tokens=1, **extra))
        check(s == 200 and b["usage"]["prompt_tokens"] == len(want["tokens"]),
              f"chat runs the request's template ({s} {str(b)[:200]})")
    for bad in ["{% for m in messages %}", "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", 5]:
        s, b = post("/v1/chat/completions", {"messages": messages, "max_tokens": 1, "chat_template": bad})
        err = b.get("error", {}) if isinstance(b, dict) else {}
        check(s == 400, f"a bad request template is a 400 ({str(bad)[:30]}: {s} {err})")
    s, b = post("/v1/chat/completions", {"messages": messages, "max_tokens": 1, "chat_template": tmpl,
                                         "chat_template_kwargs": {"chat_template": tmpl}})
    check(s == 400, f"both forms at once are a 400 ({s})")
    # vLLM's documents reach the template (transformers' documents=), in order, keys as sent.
    docs_tmpl = "{% for d in documents %}[{{ d.title }}: {{ d.text }}]{% endfor %}" + tmpl
    docs = [{"title": "A", "text": "one"}, {"title": "B", "text": "two"}]
    s, want = post("/tokenize", {"prompt": "[A: one][B: two]" + want_text, "add_special_tokens": False})
    s2, got = post("/tokenize", {"messages": messages, "chat_template": docs_tmpl, "documents": docs})
    check(s == 200 and s2 == 200 and got["tokens"] == want["tokens"], f"documents reach the template ({s2} {got})")
    for bad in ({"title": 5}, "doc", [["x"]]):
        s, b = post("/v1/chat/completions", {"messages": messages, "max_tokens": 1, "chat_template": docs_tmpl,
                                             "documents": bad if isinstance(bad, (str, list)) else [bad]})
        err = b.get("error", {}) if isinstance(b, dict) else {}
        check(s == 400 and err.get("param") == "documents", f"bad documents {bad!r}: 400 naming it ({s} {err})")
    # OpenAI's reasoning_effort reaches a template with reasoning levels (gpt-oss's convention: a
    # "Reasoning: <level>" line) as the variable of that name; one that reads none of it refuses a level.
    levels_tmpl = "{% if reasoning_effort is defined %}Reasoning: {{ reasoning_effort }}\n{% endif %}" + tmpl
    for level in ("low", "high", "none"):
        s, want = post("/tokenize", {"prompt": f"Reasoning: {level}\n" + want_text, "add_special_tokens": False})
        s2, got = post("/tokenize", {"messages": messages, "chat_template": levels_tmpl, "reasoning_effort": level})
        check(s == 200 and s2 == 200 and got["tokens"] == want["tokens"],
              f"reasoning_effort {level} reaches the template ({s2} {got})")
        s, b = post("/v1/chat/completions", {"messages": messages, "max_tokens": 1, "chat_template": levels_tmpl,
                                             "reasoning_effort": level})
        check(s == 200 and b["usage"]["prompt_tokens"] == len(want["tokens"]),
              f"chat renders reasoning_effort {level} ({s} {str(b)[:200]})")
    s, b = post("/v1/chat/completions", {"messages": messages, "max_tokens": 1, "chat_template": levels_tmpl,
                                         "reasoning_effort": "high", "chat_template_kwargs": {"reasoning_effort": "low"}})
    err = b.get("error", {}) if isinstance(b, dict) else {}
    check(s == 400 and err.get("param") == "reasoning_effort", f"a level that kwargs contradict: 400 ({s} {err})")
    for level in ("high", "none"):
        s, b = post("/v1/chat/completions", {"messages": messages, "max_tokens": 1, "chat_template": tmpl,
                                             "reasoning_effort": level})
        err = b.get("error", {}) if isinstance(b, dict) else {}
        # This model has no reasoning parser: "none" is what it does anyway; a level would be ignored.
        check((s == 200) if level == "none" else (s == 400 and err.get("param") == "reasoning_effort"),
              f"reasoning_effort {level} on a template without levels ({s} {err})")


def refusals():
    ids = [5, 6, 7]
    bad = [
        ("/v1/completions", {"prompt_logprobs": 1, "stream": True}, "prompt_logprobs"),
        ("/v1/chat/completions", {"prompt_logprobs": 1, "stream": True}, "prompt_logprobs"),
        ("/v1/completions", {"prompt_logprobs": 21}, "prompt_logprobs"),
        ("/v1/completions", {"prompt_logprobs": -1}, "prompt_logprobs"),
        ("/v1/completions", {"prompt_logprobs": "2"}, "prompt_logprobs"),
        ("/v1/completions", {"truncate_prompt_tokens": 0}, "truncate_prompt_tokens"),
        ("/v1/completions", {"truncate_prompt_tokens": -2}, "truncate_prompt_tokens"),
        ("/v1/chat/completions", {"truncate_prompt_tokens": 10 ** 6}, "truncate_prompt_tokens"),
        ("/v1/completions", {"truncate_prompt_tokens": 2.5}, "truncate_prompt_tokens"),
        ("/v1/chat/completions", {"return_tokens_as_token_ids": "yes"}, "return_tokens_as_token_ids"),
        ("/v1/completions", {"cache_salt": ""}, "cache_salt"),
        ("/v1/chat/completions", {"cache_salt": 5}, "cache_salt"),
        ("/v1/completions", {"cache_salt": "x" * 257}, "cache_salt"),
        ("/v1/completions", {"priority": 3}, "priority"),  # the server runs without priority scheduling
    ]
    for path, extra, field in bad:
        body = {"prompt": ids} if path == "/v1/completions" else {"messages": [{"role": "user", "content": "hi"}]}
        body.update(max_tokens=1, **extra)
        s, b = post(path, body)
        err = b.get("error", {}) if isinstance(b, dict) else {}
        check(s == 400 and err.get("param") == field, f"{path} {extra}: 400 naming {field} ({s} {err})")
    s, b = post("/v1/completions", {"prompt": ids, "max_tokens": 1, "priority": 0})
    check(s == 200, "the server still answers after the refusals (priority 0 is the default)")


def main():
    completions_prompt_logprobs()
    chat()
    truncation()
    cache_salt()
    continuous_usage()
    chat_echo()
    request_template()
    refusals()
    finish()


if __name__ == "__main__":
    main()
