#!/usr/bin/python3
"""Image inputs over real sockets: the real `dpserve serve`, a real image host (http.server), urllib.

Two servers, started here (the remote-URL allow-list names the image host's port, known only once it
listens):
  * a model that takes images: a tiny random Qwen2.5-VL (make_hf_model --arch qwen2_5_vl) with a
    preprocessor_config.json of small max_pixels and Qwen2-VL's chat template. Images must be parsed,
    fetched or decoded, materialized and counted on rank 0; bad ones are a 400 naming the problem for
    that request alone; a good one travels to the rank, whose vision tower runs it (a 200 answer).
    The expanded prompt length is checked against smart_resize computed here (through the context
    error, which reports the prompt's length).
  * the default text model (stories260K): any image is a 400 "does not accept images".
usage: image_inputs.py DPSERVE_BIN MAKE_HF_MODEL QWEN3_TOKENIZER_DIR QWEN2_VL_TEMPLATE
"""
import base64
import http.server
import io
import json
import math
import posixpath
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
import struct

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from serve_process import ServeError, ServeProcess  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vision"))
from jpeg_scans import progressive_jpeg  # noqa: E402

BIN, MAKE_MODEL, TOKENIZER, TEMPLATE = sys.argv[1:5]
PAD, VSTART, VEND = 151655, 151652, 151653  # Qwen2-VL's ids, also in the Qwen3 vocabulary
PRE = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2, "min_pixels": 3136, "max_pixels": 28 * 28 * 16,
       "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def png(h, w, seed=0):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def jpeg(h, w):
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def data_url(b, mime="image/png"):
    return f"data:{mime};base64," + base64.b64encode(b).decode()


def wrapped_data_url(b, mime="image/png"):
    # MIME base64 (RFC 2045): lines of 76 characters with CRLF.
    text = base64.b64encode(b).decode()
    return f"data:{mime};base64," + "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))


def smart_tokens(h, w, p=PRE):
    factor = p["patch_size"] * p["merge_size"]
    hb, wb = round(h / factor) * factor, round(w / factor) * factor
    if hb * wb > p["max_pixels"]:
        beta = math.sqrt(h * w / p["max_pixels"])
        hb = max(factor, math.floor(h / beta / factor) * factor)
        wb = max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < p["min_pixels"]:
        beta = math.sqrt(p["min_pixels"] / (h * w))
        hb = math.ceil(h * beta / factor) * factor
        wb = math.ceil(w * beta / factor) * factor
    return (hb // p["patch_size"]) * (wb // p["patch_size"]) // p["merge_size"] ** 2


def huge_png_header():
    ck = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + ck(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
            + ck(b"IDAT", zlib.compress(b"\x00" * 64)) + ck(b"IEND", b""))


# ---- the image host ----------------------------------------------------------------------------
GOOD_PNG = png(40, 60, 1)
FILES = {"/ok/img.png": GOOD_PNG, "/ok/big.png": png(400, 400, 2), "/other/img.png": GOOD_PNG,
         "/pub/img.png": GOOD_PNG, "/public/img.png": GOOD_PNG}


class Host(http.server.BaseHTTPRequestHandler):
    """Reads paths as common web servers do: %-escapes decoded and '..' resolved, so a URL that slips
    past a string-prefix allow-list with '..' or %2e%2e really reaches the file outside it."""

    def do_GET(self):
        self.path = posixpath.normpath(urllib.parse.unquote(self.path.split("?", 1)[0]))
        if self.path == "/ok/redirect":
            self.send_response(302)
            self.send_header("Location", "/other/img.png")
            self.end_headers()
            return
        if self.path == "/ok/slow.png":
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD_PNG)))
            self.end_headers()
            for i in range(0, len(GOOD_PNG), 64):  # trickles for longer than the fetch timeout
                try:
                    self.wfile.write(GOOD_PNG[i:i + 64])
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)
            return
        if self.path == "/ok/slow-headers.png":
            # The status line and headers a byte every 0.2 s for 6 s: each read gets a byte well
            # within the socket timeout, so only a deadline on the whole fetch stops it.
            head = (b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 20 + b"\r\n"
                    + f"Content-Length: {len(GOOD_PNG)}\r\n\r\n".encode())
            for i in range(len(head)):
                try:
                    self.wfile.write(head[i:i + 1])
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)
            return
        body = FILES.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Host)
host.daemon_threads = True
threading.Thread(target=host.serve_forever, daemon=True).start()
HOST = f"http://127.0.0.1:{host.server_address[1]}"


# ---- servers -----------------------------------------------------------------------------------
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


def chat(parts, **extra):
    return {"model": "m", "messages": [{"role": "user", "content": parts}], "max_tokens": 4, "temperature": 0, **extra}


def image_part(url, **extra):
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def expect_200(srv, path, body, what):
    status, out = srv.post(path, body)
    ok = status == 200 and ("choices" in out or "text" in out)
    check(ok, f"{what}: answered 200 (got {status}: {str(out)[:200]!r})")


def expect_400(srv, path, body, needle, what, param=None):
    status, out = srv.post(path, body)
    err = out.get("error", {}) if isinstance(out, dict) else {}
    msg = err.get("message", "")
    ok = status == 400 and needle in msg and (param is None or err.get("param") == param)
    check(ok, f"{what}: 400 with '{needle}'" + (f" param {param}" if param else "") + f" (got {status}: {msg!r}, "
              f"param {err.get('param')!r})")


tmp = tempfile.mkdtemp(prefix="dpserve_images_")
try:
    model = os.path.join(tmp, "vl")
    subprocess.run([sys.executable, MAKE_MODEL, "--arch", "qwen2_5_vl", "--dtype", "bf16", "--no-tokenizer",
                    "--quiet", "--out", model], check=True)
    json.dump(PRE, open(os.path.join(model, "preprocessor_config.json"), "w"))

    srv = Server(["--served-model-name", "m", "--model-path", model, "--tokenizer-path", TOKENIZER, "--chat-template", TEMPLATE,
                  "--context-length", "256", "--allowed-image-url-prefix", HOST + "/ok/",
                  "--allowed-image-url-prefix", HOST + "/pub",
                  "--max-images-per-request", "3", "--max-image-bytes", "100000", "--image-fetch-timeout", "1",
                  "--max-image-pixels", "1000000"], os.path.join(tmp, "vl.log"))
    try:
        # A good image gets through parsing and materialization, reaches the rank and runs through the
        # vision tower.
        for what, url in [("PNG data URL", data_url(GOOD_PNG)), ("JPEG data URL", data_url(jpeg(30, 50), "image/jpeg")),
                          ("allowed remote URL", HOST + "/ok/img.png"),
                          # Normalised before it is compared, and fetched in that form.
                          ("allowed remote URL after '..'", HOST + "/other/../ok/img.png"),
                          ("allowed remote URL with './'", HOST + "/ok/./img.png"),
                          ("remote URL under a prefix without a trailing '/'", HOST + "/pub/img.png"),
                          # Schemes and media types are case-insensitive, and a media type may carry
                          # parameters (RFC 3986, RFC 2045 / 2397).
                          ("upper-case data: URL with a parameter",
                           "DATA:IMAGE/PNG;charset=utf-8;BASE64," + base64.b64encode(GOOD_PNG).decode()),
                          ("upper-case scheme of an allowed remote URL", HOST.replace("http://", "HTTP://") + "/ok/img.png")]:
            expect_200(srv, "/v1/chat/completions", chat([{"type": "text", "text": "What is it?"}, image_part(url)]),
                       f"chat, {what}")
        # --max-image-bytes bounds the decoded bytes: MIME line breaks (every 76 characters) do not
        # count. A PNG 4 bytes under the limit, padded after IEND (decoders stop there), wrapped.
        near = GOOD_PNG + bytes(100000 - 4 - len(GOOD_PNG))
        expect_200(srv, "/v1/chat/completions", chat([image_part(wrapped_data_url(near))]),
                   "base64 wrapped in lines, the image just under --max-image-bytes")
        expect_200(srv, "/v1/chat/completions", chat([image_part(data_url(GOOD_PNG), detail="auto")]),
                   "detail auto is accepted")
        expect_200(srv, "/generate", {"text": "<|vision_start|><|image_pad|><|vision_end|>Describe.",
                                      "image_data": base64.b64encode(GOOD_PNG).decode()},
                   "/generate with raw base64 image_data")
        expect_200(srv, "/generate", {"input_ids": [1, PAD, 2, PAD], "image_data": [data_url(GOOD_PNG), HOST + "/ok/img.png"]},
                   "/generate input_ids with a list of two images")

        # The prompt's length after expansion: each image_pad becomes smart_resize's token count.
        for h, w in [(40, 60), (400, 400), (13, 700), (300, 20)]:
            want = 2 + smart_tokens(h, w)
            status, out = srv.post("/generate", {"input_ids": [1, PAD, 2], "image_data": data_url(jpeg(h, w), "image/jpeg"),
                                                 "sampling_params": {"max_new_tokens": 1000}})
            msg = out.get("error", {}).get("message", "")
            check(status == 400 and f"({want} in the prompt" in msg,
                  f"{h}x{w} image: prompt of {want} tokens after expansion (got {status}: {msg!r})")

        # Bad images: a 400 naming the problem and the parameter, for that request alone.
        P = "messages[0].content[1].image_url.url"
        bad = [
            ("truncated PNG", data_url(GOOD_PNG[: len(GOOD_PNG) // 2]), "bad PNG image: truncated"),
            ("GIF", data_url(b"GIF89a" + b"\x00" * 40), "GIF images are not supported"),
            ("text", data_url(b"hello world, not an image"), "not a JPEG or PNG"),
            ("empty", "data:image/png;base64,", "image is empty"),
            ("100k x 100k header", data_url(huge_png_header()), "above the limit of 1000000"),
            ("invalid base64", "data:image/png;base64,@@@@", "not valid base64"),
            ("webp data URL", "data:image/webp;base64,AAAA", "'image/webp' is not supported"),
            ("not base64 data URL", "data:image/png,abc", "must be base64"),
            ("file URL", "file:///etc/passwd", "must be a data: URL"),
            ("URL outside the allow-list", HOST + "/other/img.png", "not under an allowed prefix"),
            ("'..' out of the allow-list", HOST + "/ok/../other/img.png", "not under an allowed prefix"),
            ("%2e%2e out of the allow-list", HOST + "/ok/%2e%2e/other/img.png", "not under an allowed prefix"),
            ("'..' deeper out of the allow-list", HOST + "/ok/a/../../other/img.png", "not under an allowed prefix"),
            ("encoded '/' in the path", HOST + "/ok/..%2fother/img.png", "encoded '/'"),
            ("user info before the host", HOST.replace("http://", "http://user@") + "/ok/img.png", "user information"),
            ("prefix matched inside a path segment", HOST + "/public/img.png", "not under an allowed prefix"),
            ("redirect out of the allow-list", HOST + "/ok/redirect", "gave HTTP 302"),
            ("missing remote file", HOST + "/ok/missing.png", "gave HTTP 404"),
            ("remote file over --max-image-bytes", HOST + "/ok/big.png", "larger than 100000 bytes"),
            ("slow remote file", HOST + "/ok/slow.png", "took longer than 1 s"),
            ("remote host trickling its headers", HOST + "/ok/slow-headers.png", "took longer than 1 s"),
            ("data over --max-image-bytes", data_url(png(400, 400, 3)), "larger than 100000 bytes"),
            ("data over --max-image-bytes with line breaks", wrapped_data_url(b"\x89PNG" + bytes(100000)),
             "larger than 100000 bytes"),
            ("aspect ratio over 200", data_url(png(1, 300)), "aspect ratio"),
            ("progressive JPEG of 2000 scans", data_url(progressive_jpeg(900, 900, 2000), "image/jpeg"),
             "bad JPEG image: more than 100 scans"),
        ]
        for what, url, needle in bad:
            expect_400(srv, "/v1/chat/completions", chat([{"type": "text", "text": "x"}, image_part(url)]), needle,
                       f"bad image: {what}", P)
        expect_400(srv, "/v1/chat/completions", chat([image_part(data_url(GOOD_PNG), detail="low")]),
                   "must be \"auto\"", "detail low is refused", "messages[0].content[0].image_url.detail")
        expect_400(srv, "/v1/chat/completions", chat([image_part(data_url(GOOD_PNG), size=3)]),
                   "Unrecognized request argument supplied: messages[0].content[0].image_url.size", "unknown image_url key")
        expect_400(srv, "/v1/chat/completions",
                   chat([{"type": "image_url", "image_url": {"url": data_url(GOOD_PNG)}, "extra": 1}]),
                   "Unrecognized request argument supplied: messages[0].content[0].extra", "unknown part key")
        expect_400(srv, "/v1/chat/completions", chat([{"type": "input_audio", "input_audio": {}}]),
                   "must be \"text\" or \"image_url\"", "unknown part type")
        expect_400(srv, "/v1/chat/completions", chat([image_part(data_url(GOOD_PNG))] * 4),
                   "at most 3 (--max-images-per-request)", "too many images")
        expect_400(srv, "/generate", {"text": "<|image_pad|><|image_pad|>", "image_data": data_url(GOOD_PNG)},
                   "2 image_pad token(s)", "/generate: two pads, one image")
        expect_400(srv, "/generate", {"text": "no pad here", "image_data": data_url(GOOD_PNG)},
                   "0 image_pad token(s)", "/generate: no pad, one image")
        expect_400(srv, "/v1/completions", {"model": "m", "prompt": "look <|image_pad|>", "max_tokens": 2},
                   "1 image_pad token(s)", "completions: a pad without an image")
        expect_400(srv, "/generate", {"text": ["<|image_pad|>", "<|image_pad|>"], "image_data": data_url(GOOD_PNG)},
                   "exactly one prompt", "/generate: images with a batch of prompts")
        expect_400(srv, "/generate", {"input_ids": [1, PAD], "image_data": 5}, "must be a string", "/generate: image_data type")

        # Other requests go on: text chats while bad and good image requests run beside them.
        results = {}

        def text_chat(i):
            results[i] = srv.post("/v1/chat/completions", chat("Say something."))[0]

        def image_chat(i):
            results[i] = srv.post("/v1/chat/completions", chat([image_part(data_url(GOOD_PNG[:100] if i % 2 else GOOD_PNG))]))[0]

        threads = [threading.Thread(target=text_chat if i < 4 else image_chat, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(all(results[i] == 200 for i in range(4)) and
              all(results[i] == (400 if i % 2 else 200) for i in range(4, 8)),
              f"text requests beside image requests: {results}")
        status, out = srv.post("/v1/chat/completions", chat("Hello"))
        check(status == 200 and out["choices"][0]["finish_reason"] in ("stop", "length"), "text still served afterwards")
    finally:
        rc = srv.stop()
        check(rc == 0, f"vision-configured server exits 0 on SIGTERM (got {rc})")

    # A text-only model: any image is a 400 naming the model.
    srv = Server(["--served-model-name", "m", "--chat-template", TEMPLATE], os.path.join(tmp, "text.log"))
    try:
        expect_400(srv, "/v1/chat/completions", chat([image_part(data_url(GOOD_PNG))]), "does not accept images",
                   "text model, chat image", "messages[0].content[0].image_url.url")
        expect_400(srv, "/generate", {"text": "hi", "image_data": data_url(GOOD_PNG)}, "does not accept images",
                   "text model, /generate image_data", "image_data")
        status, _ = srv.post("/generate", {"text": "Once upon", "sampling_params": {"max_new_tokens": 2}})
        check(status == 200, f"text model serves /generate text (got {status})")
    finally:
        rc = srv.stop()
        check(rc == 0, f"text server exits 0 on SIGTERM (got {rc})")

    # A prefix without a path would also match other hosts ("http://a.com" matches "http://a.com.evil/"):
    # a start-up error naming the flag.
    r = subprocess.run([BIN, "serve", "--port", "0", "--allowed-image-url-prefix", "http://a.com"],
                       capture_output=True, text=True, timeout=120)
    check(r.returncode != 0 and "--allowed-image-url-prefix http://a.com: must be an http(s) URL with a host and a path"
          in r.stdout + r.stderr, f"prefix without a path refused at start (exit {r.returncode})")
finally:
    host.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)

print(f"{len(failures)} failure(s)" if failures else "all image input checks passed")
sys.exit(1 if failures else 0)
