#!/usr/bin/python3
"""SGLang's token_ids_logprob on /generate against the real `dpserve serve` (run_e2e.sh starts it on the
tiny f32 echo model, ECHO_MODEL, vocabulary 384), over a real socket, judged by the NumPy reference
forward (tests/model/reference/ref_forward.py) and by the laws a distribution obeys, never by the
server's own output alone.

What must hold (SGLang's tokenizer_manager / logits_processor shapes):
  * meta_info.output_token_ids_logprobs has one list per output token, and each list one
    [logprob, token id, text or null] entry per requested id, in the request's order (duplicates kept);
  * those logprobs are the log-softmax the reference gives for the prompt + output so far, the same
    distribution top_logprobs_num reports (before temperature): the sampled token's entry equals its
    output_token_logprobs value and every id also in output_top_logprobs has that value;
  * requesting every id of the vocabulary: sum(exp) is 1 within 1e-4 at every position;
  * a batch takes one list per prompt (or one list for all); the ids stay the request's at every position,
    under sampling (temperature 1.3, seeded) as in greedy requests;
  * with logprob_start_len s, meta_info.input_token_ids_logprobs is null for position s and then, for
    each prompt position p > s, the ids' log-softmax the reference gives for the prompt's first p tokens
    (the same values input_top_logprobs and input_token_logprobs report there); without it, [null];
  * bad ids (outside the vocabulary, negative, not integers) and no return_logprob are 400s naming the
    field.
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from echo_reference import TOL, VOCAB, post, ref  # noqa: E402

failures = []


def check(cond, what):
    print(("ok:   " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        failures.append(what)


def gen(body):
    return post("/generate", body)


def ref_log_softmax(ids):
    logits = ref.forward(ids)[:, :VOCAB]
    m = logits.max(axis=1, keepdims=True)
    return logits - (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))


def check_answer(label, b, prompt, ids, top_n, start=None):
    meta = b["meta_info"]
    out = b["output_ids"]
    rows = meta.get("output_token_ids_logprobs")
    if not isinstance(rows, list) or len(rows) != len(out):
        check(False, f"{label}: one output_token_ids_logprobs list per output token (got {str(rows)[:120]})")
        return
    check(all([e[1] for e in row] == ids for row in rows), f"{label}: every position lists exactly the ids asked, in order")
    ref_lp = ref_log_softmax(prompt + out)
    worst = 0.0
    for k, row in enumerate(rows):
        want = ref_lp[len(prompt) - 1 + k]
        worst = max(worst, max(abs(e[0] - want[i]) for e, i in zip(row, ids)))
    check(worst < TOL, f"{label}: the logprobs are the reference's log-softmax (worst error {worst:.2e})")
    same_tok, same_top = True, True
    for k, row in enumerate(rows):
        by_id = {e[1]: e[0] for e in row}
        tok_lp, tok = meta["output_token_logprobs"][k][:2]
        if tok in by_id:
            same_tok &= abs(by_id[tok] - tok_lp) <= 1e-6
        for lp, i, _ in (meta.get("output_top_logprobs") or [[]] * len(out))[k] if top_n else []:
            if i in by_id:
                same_top &= abs(by_id[i] - lp) <= 1e-6
    check(same_tok, f"{label}: the sampled token's entry equals its output_token_logprobs value")
    check(same_top, f"{label}: ids also in output_top_logprobs have the same values there")
    if start is None:
        check(meta.get("input_token_ids_logprobs") == [None],
              f"{label}: input_token_ids_logprobs is the start position's null "
              f"(got {meta.get('input_token_ids_logprobs')})")
        return
    rows_in = meta.get("input_token_ids_logprobs")
    if not isinstance(rows_in, list) or len(rows_in) != len(prompt) - start or rows_in[0] is not None:
        check(False, f"{label}: input_token_ids_logprobs is null then one list per prompt position after "
                     f"{start} (got {str(rows_in)[:160]})")
        return
    check(all([e[1] for e in row] == ids for row in rows_in[1:]),
          f"{label}: every prompt position lists exactly the ids asked, in order")
    worst = 0.0
    for j, row in enumerate(rows_in[1:]):
        want = ref_lp[start + j]  # the distribution that scored prompt token start + j + 1
        worst = max(worst, max(abs(e[0] - want[i]) for e, i in zip(row, ids)))
    check(worst < TOL, f"{label}: the prompt positions' logprobs are the reference's (worst error {worst:.2e})")
    same_tok, same_top = True, True
    for j, row in enumerate(rows_in[1:], start=1):
        by_id = {e[1]: e[0] for e in row}
        tok_lp, tok = meta["input_token_logprobs"][j][:2]
        if tok in by_id:
            same_tok &= abs(by_id[tok] - tok_lp) <= 1e-6
        for lp, i, _ in (meta["input_top_logprobs"][j] if top_n else []):
            if i in by_id:
                same_top &= abs(by_id[i] - lp) <= 1e-6
    check(same_tok, f"{label}: a prompt token's entry equals its input_token_logprobs value")
    check(same_top, f"{label}: prompt ids also in input_top_logprobs have the same values there")


def main():
    every = list(range(VOCAB))
    prompt = [5, 77, 123, 9, 300]
    # Every id: a distribution sums to 1, agrees with the reference and with top_logprobs.
    s, b = gen({"input_ids": prompt, "return_logprob": True, "top_logprobs_num": 5, "token_ids_logprob": every,
                "sampling_params": {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}})
    check(s == 200, f"every id of the vocabulary: 200 (got {s} {str(b)[:200]})")
    if s == 200:
        sums = [math.fsum(math.exp(e[0]) for e in row) for row in b["meta_info"]["output_token_ids_logprobs"]]
        check(all(abs(x - 1) <= 1e-4 for x in sums), f"sum of exp over all {VOCAB} ids is 1 within 1e-4 ({sums})")
        check_answer("greedy, every id", b, prompt, every, 5)
    # A few ids, out of order and repeated; sampled at temperature 1.3: still the unscaled distribution.
    few = [300, 2, 300, 17, VOCAB - 1, 0]
    s, b = gen({"input_ids": prompt, "return_logprob": True, "top_logprobs_num": 3, "token_ids_logprob": few,
                "sampling_params": {"max_new_tokens": 8, "temperature": 1.3, "seed": 11, "ignore_eos": True}})
    check(s == 200, f"a few ids, sampled: 200 (got {s})")
    if s == 200:
        check_answer("sampled, few ids", b, prompt, few, 3)
    # A batch: one list per prompt, or one list for all; streamed answers end with the same lists.
    p2 = [40, 41, 42]
    s, b = gen({"input_ids": [prompt, p2], "return_logprob": True, "token_ids_logprob": [[1, 2, 3], [7]],
                "sampling_params": {"max_new_tokens": 4, "temperature": 0, "ignore_eos": True}})
    check(s == 200 and len(b) == 2, f"a batch with one list per prompt: 200 (got {s})")
    if s == 200:
        check_answer("batch prompt 0", b[0], prompt, [1, 2, 3], 0)
        check_answer("batch prompt 1", b[1], p2, [7], 0)
    s, b = gen({"input_ids": [prompt, p2], "return_logprob": True, "token_ids_logprob": [9, 8],
                "sampling_params": {"max_new_tokens": 3, "temperature": 0, "n": 2, "ignore_eos": True}})
    check(s == 200 and len(b) == 4, f"a batch x n=2 with one list for all: 200 (got {s})")
    if s == 200:
        for i, x in enumerate(b):
            check_answer(f"shared list, choice {i}", x, [prompt, p2][i // 2], [9, 8], 0)
    # The prompt's positions too (logprob_start_len): from its start, and from a later position, in a batch.
    s, b = gen({"input_ids": prompt, "return_logprob": True, "top_logprobs_num": 4, "logprob_start_len": 0,
                "token_ids_logprob": every, "sampling_params": {"max_new_tokens": 3, "temperature": 0,
                                                                 "ignore_eos": True}})
    check(s == 200, f"every id over the prompt too: 200 (got {s} {str(b)[:200]})")
    if s == 200:
        check_answer("prompt from 0, every id", b, prompt, every, 4, start=0)
        sums = [math.fsum(math.exp(e[0]) for e in row) for row in b["meta_info"]["input_token_ids_logprobs"][1:]]
        check(all(abs(x - 1) <= 1e-4 for x in sums), f"prompt positions: sum of exp over all ids is 1 ({sums})")
    s, b = gen({"input_ids": [prompt, p2], "return_logprob": True, "logprob_start_len": 1,
                "token_ids_logprob": [[300, 2, 300], [41, 0]],
                "sampling_params": {"max_new_tokens": 2, "temperature": 0, "ignore_eos": True}})
    check(s == 200 and len(b) == 2, f"a batch with logprob_start_len 1: 200 (got {s} {str(b)[:200]})")
    if s == 200:
        check_answer("prompt from 1, batch prompt 0", b[0], prompt, [300, 2, 300], 0, start=1)
        check_answer("prompt from 1, batch prompt 1", b[1], p2, [41, 0], 0, start=1)
    # Refusals.
    base = {"input_ids": prompt, "return_logprob": True, "sampling_params": {"max_new_tokens": 2}}
    for label, extra, param in (
            ("an id past the vocabulary", {"token_ids_logprob": [3, VOCAB]}, "token_ids_logprob"),
            ("a negative id", {"token_ids_logprob": [-1]}, "token_ids_logprob"),
            ("a non-integer id", {"token_ids_logprob": [1.5]}, "token_ids_logprob"),
            ("a string", {"token_ids_logprob": "5"}, "token_ids_logprob"),
            ("without return_logprob", {"token_ids_logprob": [3], "return_logprob": False}, "token_ids_logprob"),
            ("lists for the wrong number of prompts", {"token_ids_logprob": [[3], [4]]}, "token_ids_logprob")):
        s, e = gen(dict(base, **extra))
        err = e.get("error", {}) if isinstance(e, dict) else {}
        check(s == 400 and err.get("param") == param, f"{label}: 400 naming {param} (got {s} {err})")
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all ok")


if __name__ == "__main__":
    main()
