#!/usr/bin/python3
"""SGLang's scoring API, POST /v1/score, against the real `dpserve serve` (run_e2e.sh starts it on the tiny
f32 echo model, ECHO_MODEL), over a real socket, judged by the NumPy reference forward.

What must hold (SGLang's ScoringRequest): each item is scored at the end of query + item (item + query with
item_first; token ids concatenated); a score list has one probability per label id: the next-token
probability over the whole vocabulary, or with apply_softmax the softmax over the labels' logits alone
(summing to 1). Text queries and items are joined before tokenizing, as SGLang does. Bad input is a 400
naming the field.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
from check_tally import check, finish  # noqa: E402
from echo_reference import TOL, VOCAB, post, ref  # noqa: E402


def last_logits(ids):
    return ref.forward(ids)[-1, :VOCAB].astype(np.float64)


def want(ids, labels, softmax):
    x = last_logits(ids)
    if softmax:
        z = np.exp(x[labels] - x[labels].max())
        return z / z.sum()
    m = x.max()
    return np.exp(x[labels] - (m + np.log(np.exp(x - m).sum())))


def main():
    labels = [5, 77, 300, 2]
    query = [11, 12, 13, 14, 15]
    items = [[20, 21], [30], [40, 41, 42, 43]]
    for softmax in (False, True):
        for item_first in (False, True):
            label = f"ids, apply_softmax {softmax}, item_first {item_first}"
            s, b = post("/v1/score", {"query": query, "items": items, "label_token_ids": labels,
                                      "apply_softmax": softmax, "item_first": item_first})
            check(f"{label}: 200", s == 200, str(b)[:300])
            if s != 200:
                continue
            check(f"{label}: object and one list per item", b.get("object") == "scoring" and
                  len(b["scores"]) == len(items) and all(len(x) == len(labels) for x in b["scores"]))
            worst = 0.0
            for item, got in zip(items, b["scores"]):
                ids = item + query if item_first else query + item
                worst = max(worst, float(np.abs(np.array(got) - want(ids, labels, softmax)).max()))
            check(f"{label}: the reference's probabilities", worst < TOL, f"(worst error {worst:.2e})")
            if softmax:
                check(f"{label}: each list sums to 1", all(abs(sum(x) - 1) < 1e-5 for x in b["scores"]))
            check(f"{label}: usage counts every prompt", b["usage"]["prompt_tokens"] ==
                  sum(len(i) + len(query) for i in items))
    # Text: query + item joined, then tokenized as one prompt (the ids /tokenize gives that text).
    s, b = post("/v1/score", {"query": "ab", "items": ["cd", "e f"], "label_token_ids": labels})
    check("text: 200", s == 200, str(b)[:300])
    if s == 200:
        for text, got in zip(["abcd", "abe f"], b["scores"]):
            st, t = post("/tokenize", {"prompt": text})
            err = float(np.abs(np.array(got) - want(t["tokens"], labels, False)).max()) if st == 200 else 1.0
            check(f"text {text!r}: scored as its joined prompt", err < TOL, f"(worst error {err:.2e})")
    bad = [({"items": [[1]], "label_token_ids": labels}, "query"),
           ({"query": [1], "label_token_ids": labels}, "items"),
           ({"query": [1], "items": [[1]], "label_token_ids": []}, "label_token_ids"),
           ({"query": [1], "items": [[1]], "label_token_ids": [10 ** 9]}, "label_token_ids"),
           ({"query": [1], "items": [[1]], "label_token_ids": ["a"]}, "label_token_ids"),
           ({"query": "a", "items": [[1]], "label_token_ids": labels}, "items"),
           ({"query": [1], "items": ["a"], "label_token_ids": labels}, "items"),
           ({"query": [1], "items": [[1]], "label_token_ids": labels, "apply_softmax": "yes"}, "apply_softmax"),
           ({"query": [1], "items": [[1]], "label_token_ids": labels, "extra": 1}, "extra")]
    for body, field in bad:
        s, b = post("/v1/score", body)
        err = b.get("error", {}) if isinstance(b, dict) else {}
        check(f"{body}: 400 naming {field}", s == 400 and err.get("param") == field, f"{s} {err}")
    finish()


if __name__ == "__main__":
    main()
