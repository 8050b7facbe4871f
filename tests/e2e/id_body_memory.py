#!/usr/bin/python3
"""Large token-id arrays in request bodies: served as the same ids in a small body, refused with the
same 400s, and parsed without a JSON value per id.

The body's JSON used to become a DOM (16 bytes a value, plus the array's growth) before its ids were
copied out: an 8M-id body of 32 MB took the server's peak RSS up by ~300 MB (9-11x the body). Ids
under /generate `input_ids`, /v1/completions `prompt` and /v1/embeddings `input` are now parsed
straight into int32 (src/server/json_body.h).

Real `dpserve serve` on a tiny random Qwen3 (Qwen3 tokenizer, 4096-token context), real HTTP:
  * greedy /generate and /v1/completions on ~4000 ids give the tokens of the same ids sent as a
    batch item, and /generate on a text gives those of its /tokenize ids;
  * a bad id (out of the vocabulary, 1.5, a string) at the end of 1M ids is the 400 the same id
    gives in a 3-id body, word for word;
  * 8M ids (32 MB) to /generate and /v1/completions: a 400 naming the context, and the server's
    peak RSS (reset through /proc/PID/clear_refs before each) grows by less than 6x the body
    (the DOM parser: 9.3x; this parser ~3x);
  * a short request is served afterwards and the server exits 0.
usage: id_body_memory.py DPSERVE_BIN MAKE_HF_MODEL QWEN3_TOKENIZER_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import ServeProcess, UNDER_ASAN, proc_bytes  # noqa: E402

BIN, MAKE_MODEL, TOKENIZER = sys.argv[1:4]
VOCAB = 151936
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def post(srv, path, body):
    """(status, parsed JSON answer) of a POST; `body` is bytes or a JSON-able value."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(srv.url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ids_body(field, ids_text, extra=""):
    return ('{"' + field + '": [' + ids_text + "]" + extra + "}").encode()


def peak_growth(pid, send):
    """The growth of the server's peak RSS over its RSS before, across send()."""
    time.sleep(0.3)  # the previous request's thread frees its body after it has answered
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    rss0 = proc_bytes(pid, "VmRSS")
    out = send()
    return proc_bytes(pid, "VmHWM") - rss0, out


def main():
    tmp = tempfile.mkdtemp(prefix="id_body_memory.")
    try:
        model = os.path.join(tmp, "m")
        subprocess.run([sys.executable, MAKE_MODEL, "--arch", "qwen3", "--dtype", "bf16", "--quiet", "--out", model,
                        "--vocab-size", str(VOCAB), "--hidden-size", "64", "--intermediate-size", "128",
                        "--num-hidden-layers", "1", "--num-attention-heads", "2", "--num-key-value-heads", "1",
                        "--head-dim", "32", "--max-position-embeddings", "4096", "--tokenizer-dir", TOKENIZER],
                       check=True)
        with ServeProcess(BIN, "--model-path", model, "--served-model-name", "m", "--threads", "1",
                          "--max-total-tokens", "8192", "--max-body-bytes", str(48 << 20),
                          log=os.path.join(tmp, "serve.log")) as srv:
            pid = srv.proc.pid
            greedy = {"temperature": 0, "max_new_tokens": 4, "ignore_eos": True}

            # The same ids, alone (a ~30 KB body) and as a batch item; a text and its /tokenize ids.
            ids = [(i * 7919) % 150000 for i in range(4000)]
            s1, alone = post(srv, "/generate", {"input_ids": ids, "sampling_params": greedy})
            s2, batch = post(srv, "/generate", {"input_ids": [[11, 12, 13], ids], "sampling_params": greedy})
            check(s1 == 200 and s2 == 200 and alone["output_ids"] == batch[1]["output_ids"],
                  f"4000 ids: the same tokens alone and as a batch item ({s1}, {s2})")
            s3, comp = post(srv, "/v1/completions", {"model": "m", "prompt": ids, "max_tokens": 4, "temperature": 0,
                                                      "ignore_eos": True, "logprobs": 0})
            check(s3 == 200 and comp["usage"]["prompt_tokens"] == 4000 and
                  comp["choices"][0]["text"] == alone["text"],
                  f"/v1/completions on the 4000 ids: the text /generate made ({s3})")
            text = "Once upon a time there was a tiny model that read long prompts of token ids. " * 30
            s5, by_text = post(srv, "/generate", {"text": text, "sampling_params": greedy})
            s6, tok = post(srv, "/tokenize", {"prompt": text})
            tok_ids = tok.get("tokens", [])
            s7, by_ids = post(srv, "/generate", {"input_ids": tok_ids, "sampling_params": greedy})
            check(s5 == 200 and s6 == 200 and s7 == 200 and len(tok_ids) > 100 and
                  by_text["output_ids"] == by_ids["output_ids"],
                  f"a text and its /tokenize ids give the same tokens ({s5}, {s6}, {s7}, {len(tok_ids)} ids)")

            # A bad id at the end of 1M ids: the 400 the same id gives in a small body.
            million = ",".join(["7"] * 1_000_000)
            for bad in [str(VOCAB), "-1", "1.5", '"a"', "3000000000"]:
                sb, big = post(srv, "/generate", ids_body("input_ids", million + "," + bad))
                ss, small = post(srv, "/generate", ids_body("input_ids", "7,7," + bad))
                check(sb == 400 and big == small and big["error"]["param"] == "input_ids",
                      f"/generate: {bad} after 1M ids is the small body's 400 ({sb}: {big['error']['message'][:70]})")
            sb, big = post(srv, "/v1/completions", ids_body("prompt", million + "," + str(VOCAB), ', "model": "m"'))
            ss, small = post(srv, "/v1/completions", ids_body("prompt", "7,7," + str(VOCAB), ', "model": "m"'))
            check(sb == 400 and big == small and big["error"]["param"] == "prompt",
                  f"/v1/completions: an id outside the vocabulary after 1M ids is the small body's 400 ({sb})")

            # 8M ids, 32 MB: refused for the context, with the peak RSS a few times the body.
            eight = ",".join(str(100 + i % 900) for i in range(8_000_000))
            for path, field, extra, param in [("/generate", "input_ids", "", "input_ids"),
                                              ("/v1/completions", "prompt", ', "model": "m"', "prompt")]:
                body = ids_body(field, eight, extra)
                grew, (status, ans) = peak_growth(pid, lambda: post(srv, path, body))
                msg = ans.get("error", {}).get("message", "")
                check(status == 400 and ans["error"]["param"] == param and "maximum context length is 4096" in msg,
                      f"{path}: 8M ids are a 400 naming the context ({status}: {msg[:80]})")
                ratio = grew / len(body)
                print(f"     {path}: {len(body) / 1e6:.0f} MB body, peak RSS +{grew / 1e6:.0f} MB = {ratio:.1f}x",
                      flush=True)
                check(UNDER_ASAN or ratio < 6,
                      f"{path}: peak RSS growth {ratio:.1f}x the body < 6x (a JSON value per id: 9.3x)")

            s, short = post(srv, "/generate", {"input_ids": [1, 2, 3], "sampling_params": greedy})
            check(s == 200 and len(short["output_ids"]) == 4, "a short request is served afterwards")
            rc = srv.stop()
            check(rc == 0, f"server exits 0 on SIGTERM (got {rc})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed", flush=True)
        sys.exit(1)
    print("all checks passed", flush=True)


main()
