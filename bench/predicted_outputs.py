#!/usr/bin/env python3
"""Single-stream chat decode with and without OpenAI's predicted outputs (chat's `prediction`), one
server, the same request; rounds alternate (plain, predicted, plain, ...) so the shared machine's
drift falls on both. Prints each round's tok/s (completion tokens over the request's wall time; the
prompt is short, so decode dominates), the accepted / rejected prediction tokens, and the median
speed-up (plain time / predicted time). Every
predicted answer must equal the plain one (the prediction only drafts; a difference is a bug).

Workloads:
  same   the prediction is the answer itself (re-asking for unchanged text: the upper bound);
  edit   the answer with a few words replaced every ~40 characters (a code or text edit: the drafts
         pick the prediction up again after each change).

  /usr/bin/python3 bench/predicted_outputs.py --model-path /tmp/qwen3-1b-shape \
      --tokenizer-path ../shared/tokenizers/qwen3 [--tokens 128] [--rounds 3] [--threads 2] [--extra '...']
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402


def chat(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=1800) as r:
        out = json.load(r)
    return out, time.perf_counter() - t0


def edited(text):
    parts = [text[i:i + 40] for i in range(0, len(text), 40)]
    return "".join(p[:30] + " (changed) " + p[30:] if len(p) == 40 else p for p in parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-path", required=True)
    ap.add_argument("--tokenizer-path", default=None)
    ap.add_argument("--dpserve", default=os.path.join(HERE, "..", "build", "bin", "dpserve"))
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workloads", default="same,edit")
    ap.add_argument("--extra", default="", help="more dpserve serve flags")
    a = ap.parse_args()
    flags = ["--model-path", a.model_path, "--threads", str(a.threads)] + shlex.split(a.extra)
    if a.tokenizer_path:
        flags += ["--tokenizer-path", a.tokenizer_path]
    try:
        server = ServeProcess(a.dpserve, *flags, health_timeout=600, quiet=True)
    except ServeError as e:
        sys.exit(str(e))
    try:
        body = {"messages": [{"role": "user", "content": "Rewrite this function with comments."}],
                "max_tokens": a.tokens, "temperature": 0, "ignore_eos": True,
                "chat_template_kwargs": {"enable_thinking": False}}
        chat(server.port, body)  # warm-up
        print(f"model {a.model_path}, {a.tokens} tokens, {a.rounds} rounds, threads {a.threads}, "
              f"{a.extra or 'no extra flags'}")
        for w in a.workloads.split(","):
            ratios = []
            for r in range(a.rounds):
                plain, t_plain = chat(server.port, body)
                text = plain["choices"][0]["message"]["content"]
                prediction = text if w == "same" else edited(text)
                pred, t_pred = chat(server.port, dict(body, prediction={"type": "content", "content": prediction}))
                if pred["choices"][0]["message"]["content"] != text:
                    sys.exit(f"{w}: the answer changed with a prediction (a bug)")
                n = plain["usage"]["completion_tokens"]
                d = pred["usage"]["completion_tokens_details"]
                ratios.append(t_plain / t_pred)
                print(f"  {w:5s} round {r + 1}: plain {n / t_plain:7.2f} tok/s  predicted {n / t_pred:7.2f} tok/s  "
                      f"ratio {t_plain / t_pred:5.2f}  accepted {d['accepted_prediction_tokens']} rejected "
                      f"{d['rejected_prediction_tokens']} of {n} tokens")
            print(f"{w}: median speed-up plain/predicted time {statistics.median(ratios):.2f} "
                  f"(rounds {', '.join(f'{x:.2f}' for x in ratios)})")
    finally:
        server.stop(timeout=120)


if __name__ == "__main__":
    main()
