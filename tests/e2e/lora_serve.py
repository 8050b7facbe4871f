#!/usr/bin/python3
"""LoRA adapters served per request (--lora-paths, SGLang's flag; vLLM's --lora-modules; llama.cpp's --lora).

A tiny random Qwen3 folder (f32, Qwen3 tokenizer) and a random PEFT adapter for it, written here with numpy
(adapter_config.json + adapter_model.safetensors, r 4, alpha 2, on q/k/v/o/gate/up/down of every layer), and
the independent reference: the same folder with the adapter merged into its weights as PEFT documents it,
W' = W + (alpha / r) B @ A. Greedy (temperature 0) output token ids are compared over real HTTP:
  * `--lora-paths a=ADAPTER`: requests naming the adapter give exactly the merged model's tokens, requests
    without it the plain base server's, sent all at once so base and adapter sequences share batches; and a
    sanity check that the adapter changes the output at all (else the comparison proves nothing);
  * the selectors: /generate lora_path (one name, and a list with one name or null per prompt), the OpenAI
    routes' model "a" (vLLM) and "<served>:a" (SGLang), whose reply echoes the name given (chat,
    completions, responses), and lora_path in a chat body (SGLang's extra_body);
  * /v1/models lists the adapter after the base (vLLM's parent / root), /get_server_info its path;
  * an unknown adapter: 400 naming lora_path on /generate, 404 model_not_found for `model`; the server
    still answers the next request;
  * the prefix cache: one long prompt sent to the base, then the adapter, then the adapter again: the
    adapter's first request takes nothing from the cache (cached_tokens 0: the base's pages must not
    serve it) and still matches the merged model, its second one hits its own pages;
  * start-up errors naming --lora-paths: a missing folder, a name given twice, the served model's name;
  * --kv-cache-dir keeps the base's pages only: after a restart the adapter's prompt is not served from
    the file (and still matches the merged model), the base's is;
  * with NGRAM speculative decoding and 16-token prefill chunks, each request keeps its adapter;
  * the same under DP attention (2 ranks, --tp-size 2 --dp-size 2 --enable-dp-attention).
usage: lora_serve.py DPSERVE_BIN MAKE_HF_MODEL QWEN3_TOKENIZER_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from check_tally import check, finish  # noqa: E402
from serve_process import MPI_ENV, UNDER_ASAN, ServeProcess  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lora_fixtures import PROMPTS, make_adapter, make_base  # noqa: E402

BIN, MAKE_MODEL, TOKENIZER = sys.argv[1:4]
# Longer than a few KV pages (page size 16), so a prefix cache hit is whole pages.
LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 8)
MAX_NEW = 8


def make_models(tmp):
    base, weights = make_base(tmp, MAKE_MODEL, TOKENIZER)
    adapter, merged = make_adapter(tmp, "adapter", base, weights, seed=7)
    return base, adapter, merged


# ---- requests ----

def generate(srv, text, **fields):
    st, j = srv.request("POST", "/generate", {"text": text, "sampling_params": {"max_new_tokens": MAX_NEW,
                                                                              "temperature": 0}, **fields})
    return (j["output_ids"], j["meta_info"]["cached_tokens"]) if st == 200 else (f"HTTP {st}: {j}", None)


def chat(srv, model, **fields):
    st, j = srv.request("POST", "/v1/chat/completions",
                        {"model": model, "max_tokens": MAX_NEW, "temperature": 0, **fields,
                         "messages": [{"role": "user", "content": "Tell me a story"}]})
    return (j["choices"][0]["message"]["content"], j["model"]) if st == 200 else (f"HTTP {st}: {j}", None)


def references(binary_flags, model, log):
    """Greedy ids of every prompt (and LONG) and the chat text, from a plain server of `model`."""
    with ServeProcess(BIN, "--model-path", model, *binary_flags, log=log) as srv:
        ids = {p: generate(srv, p)[0] for p in PROMPTS + [LONG]}
        return ids, chat(srv, "m")[0]


def check_lora_server(srv, label, base_ids, base_chat, lora_ids, lora_chat, adapter, cache_counts=True):
    """cache_counts: check cached_tokens too (one DP group; with two the router alternates them)."""
    # Every prompt twice, base and adapter, all at once: they share batches.
    results = {}

    def run(key, prompt, fields):
        results[key] = generate(srv, prompt, **fields)[0]

    threads = [threading.Thread(target=run, args=((p, who), p, {"lora_path": "a"} if who == "a" else {}))
               for p in PROMPTS for who in ("base", "a")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in PROMPTS:
        check(f"{label}: {p!r} with the adapter equals the merged model", results[(p, "a")] == lora_ids[p],
              f"{results[(p, 'a')]} vs {lora_ids[p]}")
        check(f"{label}: {p!r} without it equals the base model", results[(p, "base")] == base_ids[p],
              f"{results[(p, 'base')]} vs {base_ids[p]}")

    # A batch of prompts with one adapter (or null) each, and one name for all.
    st, j = srv.request("POST", "/generate", {"text": PROMPTS[:3], "lora_path": ["a", None, "a"],
                                              "sampling_params": {"max_new_tokens": MAX_NEW, "temperature": 0}})
    want = [lora_ids[PROMPTS[0]], base_ids[PROMPTS[1]], lora_ids[PROMPTS[2]]]
    check(f"{label}: a /generate batch with lora_path per prompt", st == 200 and [r["output_ids"] for r in j] == want,
          f"{st} {str(j)[:300]}")
    st, j = srv.request("POST", "/generate", {"text": PROMPTS[:2], "lora_path": "a",
                                              "sampling_params": {"max_new_tokens": MAX_NEW, "temperature": 0}})
    check(f"{label}: a /generate batch with one lora_path for all",
          st == 200 and [r["output_ids"] for r in j] == [lora_ids[p] for p in PROMPTS[:2]], f"{st} {str(j)[:300]}")

    # OpenAI routes.
    for model in ("a", "m:a"):
        text, echoed = chat(srv, model)
        check(f"{label}: chat with model {model!r} equals the merged model's", text == lora_chat,
              f"{text!r} vs {lora_chat!r}")
        check(f"{label}: chat echoes model {model!r}", echoed == model, str(echoed))
    text, echoed = chat(srv, "m", lora_path="a")
    check(f"{label}: chat with lora_path 'a'", text == lora_chat and echoed == "m", f"{text!r} {echoed}")
    text, _ = chat(srv, "m")
    check(f"{label}: chat with the base model", text == base_chat, f"{text!r} vs {base_chat!r}")
    st, j = srv.request("POST", "/v1/completions", {"model": "a", "prompt": PROMPTS[0], "max_tokens": MAX_NEW,
                                                    "temperature": 0})
    st2, j2 = srv.request("POST", "/generate", {"text": PROMPTS[0], "lora_path": "a",
                                                "sampling_params": {"max_new_tokens": MAX_NEW, "temperature": 0}})
    check(f"{label}: completions with model 'a' gives /generate's adapter text",
          st == 200 and st2 == 200 and j["choices"][0]["text"] == j2["text"] and j["model"] == "a", f"{st} {st2}")

    st, r = srv.request("POST", "/v1/responses", {"model": "a", "input": "Tell me a story", "max_output_tokens": MAX_NEW,
                                                  "temperature": 0})
    texts = [c.get("text") for item in (r.get("output", []) if st == 200 else []) for c in item.get("content", [])]
    check(f"{label}: /v1/responses with model 'a' runs the adapter and echoes it",
          st == 200 and r.get("model") == "a" and texts == [lora_chat], f"{st} {texts} vs {lora_chat!r}")

    # Listing.
    st, j = srv.request("GET", "/v1/models")
    ids = [d["id"] for d in j.get("data", [])] if st == 200 else []
    check(f"{label}: /v1/models lists the base then the adapter", ids == ["m", "a"], str(j)[:300])
    card = j["data"][1] if ids == ["m", "a"] else {}
    check(f"{label}: the adapter's card names its parent and folder",
          card.get("parent") == "m" and card.get("root") == adapter, str(card))
    st, j = srv.request("GET", "/v1/models/a")
    check(f"{label}: /v1/models/a", st == 200 and j.get("id") == "a", f"{st} {j}")
    st, info = srv.request("GET", "/get_server_info")
    check(f"{label}: /get_server_info lora_paths", st == 200 and info.get("lora_paths") == {"a": adapter},
          str(info.get("lora_paths")))

    # Unknown adapters.
    st, j = srv.request("POST", "/generate", {"text": PROMPTS[0], "lora_path": "nope"})
    check(f"{label}: unknown lora_path is a 400 naming it",
          st == 400 and j["error"]["param"] == "lora_path" and "nope" in j["error"]["message"], f"{st} {j}")
    st, j = srv.request("POST", "/generate", {"text": PROMPTS[:2], "lora_path": ["a"]})
    check(f"{label}: a lora_path list of the wrong length is a 400", st == 400 and j["error"]["param"] == "lora_path",
          f"{st} {j}")
    st, j = srv.request("POST", "/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    check(f"{label}: unknown model is a 404 model_not_found", st == 404 and j["error"]["code"] == "model_not_found",
          f"{st} {j}")
    st, j = srv.request("POST", "/v1/chat/completions", {"model": "a", "lora_path": "b",
                                                         "messages": [{"role": "user", "content": "x"}]})
    check(f"{label}: lora_path naming an unknown adapter besides model 'a' is a 400", st == 400, f"{st} {j}")
    check(f"{label}: the next request is served", generate(srv, PROMPTS[0], lora_path="a")[0] == lora_ids[PROMPTS[0]])

    # Prefix cache: base first, then the adapter (must not reuse the base's pages), then the adapter again.
    got_base, _ = generate(srv, LONG)
    got_a, cached_a = generate(srv, LONG, lora_path="a")
    got_a2, cached_a2 = generate(srv, LONG, lora_path="a")
    got_base2, cached_base2 = generate(srv, LONG)
    check(f"{label}: long prompt, base", got_base == base_ids[LONG], f"{got_base} vs {base_ids[LONG]}")
    check(f"{label}: long prompt after the base's, adapter: the merged model's tokens", got_a == lora_ids[LONG],
          f"{got_a} vs {lora_ids[LONG]}")
    check(f"{label}: the adapter's second long request", got_a2 == lora_ids[LONG], f"{got_a2}")
    check(f"{label}: the base's second long request", got_base2 == base_ids[LONG], f"{got_base2}")
    if cache_counts:
        check(f"{label}: the adapter's first long request took nothing from the cache", cached_a == 0, str(cached_a))
        check(f"{label}: the adapter's second long request hits its own pages", (cached_a2 or 0) >= 16, str(cached_a2))
        check(f"{label}: the base's second long request hits its own pages", (cached_base2 or 0) >= 16,
              str(cached_base2))


def check_startup_errors(base, adapter, tmp):
    def start(*flags):
        try:
            p = subprocess.run([BIN, "serve", "--model-path", base, "--served-model-name", "m", "--port", "0",
                                "--threads", "1", "--max-total-tokens", "2048", *flags],
                               capture_output=True, text=True, timeout=60, env={**os.environ, **MPI_ENV})
        except subprocess.TimeoutExpired:
            return None, "still running after 60 s (started instead of refusing)"
        return p.returncode, p.stdout + p.stderr

    for what, flags, needle in [
            ("a missing folder", ["--lora-paths", "x=" + os.path.join(tmp, "missing")], "does not exist"),
            ("a name given twice", ["--lora-paths", "a=" + adapter, "a=" + adapter], "given twice"),
            ("the served model's name", ["--lora-paths", "m=" + adapter], "served model"),
            ("an unknown JSON key", ["--lora-paths", json.dumps({"lora_name": "a", "lora_path": adapter, "x": 1})],
             "unknown key")]:
        rc, out = start(*flags)
        check(f"start-up error for {what} names --lora-paths", rc not in (0, None) and "--lora-paths" in out and needle in out,
              f"rc {rc}: {out[-400:]}")


def check_more_servers(base, adapter, common, lora_ids, base_ids, tmp):
    # A bare path is named after its folder; SGLang's JSON form.
    with ServeProcess(BIN, "--model-path", base, *common, "--lora-paths", adapter,
                      json.dumps({"lora_name": "j", "lora_path": adapter, "pinned": True}),
                      log=os.path.join(tmp, "names.log")) as srv:
        st, j = srv.request("GET", "/v1/models")
        check("a bare path is named after its folder, the JSON form by lora_name",
              st == 200 and [d["id"] for d in j["data"]] == ["m", "adapter", "j"], str(j)[:300])
        check("the JSON-named adapter runs", generate(srv, PROMPTS[0], lora_path="j")[0] == lora_ids[PROMPTS[0]])

    # The prefix cache on disk keeps the base model's pages only: after a restart the adapter's long prompt
    # finds nothing (and still gives the merged model's tokens), the base's is served from the file.
    kvdir = os.path.join(tmp, "kvcache")
    for run in (1, 2):
        with ServeProcess(BIN, "--model-path", base, *common, "--lora-paths", "a=" + adapter, "--kv-cache-dir",
                          kvdir, log=os.path.join(tmp, f"kvdir{run}.log")) as srv:
            got_a, cached_a = generate(srv, LONG, lora_path="a")
            got_b, cached_b = generate(srv, LONG)
            check(f"--kv-cache-dir run {run}: adapter and base outputs",
                  got_a == lora_ids[LONG] and got_b == base_ids[LONG], f"{got_a} {got_b}")
            if run == 2:
                check("--kv-cache-dir after a restart: the adapter's prompt takes nothing from the file",
                      cached_a == 0, str(cached_a))
                check("--kv-cache-dir after a restart: the base's prompt is served from the file",
                      (cached_b or 0) >= 16, str(cached_b))

    # Speculative decoding (NGRAM drafts run without the adapter; the verify forward carries it) and
    # chunked prefill (the long prompt in 16-token chunks) keep each request's adapter.
    with ServeProcess(BIN, "--model-path", base, *common, "--lora-paths", "a=" + adapter,
                      "--speculative-algorithm", "NGRAM", "--chunked-prefill-size", "16",
                      log=os.path.join(tmp, "spec.log")) as srv:
        for p in PROMPTS[:2] + [LONG]:
            got = {}
            threads = [threading.Thread(target=lambda w=w: got.__setitem__(w, generate(
                srv, p, **({"lora_path": "a"} if w == "a" else {}))[0])) for w in ("a", "base")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            check(f"speculative + chunked prefill: {p[:20]!r} with the adapter", got["a"] == lora_ids[p],
                  f"{got['a']} vs {lora_ids[p]}")
            check(f"speculative + chunked prefill: {p[:20]!r} without it", got["base"] == base_ids[p],
                  f"{got['base']} vs {base_ids[p]}")


def main():
    tmp = tempfile.mkdtemp(prefix="lora_serve.")
    try:
        base, adapter, merged = make_models(tmp)
        check_startup_errors(base, adapter, tmp)
        common = ["--served-model-name", "m", "--threads", "1", "--max-total-tokens", "4096", "--page-size", "16"]
        base_ids, base_chat = references(common, base, os.path.join(tmp, "base.log"))
        lora_ids, lora_chat = references(common, merged, os.path.join(tmp, "merged.log"))
        check("the adapter changes the greedy output (else nothing is tested)",
              sum(base_ids[p] != lora_ids[p] for p in PROMPTS) >= 3 and base_chat != lora_chat,
              f"{base_ids} {lora_ids}")

        with ServeProcess(BIN, "--model-path", base, *common, "--lora-paths", "a=" + adapter,
                          log=os.path.join(tmp, "lora.log")) as srv:
            check_lora_server(srv, "one rank", base_ids, base_chat, lora_ids, lora_chat, adapter)
        if UNDER_ASAN:
            # The sanitizer job keeps the one-rank and DP-attention servers (adapter loading, mixed batches, the
            # per-adapter cache, gathered adapter ids); the naming forms, --kv-cache-dir restarts and speculation
            # with chunked prefill are four more server starts (about a minute under ASan): normal build only.
            print("under ASan: the naming, --kv-cache-dir and speculation servers are left to the normal build")
        else:
            check_more_servers(base, adapter, common, lora_ids, base_ids, tmp)

        with ServeProcess(BIN, "--model-path", base, *common, "--lora-paths", "a=" + adapter, "--tp-size", "2",
                          "--dp-size", "2",
                          "--enable-dp-attention", log=os.path.join(tmp, "dp.log")) as srv:
            check_lora_server(srv, "DP attention", base_ids, base_chat, lora_ids, lora_chat, adapter, cache_counts=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


main()
