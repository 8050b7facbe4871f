#!/usr/bin/python3
"""`dpserve tokenize` / `dpserve detokenize` end to end: ids from the Hugging Face vectors, run.c's
stories260K text, JSON output, and clear errors for bad input.

usage: cli_check.py DPSERVE_BINARY SHARED_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from check_tally import check, finish  # noqa: E402

dpserve, shared = sys.argv[1], sys.argv[2]


def run(*args, input_bytes=None):
    return subprocess.run([dpserve, *args], capture_output=True, timeout=120, input=input_bytes)


# Qwen2 vectors: texts without leading/trailing-sensitive shell issues, passed via --file byte for byte.
vec = os.path.join(shared, "tokenizer_vectors")
with open(os.path.join(vec, "ggml-vocab-qwen2.gguf.inp"), "rb") as f:
    texts = f.read().split(b"\n__ggml_vocab_test__\n")[:-1]
with open(os.path.join(vec, "ggml-vocab-qwen2.gguf.out"), "rb") as f:
    outs = f.read().decode().split("\n")
qwen = os.path.join(shared, "tokenizers", "qwen3")
with tempfile.TemporaryDirectory() as tmp:
    for i in (0, 5, 17, 30, 45):
        p = os.path.join(tmp, f"t{i}.txt")
        with open(p, "wb") as f:
            f.write(texts[i])
        r = run("tokenize", "--model-path", qwen, "--file", p, "--json")
        want = [int(x) for x in outs[i].split()]
        got = json.loads(r.stdout) if r.returncode == 0 else None
        check(f"tokenize qwen2 vector {i}", got == want, f"got {got} want {want} {r.stderr.decode()}")
        if want:
            r = run("detokenize", "--model-path", qwen, "--ids", ",".join(map(str, want)))
            check(f"detokenize qwen2 vector {i}", r.returncode == 0 and r.stdout == texts[i],
                  f"{r.stdout!r} vs {texts[i]!r}")

# run.c output of stories260K: ids -> text byte for byte (tokenizer file given directly).
exp = os.path.join(shared, "models", "stories260K", "expected")
with open(os.path.join(exp, "stories260K_greedy_n200.ids.txt")) as f:
    ids = f.read().split()
with open(os.path.join(exp, "stories260K_greedy_n200.txt"), "rb") as f:
    text = f.read()
tok512 = os.path.join(shared, "models", "stories260K", "tok512.bin")
r = run("detokenize", "--tokenizer-path", tok512, "--ids", ",".join(ids))
check("detokenize stories260K", r.returncode == 0 and r.stdout == text, r.stderr.decode())
r = run("tokenize", "--tokenizer-path", tok512, "--text", "Once upon a time", "--add-special-tokens")
check("tokenize adds BOS", r.returncode == 0 and r.stdout.decode().split()[0] == "1", r.stdout.decode())

# Standard input ("-"), so the commands make a pipe: tokenize's plain output is detokenize's input.
llama3 = os.path.join(shared, "tokenizers", "llama3")
hard = "  two spaces, tab\t, CRLF\r\n, 日本語, emoji 👨‍👩‍👧, <|begin_of_text|> as text\n".encode()
r = run("tokenize", "--model-path", llama3, "--file", "-", input_bytes=hard)
check("tokenize --file - reads stdin", r.returncode == 0 and r.stdout.split(), r.stderr.decode())
with tempfile.NamedTemporaryFile() as f:
    f.write(hard)
    f.flush()
    same = run("tokenize", "--model-path", llama3, "--file", f.name)
check("tokenize stdin = file", r.stdout == same.stdout, f"{r.stdout!r} vs {same.stdout!r}")
r = run("detokenize", "--model-path", llama3, "--ids", "-", "--keep-special-tokens", input_bytes=r.stdout)
check("detokenize --ids - reads tokenize's output", r.returncode == 0 and r.stdout == hard,
      f"{r.stdout!r} vs {hard!r} {r.stderr.decode()}")

# Errors are clear and non-zero.
r = run("detokenize", "--model-path", qwen, "--ids", "1,abc")
check("bad id text", r.returncode != 0 and b"abc" in r.stderr, r.stderr.decode())
r = run("detokenize", "--model-path", qwen, "--ids", "999999999")
check("id out of range", r.returncode != 0 and b"out of range" in r.stderr, r.stderr.decode())
r = run("tokenize", "--model-path", "/nonexistent/dir", "--text", "x")
check("missing model", r.returncode != 0 and b"nonexistent" in r.stderr, r.stderr.decode())
r = run("tokenize", "--model-path", qwen)
check("needs text", r.returncode != 0, r.stderr.decode())
r = run("tokenize", "--model-path", qwen, "--file", shared)
check("--file a folder", r.returncode != 0 and b"--file" in r.stderr and not r.stdout, f"{r.stdout!r} {r.stderr!r}")

finish()
