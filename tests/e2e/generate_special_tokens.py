#!/usr/bin/python3
"""`dpserve generate --prompt` tokenizes as Hugging Face's encode does: the tokenizer's own special
tokens, so no BOS for Qwen (the config names one, but its tokenizer adds none) and none for this
Llama-3 tokenizer.json (a ByteLevel post-processor only, no add_bos_token), as the server does.
(Tokenizers that do add BOS: the Llama-2 SentencePiece one, checked against llama2.c in GenerateCli.)

The expected ids are Hugging Face's (`encode(text, add_special_tokens=False)`, shared/tokenizer_vectors,
written by llama.cpp's vocabulary tests). The models are the tiny random ones of the
constrain_models fixture (config bos_token_id set), read with the real tokenizers.
usage: generate_special_tokens.py DPSERVE_BIN MODELS_DIR SHARED_DIR
"""
import json
import os
import subprocess
import sys

dpserve, models, shared = sys.argv[1:4]
vec = os.path.join(shared, "tokenizer_vectors")


def hf_ids(vocab, text):
    """Hugging Face's ids of `text` (no special tokens) from the llama.cpp vocabulary test files."""
    inputs = open(os.path.join(vec, f"ggml-vocab-{vocab}.gguf.inp"), encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
    outputs = open(os.path.join(vec, f"ggml-vocab-{vocab}.gguf.out"), encoding="utf-8").read().split("\n")
    return [int(x) for x in outputs[inputs.index(text)].split()]


def prompt_ids(model, tokenizer, text, *extra):
    cmd = [dpserve, "generate", "--json", "--model-path", os.path.join(models, model), "--tokenizer-path",
           os.path.join(shared, "tokenizers", tokenizer), "--prompt", text, "-n", "1", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}: {p.stderr[-800:]}")
    return json.loads(p.stdout.splitlines()[0])["prompt_ids"]


failures = 0
for text in ("Hello world", " Hello World!"):
    qwen, llama = hf_ids("qwen2", text), hf_ids("llama-bpe", text)
    cases = [("qwen3-tiny", "qwen3", [], qwen), ("qwen3-tiny", "qwen3", ["--no-bos"], qwen),
             ("llama3-tiny", "llama3", [], llama), ("llama3-tiny", "llama3", ["--no-bos"], llama)]
    for model, tok, extra, want in cases:
        got = prompt_ids(model, tok, text, *extra)
        ok = got == want
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {model} {' '.join(extra) or '(default)'} {text!r}: {got}" + ("" if ok else f" != {want}"))
sys.exit(1 if failures else 0)
