#!/usr/bin/env python3
"""--kv-cache-dir: the prefix cache outlives the process, and a file that does not fit is refused.

Real `dpserve serve` processes on the bundled stories260K, LAYOUT tp1 (one rank), tp2 (--tp-size 2:
each rank holds half the KV heads, one DP group of two) or dpattn (--tp-size 2 --dp-size 2
--enable-dp-attention: two groups of one rank, each with its own tree); or mla: a tiny random
DeepSeek-V2 (tools/make_hf_model.py) at --tp-size 2 with --kv-cache-dtype int8 (MLA's latent rows and
their scales, replicated on both ranks). Checks:
  * a server given a cache dir, asked a long prompt (twice: the second is an in-memory prefix hit),
    SIGTERMed, exits 0 and leaves one file per rank, 0600 in the 0700 directory it created;
  * restarted on that dir, the same prompt reports the cached prefix in
    usage.prompt_tokens_details.cached_tokens (as many as the in-memory hit did), its greedy tokens
    equal a cold server's, and its logprobs equal the in-memory hit's exactly (same KV bytes, same
    computation) and a cold server's within 1e-4;
  * POST /flush_cache removes every rank's file: after a flush and a SIGKILL nothing is served from disk;
  * a corrupt file (a flipped byte in the pages: tp1 and dpattn corrupt rank 0's, tp2 only rank 1's,
    so rank 0 read a good file and the group must still refuse together) and a truncated one are
    refused with a warning, nothing is served from them (cached_tokens 0) and the output is a cold
    server's;
  * a file whose identity names another dpserve version is refused naming it;
  * a file made with --kv-cache-dtype auto (fp32 here) under --kv-cache-dtype bf16 (not mla), and
    (tp1) one made with the model under a model whose weights differ by one value (a copy of the checkpoint;
    the value in the last 64 KiB, or in the middle where the sampled digest does not read),
    are refused with a warning naming what differs; the output equals a cold server of that setup;
  * tp1: --kv-cache-dir-max-gb of 4.5 pages keeps 4 pages (the prompt's first 64 tokens) and the
    restart serves exactly those; a cap of exactly 4 pages' bytes gives a file within it (3 pages:
    keys and header count); with write-behind on, a server SIGKILLed after the request (no drain) left a file the next
    server serves the prefix from; with a STANDALONE draft model the restart serves the prefix too and
    greedy output is still a cold server's; a second server on a directory in use does not start (the
    error names --kv-cache-dir), the first serves on; a start removes a temp file a dead writer left
    and keeps a live one's; a write past RLIMIT_FSIZE is a warning (no temp file left), not SIGXFSZ
    killing the server; a tiny Qwen2.5-VL's file is refused once its
    preprocessor_config.json changed (image_mean), the warning naming the image preprocessing.

usage: test_kv_cache_dir.py DPSERVE_BIN [LAYOUT]
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402

BIN = sys.argv[1]
LAYOUT = sys.argv[2] if len(sys.argv) > 2 else "tp1"
LAYOUTS = {"tp1": [], "tp2": ["--tp-size", "2"],
           "dpattn": ["--tp-size", "2", "--dp-size", "2", "--enable-dp-attention"],
           # MLA: the latent rows, replicated on both ranks of the group, stored as int8 with scales.
           "mla": ["--tp-size", "2", "--kv-cache-dtype", "int8"]}
RANKS = 1 if LAYOUT == "tp1" else 2
SHARED = os.environ.get("DPSERVE_SHARED_DIR", os.path.join(os.path.dirname(__file__), "../../../shared"))
MODEL = os.path.join(SHARED, "models/stories260K/stories260K.bin")
TMP = tempfile.mkdtemp(prefix="dpserve-kvdir-")
if LAYOUT == "mla":  # a tiny random DeepSeek-V2 (HF folder, its own tokenizer) made by the repo's tool
    MODEL = os.path.join(TMP, "deepseek-v2-tiny")
    subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(__file__), "../../tools/make_hf_model.py"),
                    "--arch", "deepseek_v2", "--out", MODEL, "--quiet"], check=True)
# ~180 tokens of the story vocabulary: 11 whole pages of 16 (the model's context is 512).
PROMPT = "Once upon a time, there was a little girl named Lily. She liked to play in the park with her dog. " * 6


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


class Server(ServeProcess):
    """The layout's server on one thread and a 4096-token pool; a failed start fails the test."""

    def __init__(self, *flags, model=MODEL):
        try:
            super().__init__(BIN, "--model-path", model, *LAYOUTS[LAYOUT], "--threads", "1",
                             "--max-total-tokens", "4096", *flags, health_timeout=90, quiet=True)
        except ServeError as e:
            fail(str(e))

    def log(self):
        return self.output()

    def complete(self):
        body = json.dumps({"prompt": PROMPT, "max_tokens": 12, "temperature": 0, "logprobs": 3}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            d = json.load(r)
        c = d["choices"][0]
        return {"text": c["text"], "lp": c["logprobs"]["token_logprobs"],
                "cached": d["usage"]["prompt_tokens_details"]["cached_tokens"],
                "prompt_tokens": d["usage"]["prompt_tokens"]}

    def stop(self):
        """SIGTERM (drain), which must end the job with 0."""
        rc = super().stop(timeout=60)
        if rc is None:
            fail("server did not exit within 60 s of SIGTERM:\n" + self.log())
        if rc != 0:
            fail(f"server exited {rc} after SIGTERM:\n{self.log()}")


def requests(server, n):
    """n requests of the prompt in turn (with DP attention, round robin sends them to the groups in turn)."""
    return [server.complete() for _ in range(n)]


def same_tokens_close_lp(got, ref, what, tol=1e-4):
    if got["text"] != ref["text"]:
        fail(f"{what}: text {got['text']!r}, a cold server's {ref['text']!r}")
    for a, b in zip(got["lp"], ref["lp"]):
        if abs(a - b) > tol:
            fail(f"{what}: logprobs {got['lp']} differ from a cold server's {ref['lp']} by more than {tol}")


def wait_unlocked(directory, timeout=30):
    """After a SIGKILL of mpirun its ranks die a moment later, holding their rank<N>.lock until then:
    a server started on the directory before that would be refused as a second server."""
    import fcntl
    deadline = time.time() + timeout
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".lock"):
            continue
        with open(os.path.join(directory, name)) as f:
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(f, fcntl.LOCK_UN)
                    break
                except BlockingIOError:
                    if time.time() > deadline:
                        fail(f"{name} still locked {timeout} s after the server was killed")
                    time.sleep(0.1)


def cold(*flags, model=MODEL):
    s = Server(*flags, model=model)
    try:
        out = s.complete()
    finally:
        s.stop()
    if out["cached"] != 0:
        fail(f"a cold server reported {out['cached']} cached tokens")
    return out


def vision_preprocessing_is_identity():
    """9. A vision model: the KV of an image's tokens depends on how it was resized and normalized
    (preprocessor_config.json), so a file made under other settings is refused."""
    import base64
    import io

    import numpy as np
    from PIL import Image
    vl = os.path.join(TMP, "vl")
    subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(__file__), "../../tools/make_hf_model.py"),
                    "--arch", "qwen2_5_vl", "--dtype", "bf16", "--seed", "3", "--quiet",
                    "--max-position-embeddings", "1024", "--tokenizer-dir", os.path.join(SHARED, "tokenizers/qwen3"),
                    "--out", vl], check=True, timeout=120)
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (90, 130, 3)).astype(np.uint8)).save(png, "PNG")
    url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()

    def chat(server):
        body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                         {"type": "text", "text": "Describe this picture."}]}],
                "max_tokens": 4, "temperature": 0}
        st, d = server.request("POST", "/v1/chat/completions", body, timeout=60)
        if st != 200:
            fail(f"vision chat answered {st}: {d}")
        return d["usage"]["prompt_tokens_details"]["cached_tokens"]

    vd = os.path.join(TMP, "vl-cache")
    s = Server("--kv-cache-dir", vd, "--kv-cache-write-behind-tokens", "0", model=vl)
    chat(s)
    hit = chat(s)
    s.stop()
    if hit <= 0:
        fail(f"vision: the repeated chat reported {hit} cached tokens")
    cfg_path = os.path.join(vl, "preprocessor_config.json")
    with open(cfg_path) as f:
        pre = json.load(f)
    pre["image_mean"] = [0.5, 0.5, 0.5]
    with open(cfg_path, "w") as f:
        json.dump(pre, f)
    s = Server("--kv-cache-dir", vd, "--kv-cache-write-behind-tokens", "0", model=vl)
    cached = chat(s)
    s.stop()
    warns = [l for l in s.log().splitlines() if "not loaded" in l]
    if cached != 0 or not any("image preprocessing" in l for l in warns):
        fail(f"vision: a file made under another image_mean served {cached} cached tokens; warnings {warns}")


tmp = TMP
try:
    d = os.path.join(tmp, "cache")
    files = [os.path.join(d, f"rank{r}.kvcache") for r in range(RANKS)]
    groups = 2 if LAYOUT == "dpattn" else 1
    ref = cold()

    # 1. First life: the prompt once per group (stored), then again (in-memory hits), then SIGTERM.
    s = Server("--kv-cache-dir", d, "--kv-cache-write-behind-tokens", "0")
    first = requests(s, groups)
    hits = requests(s, groups)
    s.stop()
    for r in first:
        if r["cached"] != 0:
            fail(f"first request of an empty cache reported {r['cached']} cached tokens")
    for r in hits:
        if r["cached"] < r["prompt_tokens"] - 16 or r["cached"] <= 0:
            fail(f"the in-memory repeat reported {r['cached']} cached of {r['prompt_tokens']} prompt tokens")
        same_tokens_close_lp(r, ref, "in-memory prefix hit")
    for f in files:
        if not os.path.isfile(f):
            fail(f"no prefix cache file {f} after SIGTERM; dir holds {os.listdir(d) if os.path.isdir(d) else None}")
        if os.path.exists(f + ".tmp"):
            fail(f"a temporary file {f}.tmp was left behind")
        # Every client's prompt tokens and KV: the owner's alone (the server created the directory).
        if os.stat(f).st_mode & 0o777 != 0o600 or os.stat(d).st_mode & 0o777 != 0o700:
            fail(f"{f} is {oct(os.stat(f).st_mode & 0o777)} in a {oct(os.stat(d).st_mode & 0o777)} directory, "
                 "not 0600 in 0700")
    saved = os.path.join(tmp, "saved")
    shutil.copytree(d, saved)

    # 2. Second life: the prefix comes from the files.
    s = Server("--kv-cache-dir", d, "--kv-cache-write-behind-tokens", "0")
    again = requests(s, groups)
    s.stop()
    if "prefix cache loaded" not in s.log():
        fail("the restarted server did not log loading the prefix cache:\n" + s.log())
    for r, h in zip(again, hits):
        if r["cached"] != h["cached"]:
            fail(f"after the restart {r['cached']} cached tokens, the in-memory hit had {h['cached']}")
        if r["text"] != h["text"] or r["lp"] != h["lp"]:
            fail(f"after the restart {r}, the in-memory hit gave {h}: the KV read back is not the KV written")
        same_tokens_close_lp(r, ref, "prefix from disk")

    # 2b. POST /flush_cache empties the disk copy too, on every rank: a crash (SIGKILL) after a flush
    # must not bring the flushed prefixes back. (Write-behind at 64 tokens: the page the request's
    # end adds does not reach it, so no write-behind after the flush rewrites the file by chance.)
    fd = os.path.join(tmp, "flushed")
    ffiles = [os.path.join(fd, os.path.basename(f)) for f in files]
    s = Server("--kv-cache-dir", fd, "--kv-cache-write-behind-tokens", "64")
    requests(s, groups)
    deadline = time.time() + 30
    while not all(os.path.isfile(f) for f in ffiles) and time.time() < deadline:
        time.sleep(0.2)
    if not all(os.path.isfile(f) for f in ffiles):
        fail(f"write-behind wrote no file; dir holds {os.listdir(fd)}")
    st, body = s.request("POST", "/flush_cache")
    if st != 200:
        fail(f"/flush_cache answered {st}: {body}")
    deadline = time.time() + 10
    while any(os.path.exists(f) for f in ffiles) and time.time() < deadline:
        time.sleep(0.1)
    s.kill()
    wait_unlocked(fd)
    s = Server("--kv-cache-dir", fd, "--kv-cache-write-behind-tokens", "0")
    after = requests(s, groups)
    s.stop()
    if any(r["cached"] != 0 for r in after):
        fail(f"flushed prefixes came back from the disk after a crash: cached {[r['cached'] for r in after]}")

    def refused(what, expect_in_warning, *flags, model=MODEL, reference=ref, bad_groups=None):
        """bad_groups: the DP groups whose file is bad (default all); the others still load theirs."""
        s = Server("--kv-cache-dir", d, "--kv-cache-write-behind-tokens", "0", *flags, model=model)
        outs = requests(s, groups)
        s.stop()
        warns = [l for l in s.log().splitlines() if "not loaded" in l]
        if not warns:
            fail(f"{what}: no warning that the file was not loaded:\n{s.log()}")
        if not any(expect_in_warning in l for l in warns):
            fail(f"{what}: the warning does not name {expect_in_warning!r}: {warns}")
        for g, o in enumerate(outs):
            if bad_groups is None or g in bad_groups:
                if o["cached"] != 0:
                    fail(f"{what}: group {g} served {o['cached']} tokens from a refused file")
            elif o["cached"] != hits[g]["cached"]:
                fail(f"{what}: group {g}, whose file is good, served {o['cached']} cached tokens, not "
                     f"{hits[g]['cached']}")
            same_tokens_close_lp(o, reference, what)

    def restore():
        shutil.rmtree(d)
        shutil.copytree(saved, d)

    # 3. A flipped byte among the pages: the checksum refuses it. tp2: only rank 1's file is bad,
    # rank 0 reads a good one, and the group refuses together (else rank 0 would use pages rank 1 lacks).
    victim = files[1] if LAYOUT in ("tp2", "mla") else files[0]
    restore()
    with open(victim, "r+b") as f:
        f.seek(os.path.getsize(victim) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x40]))
    # With DP attention each group has its own tree: only group 0 (rank 0) loses its prefix.
    only = [0] if LAYOUT == "dpattn" else None
    refused("corrupt file", "checksum", bad_groups=only)
    # 4. Truncated (a crash while copying it elsewhere, a full disk).
    restore()
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) - 1000)
    refused("truncated file", "truncated", bad_groups=only)

    # 4b. Made by another dpserve version (the version line of the identity rewritten): KV numerics
    # may differ between versions, so it is refused naming the version.
    restore()
    version = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.split()[-1]
    for f in files:
        with open(f, "r+b") as fh:
            head = fh.read(4096)
            line = f"dpserve version={version}\n".encode()
            if line not in head:
                fail(f"{f} has no identity line {line!r}")
            fh.seek(head.index(line))
            fh.write(f"dpserve version={'9' * len(version)}\n".encode())
    refused("file of another dpserve version", "dpserve version")
    if LAYOUT != "mla":  # (mla sets its own --kv-cache-dtype)
        # 5. Another KV dtype: the pages would be read as the wrong element type.
        restore()
        refused("file of another --kv-cache-dtype", "--kv-cache-dtype", "--kv-cache-dtype", "bf16",
                reference=cold("--kv-cache-dtype", "bf16"))
    if LAYOUT == "tp1":
        # 5b. --kv-cache-dir-max-gb below the tree's size: the file keeps the most recent pages as a
        # valid tree (a prefix of the prompt), and the restart serves exactly that many.
        shutil.rmtree(d)
        page_bytes = 16 * 5 * 2 * 4 * 8 * 4  # stories260K: 5 layers, K and V of 4 heads x 8 fp32
        s = Server("--kv-cache-dir", d, "--kv-cache-write-behind-tokens", "0", "--kv-cache-dir-max-gb",
                   str(4.5 * page_bytes / 1e9))
        s.complete()
        s.stop()
        s = Server("--kv-cache-dir", d, "--kv-cache-write-behind-tokens", "0")
        r = s.complete()
        s.stop()
        if r["cached"] != 4 * 16:
            fail(f"a file capped at 4.5 pages served {r['cached']} cached tokens, not 64")
        # 5c. The cap bounds the whole file, its keys, parents and header included: capped at exactly 4
        # pages' bytes it keeps 3 pages (it kept 4 and came out 288 bytes of keys + the header over).
        shutil.rmtree(d)
        cap = 4 * page_bytes
        s = Server("--kv-cache-dir", d, "--kv-cache-write-behind-tokens", "0", "--kv-cache-dir-max-gb", str(cap / 1e9))
        s.complete()
        s.stop()
        size = os.path.getsize(os.path.join(d, "rank0.kvcache"))
        if not cap - page_bytes < size <= cap:
            fail(f"a file capped at {cap} bytes (--kv-cache-dir-max-gb) has {size} bytes: want (cap - a page, cap]")
        print(f"ok: a file capped at {cap} bytes has {size}")
        same_tokens_close_lp(r, ref, "capped file")
        # 6. Another model of the same shape (one weight changed in the file's last 64 KiB, or at
        # 300000: a byte the sampled digest --nnodes compares does not read, as a fine-tune of small
        # tensors is): the KV of the old weights would be silently wrong.
        for k, at in enumerate([os.path.getsize(MODEL) - 4096, 300000]):
            restore()
            other = os.path.join(tmp, f"other-model-{k}")
            os.makedirs(other)
            shutil.copy(os.path.join(os.path.dirname(MODEL), "tok512.bin"), other)
            om = os.path.join(other, "stories260K.bin")
            shutil.copy(MODEL, om)
            os.chmod(om, 0o644)
            with open(om, "r+b") as f:
                f.seek(at)
                (v,) = struct.unpack("<f", f.read(4))
                f.seek(-4, 1)
                f.write(struct.pack("<f", v + 0.5))
            refused(f"file of another model (a weight at byte {at} changed)", "digest", model=om,
                    reference=cold(model=om))
        # 7. Write-behind: with --kv-cache-write-behind-tokens 16 the file is written as the prefix
        # joins the tree, so a crash (SIGKILL: no drain, no shutdown write) keeps it.
        shutil.rmtree(d)
        s = Server("--kv-cache-dir", d, "--kv-cache-write-behind-tokens", "16")
        s.complete()
        deadline = time.time() + 30
        while not os.path.isfile(files[0]) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # past the rename, the write is complete; a later rewrite would be atomic too
        s.kill()
        wait_unlocked(d)
        s = Server("--kv-cache-dir", d, "--kv-cache-write-behind-tokens", "0")
        r = s.complete()
        s.stop()
        if r["cached"] != hits[0]["cached"]:
            fail(f"after a crash, write-behind kept {r['cached']} cached tokens, not {hits[0]['cached']}")
        same_tokens_close_lp(r, ref, "write-behind prefix after a crash")
        # 8. STANDALONE speculative decoding: the draft model's own pool is not saved (its catch-up
        # reads the whole prompt, cached or not); the target's prefix still comes from the file and
        # greedy output is still the cold server's.
        shutil.rmtree(d)
        spec = ["--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path", MODEL,
                "--speculative-draft-model-quantization", "q4_0", "--kv-cache-dir", d,
                "--kv-cache-write-behind-tokens", "0"]
        s = Server(*spec)
        s.complete()
        s.stop()
        s = Server(*spec)
        r = s.complete()
        s.stop()
        if r["cached"] != hits[0]["cached"]:
            fail(f"STANDALONE: {r['cached']} cached tokens after the restart, not {hits[0]['cached']}")
        if r["text"] != ref["text"]:
            fail(f"STANDALONE after the restart: {r['text']!r}, a cold server's {ref['text']!r}")
        # 10. Two live servers on one directory would overwrite each other's file: the second start
        # is refused, naming the flag; once the first is gone the directory is usable again.
        shutil.rmtree(d)
        s = Server("--kv-cache-dir", d)
        try:
            second = ServeProcess(BIN, "--model-path", MODEL, "--threads", "1", "--max-total-tokens", "4096",
                                  "--kv-cache-dir", d, health_timeout=60, quiet=True)
            second.stop()
            fail("a second server on a directory in use started")
        except ServeError as e:
            if "another running server" not in str(e) or "--kv-cache-dir" not in str(e):
                fail(f"the second server's start failed, but not naming the lock and the flag: {e}")
        s.complete()  # the first one is unharmed
        s.stop()
        # 11. A writer killed mid-write leaves rank0.kvcache.tmp.<its pid>, as large as the cache: the
        # next start removes it (its pid is gone), and keeps one whose pid lives (it may be written).
        gone = subprocess.Popen(["true"])
        gone.wait()
        dead_tmp, live_tmp = files[0] + f".tmp.{gone.pid}", files[0] + f".tmp.{os.getpid()}"
        for p in (dead_tmp, live_tmp):
            with open(p, "wb") as f:
                f.write(b"\0" * 4096)
        Server("--kv-cache-dir", d).stop()
        if os.path.exists(dead_tmp) or not os.path.exists(live_tmp):
            fail(f"after a start, a dead writer's temp file {'is still there' if os.path.exists(dead_tmp) else 'went'}"
                 f" and a live one's {'stayed' if os.path.exists(live_tmp) else 'was removed'}")
        os.unlink(live_tmp)
        # 12. A file size limit (RLIMIT_FSIZE, 60000 bytes: the file needs ~230 KB) reached by a
        # write-behind write: the write fails with a warning and no temp file, the server serves on
        # (SIGXFSZ used to kill it) and drains to exit 0 (whose write fails the same way).
        import resource
        shutil.rmtree(d)
        s = Server("--kv-cache-dir", d, "--kv-cache-write-behind-tokens", "16")
        resource.prlimit(s.proc.pid, resource.RLIMIT_FSIZE, (60000, 60000))
        try:
            s.complete()
            deadline = time.time() + 30
            while "prefix cache not written" not in s.log() and s.proc.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            s.complete()
        except OSError as e:
            time.sleep(1)
            fail(f"a write past RLIMIT_FSIZE ended the server ({e}; exit {s.proc.poll()}):\n{s.log()}")
        if "prefix cache not written" not in s.log():
            fail("no warning that the file could not be written past RLIMIT_FSIZE:\n" + s.log())
        s.stop()
        left = [n for n in os.listdir(d) if ".tmp." in n]
        if left:
            fail(f"failed writes left temp files {left}")
        vision_preprocessing_is_identity()
    print(f"PASS ({LAYOUT})")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
