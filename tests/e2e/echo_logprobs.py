#!/usr/bin/python3
"""/v1/completions with echo + logprobs against the real `dpserve serve` (run_e2e.sh starts it), over a
real socket, judged by the NumPy reference forward (tests/model/reference/ref_forward.py) on the same
random-weight model folder (ECHO_MODEL), never by the server's own output.

What must hold (OpenAI's legacy completions semantics):
  * echo: the text starts with the prompt (a token-id prompt echoes as its decoded text);
  * echo + logprobs: tokens / token_logprobs / top_logprobs / text_offset cover the prompt's tokens
    first (the first with null logprob and null alternatives), then the generated ones; every logprob
    equals the reference's log-softmax (prompt position i: row i-1 of the reference logits; the
    generated tokens: the rows after the prompt);
  * max_tokens 0 with echo: the prompt alone, finish_reason "length", 0 completion tokens;
  * the same through the prefix cache (a warmed prefix), chunked prefill (the server runs with a small
    --chunked-prefill-size), several prompts x n and streaming.
CTest runs it single rank, TP 2 and DP attention, and (ECHO_TOKENIZER, ECHO_SCORE_LEN) over the real
Qwen3 vocabulary with a prompt longer than a step's prompt-logprob row budget.
"""
import json
import os
import sys
import urllib.error
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model", "reference"))
import ref_forward as rf  # noqa: E402

URL = os.environ["DPSERVE_URL"]
MODEL = os.environ["ECHO_MODEL"]
# f32 weights: the engine's logits are within ~1e-4 * their scale of the float64 reference
# (tests/model/test_hf_reference.py); a logprob adds the log-sum-exp's error, of the same order.
TOL = 2e-3

with urllib.request.urlopen(URL + "/v1/models", timeout=30) as r:
    MODEL_NAME = json.loads(r.read().decode())["data"][0]["id"]
ref = rf.RefModel(MODEL)
# ECHO_TOKENIZER: the tokenizer folder, when the model folder has none (a random model over a real
# vocabulary).
with open(os.path.join(os.environ.get("ECHO_TOKENIZER", MODEL), "tokenizer.json")) as f:
    tokenizer = json.load(f)
vocab = tokenizer["model"]["vocab"]
vocab_text = {i: s for s, i in vocab.items()}  # compared only for PLAIN ids, whose text is the same
# The server gives no probability to ids past the tokenizer's (a model vocabulary padded beyond it, as
# Qwen3's 151936 over 151665 tokens): the reference's softmax runs over the same ids.
TOKEN_LIMIT = max(list(vocab.values()) + [t["id"] for t in tokenizer.get("added_tokens", [])]) + 1
# Prompt ids whose text is plain ASCII letters / digits, so the echoed text can be checked exactly.
PLAIN = sorted(i for s, i in vocab.items() if s.isascii() and s.isalnum())
rng = np.random.default_rng(7)
failures = []
ADDED = {t["id"]: t for t in tokenizer.get("added_tokens", [])}


def _byte_level_map():
    # GPT-2's printable stand-ins for bytes (the ByteLevel pre-tokenizer's alphabet), inverted.
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    codes, extra = {}, 0
    for b in range(256):
        if b in keep:
            codes[chr(b)] = b
        else:
            codes[chr(256 + extra)] = b
            extra += 1
    return codes


BYTE_OF = _byte_level_map()


def raw_bytes(i, skip_special):
    """The bytes token i adds to a text (both test vocabularies are byte-level BPE): a part of a
    multi-byte character is its own bytes; a special token skipped from generated text adds none."""
    if i in ADDED:
        return b"" if skip_special and ADDED[i]["special"] else ADDED[i]["content"].encode()
    return bytes(BYTE_OF[c] for c in vocab_text[i])


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def post(body, stream=False):
    req = urllib.request.Request(URL + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            raw = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())
    if not stream:
        return status, json.loads(raw)
    events = [json.loads(line[6:]) for line in raw.split("\n") if line.startswith("data: ") and line != "data: [DONE]"]
    return status, events


_memo = {}


def log_softmax(ids):
    key = tuple(ids)
    if key not in _memo:
        _memo[key] = _log_softmax(ids)
    return _memo[key]


def _log_softmax(ids):
    logits = ref.forward(ids)[:, :TOKEN_LIMIT]
    m = logits.max(axis=1, keepdims=True)
    return logits - (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))


def prompt_ids(n):
    return [int(x) for x in rng.choice(PLAIN, size=n)]


def check_choice(label, ch, prompt, top_n, max_tokens):
    """One choice of an echo + logprobs request: prompt entries, then generated ones, all vs the reference."""
    lp = ch["logprobs"]
    toks, lps, tops, offs = lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], lp["text_offset"]
    n_gen = len(toks) - len(prompt)
    if not (len(toks) == len(lps) == len(tops) == len(offs) and 0 <= n_gen <= max_tokens):
        check(False, f"{label}: {len(toks)} entries for a {len(prompt)}-token prompt and max_tokens {max_tokens}")
        return float("inf")
    if max_tokens == 0:
        check(n_gen == 0, f"{label}: max_tokens 0 but {n_gen} generated entries")
        check(ch["finish_reason"] == "length", f"{label}: finish_reason {ch['finish_reason']!r}, want 'length'")
    prompt_text = "".join(vocab_text[i] for i in prompt)
    check(ch["text"].startswith(prompt_text), f"{label}: text {ch['text'][:40]!r} does not start with the prompt")
    check(toks[:len(prompt)] == [vocab_text[i] for i in prompt], f"{label}: prompt token strings differ")
    check(lps[0] is None and tops[0] is None, f"{label}: first prompt token has a logprob ({lps[0]}, {tops[0]})")
    # Offsets: each token's bytes follow the previous token's, the generated ones from the end of the
    # echoed prompt (generated tokens: once their ids are known from the reference's replay).
    gen_ids = ch.get("_gen_ids")
    ids = list(prompt) + (gen_ids or [])
    for i in range(1, min(len(toks), len(ids))):
        want = offs[i - 1] + len(raw_bytes(ids[i - 1], skip_special=i - 1 >= len(prompt)))
        if i == len(prompt):
            want = len(prompt_text.encode())
        if offs[i] != want:
            check(False, f"{label}: text_offset[{i}] = {offs[i]}, want {want}")
            break
    ref_lp = log_softmax(ids)
    worst = 0.0
    for i in range(1, len(prompt) + (len(gen_ids) if gen_ids else 0)):
        want = ref_lp[i - 1, ids[i]]
        worst = max(worst, abs(lps[i] - want))
        if top_n > 0:
            row = np.sort(ref_lp[i - 1])[::-1][:top_n]
            got = sorted(tops[i].values(), reverse=True)
            # Alternatives whose texts are equal (byte tokens that are no UTF-8 alone) share one key of
            # the object, so fewer may be shown; those shown must be among the best top_n.
            ok = 1 <= len(got) <= top_n and all(np.min(np.abs(row - g)) <= TOL for g in got)
            if len(got) == top_n:
                ok &= bool(np.all(np.abs(np.array(got) - row) <= TOL))
            check(ok, f"{label}: top_logprobs at {i} {got} vs {row.tolist()}")
        else:
            check(tops[i] is None, f"{label}: logprobs 0 but alternatives at {i}")
    check(worst <= TOL, f"{label}: prompt/generated logprobs differ from the reference by {worst:.2e} (tol {TOL})")
    return worst



# 1. Scoring a prompt (lm-eval-harness's loglikelihood call): max_tokens 0, echo, logprobs 5. The
# prompt is longer than --chunked-prefill-size, so its logits come from several steps.
# ECHO_SCORE_LEN: with a large vocabulary, longer than a step's prompt-logprob row budget (64 MiB of
# logits: 110 rows at 152k), so the budget splits it too.
p1 = prompt_ids(int(os.environ.get("ECHO_SCORE_LEN", "45")))
st, r = post({"model": MODEL_NAME, "prompt": p1, "max_tokens": 0, "echo": True, "logprobs": 5, "temperature": 0})
check(st == 200, f"score: HTTP {st} {r}")
if st == 200:
    check(r["usage"]["completion_tokens"] == 0 and r["usage"]["prompt_tokens"] == len(p1), f"score: usage {r['usage']}")
    w = check_choice("score", r["choices"][0], p1, 5, 0)
    lps = r["choices"][0]["logprobs"]["token_logprobs"][1:]
    print(f"score: {len(p1)} prompt tokens, worst |logprob - reference| {w:.2e}, "
          f"logprob spread (std) {np.std(lps):.3f}")

# 2. Through the prefix cache: the prompt's prefix is cached by a plain request first; the scoring
# request must still report every position (and the right values).
p2 = prompt_ids(40)
st, _ = post({"model": MODEL_NAME, "prompt": p2[:36], "max_tokens": 1, "temperature": 0})
check(st == 200, "cache warm-up failed")
for label in ("cached prefix", "cached prefix again"):
    st, r = post({"model": MODEL_NAME, "prompt": p2, "max_tokens": 0, "echo": True, "logprobs": 1})
    check(st == 200, f"{label}: HTTP {st} {r}")
    if st == 200:
        check_choice(label, r["choices"][0], p2, 1, 0)


# 3. echo + logprobs with generation (greedy): the generated tokens' logprobs continue the prompt's.
def generated_ids(ch, prompt):
    """Greedy generation replayed on the reference: each generated token must be the reference's argmax
    (unless the top two are within tolerance); returns the ids."""
    toks = ch["logprobs"]["tokens"][len(prompt):]
    ids = list(prompt)
    for t in toks:
        row = log_softmax(ids)[-1]
        best = int(np.argmax(row))
        # A near-tie may go either way: take the id whose text the server reported.
        cands = [i for i in np.argsort(row)[::-1][:2] if row[best] - row[i] <= TOL]
        pick = next((i for i in cands if vocab_text.get(int(i)) == t), best)
        ids.append(int(pick))
    return ids[len(prompt):]


p3 = prompt_ids(20)
st, r = post({"model": MODEL_NAME, "prompt": p3, "max_tokens": 4, "echo": True, "logprobs": 2, "temperature": 0,
              "ignore_eos": True})
check(st == 200, f"generate: HTTP {st} {r}")
if st == 200:
    ch = r["choices"][0]
    ch["_gen_ids"] = generated_ids(ch, p3)
    check(len(ch["_gen_ids"]) == 4, f"generate: {len(ch['_gen_ids'])} generated entries, want 4")
    check_choice("generate", ch, p3, 2, 4)
    check(r["usage"]["completion_tokens"] == 4, f"generate: usage {r['usage']}")

# 4. Several prompts x n = 2: every choice carries its own prompt's logprobs.
pa, pb = prompt_ids(18), prompt_ids(27)
st, r = post({"model": MODEL_NAME, "prompt": [pa, pb], "n": 2, "max_tokens": 0, "echo": True, "logprobs": 0})
check(st == 200 and len(r.get("choices", [])) == 4, f"prompts x n: HTTP {st}")
if st == 200:
    for ch in r["choices"]:
        check_choice(f"prompts x n choice {ch['index']}", ch, pa if ch["index"] < 2 else pb, 0, 0)
    check(r["usage"]["prompt_tokens"] == len(pa) + len(pb), f"prompts x n: usage {r['usage']}")

# 5. Streaming: the first chunk carries the echoed prompt and its logprobs; the pieces add up to the
# same choice as without streaming.
st, evs = post({"model": MODEL_NAME, "prompt": p3, "max_tokens": 4, "echo": True, "logprobs": 2, "temperature": 0,
                "ignore_eos": True, "stream": True}, stream=True)
check(st == 200 and len(evs) >= 1, f"stream: HTTP {st}")
if st == 200:
    text, merged = "", {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    finish = None
    for e in evs:
        for ch in e["choices"]:
            text += ch["text"]
            if ch.get("logprobs"):
                for k in merged:
                    merged[k] += ch["logprobs"][k]
            finish = ch["finish_reason"] or finish
    sch = {"text": text, "logprobs": merged, "finish_reason": finish}
    sch["_gen_ids"] = generated_ids(sch, p3)
    check_choice("stream", sch, p3, 2, 4)
    check(len(evs[0]["choices"][0]["logprobs"]["tokens"]) >= len(p3), "stream: the first chunk lacks the prompt's logprobs")

# 6. A text prompt: the echo is the client's text; the logprobs cover the tokenized prompt (BOS first).
st, r = post({"model": MODEL_NAME, "prompt": "ab12 cd", "max_tokens": 0, "echo": True, "logprobs": 1})
check(st == 200, f"text prompt: HTTP {st} {r}")
if st == 200:
    ch = r["choices"][0]
    check(ch["text"] == "ab12 cd", f"text prompt: text {ch['text']!r}")
    n = r["usage"]["prompt_tokens"]
    check(len(ch["logprobs"]["tokens"]) == n and ch["logprobs"]["token_logprobs"][0] is None and
          all(isinstance(x, float) for x in ch["logprobs"]["token_logprobs"][1:]), f"text prompt: logprobs {ch['logprobs']}")

# 6b. A text prompt holding multi-byte characters (byte-level tokens that are parts of one) and a
# special token spelled in the text: every token's bytes sit at its offset in the echoed text's
# UTF-8, except a BOS the tokenizer added (it is not in the text), which sits at 0 and spans nothing.
special = next(t["content"] for t in tokenizer.get("added_tokens", []) if t["special"] and t["content"] != "<s>")
text = f"日本語 👨\u200d👩\u200d👧 ü{special}naïve ☃"
st, r = post({"model": MODEL_NAME, "prompt": text, "max_tokens": 0, "echo": True, "logprobs": 0})
req = urllib.request.Request(URL + "/tokenize", data=json.dumps({"prompt": text}).encode(),
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=60) as t:
    ids = json.loads(t.read().decode())["tokens"]
check(st == 200, f"multi-byte text prompt: HTTP {st} {r}")
if st == 200:
    offs, enc = r["choices"][0]["logprobs"]["text_offset"], text.encode()
    check(len(offs) == len(ids), f"multi-byte text prompt: {len(offs)} offsets for {len(ids)} tokens")
    at = 0
    for k, (i, o) in enumerate(zip(ids, offs)):
        b = raw_bytes(i, skip_special=False)
        if k == 0 and not enc.startswith(b):  # an added BOS
            b = b""
        if o != at or enc[o:o + len(b)] != b:
            check(False, f"multi-byte text prompt: token {k} ({b!r}) at offset {o}, want {at} in {enc!r}")
            break
        at += len(b)
    check(at == len(enc), f"multi-byte text prompt: the tokens' bytes end at {at} of {len(enc)}")

# 7. echo without logprobs: the prompt's text, no logprobs object. max_tokens 0 without echo: a 400.
st, r = post({"model": MODEL_NAME, "prompt": p1[:5], "max_tokens": 0, "echo": True})
check(st == 200 and r["choices"][0]["text"] == "".join(vocab_text[i] for i in p1[:5]) and
      r["choices"][0]["logprobs"] is None, f"echo only: {st} {r}")
st, r = post({"model": MODEL_NAME, "prompt": p1[:5], "max_tokens": 0})
check(st == 400 and r["error"].get("param") == "max_tokens", f"max_tokens 0 without echo: {st} {r}")

if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("echo_logprobs: all checks passed")
