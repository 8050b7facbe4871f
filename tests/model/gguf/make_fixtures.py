#!/usr/bin/python3
"""Makes tests/model/fixtures/gguf/ with llama.cpp, run OUTSIDE the repo's tests (the tests never
need llama.cpp): for each case of cases.py, the F32 GGUF from our own writer, llama-quantize's
variants, and llama.cpp's logits and greedy tokens for every variant from a small libllama program
(dump_logits, built outside the repo; see the README there).

  /usr/bin/python3 tests/model/gguf/make_fixtures.py --quantize /work/peer/build/bin/llama-quantize \\
      --dump-logits /work/peer-tools/dump_logits --shared ../shared --work /tmp/gguf-fixtures
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases  # noqa: E402

OUT = os.path.join(cases.REPO, "tests", "model", "fixtures", "gguf")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_dump(path, n_prompts):
    raw = open(path, "rb").read()
    off, out = 0, []
    for _ in range(n_prompts):
        n, d, v = np.frombuffer(raw, "<i4", 3, off)
        off += 12
        greedy = np.frombuffer(raw, "<i4", d, off).tolist()
        off += 4 * d
        logits = np.frombuffer(raw, "<f4", (n + d) * v, off).reshape(n + d, v)
        off += 4 * (n + d) * v
        out.append((greedy, logits))
    assert off == len(raw)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quantize", required=True)
    ap.add_argument("--dump-logits", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--llamacpp-commit", default="3f545bec")
    ap.add_argument("--cases", help="comma-separated cases to (re)make; the others keep their manifest entries")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    os.makedirs(OUT, exist_ok=True)
    manifest = {"llama.cpp": a.llamacpp_commit, "n_decode": cases.N_DECODE, "cases": {}}
    names = list(cases.CASES)
    if a.cases:
        names = a.cases.split(",")
        old = json.load(open(os.path.join(OUT, "manifest.json")))
        if old["llama.cpp"] != a.llamacpp_commit or old["n_decode"] != cases.N_DECODE:
            raise SystemExit("the kept cases were made with another llama.cpp or n_decode: remake them all")
        manifest["cases"] = {n: e for n, e in old["cases"].items() if n in cases.CASES and n not in names}
    for name in names:
        f32 = cases.make_f32(name, a.work, os.path.abspath(a.shared))
        vocab = json.load(open(os.path.join(a.work, f"hf-{name}", "config.json")))["vocab_size"]
        ps = cases.prompts(vocab)
        pfile = os.path.join(a.work, f"{name}.prompts")
        with open(pfile, "w") as f:
            f.write("\n".join(" ".join(map(str, p)) for p in ps) + "\n")
        entry = {"vocab": vocab, "f32_sha256": sha256(f32), "prompts": ps, "variants": {}}
        for var in ["F32"] + [v for v in cases.CASES[name]["variants"] if v != "F32"]:
            if var == "F32":
                gguf = f32
            else:
                gguf = os.path.join(OUT, f"{name}-{var}.gguf")
                subprocess.run([a.quantize, f32, gguf, var, "2"], check=True, capture_output=True, timeout=300)
            dump = os.path.join(a.work, f"{name}-{var}.dump")
            subprocess.run([a.dump_logits, "logits", gguf, pfile, str(cases.N_DECODE), dump], check=True,
                           capture_output=True, timeout=300)
            res = read_dump(dump, len(ps))
            prefill = np.concatenate([l[:len(p)] for p, (_, l) in zip(ps, res)])
            if var == "F32":
                f32_prefill = prefill
                if "F32" not in cases.CASES[name]["variants"]:
                    continue  # only the yardstick for the quantization error below
            logits = np.concatenate([l for _, l in res]).astype("<f4")
            lfile = f"{name}-{var}.logits.npy"
            np.save(os.path.join(OUT, lfile), logits)
            # How far llama.cpp's own quantized logits are from its F32 ones on the prompts (the
            # size of the quantization error, which the dpserve-vs-llama.cpp tolerance must be
            # well below to mean anything).
            qerr = np.abs(prefill - f32_prefill)
            entry["variants"][var] = {"file": None if var == "F32" else os.path.basename(gguf),
                                      "sha256": sha256(gguf), "logits": lfile,
                                      "greedy": [g for g, _ in res],
                                      "llamacpp_vs_f32": {"max": float(qerr.max() / f32_prefill.std()),
                                                          "rms": float(np.sqrt((qerr ** 2).mean()) / f32_prefill.std())}}
            print(f"{name} {var}: {os.path.getsize(gguf)} bytes, greedy {[g for g, _ in res]}")
        manifest["cases"][name] = entry
    manifest["cases"] = {n: manifest["cases"][n] for n in cases.CASES if n in manifest["cases"]}  # cases.py order
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
