#!/usr/bin/python3
"""Gemma 3 4B and larger are published as Gemma3ForConditionalGeneration, Mistral Small 3.1 / 3.2 (and
Magistral / Devstral Small) and Ministral 3 as Mistral3ForConditionalGeneration, Llama 4 as
Llama4ForConditionalGeneration: the language model's config nested in
text_config (naming only what differs from Gemma3TextConfig's / MistralConfig's defaults; the special
ids and dtype at the top level), its tensors under language_model.model. (transformers < 4.52) or
model.language_model. (later), beside a vision tower and projector dpserve does not run.

The tiny Gemma 3 folder of model_reference_gemma3 and Mistral folder of model_reference_mixtral (checked
there against the NumPy reference) are rewritten here in both layouts, with the defaults' keys left
out and stand-in vision tensors added; `dpserve generate` must give bit for bit the logits of the
CausalLM folder. A text_config that lost a key which differs from its default (num_key_value_heads)
must change them or be refused: the check sees the nesting. A request with an image is refused (the
tower is not loaded).

usage: test_multimodal_text_layout.py DPSERVE_BIN MAKE_HF_MODEL WORK_DIR
"""
import json
import os
import subprocess
import sys

import numpy as np

BIN, MAKE, WORK = sys.argv[1:4]
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
import ref_forward as rf  # noqa: E402
from test_lora_reference import write_safetensors  # noqa: E402

os.makedirs(WORK, exist_ok=True)
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
failures = []

# Per family: the CausalLM architecture, the multimodal one and its model_type, the text config's defaults that
# the tiny model shares (a published text_config leaves them out: Gemma3TextConfig's, MistralConfig's) and
# stand-in tensors of the vision tower and projector (under their own prefixes).
FAMILIES = {
    "gemma3": dict(mm="Gemma3ForConditionalGeneration", model_type="gemma3", seed=61, extra=[],
                   defaults={"rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
                             "rope_local_base_freq": 10000.0, "attn_logit_softcapping": None,
                             "final_logit_softcapping": None, "hidden_activation": "gelu_pytorch_tanh"},
                   vision="vision_model.embeddings.patch_embedding.weight", projector="mm_input_projection_weight"),
    # Mistral Small's window is off (null); the tiny model's 20 is kept, as are its bos / eos (1 / 2, the defaults:
    # left out at the top level too).
    "mistral": dict(mm="Mistral3ForConditionalGeneration", model_type="mistral3", seed=54,
                    extra=["--sliding-window", "20"],
                    defaults={"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False,
                              "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2},
                    vision="patch_conv.weight", projector="linear_1.weight"),
    # Ministral 3 (and Devstral 2 Small): the same wrapper around text_config model_type ministral3, whose
    # defaults are Ministral3Config's (rms_norm_eps 1e-5, no window); its rope_parameters are kept (not the
    # default YaRN: the tiny model's period is 16).
    "ministral3": dict(mm="Mistral3ForConditionalGeneration", model_type="mistral3", seed=56, extra=[],
                       defaults={"rms_norm_eps": 1e-5, "sliding_window": None, "tie_word_embeddings": False,
                                 "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2},
                       vision="patch_conv.weight", projector="linear_1.weight"),
    # Llama 4 Scout / Maverick: Llama4ForConditionalGeneration around text_config model_type llama4_text (its
    # defaults Llama4TextConfig's), the vision model under vision_model. (Llama 4's name for the tower).
    "llama4": dict(mm="Llama4ForConditionalGeneration", model_type="llama4", seed=57, extra=[],
                   defaults={"rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False,
                             "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "num_experts_per_tok": 1,
                             "interleave_moe_layer_step": 1, "use_qk_norm": True, "attn_scale": 0.1},
                   vision="patch_embedding.linear.weight", projector="linear_1.weight", tower="vision_model."),
}


def check(ok, what):
    print(("ok " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def multimodal(family, src, out, prefix, drop=()):
    """The CausalLM folder `src` as a multimodal folder of `family`: language-model tensors under `prefix`
    ("language_model.model." or "model.language_model."), stand-in vision tensors."""
    fam = FAMILIES[family]
    os.makedirs(out, exist_ok=True)
    config, tensors = rf.read_model_folder(src)
    text = {k: v for k, v in config.items() if k not in ("architectures", "bos_token_id", "eos_token_id",
                                                          "torch_dtype") and k not in drop
            and not (k in fam["defaults"] and fam["defaults"][k] == v)}
    top = {"architectures": [fam["mm"]], "model_type": fam["model_type"], "text_config": text,
           "vision_config": {"hidden_size": 8, "num_hidden_layers": 1}, "torch_dtype": config["torch_dtype"],
           "image_token_index": 5}
    for k in ("bos_token_id", "eos_token_id"):
        if fam["defaults"].get(k) != config[k]:
            top[k] = config[k]
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(top, f, indent=1)
    tower = fam.get("tower", "vision_tower.")
    vision = tower if prefix.startswith("language_model") else "model." + tower
    projector = "multi_modal_projector." if prefix.startswith("language_model") else "model.multi_modal_projector."
    # The head: language_model.lm_head.weight beside language_model.model.*, lm_head.weight at the top level
    # beside model.language_model.* (transformers >= 4.52).
    head = "language_model.lm_head.weight" if prefix.startswith("language_model") else "lm_head.weight"
    renamed = {(head if n == "lm_head.weight" else prefix + n[len("model."):]): a for n, a in tensors.items()}
    renamed[vision + fam["vision"]] = np.ones((8, 3, 2, 2))
    renamed[projector + fam["projector"]] = np.ones((8, config["hidden_size"]))
    write_safetensors(os.path.join(out, "model.safetensors"), {n: ("F32", a) for n, a in renamed.items()})
    for name in os.listdir(src):
        if name.startswith("tokenizer"):
            with open(os.path.join(src, name), "rb") as fi, open(os.path.join(out, name), "wb") as fo:
                fo.write(fi.read())
    return out


def dump_logits(model, ids, n_new=4):
    path = os.path.join(WORK, "logits.bin")
    if os.path.exists(path):
        os.remove(path)
    p = subprocess.run([BIN, "generate", "--json", "--model-path", model, "--prompt-ids", ",".join(map(str, ids)),
                        "-n", str(n_new), "--ignore-eos", "--temperature", "0", "--threads", "2", "--dump-logits", path],
                       capture_output=True, text=True, timeout=120, env=ENV)
    if p.returncode != 0:
        return None, p.stderr[-1500:]
    return np.fromfile(path, dtype=np.float32), json.loads(p.stdout.strip().splitlines()[-1])["output_ids"]


for family, fam in FAMILIES.items():
    causal = os.path.join(WORK, f"{family}-causal")
    subprocess.run(["/usr/bin/python3", MAKE, "--arch", family, "--dtype", "f32", "--seed", str(fam["seed"]), "--quiet",
                    "--out", causal, *fam["extra"]], check=True, timeout=300)
    with open(os.path.join(causal, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    ids = [3 + (i * 29) % (vocab - 3) for i in range(30)]
    ref, ref_out = dump_logits(causal, ids)
    check(ref is not None, f"the {family} CausalLM folder runs: {ref_out if ref is None else 'yes'}")
    if ref is None:
        continue
    for prefix in ("language_model.model.", "model.language_model."):
        mm = multimodal(family, causal, os.path.join(WORK, f"{family}-mm-" + prefix.rstrip(".").replace(".", "-")),
                        prefix)
        got, got_out = dump_logits(mm, ids)
        same = got is not None and got.shape == ref.shape and np.array_equal(got, ref) and got_out == ref_out
        check(same, f"{fam['mm']} with {prefix}*: the CausalLM folder's logits bit for bit"
                    + ("" if got is not None else f" ({got_out})"))
    lost = multimodal(family, causal, os.path.join(WORK, f"{family}-mm-lost-kv"), "language_model.model.",
                      drop=("num_key_value_heads",))
    got, _ = dump_logits(lost, ids)
    check(got is None or got.shape != ref.shape or not np.array_equal(got, ref),
          f"a {family} text_config without its num_key_value_heads (the default's, not the model's 2) is another "
          "model or refused")

if not failures:
    mm = os.path.join(WORK, "gemma3-mm-language_model-model")
    p = subprocess.run([BIN, "generate", "--model-path", mm, "--prompt", "hi", "--image", os.path.join(WORK, "none.png"),
                        "-n", "1"], capture_output=True, text=True, timeout=120, env=ENV)
    check(p.returncode != 0 and "takes no images" in p.stderr, f"an image for the text-only model is refused: "
          f"{p.stderr[-300:]}")
    # And a server starts on it (its vision_config names a tower dpserve does not run) and refuses
    # image content with a 400.
    import http.client
    import socket
    import time
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = subprocess.Popen([BIN, "serve", "--model-path", mm, "--port", str(port), "--host", "127.0.0.1",
                            "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        status, body = None, ""
        for _ in range(240):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("POST", "/v1/chat/completions", body=json.dumps({
                    "model": os.path.basename(mm), "max_tokens": 2, "messages": [{"role": "user", "content": [
                        {"type": "text", "text": "hi"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
                    headers={"Content-Type": "application/json"})
                r = c.getresponse()
                status, body = r.status, r.read().decode()
                break
            except OSError:
                if srv.poll() is not None:
                    break
                time.sleep(0.5)
        check(status == 400 and "image" in body, f"the server starts and answers an image with a 400: {status} {body[:300]}"
              + ("" if srv.poll() is None else f" (server exited: {srv.stderr.read()[-500:]})"))
    finally:
        srv.terminate()
        srv.wait(timeout=60)

if failures:
    raise SystemExit(f"FAIL: {len(failures)} check(s): " + "; ".join(failures))
print("PASS")
