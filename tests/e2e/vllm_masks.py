#!/usr/bin/python3
"""vLLM's allowed_token_ids and bad_words on /v1/completions and /v1/chat/completions, against the real
`dpserve serve` (run_e2e.sh starts it on the tiny f32 echo model, ECHO_MODEL, EOS id 2; with --spec the
server runs NGRAM speculative decoding), over a real socket, judged by the NumPy reference forward
(tests/model/reference/ref_forward.py) and by this script's own tokenization of the echo model's
tokenizer.json (its byte-level BPE merges applied here, never the server's /tokenize).

What must hold:
  * allowed_token_ids: the greedy output is the reference's greedy decode with every other logit -inf
    (EOS too, so the output runs to max_tokens), on completions and on chat (every chat token one of the
    allowed ids, told by its logprob bytes);
  * bad_words: each word is tokenized as vLLM (v1) does (w.lstrip() and " " + w.lstrip(), the spaced
    form kept only when as long as the plain one and starting with another id), and at each output
    position a sequence's last id is banned when the output so far ends with the ids before it; the
    greedy output is the reference's greedy decode under that rule, and the ban changes it (a two-token
    word whose two tokens the unbanned output holds, and a one-token word);
  * with speculative decoding the same outputs, while drafts are accepted (the per-row history);
  * refusals are 400s naming the field; SGLang's /generate has neither field, so it refuses them.
"""
import json
import os
import re
import sys
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
from check_tally import check as tally, finish  # noqa: E402
from echo_reference import MODEL, URL, VOCAB, post, ref  # noqa: E402

EOS = 2
SPEC = "--spec" in sys.argv[1:]


def check(cond, what):
    tally(what, cond)


# ---- the echo model's tokenizer, independently: GPT-2 byte alphabet + BPE merges by rank ----
with open(os.path.join(MODEL, "tokenizer.json"), encoding="utf-8") as f:
    TOK = json.load(f)["model"]
ID = TOK["vocab"]
STR = {i: s for s, i in ID.items()}
RANK = {tuple(m.split(" ")): k for k, m in enumerate(TOK["merges"])}


def byte_alphabet():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(0x100 + extra)
            extra += 1
    return table


B2U = byte_alphabet()
U2B = {u: b for b, u in B2U.items()}


def bpe(text):
    """Ids of one pre-token: lowercase letters with at most one leading space (the Qwen2 split pattern
    keeps such a string whole), merged lowest rank first."""
    assert re.fullmatch(r" ?[a-z]+", text), text
    sym = [B2U[b] for b in text.encode()]
    while len(sym) > 1:
        ranks = [(RANK.get((sym[i], sym[i + 1]), 1 << 30), i) for i in range(len(sym) - 1)]
        r, i = min(ranks)
        if r == 1 << 30:
            break
        sym[i:i + 2] = [sym[i] + sym[i + 1]]
    return [ID[s] for s in sym]


def vllm_bad_word_ids(words):
    seqs = []
    for w in words:
        plain = bpe(w.lstrip())
        spaced = bpe(" " + w.lstrip())
        seqs.append(plain)
        if len(spaced) == len(plain) and spaced[0] != plain[0]:
            seqs.append(spaced)
    return seqs


def text_of(ids):
    return bytes(U2B[c] for i in ids for c in STR[i]).decode()


# ---- the reference's greedy decode under the masks ----
def greedy(prompt, n, allowed=None, bad=()):
    out = []
    for _ in range(n):
        x = ref.forward(prompt + out)[-1, :VOCAB].astype(np.float64)
        if allowed is not None:
            keep = np.full(VOCAB, -np.inf)
            keep[allowed] = x[allowed]
            x = keep
        for q in bad:
            if len(q) - 1 <= len(out) and (len(q) == 1 or out[len(out) - (len(q) - 1):] == q[:-1]):
                x[q[-1]] = -np.inf
        tok = int(np.argmax(x))
        out.append(tok)
        if tok == EOS:
            break
    return out


def margin_ok(prompt, out, allowed=None, bad=()):
    """Every step's argmax leads the runner-up by more than f32 noise (else a tie could flip)."""
    for k in range(len(out)):
        x = ref.forward(prompt + out[:k])[-1, :VOCAB].astype(np.float64)
        if allowed is not None:
            keep = np.full(VOCAB, -np.inf)
            keep[allowed] = x[allowed]
            x = keep
        for q in bad:
            if len(q) - 1 <= k and (len(q) == 1 or out[k - (len(q) - 1):k] == q[:-1]):
                x[q[-1]] = -np.inf
        top = np.sort(x[np.isfinite(x)])[::-1]
        if len(top) > 1 and top[0] - top[1] < 1e-3:
            return False
    return True


def periodic_case(prompt, letters, n=24):
    """Four letter tokens and a two-token word (a, b) of them such that the banned output repeats with
    a period of 2 to 4, and the ban decides at least 4 of its tokens (b would follow a there)."""
    for k in range(0, len(letters) - 3, 5):
        allowed = letters[k:k + 4]
        base = greedy(prompt, n, allowed)
        for i in range(len(base) - 1):
            a, b = base[i], base[i + 1]
            w = text_of([a, b])
            if a == b or not re.fullmatch(r"[a-z]+", w):
                continue
            seqs = vllm_bad_word_ids([w])
            if [a, b] not in seqs:
                continue
            want = greedy(prompt, n, allowed, seqs)
            tail = want[-12:]
            period = next((p for p in range(1, 5) if tail[p:] == tail[:-p]), None)
            if want != base and period and period >= 2 and a in tail and binding(prompt, want, allowed, a, b) >= 4:
                return allowed, w, seqs, base, want
    return None


def binding(prompt, out, allowed, a, b):
    """The positions where the ban decides: after a, where b would be the greedy pick without it."""
    n = 0
    for k in range(1, len(out)):
        if out[k - 1] == a:
            x = ref.forward(prompt + out[:k])[-1, :VOCAB]
            n += int(allowed[int(np.argmax(x[allowed]))] == b)
    return n


def complete(prompt, n, **fields):
    s, b = post("/v1/completions", dict({"model": "llama", "prompt": prompt, "max_tokens": n, "temperature": 0},
                                        **fields))
    return s, b


def metric(name):
    with urllib.request.urlopen(URL + "/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def main():
    letters = sorted(i for s, i in ID.items() if re.fullmatch("\u0120?[a-z]+", s))  # Ġ: the space byte
    prompts = [[5, 77, 123, 9, 300], [40, 41, 42, 43], [300, 200, 100, 7, 8, 9]]
    accepted0 = metric("dpserve_spec_accepted_tokens_total")
    n = 16

    # allowed_token_ids: a few letter tokens, not the unmasked argmax, not EOS: the output runs to n.
    prompt = prompts[0]
    first = greedy(prompt, 1)[0]
    allowed = [i for i in letters if i != first][::9][:12]
    want = greedy(prompt, n, allowed)
    s, b = complete(prompt, n, allowed_token_ids=allowed)
    check(s == 200 and b["choices"][0]["text"] == text_of(want) and b["choices"][0]["finish_reason"] == "length",
          f"allowed_token_ids {allowed}: the masked reference's greedy text {text_of(want)!r} "
          f"(got {s} {str(b)[:300]})")
    check(margin_ok(prompt, want, allowed), "allowed_token_ids: the reference's choices are clear (no near ties)")
    # Chat: every token is an allowed one (each token's bytes name it: the vocabulary's strings are distinct).
    s, b = post("/v1/chat/completions", {"model": "llama", "messages": [{"role": "user", "content": "hi"}],
                                         "max_tokens": 8, "temperature": 0, "logprobs": True,
                                         "allowed_token_ids": allowed})
    allowed_bytes = {tuple(U2B[c] for c in STR[i]) for i in allowed}
    got = [tuple(e["bytes"]) for e in (b.get("choices", [{}])[0].get("logprobs") or {}).get("content", [])] \
        if s == 200 else []
    check(s == 200 and len(got) == 8 and all(t in allowed_bytes for t in got),
          f"chat allowed_token_ids: 8 tokens, each allowed (got {s} {str(b)[:300]})")

    # bad_words, under an allowed set of all letter tokens (the text stays ASCII): find a two-token word
    # the unbanned output holds, in one of the prompts.
    found = None
    for prompt in prompts:
        base = greedy(prompt, n, letters)
        for i in range(1, len(base) - 1):
            w = text_of(base[i:i + 2])
            if not re.fullmatch(r" ?[a-z]+", w):
                continue
            seqs = vllm_bad_word_ids([w])
            if any(len(q) == 2 and any(base[j:j + 2] == q for j in range(len(base) - 1)) for q in seqs):
                one = text_of([base[0]]).strip()
                found = (prompt, base, w.strip(), one)
                break
        if found:
            break
    check(found is not None, "a prompt whose output holds a two-token bad word (the echo model's merges)")
    if found:
        prompt, base, word, one = found
        for words in ([word], [word, one]):
            seqs = vllm_bad_word_ids(words)
            want = greedy(prompt, n, letters, seqs)
            check(want != base, f"bad_words {words} ({seqs}): the ban changes the reference's output")
            check(margin_ok(prompt, want, letters, seqs), f"bad_words {words}: the reference's choices are clear")
            s, b = complete(prompt, n, allowed_token_ids=letters, bad_words=words)
            check(s == 200 and b["choices"][0]["text"] == text_of(want),
                  f"bad_words {words}: the reference's greedy text under vLLM's rule {text_of(want)!r} "
                  f"(unbanned {text_of(base)!r}; got {s} {str(b)[:300]})")
        # Without the allowed set too (chat takes it the same way: a 200).
        s, b = post("/v1/chat/completions", {"model": "llama", "messages": [{"role": "user", "content": "hi"}],
                                             "max_tokens": 4, "bad_words": [word]})
        check(s == 200, f"chat bad_words: 200 (got {s} {str(b)[:200]})")

    # A periodic output (four allowed letters) whose ban fires every other token: NGRAM drafts are taken
    # there, so with --spec a banned pair falls inside a verified run of drafts, where the row's history
    # ends with drafts rather than with the tokens output before the step.
    case = periodic_case(prompts[0], letters)
    check(case is not None, "four letters whose output repeats a two-token bad word (period 2 to 4)")
    if case:
        allowed, word, seqs, base, want = case
        before = metric("dpserve_spec_accepted_tokens_total")
        s, b = complete(prompts[0], len(want), allowed_token_ids=allowed, bad_words=[word])
        check(s == 200 and b["choices"][0]["text"] == text_of(want),
              f"periodic bad_words {word!r} ({seqs}) under {allowed}: the reference's {text_of(want)!r} "
              f"(unbanned {text_of(base)!r}; got {s} {str(b)[:300]})")
        check(margin_ok(prompts[0], want, allowed, seqs), "periodic bad_words: the reference's choices are clear")
        if SPEC:
            accepted = metric("dpserve_spec_accepted_tokens_total") - before
            check(accepted >= 4, f"speculative decoding: drafts accepted in the periodic request ({accepted})")

    if SPEC:
        accepted = metric("dpserve_spec_accepted_tokens_total") - accepted0
        check(accepted > 0, f"speculative decoding: drafts were accepted during the masked requests ({accepted})")

    # A mask that leaves nothing: the only allowed token is banned. The engine refuses the request (no
    # token is picked), the server goes on.
    s, b = complete(prompts[0], 4, allowed_token_ids=[ID["a"]], bad_words=["a"])
    err = b.get("error", {}) if isinstance(b, dict) else {}
    check(s == 400 and "allowed_token_ids" in err.get("message", ""),
          f"every token masked: a 400 that says why, not a pick (got {s} {str(b)[:300]})")

    # Refusals: 400s naming the field.
    msgs = [{"role": "user", "content": "a"}]
    for path, body, param in (
            ("/v1/completions", {"prompt": "a", "allowed_token_ids": []}, "allowed_token_ids"),
            ("/v1/completions", {"prompt": "a", "allowed_token_ids": [VOCAB]}, "allowed_token_ids"),
            ("/v1/completions", {"prompt": "a", "allowed_token_ids": [-1]}, "allowed_token_ids"),
            ("/v1/completions", {"prompt": "a", "allowed_token_ids": ["5"]}, "allowed_token_ids"),
            ("/v1/completions", {"prompt": "a", "allowed_token_ids": 5}, "allowed_token_ids"),
            ("/v1/chat/completions", {"messages": msgs, "allowed_token_ids": []}, "allowed_token_ids"),
            ("/v1/completions", {"prompt": "a", "bad_words": "a"}, "bad_words"),
            ("/v1/completions", {"prompt": "a", "bad_words": [1]}, "bad_words"),
            ("/v1/completions", {"prompt": "a", "bad_words": ["  "]}, "bad_words"),
            ("/v1/chat/completions", {"messages": msgs, "bad_words": [""]}, "bad_words"),
            ("/v1/completions", {"prompt": "a", "bad_words": [f"w{k}" for k in range(129)]}, "bad_words"),
            ("/v1/completions", {"prompt": "a", "bad_words": ["a1" * 600]}, "bad_words"),
            ("/generate", {"text": "a", "sampling_params": {"allowed_token_ids": [5]}}, "allowed_token_ids"),
            ("/generate", {"text": "a", "sampling_params": {"bad_words": ["a"]}}, "bad_words")):
        s, e = post(path, dict({"model": "llama"} if path != "/generate" else {}, **body))
        err = e.get("error", {}) if isinstance(e, dict) else {}
        check(s == 400 and str(err.get("param", "")).endswith(param) and param in err.get("message", ""),
              f"{path} {str(body)[:80]}: 400 naming {param} (got {s} {str(err)[:200]})")
    s, b = complete(prompts[0], 2)
    check(s == 200 and b["usage"]["completion_tokens"] == 2, f"the next request is served (got {s})")
    finish()


if __name__ == "__main__":
    main()
