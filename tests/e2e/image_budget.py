#!/usr/bin/python3
"""Images judged before they are decoded, and the server-wide decode-memory budget (issue 36).

Real `dpserve serve` processes on a tiny random Qwen2.5-VL, real HTTP (urllib), images built here
with Pillow:
  * Header liars: a ~1 KB JPEG / PNG whose frame header (SOF / IHDR, CRC fixed) claims 5792 x 5792.
    Decoded, each is 100 MB of RGB. Their tokens after smart_resize (1280 each at Qwen2-VL's default
    max_pixels) exceed the 512-token context, so each request is a 400 naming the context, and the
    server's peak RSS (VmHWM) stays within 48 MB of what it was, over 4 concurrent requests of 8
    such images. (Before: each image was decoded first, 100 MB allocated and filled.)
  * A header alone over --image-decode-memory (5000 x 5000 under a 40 MiB budget, tokens that fit):
    a 400 naming --image-decode-memory, before decoding.
  * The budget queues: 6 concurrent requests, each with a real 3000 x 3000 JPEG (27 MB of RGB when
    decoded: one fits the 40 MiB budget, two do not) all answer 200, and the peak RSS grows by less
    than 80 MB (six decodes at once, as before, hold 160 MB and more).
usage: image_budget.py DPSERVE_BIN MAKE_HF_MODEL QWEN3_TOKENIZER_DIR QWEN2_VL_TEMPLATE
"""
import base64
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import zlib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402

BIN, MAKE_MODEL, TOKENIZER, TEMPLATE = sys.argv[1:5]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def jpeg(h, w, value=120):
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def lying_jpeg(h, w):
    """A 16 x 16 baseline JPEG whose SOF0 says h x w (the entropy data ends long before that)."""
    b = bytearray(jpeg(16, 16))
    at = b.find(b"\xff\xc0")
    assert at > 0, "Pillow wrote no SOF0"
    struct.pack_into(">HH", b, at + 5, h, w)  # FFC0, length (2), precision (1), height, width
    return bytes(b)


def lying_png(h, w):
    """An 8 x 8 PNG whose IHDR says h x w, with a correct CRC (libpng checks it)."""
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    struct.pack_into(">II", b, 16, w, h)
    struct.pack_into(">I", b, 29, zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)
    return bytes(b)


def data_url(b, mime):
    return f"data:{mime};base64," + base64.b64encode(b).decode()


def vm(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Server(ServeProcess):
    """`serve ARGS` with its output in `log`; a failed start fails the test."""

    def __init__(self, args, log):
        try:
            super().__init__(BIN, *args, log=log, quiet=True)
        except ServeError as e:
            raise SystemExit(f"server did not become healthy: {e}")

    @property
    def p(self):
        return self.proc

    def post(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode())


def chat(urls, **extra):
    parts = [{"type": "text", "text": "Describe."}] + [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return {"model": "m", "messages": [{"role": "user", "content": parts}], "max_tokens": 2, "temperature": 0, **extra}


def concurrently(n, fn):
    out = [None] * n

    def run(i):
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return out


tmp = tempfile.mkdtemp(prefix="dpserve_image_budget_")
try:
    model = os.path.join(tmp, "vl")
    subprocess.run([sys.executable, MAKE_MODEL, "--arch", "qwen2_5_vl", "--dtype", "bf16", "--no-tokenizer",
                    "--quiet", "--out", model], check=True)
    common = ["--served-model-name", "m", "--model-path", model, "--tokenizer-path", TOKENIZER,
              "--chat-template", TEMPLATE, "--threads", "1"]

    # ---- header liars, Qwen2-VL's default preprocessor (up to 1280 tokens an image) -------------
    srv = Server(common + ["--context-length", "512"], os.path.join(tmp, "liars.log"))
    try:
        liars = {"JPEG": data_url(lying_jpeg(5792, 5792), "image/jpeg"), "PNG": data_url(lying_png(5792, 5792), "image/png")}
        # Warm up the paths a first image request takes (threads, allocator arenas) before measuring.
        status, _ = srv.post("/v1/chat/completions", chat([data_url(jpeg(64, 64), "image/jpeg")]))
        check(status == 200, f"a small real image is served (got {status})")
        for kind, url in liars.items():
            status, out = srv.post("/v1/chat/completions", chat([url]))
            msg = out.get("error", {}).get("message", "")
            check(status == 400 and "maximum context length is 512" in msg and out["error"].get("param") == "messages",
                  f"{kind} whose header claims 5792x5792: 400 naming the context before decoding "
                  f"(got {status}: {msg[:160]!r})")
        hwm0, cpu0 = vm(srv.p.pid, "VmHWM"), cpu_seconds(srv.p.pid)
        results = concurrently(4, lambda i: srv.post("/v1/chat/completions",
                                                     chat([liars["JPEG" if i % 2 else "PNG"]] * 8))[0])
        grew, cpu = vm(srv.p.pid, "VmHWM") - hwm0, cpu_seconds(srv.p.pid) - cpu0
        check(results == [400] * 4, f"4 concurrent requests of 8 header liars each: all 400 (got {results})")
        check(grew < 48 << 20, f"peak RSS grew by {grew / 2**20:.1f} MB (< 48 MB; decoding one liar takes 100 MB); "
                               f"server CPU {cpu:.2f} s for the 32 images")
        status, _ = srv.post("/v1/chat/completions", chat([data_url(jpeg(64, 64), "image/jpeg")]))
        check(status == 200, f"served after the liars (got {status})")
    finally:
        rc = srv.stop()
        check(rc == 0, f"server exits 0 on SIGTERM (got {rc})")

    # ---- the decode-memory budget: 40 MiB, small max_pixels (16 tokens an image) ----------------
    json.dump({"min_pixels": 3136, "max_pixels": 28 * 28 * 16}, open(os.path.join(model, "preprocessor_config.json"), "w"))
    srv = Server(common + ["--context-length", "512", "--image-decode-memory", str(40 << 20),
                           "--image-decode-wait", "60", "--max-image-bytes", str(4 << 20)],
                 os.path.join(tmp, "budget.log"))
    try:
        status, out = srv.post("/v1/chat/completions", chat([data_url(lying_jpeg(5000, 5000), "image/jpeg")]))
        msg = out.get("error", {}).get("message", "")
        check(status == 400 and "--image-decode-memory" in msg and
              out["error"].get("param") == "messages[0].content[1].image_url.url",
              f"an image needing more than the whole budget: 400 naming --image-decode-memory (got {status}: {msg[:160]!r})")
        big = data_url(jpeg(3000, 3000, 90), "image/jpeg")
        status, _ = srv.post("/v1/chat/completions", chat([data_url(jpeg(64, 64), "image/jpeg")]))
        check(status == 200, f"a small real image is served (got {status})")
        hwm0 = vm(srv.p.pid, "VmHWM")
        results = concurrently(6, lambda i: srv.post("/v1/chat/completions", chat([big]))[0])
        grew = vm(srv.p.pid, "VmHWM") - hwm0
        check(results == [200] * 6, f"6 concurrent requests with a 3000x3000 image each: all 200, queued for the "
                                    f"budget (got {results})")
        check(grew < 80 << 20, f"peak RSS grew by {grew / 2**20:.1f} MB (< 80 MB: one 27 MB decode at a time under "
                               f"a 40 MiB budget)")
    finally:
        rc = srv.stop()
        check(rc == 0, f"server exits 0 on SIGTERM (got {rc})")

    # Start-up errors name the flag.
    r = subprocess.run([BIN, "serve", "--port", "0", "--image-decode-memory", "0"], capture_output=True, text=True,
                       timeout=120)
    check(r.returncode != 0 and "--image-decode-memory" in r.stdout + r.stderr,
          f"--image-decode-memory 0 refused at start (exit {r.returncode})")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print(f"{len(failures)} failure(s)" if failures else "all image budget checks passed")
sys.exit(1 if failures else 0)
