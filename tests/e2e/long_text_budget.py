#!/usr/bin/python3
"""Prompt texts far over the context cost one encoding's memory however many arrive at once.

A request is refused for its context only once its text is tokenized, and tokenizing held ~30x the
text at its peak (a 30 MB prompt took the server from 0.11 to 0.98 GB; three at once 2.65 GB). Texts of
64 KiB and more now take turns under a process-wide budget (src/tokenizer/encode_turn.h), and the
pre-tokenizer hands each word to the model as it is made instead of holding every word of the text
(src/tokenizer/pre_tokenizer.h): one 12 MB prompt peaks at ~8x its size, where it took ~23x.

Real `dpserve serve` on a tiny random Qwen3 with the Qwen3 tokenizer and a 4096-token context, real
HTTP (urllib):
  * one 12 MB prompt (8M tokens): a 400 naming the context; its peak RSS growth G1 is measured, and
    stays under 14x the text (every word held at once: ~23x);
  * three such prompts at once: all 400, and the peak RSS over the whole test stays under 2.4 x G1
    (encoded side by side they took ~3 x G1; taking turns, each still holds its body and two copies
    of its text outside the turn, ~3x the text each, so they cost ~1.9 x G1);
  * a short prompt is served afterwards.
usage: long_text_budget.py DPSERVE_BIN MAKE_HF_MODEL QWEN3_TOKENIZER_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import UNDER_ASAN, ServeProcess, proc_bytes  # noqa: E402

BIN, MAKE_MODEL, TOKENIZER = sys.argv[1:4]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def complete(srv, prompt):
    """(status, error message or "") of a /v1/completions request."""
    body = json.dumps({"model": "m", "prompt": prompt, "max_tokens": 1}).encode()
    req = urllib.request.Request(srv.url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, ""
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()).get("error", {}).get("message", "")


def main():
    tmp = tempfile.mkdtemp(prefix="long_text_budget.")
    try:
        model = os.path.join(tmp, "m")
        subprocess.run([sys.executable, MAKE_MODEL, "--arch", "qwen3", "--dtype", "bf16", "--quiet", "--out", model,
                        "--vocab-size", "151936", "--hidden-size", "64", "--intermediate-size", "128",
                        "--num-hidden-layers", "1", "--num-attention-heads", "2", "--num-key-value-heads", "1",
                        "--head-dim", "32", "--max-position-embeddings", "4096", "--tokenizer-dir", TOKENIZER],
                       check=True)
        with ServeProcess(BIN, "--model-path", model, "--served-model-name", "m", "--threads", "1",
                          "--max-total-tokens", "8192", log=os.path.join(tmp, "serve.log")) as srv:
            pid = srv.proc.pid
            check(complete(srv, "Once upon a time")[0] == 200, "a short prompt is served")
            # 12 MB (8M tokens), well under --max-body-bytes (32 MiB) and the test's memory bound.
            text = "hello " * 2_000_000
            hwm0 = proc_bytes(pid, "VmHWM")
            status, msg = complete(srv, text)
            check(status == 400 and "maximum context length is 4096" in msg,
                  f"a 12 MB prompt is a 400 naming the context (got {status}: {msg[:120]})")
            g1 = proc_bytes(pid, "VmHWM") - hwm0
            print(f"     one 12 MB prompt: peak RSS +{g1 / 2**20:.0f} MB", flush=True)
            results = []
            threads = [threading.Thread(target=lambda: results.append(complete(srv, text))) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            g3 = proc_bytes(pid, "VmHWM") - hwm0
            check(sorted(s for s, _ in results) == [400] * 3 and
                  all("maximum context length is 4096" in m for _, m in results),
                  f"three at once: all 400 naming the context (got {[s for s, _ in results]})")
            check(g1 > 64 << 20, f"one prompt's encoding is measurable (+{g1 / 2**20:.0f} MB > 64 MB)")
            check(UNDER_ASAN or g1 < 14 * len(text), f"one prompt's peak RSS +{g1 / 2**20:.0f} MB < 14 x its "
                                       f"{len(text) / 2**20:.0f} MB: its words are not all held at once")
            check(g3 < 2.4 * g1, f"three at once: peak RSS +{g3 / 2**20:.0f} MB < 2.4 x one prompt's "
                                 f"(+{2.4 * g1 / 2**20:.0f} MB): they take turns, not memory side by side")
            check(complete(srv, "Once upon a time")[0] == 200, "a short prompt is served afterwards")
            rc = srv.stop()
            check(rc == 0, f"server exits 0 on SIGTERM (got {rc})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed", flush=True)
        sys.exit(1)
    print("all checks passed", flush=True)


main()
