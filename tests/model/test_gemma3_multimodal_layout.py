#!/usr/bin/python3
"""Gemma 3 4B and larger are published as Gemma3ForConditionalGeneration: the language model's
config nested in text_config (naming only what differs from Gemma3TextConfig's defaults; the special
ids and dtype at the top level), its tensors under language_model.model. (transformers < 4.52) or
model.language_model. (later), beside a vision tower and projector dpserve does not run.

The tiny Gemma 3 folder of model_reference_gemma3 (checked there against the NumPy reference) is
rewritten here in both layouts, with the defaults' keys left out and stand-in vision tensors added;
`dpserve generate` must give bit for bit the logits of the Gemma3ForCausalLM folder. A text_config
that lost a key which differs from its default (num_key_value_heads) must change them: the check
sees the nesting. A request with an image is refused (the tower is not loaded).

usage: test_gemma3_multimodal_layout.py DPSERVE_BIN MAKE_HF_MODEL WORK_DIR
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

# Gemma3TextConfig's defaults that the tiny model shares: a published text_config leaves them out.
DEFAULTS = {"rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True, "rope_local_base_freq": 10000.0,
            "attn_logit_softcapping": None, "final_logit_softcapping": None, "hidden_activation": "gelu_pytorch_tanh"}


def check(ok, what):
    print(("ok " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def multimodal(src, out, prefix, drop=()):
    """The CausalLM folder `src` as a Gemma3ForConditionalGeneration folder: language-model tensors
    under `prefix` ("language_model.model." or "model.language_model."), stand-in vision tensors."""
    os.makedirs(out, exist_ok=True)
    config, tensors = rf.read_model_folder(src)
    text = {k: v for k, v in config.items() if k not in ("architectures", "bos_token_id", "eos_token_id",
                                                          "torch_dtype") and k not in drop
            and not (k in DEFAULTS and DEFAULTS[k] == v)}
    top = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "text_config": text,
           "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 8, "num_hidden_layers": 1},
           "bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
           "torch_dtype": config["torch_dtype"], "image_token_index": 5, "mm_tokens_per_image": 4}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(top, f, indent=1)
    vision = "vision_tower." if prefix.startswith("language_model") else "model.vision_tower."
    projector = "multi_modal_projector." if prefix.startswith("language_model") else "model.multi_modal_projector."
    renamed = {prefix + n[len("model."):]: a for n, a in tensors.items()}
    renamed[vision + "vision_model.embeddings.patch_embedding.weight"] = np.ones((8, 3, 2, 2))
    renamed[projector + "mm_input_projection_weight"] = np.ones((8, config["hidden_size"]))
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


causal = os.path.join(WORK, "gemma3-causal")
subprocess.run(["/usr/bin/python3", MAKE, "--arch", "gemma3", "--dtype", "f32", "--seed", "61", "--quiet", "--out",
                causal], check=True, timeout=300)
with open(os.path.join(causal, "config.json")) as f:
    vocab = json.load(f)["vocab_size"]
ids = [3 + (i * 29) % (vocab - 3) for i in range(30)]
ref, ref_out = dump_logits(causal, ids)
check(ref is not None, f"the Gemma3ForCausalLM folder runs: {ref_out if ref is None else 'yes'}")
if ref is not None:
    for prefix in ("language_model.model.", "model.language_model."):
        mm = multimodal(causal, os.path.join(WORK, "mm-" + prefix.rstrip(".").replace(".", "-")), prefix)
        got, got_out = dump_logits(mm, ids)
        same = got is not None and got.shape == ref.shape and np.array_equal(got, ref) and got_out == ref_out
        check(same, f"Gemma3ForConditionalGeneration with {prefix}*: the CausalLM folder's logits bit for bit"
                    + ("" if got is not None else f" ({got_out})"))
    lost = multimodal(causal, os.path.join(WORK, "mm-lost-kv"), "language_model.model.", drop=("num_key_value_heads",))
    got, _ = dump_logits(lost, ids)
    check(got is None or got.shape != ref.shape or not np.array_equal(got, ref),
          "a text_config without its num_key_value_heads (default 4, the model's 2) is another model")
    mm = os.path.join(WORK, "mm-language_model-model")
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
