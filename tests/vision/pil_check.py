#!/usr/bin/env python3
"""dpserve's image pipeline against Pillow (Debian python3-pil) and NumPy.

Makes real JPEG and PNG files, runs vision_dump on them and checks:
  * decode: the RGB equals Pillow's Image.open(f).convert("RGB") byte for byte;
  * materialize: the size equals Qwen2-VL's smart_resize, the RGB equals Pillow's
    resize(size, BICUBIC) of that RGB byte for byte, and the hash is FNV-1a-64 of the file;
  * image_patches: equal (within float32 rounding) to pixel_values computed the way Hugging Face's
    Qwen2VLImageProcessor does (rescale, normalize, repeat frames, reshape/transpose);
  * bad files (truncated, zero-sized, 100k x 100k header, GIF, text, empty, aspect > 200, a
    progressive JPEG of more than 100 scans, also on a 4000 x 4000 image with 5000 scans) exit
    with a clear error under a 512 MiB address-space limit: no crash, no large allocation.
Usage: pil_check.py PATH/TO/vision_dump
"""
import hashlib
import io
import math
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jpeg_scans import progressive_jpeg  # noqa: E402

DUMP = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="vision_pil_")
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def content(h, w, seed, channels=3):
    """Smooth gradients plus noise: both edges and texture matter to the resampler."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = [(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 7) % 256]
    img = np.stack([base[c % 3] for c in range(channels)], axis=-1).astype(np.int32)
    img += rng.integers(-40, 41, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


# A minimal PNG writer for what Pillow cannot save (16-bit color, 16-bit gray + alpha).
def png_bytes(arr, bit_depth, color_type):
    h, w = arr.shape[:2]
    raw = arr.astype(">u2").tobytes() if bit_depth == 16 else arr.astype(np.uint8).tobytes()
    stride = len(raw) // h
    data = b"".join(b"\x00" + raw[r * stride:(r + 1) * stride] for r in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data))
            + chunk(b"IEND", b""))


def save(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def smart_resize(h, w, factor, min_pixels, max_pixels):
    # transformers' qwen2_vl image_processing smart_resize
    if max(h, w) / min(h, w) > 200:
        raise ValueError("aspect")
    h_bar = round(h / factor) * factor
    w_bar = round(w / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((h * w) / max_pixels)
        h_bar = max(factor, math.floor(h / beta / factor) * factor)
        w_bar = max(factor, math.floor(w / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        h_bar = math.ceil(h * beta / factor) * factor
        w_bar = math.ceil(w * beta / factor) * factor
    return h_bar, w_bar


def hf_pixel_values(rgb, ps, tp, m):
    """Qwen2VLImageProcessor._preprocess after the resize, for one image (NumPy, float32 as HF)."""
    img = rgb.astype(np.float64) * (1 / 255)  # rescale(): float64 product, then float32
    img = img.astype(np.float32)
    img = (img - MEAN) / STD  # normalize() in the image's dtype
    img = img.transpose(2, 0, 1)  # channels first
    patches = np.array([img])
    if patches.shape[0] % tp != 0:
        rep = np.repeat(patches[-1][np.newaxis], tp - 1, axis=0)
        patches = np.concatenate([patches, rep], axis=0)
    c = patches.shape[1]
    gt, gh, gw = patches.shape[0] // tp, rgb.shape[0] // ps, rgb.shape[1] // ps
    patches = patches.reshape(gt, tp, c, gh // m, m, ps, gw // m, m, ps)
    patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return patches.reshape(gt * gh * gw, c * tp * ps * ps)


def content_hash(b):
    # The prefix cache's image identity: SHA-256's first 8 bytes, big-endian (hashlib, not our code).
    return int.from_bytes(hashlib.sha256(b).digest()[:8], "big")


# A sanitizer build reserves terabytes of shadow address space at start-up, so an address-space
# limit would stop it before main(); there the same bound is put on single allocations instead
# (ASan then fails the run, with a report, on any larger request).
# GCC links the sanitizer runtimes as shared libraries, clang (the ASan tree) links them in statically:
# the runtimes' entry points name either.
with open(DUMP, "rb") as f:
    _image = f.read()
SANITIZED = b"__asan_init" in _image or b"__tsan_init" in _image
del _image


def run(args, limit_as=None):
    pre = None
    env = None
    if limit_as and SANITIZED:
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + f":max_allocation_size_mb={limit_as >> 20}"
    elif limit_as:
        pre = lambda: resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))
    return subprocess.run([DUMP] + args, capture_output=True, text=True, preexec_fn=pre, env=env,
                          timeout=120)


def read_out(out):
    h, w, hsh = open(out + ".txt").read().split()
    rgb = np.fromfile(out + ".rgb", dtype=np.uint8).reshape(int(h), int(w), 3)
    return rgb, int(hsh)


def case(name, data, cfgs):
    path = os.path.join(TMP, name)
    open(path, "wb").write(data)
    ref = Image.open(io.BytesIO(data))
    ref.load()
    ref_rgb = ref.convert("RGB")
    out = os.path.join(TMP, name + ".dec")
    r = run(["decode", path, out])
    check(r.returncode == 0, f"{name}: decode failed: {r.stderr.strip()}")
    if r.returncode != 0:
        return
    got, _ = read_out(out)
    want = np.asarray(ref_rgb)
    check(got.shape == want.shape, f"{name}: decoded shape {got.shape} != Pillow {want.shape}")
    if got.shape == want.shape:
        diff = np.abs(got.astype(int) - want.astype(int))
        check(diff.max() == 0, f"{name}: decoded RGB differs from Pillow (max {diff.max()}, "
                               f"{np.count_nonzero(diff)} values)")
    for ps, tp, m, lo, hi in cfgs:
        th, tw = smart_resize(ref.height, ref.width, ps * m, lo, hi)
        out = os.path.join(TMP, f"{name}.{ps}.{m}.{lo}.{hi}")
        r = run(["materialize", path, out, str(ps), str(tp), str(m), str(lo), str(hi)])
        check(r.returncode == 0, f"{name}: materialize failed: {r.stderr.strip()}")
        if r.returncode != 0:
            continue
        got, hsh = read_out(out)
        tag = f"{name} -> {th}x{tw} (ps {ps} m {m} pixels [{lo}, {hi}])"
        check(got.shape[:2] == (th, tw), f"{tag}: size {got.shape[:2]}")
        check(hsh == content_hash(data), f"{tag}: hash {hsh:x} != SHA-256 prefix {content_hash(data):x}")
        want = np.asarray(ref_rgb.resize((tw, th), Image.BICUBIC))
        if got.shape == want.shape:
            diff = np.abs(got.astype(int) - want.astype(int))
            check(diff.max() == 0, f"{tag}: resized RGB differs from Pillow (max {diff.max()}, "
                                   f"{np.count_nonzero(diff)} values)")
            pv = hf_pixel_values(want, ps, tp, m)
            ours = np.fromfile(out + ".patches", dtype="<f4")
            check(ours.size == pv.size, f"{tag}: {ours.size} patch values, HF has {pv.size}")
            if ours.size == pv.size:
                err = np.abs(ours.reshape(pv.shape) - pv).max()
                # Ours: (v/255 - mean)/std in float64 rounded once; HF: three float32 roundings.
                check(err <= 2e-6, f"{tag}: patch rows differ from HF's by {err}")
        print(f"ok {tag}")


QWEN = (14, 2, 2, 56 * 56, 28 * 28 * 1280)      # Qwen2-VL / Qwen2.5-VL defaults
SMALL = (14, 2, 2, 56 * 56, 28 * 28 * 64)       # a small max_pixels: strong downscaling
ODD = (4, 3, 3, 12 * 12, 12 * 12 * 40)          # other patch/merge/temporal sizes

rgb = lambda h, w, s: Image.fromarray(content(h, w, s))
case("rgb_57x91.png", save(rgb(57, 91, 1), "PNG"), [QWEN, ODD])
case("rgb_56x84.png", save(rgb(56, 84, 2), "PNG"), [QWEN])          # already a multiple: no resize
case("rgb_300x211.png", save(rgb(300, 211, 3), "PNG"), [QWEN, SMALL, ODD])
case("rgb_20x30.png", save(rgb(20, 30, 4), "PNG"), [QWEN, ODD])     # below min_pixels: upscale
case("rgb_1x3.png", save(rgb(1, 3, 5), "PNG"), [QWEN])
case("rgb_1100x1500.png", save(rgb(1100, 1500, 6), "PNG"), [QWEN, SMALL])  # above max_pixels
case("rgb_70x42.png", save(rgb(70, 42, 7), "PNG"), [QWEN])          # round-half-to-even edges
case("gray_61x45.png", save(Image.fromarray(content(61, 45, 8)[..., 0]), "PNG"), [QWEN])
case("bilevel_33x40.png", save(Image.fromarray(content(33, 40, 9)[..., 0] > 128), "PNG"), [QWEN])
pal = rgb(50, 77, 10).quantize(colors=37)
pal.info["transparency"] = 3
case("palette_trns_50x77.png", save(pal, "PNG", transparency=3), [QWEN])
case("palette_4bit_40x40.png", save(rgb(40, 40, 11).quantize(colors=12), "PNG", bits=4), [QWEN])
case("rgba_45x64.png", save(Image.fromarray(content(45, 64, 12, 4), "RGBA"), "PNG"), [QWEN])
case("la_39x52.png", save(Image.fromarray(content(39, 52, 13, 2), "LA"), "PNG"), [QWEN])
rng = np.random.default_rng(14)
case("rgb16_31x47.png", png_bytes(rng.integers(0, 65536, (31, 47, 3)), 16, 2), [QWEN])
case("rgba16_29x33.png", png_bytes(rng.integers(0, 65536, (29, 33, 4)), 16, 6), [QWEN])
case("gray16_30x35.png", png_bytes(rng.integers(0, 400, (30, 35)), 16, 0), [QWEN])  # Pillow clips
case("gray8_grayalpha16_28x40.png", png_bytes(rng.integers(0, 65536, (28, 40, 2)), 16, 4), [QWEN])
case("rgb_q90_57x91.jpg", save(rgb(57, 91, 15), "JPEG", quality=90), [QWEN, ODD])
case("rgb_444_123x77.jpg", save(rgb(123, 77, 16), "JPEG", quality=95, subsampling=0), [QWEN])
case("rgb_progressive_301x199.jpg", save(rgb(301, 199, 17), "JPEG", progressive=True), [QWEN, SMALL])
# Exactly at the scan limit (kMaxJpegScans = 100): still decoded, as Pillow decodes it.
case("gray_flat_100_scans.jpg", progressive_jpeg(70, 90, 100), [QWEN])
case("rgb_1100x1500.jpg", save(rgb(1100, 1500, 18), "JPEG", quality=85), [QWEN, SMALL])
case("gray_65x49.jpg", save(Image.fromarray(content(65, 49, 19)[..., 0]), "JPEG"), [QWEN])
case("rgb_15x17.jpg", save(rgb(15, 17, 20), "JPEG"), [QWEN])


# ---- bad files -------------------------------------------------------------------------------
def bad(name, data, expect, extra=()):
    path = os.path.join(TMP, name)
    open(path, "wb").write(data)
    r = run(["materialize", path, path + ".out", *map(str, QWEN), *extra], limit_as=512 << 20)
    ok = r.returncode == 2 and expect in r.stderr
    check(ok, f"bad {name}: want exit 2 with '{expect}', got {r.returncode}: {r.stderr.strip()!r}")
    if ok:
        print(f"ok bad {name}: {r.stderr.strip()}")


good_png = save(rgb(64, 64, 21), "PNG")
good_jpg = save(rgb(64, 64, 22), "JPEG")
prog_jpg = save(rgb(64, 64, 23), "JPEG", progressive=True)
bad("truncated.png", good_png[: len(good_png) // 2], "bad PNG image")
bad("truncated_header.png", good_png[:20], "bad PNG image")
bad("truncated.jpg", good_jpg[: len(good_jpg) // 2], "bad JPEG image: truncated")
bad("truncated_progressive.jpg", prog_jpg[: len(prog_jpg) // 2], "bad JPEG image: truncated")
bad("truncated_header.jpg", good_jpg[:40], "bad JPEG image")


def png_with_ihdr(w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    ck = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + ck(b"IHDR", ihdr) + ck(b"IDAT", zlib.compress(b"\x00" * 64))
            + ck(b"IEND", b""))


bad("zero_width.png", png_with_ihdr(0, 10), "bad PNG image")
bad("huge_100k.png", png_with_ihdr(100000, 100000), "above the limit")


def jpeg_with_size(data, w, h):
    b = bytearray(data)
    i = 2
    while i < len(b):
        marker, seglen = b[i + 1], struct.unpack(">H", b[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            b[i + 5:i + 9] = struct.pack(">HH", h, w)
            return bytes(b)
        i += 2 + seglen
    raise RuntimeError("no SOF")


bad("huge_60k.jpg", jpeg_with_size(good_jpg, 60000, 60000), "above the limit")
bad("zero_height.jpg", jpeg_with_size(good_jpg, 64, 0), "bad JPEG image")
bad("limit_decoded.png", good_png, "above the limit", extra=("4000",))
bad("image.gif", save(rgb(16, 16, 24), "GIF"), "GIF images are not supported")
bad("text.txt", b"hello, this is not an image", "not a JPEG or PNG")
# One scan past the limit: refused by name (each scan is a pass over the image; see image_decode.h).
bad("scans_101.jpg", progressive_jpeg(70, 90, 101), "bad JPEG image: more than 100 scans")
bad("scans_5000_16mpx.jpg", progressive_jpeg(4000, 4000, 5000), "bad JPEG image: more than 100 scans")
bad("cmyk.jpg", save(Image.new("CMYK", (16, 16), (10, 20, 30, 40)), "JPEG"), "CMYK/YCCK color space is not supported")
bad("empty.bin", b"", "image is empty")
bad("aspect_1x201.png", save(rgb(1, 201, 25), "PNG"), "aspect ratio")
bad("corrupt_crc.png", good_png[:30] + bytes([good_png[30] ^ 0xFF]) + good_png[31:], "bad PNG image")

if failures:
    print(f"{len(failures)} failure(s) (the images are kept in {TMP})")
    sys.exit(1)
shutil.rmtree(TMP, ignore_errors=True)
print("all image checks passed")
