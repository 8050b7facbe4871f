#!/usr/bin/python3
"""LoRA adapters loaded and unloaded while the server runs (--enable-lora; SGLang's /load_lora_adapter and
/unload_lora_adapter, vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter).

Fixtures (lora_fixtures.py): a tiny random Qwen3 folder and two random PEFT adapters A and B written with
numpy, and for each the independent reference: the base folder with the adapter merged into its weights
(W + alpha/r B A), served by a plain server. Greedy output ids are compared over real HTTP:
  * without --enable-lora the four routes answer 400 naming the flag (checked on the base reference server);
    with --api-key they answer 401 without the key (checked on a reference server started with both flags);
  * a server started with --enable-lora and no adapters: load A as X (SGLang's route and reply shape), X's
    output equals the A-merged model's, the base's is unchanged, /v1/models and /get_server_info list X;
  * refusals, each followed by a served request: X again, the served model's name, a missing folder, a
    folder without adapter_config.json, an adapter this server cannot run (use_dora), an unknown field,
    a missing lora_name; vLLM's routes (plain-text success, 404 for an unknown name on unload);
  * unloading X while a streamed request runs on it: refused (409 on vLLM's route, 400 on SGLang's);
  * unload X: X is now 404 model_not_found (and 400 as lora_path) and gone from the listings;
  * load B as X, which reuses A's slot: the long prompt, cached under A before, now gives B-merged's ids
    and takes nothing from the cache (stale KV from A would give A's, or wrong, tokens);
  * the same load / unload / reload sequence on 2 MPI ranks with DP attention (--tp-size 2 --dp-size 2
    --enable-dp-attention), where every rank must apply each change in lockstep, plus a refused load there;
    and again with --dispatch group-leader (each group's share of the step must carry the change).
usage: lora_runtime.py DPSERVE_BIN MAKE_HF_MODEL QWEN3_TOKENIZER_DIR
"""
import http.client
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from check_tally import check, finish  # noqa: E402
from serve_process import ServeProcess  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lora_fixtures import PROMPTS, make_adapter, make_base  # noqa: E402

BIN, MAKE_MODEL, TOKENIZER = sys.argv[1:4]
LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 8)  # several 16-token pages
TEXTS = PROMPTS[:2] + [LONG]
MAX_NEW = 8
ROUTES = ["/load_lora_adapter", "/unload_lora_adapter", "/v1/load_lora_adapter", "/v1/unload_lora_adapter"]


def generate(srv, text, headers=None, **fields):
    st, j = srv.request("POST", "/generate", {"text": text, "sampling_params": {"max_new_tokens": MAX_NEW,
                                                                              "temperature": 0}, **fields},
                        headers=headers)
    return (j["output_ids"], j["meta_info"]["cached_tokens"]) if st == 200 else (f"HTTP {st}: {j}", None)


def references(flags, model, log, key=None):
    """Greedy ids of TEXTS from a plain server of `model`, and what the LoRA routes answer there.
    key: the server runs with --enable-lora --api-key KEY; the routes are then asked without the key."""
    extra = ["--enable-lora", "--api-key", key] if key else []
    auth = {"Authorization": f"Bearer {key}"} if key else None
    with ServeProcess(BIN, "--model-path", model, *flags, *extra, log=log) as srv:
        ids = {t: generate(srv, t, headers=auth)[0] for t in TEXTS}
        refused = [srv.request("POST", r, {"lora_name": "x", "lora_path": model}) for r in ROUTES]
        if key:  # with the key, the route runs (and refuses the base model's folder as no adapter)
            refused.append(srv.request("POST", "/load_lora_adapter", {"lora_name": "x", "lora_path": model},
                                       headers=auth))
    return ids, refused


def load(srv, name, path, vllm=False, **extra):
    return srv.request("POST", "/v1/load_lora_adapter" if vllm else "/load_lora_adapter",
                       {"lora_name": name, "lora_path": path, **extra})


def unload(srv, name, vllm=False):
    return srv.request("POST", "/v1/unload_lora_adapter" if vllm else "/unload_lora_adapter", {"lora_name": name})


def listed(srv):
    st, j = srv.request("GET", "/v1/models")
    models = [d["id"] for d in j["data"]] if st == 200 else None
    st, info = srv.request("GET", "/get_server_info")
    return models, info.get("lora_paths") if st == 200 else "?"


def served_on(srv, label, x_ref):
    """After a refusal: the server answers, X still runs its adapter."""
    got = generate(srv, PROMPTS[0], lora_path="X")[0]
    check(f"{label}: the next request is served with X unchanged", got == x_ref[PROMPTS[0]], str(got))


def check_outputs(srv, label, x_ref, base_ids, texts=TEXTS):
    for t in texts:
        got = generate(srv, t, lora_path="X")[0]
        check(f"{label}: {t[:20]!r} with X equals the merged model's", got == x_ref[t], f"{got} vs {x_ref[t]}")
        got = generate(srv, t)[0]
        check(f"{label}: {t[:20]!r} without an adapter equals the base's", got == base_ids[t], f"{got} vs {base_ids[t]}")


def check_refusals(srv, label, a, ref_a, tmp, base):
    bad = os.path.join(tmp, "dora")
    if not os.path.isdir(bad):
        shutil.copytree(a, bad)
        with open(os.path.join(bad, "adapter_config.json")) as f:
            cfg = json.load(f)
        cfg["use_dora"] = True
        with open(os.path.join(bad, "adapter_config.json"), "w") as f:
            json.dump(cfg, f)
        os.makedirs(os.path.join(tmp, "empty"))
    st, j = load(srv, "X", a)
    check(f"{label}: loading X again is a 400 (success false)",
          st == 400 and j.get("success") is False and "already loaded" in (j.get("error_message") or ""), f"{st} {j}")
    st, j = load(srv, "X", a, vllm=True)
    check(f"{label}: vLLM: loading X again is a 400", st == 400 and "already loaded" in j["error"]["message"],
          f"{st} {j}")
    served_on(srv, label, ref_a)
    st, j = load(srv, "m", a)
    check(f"{label}: the served model's name is a 400 naming lora_name",
          st == 400 and j["error"]["param"] == "lora_name" and "served model" in j["error"]["message"], f"{st} {j}")
    st, j = load(srv, "Y", os.path.join(tmp, "missing"))
    check(f"{label}: a missing folder is a 400 naming lora_path",
          st == 400 and j["error"]["param"] == "lora_path" and "does not exist" in j["error"]["message"], f"{st} {j}")
    st, j = load(srv, "Y", os.path.join(tmp, "empty"))
    check(f"{label}: a folder without adapter_config.json is a 400 saying so",
          st == 400 and j.get("success") is False and "adapter_config.json" in (j.get("error_message") or ""),
          f"{st} {j}")
    st, j = load(srv, "Y", bad, vllm=True)
    check(f"{label}: vLLM: an adapter this server cannot run (DoRA) is a 400 naming the field",
          st == 400 and "use_dora" in j["error"]["message"], f"{st} {j}")
    served_on(srv, label, ref_a)
    st, j = srv.request("POST", "/load_lora_adapter", {"lora_name": "Y", "lora_path": a, "max_rank": 8})
    check(f"{label}: an unknown field is a 400 naming it", st == 400 and j["error"]["param"] == "max_rank",
          f"{st} {j}")
    st, j = srv.request("POST", "/v1/load_lora_adapter", {"lora_name": "Y", "lora_path": a, "pinned": True})
    check(f"{label}: vLLM's route refuses SGLang's pinned", st == 400 and j["error"]["param"] == "pinned", f"{st} {j}")
    st, j = srv.request("POST", "/unload_lora_adapter", {"lora_path": a})
    check(f"{label}: unload without lora_name is a 400 naming the field", st == 400 and j["error"]["param"] in
          ("lora_path", "lora_name"), f"{st} {j}")
    st, j = unload(srv, "nope", vllm=True)
    check(f"{label}: vLLM: unloading an unknown name is a 404", st == 404 and "nope" in j["error"]["message"],
          f"{st} {j}")
    st, j = unload(srv, "nope")
    check(f"{label}: SGLang: unloading an unknown name is a 400, success false",
          st == 400 and j.get("success") is False and "nope" in (j.get("error_message") or ""), f"{st} {j}")
    served_on(srv, label, ref_a)
    check(f"{label}: no refused adapter is listed", listed(srv) == (["m", "X"], {"X": a}), str(listed(srv)))


def check_in_use(srv, label):
    """A streamed request on X: unloading X is refused while it runs, done once it has gone."""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    c.request("POST", "/generate", json.dumps({"text": PROMPTS[1], "lora_path": "X", "stream": True,
                                               "sampling_params": {"max_new_tokens": 900, "ignore_eos": True}}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    first = r.readline()
    check(f"{label}: the streamed request on X runs", r.status == 200 and first.startswith(b"data:"), str(first))
    st, j = unload(srv, "X", vllm=True)
    check(f"{label}: vLLM: unloading X while a request runs on it is a 409",
          st == 409 and "in use" in j["error"]["message"], f"{st} {j}")
    st, j = unload(srv, "X")
    check(f"{label}: SGLang: the same is a 400, success false",
          st == 400 and j.get("success") is False and "in use" in (j.get("error_message") or ""), f"{st} {j}")
    c.close()  # the client leaves: the server cancels the request


def unload_when_idle(srv, label):
    deadline = time.time() + 30
    while True:
        st, j = unload(srv, "X")
        if st != 400 or "in use" not in (j.get("error_message") or "") or time.time() > deadline:
            break
        time.sleep(0.2)
    check(f"{label}: unloading X succeeds (SGLang's reply)", st == 200 and j == {"success": True, "error_message": None,
                                                                                 "loaded_adapters": {}}, f"{st} {j}")


def lifecycle(srv, label, a, b, ref_a, ref_b, base_ids, tmp, base, full=True):
    check(f"{label}: no adapter listed at start", listed(srv) == (["m"], None), str(listed(srv)))
    st, j = load(srv, "X", a)
    check(f"{label}: loading A as X succeeds (SGLang's reply)",
          st == 200 and j == {"success": True, "error_message": None, "loaded_adapters": {"X": a}}, f"{st} {j}")
    check(f"{label}: X is listed", listed(srv) == (["m", "X"], {"X": a}), str(listed(srv)))
    check_outputs(srv, label + ", X = A", ref_a, base_ids)
    if full:
        check_refusals(srv, label, a, ref_a, tmp, base)
        check_in_use(srv, label)
    else:  # a refused load must leave every rank as it was
        st, j = load(srv, "Y", os.path.join(tmp, "dora"))
        check(f"{label}: a DoRA adapter is refused", st == 400 and "use_dora" in (j.get("error_message") or ""),
              f"{st} {j}")
        served_on(srv, label, ref_a)
    unload_when_idle(srv, label)
    st, j = srv.request("POST", "/v1/chat/completions", {"model": "X", "max_tokens": 2,
                                                         "messages": [{"role": "user", "content": "hi"}]})
    check(f"{label}: after the unload, model X is a 404 model_not_found",
          st == 404 and j["error"]["code"] == "model_not_found", f"{st} {j}")
    got = generate(srv, PROMPTS[0], lora_path="X")[0]
    check(f"{label}: after the unload, lora_path X is a 400", str(got).startswith("HTTP 400"), str(got))
    check(f"{label}: X is no longer listed", listed(srv) == (["m"], None), str(listed(srv)))
    got = generate(srv, PROMPTS[0])[0]
    check(f"{label}: the base still runs after the unload", got == base_ids[PROMPTS[0]], str(got))

    st, text = load(srv, "X", b, vllm=True)
    check(f"{label}: loading B as X on vLLM's route (plain-text reply)",
          st == 200 and text == b"Success: LoRA adapter 'X' added successfully.", f"{st} {text}")
    got, cached = generate(srv, LONG, lora_path="X")
    check(f"{label}: the long prompt cached under A now gives B's output", got == ref_b[LONG], f"{got} vs {ref_b[LONG]}")
    if full:
        check(f"{label}: ... and takes nothing from the cache (A's pages were dropped)", cached == 0, str(cached))
    check_outputs(srv, label + ", X = B", ref_b, base_ids)
    st, text = unload(srv, "X", vllm=True)
    check(f"{label}: vLLM unload reply", st == 200 and text == b"Success: LoRA adapter 'X' removed successfully.",
          f"{st} {text}")


def main():
    tmp = tempfile.mkdtemp(prefix="lora_runtime.")
    try:
        base, weights = make_base(tmp, MAKE_MODEL, TOKENIZER)
        a, merged_a = make_adapter(tmp, "A", base, weights, seed=7)
        b, merged_b = make_adapter(tmp, "B", base, weights, seed=11)
        common = ["--served-model-name", "m", "--threads", "1", "--max-total-tokens", "4096", "--page-size", "16"]
        base_ids, refused = references(common, base, os.path.join(tmp, "base.log"))
        for route, (st, j) in zip(ROUTES, refused):
            check(f"without --enable-lora, {route} is a 400 naming the flag",
                  st == 400 and "--enable-lora" in j["error"]["message"], f"{st} {j}")
        ref_a, _ = references(common, merged_a, os.path.join(tmp, "a.log"))
        ref_b, keyed = references(common, merged_b, os.path.join(tmp, "b.log"), key="k1")
        for route, (st, j) in zip(ROUTES, keyed):
            check(f"with --api-key, {route} without the key is a 401", st == 401, f"{st} {j}")
        st, j = keyed[-1]
        check("with the key, /load_lora_adapter runs (a model folder is no adapter: 400 saying so)",
              st == 400 and j.get("success") is False and "adapter_config.json" in (j.get("error_message") or ""),
              f"{st} {j}")
        check("A and B change the greedy output, each its own way (else nothing is tested)",
              all(ref_a[t] != base_ids[t] and ref_b[t] != ref_a[t] for t in [PROMPTS[0], LONG]),
              f"{base_ids} {ref_a} {ref_b}")

        with ServeProcess(BIN, "--model-path", base, *common, "--enable-lora", log=os.path.join(tmp, "one.log")) as srv:
            lifecycle(srv, "one rank", a, b, ref_a, ref_b, base_ids, tmp, base)
        with ServeProcess(BIN, "--model-path", base, *common, "--enable-lora", "--tp-size", "2", "--dp-size", "2",
                          "--enable-dp-attention", log=os.path.join(tmp, "dp.log")) as srv:
            lifecycle(srv, "DP attention", a, b, ref_a, ref_b, base_ids, tmp, base, full=False)
        # Group-leader dispatch: rank 0 sends each group leader its share of the step, which must carry the
        # change too (every rank holds every adapter).
        with ServeProcess(BIN, "--model-path", base, *common, "--enable-lora", "--tp-size", "2", "--dp-size", "2",
                          "--enable-dp-attention", "--dispatch", "group-leader", log=os.path.join(tmp, "gl.log")) as srv:
            lifecycle(srv, "DP attention, group-leader dispatch", a, b, ref_a, ref_b, base_ids, tmp, base, full=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


main()
