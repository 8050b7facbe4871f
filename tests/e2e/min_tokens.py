#!/usr/bin/python3
"""SGLang's min_new_tokens (/generate) and min_tokens (vLLM's and SGLang's OpenAI routes) against the real
`dpserve serve` (run_e2e.sh starts it on the tiny f32 echo model, ECHO_MODEL, EOS id 2), over a real socket,
judged by the NumPy reference forward (tests/model/reference/ref_forward.py), never by the server's own
output alone.

The case: the reference's greedy first token T is made a stop token (stop_token_ids [T]). Without a
minimum the output stops at once. With min_new_tokens m, T and the EOS id are masked for the first m
tokens, so what must hold:
  * every output token is the reference's argmax of its distribution with those ids masked at the
    positions before m, and unmasked after (within TOL), and none of the first m is T or EOS;
  * output_token_logprobs at a masked position are the reference's log-softmax over the ids left (the
    mask renormalises, as a structured output's does), and plain log-softmax after m;
  * the output ends with T (matched) or at max_new_tokens, never before m tokens;
  * /v1/completions and /v1/chat/completions take min_tokens the same way (completion_tokens >= m);
  * min above the maximum, negative or not an integer is a 400 naming the field;
  * under a regex the end is masked while the grammar may go on ('ab|abcd' with a minimum of 3 gives
    'abcd'), and a complete output ends the request before the minimum, as SGLang's does.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
from check_tally import check as tally, finish  # noqa: E402
from echo_reference import TOL, VOCAB, post, ref  # noqa: E402

EOS = 2


def check(cond, what):
    tally(what, cond)


def log_softmax(x):
    finite = x[np.isfinite(x)]
    m = finite.max()
    return x - (m + np.log(np.exp(finite - m).sum()))


def ref_rows(ids):
    return ref.forward(ids)[:, :VOCAB].astype(np.float64)


def check_min(label, prompt, m, stop, max_new):
    s, b = post("/generate", {"input_ids": prompt, "return_logprob": True,
                              "sampling_params": {"max_new_tokens": max_new, "min_new_tokens": m, "temperature": 0,
                                                  "stop_token_ids": [stop]}})
    check(s == 200, f"{label}: 200 (got {s} {str(b)[:200]})")
    if s != 200:
        return
    out = b["output_ids"]
    meta = b["meta_info"]
    lps = meta["output_token_logprobs"]
    n = meta["completion_tokens"]
    check(n >= m, f"{label}: at least {m} tokens (got {n}, finish {meta['finish_reason']})")
    check(all(t not in (stop, EOS) for t in out[:m]), f"{label}: none of the first {m} is the stop id or EOS ({out})")
    rows = ref_rows(prompt + out)
    worst_arg, worst_lp = 0.0, 0.0
    for k, (lp, tok) in enumerate((e[0], e[1]) for e in lps):
        x = rows[len(prompt) - 1 + k].copy()
        if k < m:
            x[[EOS, stop]] = -np.inf
        want = log_softmax(x)
        worst_arg = max(worst_arg, float(want.max() - want[tok]))
        worst_lp = max(worst_lp, abs(lp - want[tok]))
    check(worst_arg < TOL, f"{label}: every token is the masked reference's argmax (worst gap {worst_arg:.2e})")
    check(worst_lp < TOL, f"{label}: the logprobs are the masked reference's (worst error {worst_lp:.2e})")
    fr = meta["finish_reason"]
    check((fr.get("type") == "stop" and fr.get("matched") == stop and n > m) or
          (fr.get("type") == "length" and n == max_new) or (fr.get("type") == "stop" and fr.get("matched") == EOS),
          f"{label}: ends at the stop id after the minimum or at the maximum ({fr}, {n} tokens)")


def main():
    prompt = [5, 77, 123, 9, 300]
    first = int(np.argmax(ref_rows(prompt)[-1]))
    check(first not in (EOS,), f"the reference's greedy first token {first} is not EOS")
    s, b = post("/generate", {"input_ids": prompt, "sampling_params": {"max_new_tokens": 8, "temperature": 0,
                                                                       "stop_token_ids": [first]}})
    check(s == 200 and b["meta_info"]["completion_tokens"] == 1
          and b["meta_info"]["finish_reason"].get("matched") == first,
          f"no minimum: stops at once on the stop id {first} (got {s} {str(b)[:300]})")
    for m in (1, 3, 6):
        check_min(f"min_new_tokens {m}", prompt, m, first, 8)
    check_min("min_new_tokens = max_new_tokens", prompt, 5, first, 5)

    # The OpenAI routes' min_tokens: the same tokens as /generate's (just checked against the reference).
    s, g = post("/generate", {"input_ids": prompt, "sampling_params": {"max_new_tokens": 8, "min_new_tokens": 3,
                                                                       "temperature": 0, "stop_token_ids": [first]}})
    s2, c = post("/v1/completions", {"model": "llama", "prompt": prompt, "max_tokens": 8, "min_tokens": 3,
                                     "temperature": 0, "stop_token_ids": [first]})
    check(s == 200 and s2 == 200 and c["usage"]["completion_tokens"] == g["meta_info"]["completion_tokens"] >= 3
          and c["choices"][0]["text"] == g["text"],
          f"completions min_tokens 3: /generate's tokens (got {s2} {str(c)[:300]})")
    s, ch = post("/v1/chat/completions", {"model": "llama", "messages": [{"role": "user", "content": "hi"}],
                                          "max_tokens": 6, "min_tokens": 4, "temperature": 0, "stop_token_ids": [EOS]})
    check(s == 200 and ch["usage"]["completion_tokens"] >= 4,
          f"chat min_tokens 4: at least 4 tokens (got {s} {str(ch)[:300]})")

    # Refusals: 400s naming the field; the server goes on.
    for path, body, param in (
            ("/v1/completions", {"model": "llama", "prompt": "a", "max_tokens": 4, "min_tokens": 5}, "min_tokens"),
            ("/v1/completions", {"model": "llama", "prompt": "a", "min_tokens": -1}, "min_tokens"),
            ("/v1/chat/completions", {"model": "llama", "messages": [{"role": "user", "content": "a"}],
                                      "max_completion_tokens": 2, "min_tokens": 3}, "min_tokens"),
            ("/v1/completions", {"model": "llama", "prompt": "a", "min_tokens": 1.5}, "min_tokens"),
            ("/generate", {"text": "a", "sampling_params": {"max_new_tokens": 4, "min_new_tokens": 9}},
             "min_new_tokens"),
            ("/generate", {"text": "a", "sampling_params": {"min_new_tokens": "3"}}, "min_new_tokens")):
        s, e = post(path, body)
        err = e.get("error", {}) if isinstance(e, dict) else {}
        check(s == 400 and str(err.get("param", "")).endswith(param) and param in err.get("message", ""),
              f"{path} {body}: 400 naming {param} (got {s} {err})")
    # Under a structured output: the end is masked while the grammar could go on ("ab" may end or take
    # "cd"), so a minimum of 3 makes it "abcd"; a complete output ends the request even before the
    # minimum (nothing else is allowed there: SGLang ends it the same way).
    s, b = post("/generate", {"text": "a", "sampling_params": {"max_new_tokens": 8, "min_new_tokens": 3,
                                                               "regex": "ab|abcd", "temperature": 0}})
    check(s == 200 and b["text"] == "abcd", f"regex 'ab|abcd', min_new_tokens 3: 'abcd' (got {s} {str(b)[:300]})")
    s, b = post("/generate", {"text": "a", "sampling_params": {"max_new_tokens": 8, "min_new_tokens": 4,
                                                               "regex": "ab", "temperature": 0}})
    check(s == 200 and b["text"] == "ab" and b["meta_info"]["finish_reason"]["type"] == "stop",
          f"regex 'ab', min_new_tokens 4: the complete output ends it (got {s} {str(b)[:300]})")
    s, b = post("/generate", {"input_ids": prompt, "sampling_params": {"max_new_tokens": 2, "temperature": 0}})
    check(s == 200 and b["meta_info"]["completion_tokens"] == 2, f"the next request is served (got {s})")
    finish()


if __name__ == "__main__":
    main()
