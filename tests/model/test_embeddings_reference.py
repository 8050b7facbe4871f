#!/usr/bin/python3
"""/v1/embeddings and /v1/rerank of a real `dpserve serve` against the float64 NumPy reference.

A tiny random Qwen3 (f32, the real Qwen3 vocabulary of 151936 ids, served with the real Qwen3
tokenizer) is written with tools/make_hf_model.py into two embedding folders, as sentence-transformers
lays them out:
  last/  modules.json with Pooling (pooling_mode_lasttoken) + Normalize, config.json is_matryoshka
  mean/  modules.json with Pooling (pooling_mode_mean_tokens) alone: no normalisation, no Matryoshka
Each folder is served with --is-embedding under every layout asked for (one rank; --tp-size 2; tp 2
dp 2 with DP attention) and checked over loopback HTTP (http.client):

  embeddings  the reference pools reference/ref_forward.py's hidden states after the final norm
              (Hugging Face's last_hidden_state): the last row, L2-normalised (last/), or the mean of
              every row (mean/). Error = max |dpserve - reference| / scale, scale = the rms of the
              reference vector; must be <= 1e-4 (f32 against float64 leaves ~1e-6), and the absolute
              error of the normalised vectors <= 1e-5 (issue 37's bound). The same bound must reject
              broken poolings (first row, second-to-last row, mean instead of last, the hidden state
              before the final norm, a missing or a wrong normalisation): each is compared with
              dpserve's answer and must exceed it, so the check can fail.
              Inputs: token-id lists of 1..70 ids, some sharing a 48-id prefix with an earlier request
              (the prefix cache must not drop rows that mean pooling needs), sent one per request and
              several per request (batched together; under DP attention spread over both groups).
              base64 must decode to the same floats; `dimensions` on last/ is the first d values
              renormalised; on mean/ it is a 400 naming 'dimensions'.
  rerank      /v1/rerank on last/'s server: each document's prompt is the documented Qwen3-Reranker
              format (tokenized by the server's /tokenize); the reference score is the softmax of the
              "yes" and "no" logits (ids read from tokenizer.json) at its last position. The logit
              difference recovered from dpserve's score must be within 1e-4 x the std of the
              reference logits of that row; swapped yes/no and the second-to-last position must fail.
              Results must be sorted by score, top_n honoured.
  generation  /v1/chat/completions on an --is-embedding server: 400 naming --is-embedding.
  start-up    --pooling / --normalize-embeddings without --is-embedding, an unknown --pooling value and
              a folder asking for max pooling stop the server with an error naming the flag / file.

  /usr/bin/python3 tests/model/test_embeddings_reference.py --dpserve BIN --make tools/make_hf_model.py \
      --tokenizer-dir ../shared/tokenizers/qwen3 --work DIR [--layouts one,tp2,dpattn]
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import ref_forward as rf  # noqa: E402
from serve_process import MPI_ENV, ServeError, ServeProcess  # noqa: E402

TOL_REL = 1e-4     # max |error| / rms(reference vector)
TOL_ABS_UNIT = 1e-5  # max |error| of a unit-norm vector
LAYOUTS = {"one": [], "tp2": ["--tp-size", "2"],
           "dpattn": ["--tp-size", "2", "--dp-size", "2", "--enable-dp-attention"]}
ENV = dict(os.environ, **MPI_ENV)


class Server(ServeProcess):
    """An --is-embedding server on a tiny folder, served as "tiny"; a failed start fails the test."""

    def __init__(self, binary, model, tokenizer, flags, log):
        try:
            super().__init__(binary, "--model-path", model, "--tokenizer-path", tokenizer, "--is-embedding",
                             "--served-model-name", "tiny", *flags, log=log)
        except ServeError as e:
            raise SystemExit(f"FAIL: {e}\nlog {log}")

    def post(self, path, body, want=200):
        status, j = self.request("POST", path, body)
        if status != want:
            raise AssertionError(f"POST {path}: status {status} (want {want}): {str(j)[:400]}")
        return j


def unit(v):
    return v / max(np.linalg.norm(v), 1e-12)


def rel_err(got, ref):
    return float(np.max(np.abs(np.asarray(got, dtype=np.float64) - ref)) / np.sqrt(np.mean(ref ** 2)))


def write_folders(args):
    base = os.path.join(args.work, "model")
    if not os.path.isfile(os.path.join(base, "config.json")):
        subprocess.run([sys.executable, args.make, "--arch", "qwen3", "--dtype", "f32", "--vocab-size", "151936",
                        "--hidden-size", "64", "--intermediate-size", "128", "--num-hidden-layers", "2",
                        "--num-attention-heads", "4", "--num-key-value-heads", "2", "--head-dim", "16",
                        "--bos-token-id", "151643", "--eos-token-id", "151645", "--no-tokenizer", "--quiet",
                        "--seed", "37", "--out", base], check=True, timeout=120)
    folders = {}
    for name, mode, normalize, matryoshka in (("last", "pooling_mode_lasttoken", True, True),
                                              ("mean", "pooling_mode_mean_tokens", False, False)):
        d = os.path.join(args.work, name)
        os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
        for f in os.listdir(base):
            if f.endswith(".safetensors") and not os.path.exists(os.path.join(d, f)):
                os.symlink(os.path.join(base, f), os.path.join(d, f))
        with open(os.path.join(base, "config.json")) as f:
            cfg = json.load(f)
        if matryoshka:
            cfg["is_matryoshka"] = True
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        with open(os.path.join(d, "modules.json"), "w") as f:
            json.dump(modules, f)
        pool = {"word_embedding_dimension": 64, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False,
                "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
                "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False, "include_prompt": True}
        pool[mode] = True
        with open(os.path.join(d, "1_Pooling", "config.json"), "w") as f:
            json.dump(pool, f)
        folders[name] = d
    return base, folders


def inputs(rng):
    prefix = rng.integers(0, 151643, 48).tolist()
    seqs = [rng.integers(0, 151643, n).tolist() for n in (1, 2, 7, 17, 33, 70)]
    # Sharing the 48-id prefix (three whole 16-token pages) with each other: the later ones find it cached.
    seqs += [prefix + rng.integers(0, 151643, n).tolist() for n in (1, 5, 20)]
    return seqs


def check_embeddings(srv, ref, kind, seqs, failures):
    # Reference vectors, and the broken poolings the tolerance must reject.
    want, broken = [], []
    for s in seqs:
        hs = []
        ref.forward(s, hidden=hs)
        pre, post = hs
        if kind == "last":
            want.append(unit(post[-1]))
            b = {"before the final norm": unit(pre[-1]), "not normalised": post[-1]}
            if len(s) > 1:  # (one row: first, last and mean are the same row)
                b.update({"first row": unit(post[0]), "mean of rows": unit(post.mean(axis=0)),
                          "second-to-last row": unit(post[-2])})
        else:
            want.append(post.mean(axis=0))
            b = {"mean before the final norm": pre.mean(axis=0), "normalised": unit(post.mean(axis=0))}
            if len(s) > 1:
                b.update({"last row": post[-1], "mean of all but the first row": post[1:].mean(axis=0)})
            if len(s) > 48:  # what a prefix-cache hit on the shared 48 ids would leave to pool
                b["mean over rows 48.."] = post[48:].mean(axis=0)
        broken.append(b)
    # One request per input (sequentially: the shared prefix is cached by then), then all in one request.
    got_single = [srv.post("/v1/embeddings", {"model": "tiny", "input": s})["data"][0]["embedding"] for s in seqs]
    batch = srv.post("/v1/embeddings", {"model": "tiny", "input": seqs, "user": "ref-test"})
    assert [d["index"] for d in batch["data"]] == list(range(len(seqs)))
    assert batch["usage"]["prompt_tokens"] == sum(len(s) for s in seqs), batch["usage"]
    got_batch = [d["embedding"] for d in batch["data"]]
    b64 = srv.post("/v1/embeddings", {"model": "tiny", "input": seqs[:3], "encoding_format": "base64"})
    for i, d in enumerate(b64["data"]):
        vals = np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
        if not np.array_equal(vals, np.asarray(got_batch[i], dtype=np.float32)):
            failures.append(f"{kind}: base64 of input {i} differs from the float answer")
    worst = 0.0
    for i, s in enumerate(seqs):
        for label, got in (("single", got_single[i]), ("batched", got_batch[i])):
            if len(got) != 64:
                failures.append(f"{kind}: input {i} ({label}): {len(got)} values, want 64")
                continue
            e = rel_err(got, want[i])
            worst = max(worst, e)
            if e > TOL_REL:
                failures.append(f"{kind}: input {i} (len {len(s)}, {label}): error {e:.3g} x scale > {TOL_REL}")
            if kind == "last" and np.max(np.abs(np.asarray(got) - want[i])) > TOL_ABS_UNIT:
                failures.append(f"{kind}: input {i} ({label}): abs error > {TOL_ABS_UNIT}")
            for name, bad in broken[i].items():
                if rel_err(got, bad) <= TOL_REL:
                    failures.append(f"{kind}: input {i}: the broken pooling '{name}' passes the bound")
    print(f"  {kind}: {len(seqs)} inputs x (single, batched): worst error {worst:.3g} x scale "
          f"(bound {TOL_REL}); broken poolings all rejected unless listed", flush=True)
    if kind == "last":
        d16 = srv.post("/v1/embeddings", {"model": "tiny", "input": seqs[3], "dimensions": 16})["data"][0]["embedding"]
        h = []
        ref.forward(seqs[3], hidden=h)
        ref16 = unit(h[1][-1][:16])
        if len(d16) != 16 or rel_err(d16, ref16) > TOL_REL:
            failures.append("last: dimensions=16 is not the first 16 values renormalised")
    else:
        status, j = srv.request("POST", "/v1/embeddings", {"input": seqs[0], "dimensions": 16})
        if status != 400 or j.get("error", {}).get("param") != "dimensions":
            failures.append(f"mean: dimensions on a model without Matryoshka: {status} {j}")


def check_rerank(srv, ref, tokenizer_dir, failures):
    with open(os.path.join(tokenizer_dir, "tokenizer.json"), encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    yes, no = vocab["yes"], vocab["no"]
    query = "What is the capital of France?"
    docs = ["Paris is the capital of France.", "The giant panda is a bear native to China.", "yes", "Berlin",
            "A long document " * 20]
    instruct = "Given a web search query, retrieve relevant passages that answer the query"
    j = srv.post("/v1/rerank", {"model": "tiny", "query": query, "documents": docs, "top_n": 4,
                                "return_documents": True})
    res = j["results"]
    if len(res) != 4:
        failures.append(f"rerank: top_n 4 gave {len(res)} results")
    scores = [r["relevance_score"] for r in res]
    if scores != sorted(scores, reverse=True):
        failures.append(f"rerank: results not sorted by score: {scores}")
    full = srv.post("/v1/rerank", {"query": query, "documents": docs, "instruct": instruct, "return_documents": False})
    by_index = {r["index"]: r["relevance_score"] for r in full["results"]}
    if sorted(by_index) != list(range(len(docs))) or any("document" in r for r in full["results"]):
        failures.append(f"rerank: every document once, without text: {full['results']}")
    for r in res:
        if r["document"]["text"] != docs[r["index"]] or abs(r["relevance_score"] - by_index[r["index"]]) > 1e-6:
            failures.append(f"rerank: result {r} does not match its document / the full ranking")
    total = 0
    worst = 0.0
    for i, d in enumerate(docs):
        prompt = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
                  "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n"
                  f"<Instruct>: {instruct}\n<Query>: {query}\n<Document>: {d}<|im_end|>\n<|im_start|>assistant\n"
                  "<think>\n\n</think>\n\n")
        ids = srv.post("/tokenize", {"prompt": prompt, "add_special_tokens": False})["tokens"]
        total += len(ids)
        logits = ref.forward(ids)
        row = logits[-1]
        scale = float(np.std(row))
        s = min(max(by_index[i], 1e-300), 1 - 1e-16)
        got_diff = np.log(s) - np.log1p(-s)
        e = abs(got_diff - (row[yes] - row[no])) / scale
        worst = max(worst, e)
        if e > TOL_REL:
            failures.append(f"rerank: document {i}: logit difference off by {e:.3g} x scale")
        for name, bad in (("yes/no swapped", row[no] - row[yes]), ("second-to-last position", logits[-2][yes] - logits[-2][no])):
            if abs(got_diff - bad) / scale <= TOL_REL:
                failures.append(f"rerank: document {i}: the broken score '{name}' passes the bound")
    if full["usage"]["prompt_tokens"] != total:
        failures.append(f"rerank: usage.prompt_tokens {full['usage']['prompt_tokens']}, want {total}")
    print(f"  rerank: {len(docs)} documents: worst logit-difference error {worst:.3g} x scale", flush=True)


def check_startup_errors(args, folders, failures):
    """Flags and folders dpserve cannot honour stop the start, naming the flag or the file."""
    bad = os.path.join(args.work, "bad-pooling")
    os.makedirs(os.path.join(bad, "1_Pooling"), exist_ok=True)
    for f in ("config.json", "modules.json"):
        shutil.copy(os.path.join(folders["mean"], f), os.path.join(bad, f))
    with open(os.path.join(bad, "1_Pooling", "config.json"), "w") as f:
        json.dump({"pooling_mode_max_tokens": True}, f)
    cases = [([folders["mean"], "--pooling", "mean"], "--pooling applies to embedding models only"),
             ([folders["mean"], "--normalize-embeddings", "true"], "--normalize-embeddings applies"),
             ([folders["mean"], "--is-embedding", "--pooling", "max"], "--pooling must be"),
             ([bad, "--is-embedding"], "1_Pooling/config.json asks for pooling_mode_max_tokens")]
    for (model, *flags), want in cases:
        p = subprocess.run([args.dpserve, "serve", "--host", "127.0.0.1", "--port", "0", "--model-path", model,
                            "--tokenizer-path", args.tokenizer_dir] + flags,
                           capture_output=True, text=True, timeout=60, env=ENV)
        if p.returncode == 0 or want not in p.stderr:
            failures.append(f"start-up with {flags}: exit {p.returncode}, want an error with '{want}': {p.stderr[-300:]}")
    print(f"  start-up errors: {len(cases)} cases", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dpserve", required=True)
    ap.add_argument("--make", required=True)
    ap.add_argument("--tokenizer-dir", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--layouts", default="one,tp2,dpattn")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    base, folders = write_folders(args)
    ref = rf.RefModel(base)
    seqs = inputs(np.random.default_rng(37))
    failures = []
    check_startup_errors(args, folders, failures)
    for layout in args.layouts.split(","):
        for kind in ("last", "mean"):
            print(f"layout {layout}, pooling {kind}", flush=True)
            srv = Server(args.dpserve, folders[kind], args.tokenizer_dir, LAYOUTS[layout],
                         os.path.join(args.work, f"serve-{layout}-{kind}.log"))
            try:
                check_embeddings(srv, ref, kind, seqs, failures)
                if kind == "last":
                    check_rerank(srv, ref, args.tokenizer_dir, failures)
                    status, j = srv.request("POST", "/v1/chat/completions",
                                            {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
                    if status != 400 or "--is-embedding" not in j.get("error", {}).get("message", ""):
                        failures.append(f"generation on an --is-embedding server: {status} {j}")
            except AssertionError as e:
                failures.append(f"{layout}/{kind}: {e}")
            finally:
                srv.stop()
            if srv.proc.returncode != 0:
                failures.append(f"{layout}/{kind}: the server exited {srv.proc.returncode} after SIGTERM")
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures[:60]))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
