#!/usr/bin/python3
"""Tokenizers read from GGUF vocabularies (tokenizer.ggml.*) encode exactly as Hugging Face does.

tools/hf_to_gguf.py --vocab-only writes GGUF vocabularies from the shared reference tokenizers:
Llama-3 and Qwen3 tokenizer.json (`gpt2` vocabularies with merges, pre-tokenizers llama-bpe and
qwen2), the Llama-2 SentencePiece tokenizer.model and its llama2.c tokenizer.bin (`llama`
vocabularies with scores and token types). Then:
  * the 46 hard strings of tokenizer_vectors/ encode to Hugging Face's ids (also llama.cpp's);
  * the whole-text sha256 checks of tokenizer_vectors/README.md hold;
  * on a seeded corpus of mixed scripts, emoji, whitespace runs, digits and special tokens, the
    GGUF tokenizer and the source files' tokenizer give the same ids and decode to the same text;
  * BOS / EOS ids, add-BOS and the chat template are those of the source files.

usage: gguf_vocab_check.py TOKENIZE_BATCH_BIN SHARED_DIR WORK_DIR
"""
import hashlib
import json
import os
import random
import subprocess
import sys

BIN, SHARED, WORK = sys.argv[1:4]
REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
os.makedirs(WORK, exist_ok=True)
failures = []

SOURCES = {  # name -> (source tokenizer, vector file)
    "llama3": (os.path.join(SHARED, "tokenizers", "llama3"), "ggml-vocab-llama-bpe.gguf"),
    "qwen3": (os.path.join(SHARED, "tokenizers", "qwen3"), "ggml-vocab-qwen2.gguf"),
    "llama2-spm": (os.path.join(SHARED, "models", "llama2-tokenizer", "tokenizer.model"), "ggml-vocab-llama-spm.gguf"),
    "llama2-bin": (os.path.join(SHARED, "models", "llama2-tokenizer", "tokenizer.bin"), "ggml-vocab-llama-spm.gguf"),
}


def check(ok, what):
    print(("ok " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def batch(tok, texts):
    path = os.path.join(WORK, "cases.json")
    with open(path, "w") as f:
        json.dump([t.encode("utf-8").hex() for t in texts], f)
    p = subprocess.run([BIN, tok, path], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: tokenize_batch {tok}: {p.stderr[-2000:]}")
    return json.loads(p.stdout)


def info(tok):
    p = subprocess.run([BIN, tok, "--info"], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: tokenize_batch {tok} --info: {p.stderr[-2000:]}")
    return json.loads(p.stdout)


def corpus():
    rng = random.Random(20)
    frags = ["Hello, world!", "How's it going? I'm fine, you're late, we've met.", "DON'T SHOUT, It'S OK",
             "你好，世界。", "日本語のテキスト", "한국어 문장", "مرحبا بالعالم", "नमस्ते दुनिया", "Привет, мир! Ёжик.",
             "👨‍👩‍👧‍👦", "👍🏽", "🇩🇪", "e\u0301 vs é", "Å vs \u212B", "ﬁ", "def f(x):\n\treturn x  *  2\n",
             "    indented\n        more\n", "\t\t tabs \t", "   ", "\n\n\n", " \n \n", "1234567890", "3.14159",
             "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<|begin_of_text|>", "<|eot_id|>",
             "<s>", "</s>", "<unk>", "▁", "Ġ", "  <|im_end|>  ", "https://example.com/?q=1&x=%20", "$$x^2$$",
             "\u00a0nbsp", "\u3000", "\u200bzero", "a\u0300\u0301", "'s 're 've 'm 'll 'd 'S 'RE", "...", "—–-"]
    out = ["", " ", "  ", "a", "\n"] + frags
    for _ in range(600):
        out.append("".join(rng.choice(frags) + rng.choice(["", " ", "  ", "\n", "\t", ""]) for _ in range(rng.randint(1, 8))))
    for _ in range(150):
        s = ""
        for _ in range(rng.randint(1, 20)):
            r = rng.random()
            cp = (0x20 + rng.randrange(0x5f) if r < 0.4 else 0xa0 + rng.randrange(0x3000) if r < 0.8
                  else 0x1f300 + rng.randrange(0x700))
            if not 0xd800 <= cp <= 0xdfff:
                s += chr(cp)
        out.append(s)
    return out


texts = corpus()
for name, (src, vec) in SOURCES.items():
    gguf = os.path.join(WORK, f"vocab-{name}.gguf")
    subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools", "hf_to_gguf.py"), "--vocab-only", "--tokenizer", src,
                    "--out", gguf], check=True, timeout=600, stderr=subprocess.DEVNULL)
    with open(os.path.join(SHARED, "tokenizer_vectors", vec + ".inp"), encoding="utf-8") as f:
        inp = f.read().split("\n__ggml_vocab_test__\n")[:-1]
    with open(os.path.join(SHARED, "tokenizer_vectors", vec + ".out")) as f:
        want = [[int(x) for x in line.split()] for line in f.read().split("\n")[:len(inp)]]
    got = batch(gguf, inp)
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g.get("ids") != w]
    check(len(inp) == 46 and not bad, f"{name}: {len(inp) - len(bad)} of {len(inp)} Hugging Face vectors"
          + "".join(f"\n   [{inp[i]!r}] got {got[i].get('ids', got[i])}, want {want[i]}" for i in bad[:5]))
    # Same ids and decoded text as the tokenizer read from the source files. (llama2.c's
    # tokenizer.bin decodes as run.c prints, keeping the leading space; its GGUF decodes as
    # Hugging Face does, like tokenizer.model, which holds the same vocabulary.)
    ref = SOURCES["llama2-spm"][0] if name == "llama2-bin" else src
    a, b = batch(gguf, texts), batch(ref, texts)
    diff = [i for i in range(len(texts)) if a[i] != b[i]]
    check(not diff, f"{name}: GGUF and source tokenizer agree on {len(texts) - len(diff)} of {len(texts)} texts"
          + "".join(f"\n   [{texts[i]!r}] gguf {a[i]} source {b[i]}" for i in diff[:3]))
    gi, si = info(gguf), info(src)
    # The shared Llama-3 tokenizer.json has no post-processor adding BOS (tokenizers/README.md);
    # a Llama-3 GGUF adds it (llama.cpp's default for llama-bpe, and Meta's own tokenizer.json).
    want_hello = [128000] + si["hello"] if name == "llama3" else si["hello"]
    # A GGUF stops on its EOS and on the tokens whose text ends a turn (as llama.cpp does): the same
    # set as the models' own generation_config.json, eos_token_id [128001, 128009] for Llama-3
    # Instruct (<|end_of_text|>, <|eot_id|>) and [151645, 151643] for Qwen3 (<|im_end|>,
    # <|endoftext|>), where the tokenizer files alone name one EOS.
    want_eos = {"llama3": [128001, 128009], "qwen3": [151645, 151643]}.get(name, si["eos_ids"])
    check(gi["eos_ids"] == want_eos and gi["bos_id"] == si["bos_id"] and gi["hello"] == want_hello
          and gi["chat_template"] == si["chat_template"],
          f"{name}: BOS {gi['bos_id']}, EOS {gi['eos_ids']} (want {want_eos}), add-BOS {gi['hello']}, chat template "
          f"{'present' if gi['chat_template'] else 'absent'}, as the source says (source: {si['bos_id']}, "
          f"{si['eos_ids']}, {si['hello']})")
    if name == "qwen3":
        check(gi["bos_id"] == -1 and gi["eos_ids"][0] == 151645 and "<|im_start|>" in (gi["chat_template"] or ""),
              "qwen3: no BOS, EOS <|im_end|>, the ChatML template")
    if name == "llama3":
        check(gi["bos_id"] == 128000 and gi["hello"][0] == 128000, "llama3: BOS <|begin_of_text|> added (llama-bpe)")

# Whole-text checks of tokenizer_vectors/README.md.
with open(os.path.join(SHARED, "tokenizer_vectors", "llamacpp_chk_txt.txt"), encoding="utf-8") as f:
    chk = f.read()
for name, bos, sha in [("llama3", [128000], "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5"),
                       ("qwen3", [], "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea")]:
    ids = bos + batch(os.path.join(WORK, f"vocab-{name}.gguf"), [chk])[0]["ids"]
    check(hashlib.sha256(str(ids).encode()).hexdigest() == sha, f"{name}: whole-text sha256")

if failures:
    raise SystemExit(f"FAIL: {len(failures)} check(s)")
print("PASS")
