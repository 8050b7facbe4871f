#!/usr/bin/python3
"""--sampling-defaults (SGLang's flag; vLLM's --generation-config auto, llama.cpp's general.sampling.*): the
model's generation_config.json fills the sampling fields a completions / chat / responses request leaves out.

Real `dpserve serve` on a tiny random Qwen3 folder (Qwen3 tokenizer) whose generation_config.json says top_k 1,
top_p 0.9, temperature 0.7. Why the checks can fail: top_k 1 keeps only the most likely token, so a request
that takes the model's defaults must give the greedy (temperature 0) output whatever its seed, while the same
request under OpenAI's defaults (temperature 1, all tokens: on a random 151936-token model every seed draws
other tokens) must not. Over real HTTP:
  * --sampling-defaults model (the default): /get_server_info reports the three values; completions and
    chat without sampling fields give the greedy text for several seeds; a request's own top_k -1 wins
    (seeds differ again); /generate (SGLang's native route) keeps its own defaults (seeds differ);
    /v1/responses echoes temperature 0.7 and top_p 0.9 when the request leaves them out;
  * --sampling-defaults openai: no defaults reported, seeds differ;
  * the folder converted to GGUF (tools/hf_to_gguf.py writes general.sampling.*): the same defaults;
  * values no request could send (temperature 5, top_p 0, top_k 2.5) are left out with a warning naming
    each, and the valid min_p of the same file is taken;
  * --preferred-sampling-params (SGLang's flag): '{"top_k": -1}' over the model's top_k 1 makes the OpenAI
    routes sample again (seeds differ) while the model's temperature stays (responses echo 0.7);
    '{"top_k": 1}' makes /generate greedy whatever the seed (SGLang's own defaults sample), a request's own
    top_k still wins; /get_model_info and /get_server_info report the values; bad JSON, an unsupported key or
    a value out of range stops the server at start with a message naming the flag.
usage: sampling_defaults.py DPSERVE_BIN MAKE_HF_MODEL HF_TO_GGUF QWEN3_TOKENIZER_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from check_tally import check, finish  # noqa: E402
from serve_process import ServeProcess  # noqa: E402

BIN, MAKE_MODEL, HF_TO_GGUF, TOKENIZER = sys.argv[1:5]
PROMPT = "Once upon a time"
SEEDS = (1, 2, 3, 4)


def completion(srv, **fields):
    st, j = srv.request("POST", "/v1/completions", {"model": "m", "prompt": PROMPT, "max_tokens": 8, **fields})
    return j["choices"][0]["text"] if st == 200 else f"HTTP {st}: {j}"


def chat(srv, **fields):
    st, j = srv.request("POST", "/v1/chat/completions", {"model": "m", "max_tokens": 8, **fields,
                                                          "messages": [{"role": "user", "content": PROMPT}]})
    return j["choices"][0]["message"]["content"] if st == 200 else f"HTTP {st}: {j}"


def native(srv, seed, **fields):
    st, j = srv.request("POST", "/generate", {"text": PROMPT, "sampling_params": {"max_new_tokens": 8,
                                                                                  "sampling_seed": seed, **fields}})
    return j["text"] if st == 200 else f"HTTP {st}: {j}"


def write_generation_config(model, fields):
    with open(os.path.join(model, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 151643, "eos_token_id": 151645, "do_sample": True, **fields}, f)


def check_model_defaults(srv, label, want):
    st, info = srv.request("GET", "/get_server_info")
    got = info.get("default_sampling_params") if st == 200 else None
    check(f"{label}: /get_server_info reports the defaults",
          st == 200 and info.get("sampling_defaults") == "model" and got is not None and set(got) == set(want)
          and all(abs(got[k] - v) < 1e-6 for k, v in want.items()), str(got))
    greedy = completion(srv, temperature=0)
    outs = [completion(srv, seed=s) for s in SEEDS]
    check(f"{label}: completions without sampling fields are greedy (top_k 1) for every seed",
          all(o == greedy for o in outs), f"{outs} vs {greedy!r}")
    chat_greedy = chat(srv, temperature=0)
    chats = [chat(srv, seed=s) for s in SEEDS[:2]]
    check(f"{label}: chat without sampling fields is greedy", all(c == chat_greedy for c in chats),
          f"{chats} vs {chat_greedy!r}")
    own = [completion(srv, seed=s, top_k=-1) for s in SEEDS]
    check(f"{label}: a request's own top_k -1 wins over the model's (seeds differ)", len(set(own)) > 1, str(own))
    gen = [native(srv, s) for s in SEEDS]
    check(f"{label}: /generate keeps SGLang's native defaults (seeds differ)", len(set(gen)) > 1, str(gen))


def check_preferred(model, common, tmp):
    with ServeProcess(BIN, "--model-path", model, *common, "--preferred-sampling-params", '{"top_k": -1}',
                      log=os.path.join(tmp, "preferred.log")) as srv:
        st, mi = srv.request("GET", "/get_model_info")
        check("preferred: /get_model_info reports the operator's values",
              st == 200 and mi.get("preferred_sampling_params") == {"top_k": -1}, str(mi))
        st, info = srv.request("GET", "/get_server_info")
        check("preferred: /get_server_info reports both layers",
              st == 200 and info.get("preferred_sampling_params") == {"top_k": -1}
              and info.get("default_sampling_params", {}).get("top_k") == 1, str(info.get("preferred_sampling_params")))
        outs = [completion(srv, seed=s) for s in SEEDS]
        check("preferred top_k -1 wins over the model's top_k 1 (seeds differ)", len(set(outs)) > 1, str(outs))
        st, r = srv.request("POST", "/v1/responses", {"model": "m", "input": PROMPT, "max_output_tokens": 4})
        check("preferred: the model's temperature stays under the operator's top_k (responses echo 0.7)",
              st == 200 and abs(r.get("temperature", 0) - 0.7) < 1e-9, f"{st} {str(r)[:300]}")
    with ServeProcess(BIN, "--model-path", model, *common, "--sampling-defaults", "openai",
                      "--preferred-sampling-params", '{"top_k": 1}', log=os.path.join(tmp, "preferred1.log")) as srv:
        greedy = native(srv, 1, temperature=0)
        gen = [native(srv, s) for s in SEEDS]
        check("preferred top_k 1: /generate without sampling fields is greedy for every seed",
              all(g == greedy for g in gen), f"{gen} vs {greedy!r}")
        own = [native(srv, s, top_k=-1) for s in SEEDS]
        check("preferred: a /generate request's own top_k -1 wins (seeds differ)", len(set(own)) > 1, str(own))
        outs = [completion(srv, seed=s) for s in SEEDS[:2]]
        check("preferred top_k 1 applies on completions under --sampling-defaults openai",
              all(o == completion(srv, temperature=0) for o in outs), str(outs))
    for value, want in (("temperature=0", "must be a JSON object"),
                        ('{"max_new_tokens": 8}', "'max_new_tokens' is not supported"),
                        ('{"top_p": 1.5}', "top_p 1.5 must be in")):
        res = subprocess.run([BIN, "serve", "--model-path", model, *common, "--preferred-sampling-params", value],
                             capture_output=True, text=True, timeout=60)
        check(f"start-up refuses --preferred-sampling-params {value}",
              res.returncode != 0 and want in res.stderr and "--preferred-sampling-params" in res.stderr,
              f"rc {res.returncode}: {res.stderr[-500:]}")


def main():
    tmp = tempfile.mkdtemp(prefix="sampling_defaults.")
    try:
        model = os.path.join(tmp, "m")
        subprocess.run([sys.executable, MAKE_MODEL, "--arch", "qwen3", "--dtype", "bf16", "--quiet", "--out", model,
                        "--vocab-size", "151936", "--hidden-size", "64", "--intermediate-size", "128",
                        "--num-hidden-layers", "1", "--num-attention-heads", "2", "--num-key-value-heads", "1",
                        "--head-dim", "32", "--max-position-embeddings", "1024", "--bos-token-id", "151643",
                        "--eos-token-id", "151645", "--tokenizer-dir", TOKENIZER], check=True)
        want = {"top_k": 1, "top_p": 0.9, "temperature": 0.7}
        write_generation_config(model, want)
        common = ["--served-model-name", "m", "--threads", "1", "--max-total-tokens", "4096"]

        with ServeProcess(BIN, "--model-path", model, *common, log=os.path.join(tmp, "model.log")) as srv:
            check_model_defaults(srv, "HF folder", want)
            st, r = srv.request("POST", "/v1/responses", {"model": "m", "input": PROMPT, "max_output_tokens": 4})
            check("responses echo the model's temperature and top_p",
                  st == 200 and abs(r.get("temperature", 0) - 0.7) < 1e-9 and abs(r.get("top_p", 0) - 0.9) < 1e-9,
                  f"{st} {str(r)[:300]}")
            st, r = srv.request("POST", "/v1/responses", {"model": "m", "input": PROMPT, "max_output_tokens": 4,
                                                          "temperature": 0.2})
            check("responses echo the request's own temperature", st == 200 and r.get("temperature") == 0.2, str(st))

        with ServeProcess(BIN, "--model-path", model, "--sampling-defaults", "openai", *common,
                          log=os.path.join(tmp, "openai.log")) as srv:
            st, info = srv.request("GET", "/get_server_info")
            check("openai: no defaults reported", st == 200 and info.get("sampling_defaults") == "openai"
                  and info.get("default_sampling_params") == {}, str(info.get("default_sampling_params")))
            outs = [completion(srv, seed=s) for s in SEEDS]
            check("openai: completions without sampling fields sample at temperature 1 (seeds differ)",
                  len(set(outs)) > 1, str(outs))

        gguf = os.path.join(tmp, "m.gguf")
        subprocess.run([sys.executable, HF_TO_GGUF, model, "--out", gguf, "--outtype", "f32"], check=True,
                       stdout=subprocess.DEVNULL)
        with ServeProcess(BIN, "--model-path", gguf, *common, log=os.path.join(tmp, "gguf.log")) as srv:
            check_model_defaults(srv, "GGUF", want)

        write_generation_config(model, {"temperature": 5, "top_p": 0, "top_k": 2.5, "min_p": 0.05})
        with ServeProcess(BIN, "--model-path", model, *common, log=os.path.join(tmp, "bad.log")) as srv:
            st, info = srv.request("GET", "/get_server_info")
            check("out-of-range values left out, the valid one taken",
                  st == 200 and info.get("default_sampling_params") == {"min_p": 0.05},
                  str(info.get("default_sampling_params")))
            log = srv.output()
            for name in ("temperature 5", "top_p 0", "top_k 2.5"):
                check(f"warning names {name}", f"generation_config.json: {name}" in log, log[-1500:])
        write_generation_config(model, want)
        check_preferred(model, common, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


main()
