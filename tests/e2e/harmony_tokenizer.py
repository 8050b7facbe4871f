#!/usr/bin/python3
"""Writes a tokenizer folder that has the harmony format's tags (gpt-oss) as special tokens.

gpt-oss's own tokenizer (o200k_harmony) is not in ../shared: this takes the real Qwen3 tokenizer and
adds <|start|>, <|end|>, <|message|>, <|channel|>, <|constrain|>, <|return|> and <|call|> after its
last id (the tiny Qwen3 model's 151936 rows cover them), as special tokens, as gpt-oss's tokenizer
has them. Enough for `--reasoning-parser gpt-oss` to start and for the server path to be tested.

  harmony_tokenizer.py QWEN3_TOKENIZER_DIR OUT_DIR
"""
import json
import os
import sys

TAGS = ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>"]


def main():
    src, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(src, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    next_id = max(t["id"] for t in tok["added_tokens"]) + 1
    for tag in TAGS:
        tok["added_tokens"].append({"id": next_id, "content": tag, "single_word": False, "lstrip": False,
                                    "rstrip": False, "normalized": False, "special": True})
        next_id += 1
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(src, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
