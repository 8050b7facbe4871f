#!/usr/bin/python3
"""Photo-like JPEGs for bench/image_transfer.sh, made at bench time (nothing committed, no network).

Each image: a sky-to-ground gradient, soft blobs of colour ("objects"), a horizon, fine texture
noise and a slight blur, so JPEG has to code real detail (a flat or pure-noise picture would make
decoding unrealistically cheap or expensive). Sizes cycle through 1, 2, 3 and 4 megapixels with
photo aspect ratios (4:3, 3:2, 16:9).

usage: make_photos.py OUT_DIR N [SEED]
"""
import os
import sys

import numpy as np
from PIL import Image, ImageFilter

SIZES = [(1152, 864), (1732, 1155), (2304, 1296), (2309, 1732)]  # ~1.0, 2.0, 3.0, 4.0 MP


def photo(w, h, rng):
    y = np.linspace(0, 1, h)[:, None]
    x = np.linspace(0, 1, w)[None, :]
    sky = np.array(rng.uniform(120, 230, 3))
    ground = np.array(rng.uniform(30, 140, 3))
    horizon = rng.uniform(0.35, 0.65)
    t = np.clip((y - horizon) * 8 + 0.5, 0, 1)[..., None]
    img = (1 - t) * sky + t * ground + 0 * x[..., None]
    for _ in range(12):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.2)
        d = ((x - cx) ** 2 + ((y - cy) * h / w) ** 2) / r ** 2
        img += np.exp(-d)[..., None] * rng.uniform(-90, 90, 3)
    img += rng.normal(0, 9, size=(h, w, 3))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return im.filter(ImageFilter.GaussianBlur(0.8))


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    os.makedirs(out, exist_ok=True)
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        path = os.path.join(out, f"photo{i}.jpg")
        photo(w, h, rng).save(path, quality=88)
        print(path)


if __name__ == "__main__":
    main()
