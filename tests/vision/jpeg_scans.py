"""Progressive JPEGs with as many scans as a test wants (for the scan limit, src/vision/image_decode.h).

Pillow writes a progressive JPEG of a flat gray image (its AC scans are a few dozen bytes: one
end-of-band run each); the smallest AC scan, with the Huffman tables written before it, is then
repeated. Repeating a scan is legal syntax that libjpeg and Pillow decode (a spectral-selection
scan decoded again sets the same coefficients), so the file is valid with any number of scans.
"""
import io
import struct

import numpy as np
from PIL import Image


def progressive_jpeg(h, w, scans):
    """A valid progressive JPEG of h x w with exactly `scans` scans (at least Pillow's own count)."""
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, "JPEG", progressive=True)
    b = buf.getvalue()
    i, start, head, units = 2, 2, None, []  # units: the segments before a scan + the scan + its data
    while b[i + 1] != 0xD9:
        seglen = struct.unpack(">H", b[i + 2:i + 4])[0]
        if b[i + 1] != 0xDA:
            i += 2 + seglen
            continue
        if head is None:
            head, start = b[:i], i
        j = i + 2 + seglen
        while not (b[j] == 0xFF and b[j + 1] != 0 and not 0xD0 <= b[j + 1] <= 0xD7):
            j += 1
        units.append(b[start:j])
        start = i = j
    if scans < len(units):
        raise ValueError(f"Pillow wrote {len(units)} scans; cannot make {scans}")
    small = min(units[1:], key=len)  # an AC scan: the DC scan must come first and stay single
    return head + b"".join(units) + small * (scans - len(units)) + b"\xff\xd9"
