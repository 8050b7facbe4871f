"""Writes GGUF files (llama.cpp's model format, version 3), byte for byte as the format specifies.

Written for dpserve from the format description (not from gguf-py): a header ("GGUF", version,
tensor count, metadata count), metadata key/value pairs, tensor infos (name, dimensions listed
fastest first, GGML type, offset), padding to the alignment, then the tensor data, each tensor
starting at a multiple of the alignment. Used by tools/hf_to_gguf.py and the fuzz seeds.
"""
import struct

import numpy as np

# Metadata value types.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
           U64: "<Q", I64: "<q", F64: "<d"}
_NUMPY = {U8: "<u1", I8: "<i1", U16: "<u2", I16: "<i2", U32: "<u4", I32: "<i4", F32: "<f4", U64: "<u8",
          I64: "<i8", F64: "<f8"}

# GGML tensor types used here, with (elements, bytes) per block.
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_Q4_K, GGML_Q5_K, GGML_Q6_K, GGML_BF16 = 0, 1, 2, 8, 12, 13, 14, 30
GGML_Q5_0, GGML_Q5_1 = 6, 7
GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
               10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 16: (256, 66),
               20: (32, 18), 30: (1, 2)}


def gguf_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def encode_value(vtype, value, elem=None):
    """Bytes of one metadata value (without its type tag)."""
    if vtype == STRING:
        return gguf_string(value)
    if vtype == ARRAY:
        head = struct.pack("<IQ", elem, len(value))
        if elem == STRING:
            return head + b"".join(gguf_string(v) for v in value)
        if elem == BOOL:
            return head + bytes(1 if v else 0 for v in value)
        return head + np.asarray(value, dtype=_NUMPY[elem]).tobytes()
    return struct.pack(_SCALAR[vtype], value)


class TensorSpec:
    """A tensor to write: `shape` slowest first (as NumPy / safetensors), data from `produce()`,
    a C-contiguous NumPy array whose bytes are the tensor (raw uint8 blocks for quantized types)."""

    def __init__(self, name, ggml_type, shape, produce):
        self.name, self.ggml_type, self.shape, self.produce = name, ggml_type, tuple(int(s) for s in shape), produce

    @property
    def nbytes(self):
        elems, nbytes = GGML_BLOCKS[self.ggml_type]
        n = 1
        for s in self.shape:
            n *= s
        assert self.shape[-1] % elems == 0, f"{self.name}: rows of {self.shape[-1]} are not whole blocks"
        return n // elems * nbytes


class GgufWriter:
    def __init__(self, alignment=32):
        self.alignment = alignment
        self.kv = []  # (key, type, value, elem)
        self.tensors = []

    def add(self, key, vtype, value, elem=None):
        if any(k == key for k, _, _, _ in self.kv):
            raise ValueError(f"metadata key {key} given twice")
        self.kv.append((key, vtype, value, elem))

    def add_array(self, key, elem, values):
        self.add(key, ARRAY, list(values) if elem in (STRING, BOOL) else values, elem)

    def add_tensor(self, spec):
        self.tensors.append(spec)

    def _pad(self, n):
        return (self.alignment - n % self.alignment) % self.alignment

    def write(self, path, kv=None, tensors=None):
        kv = self.kv if kv is None else kv
        tensors = self.tensors if tensors is None else tensors
        head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)))
        for key, vtype, value, elem in kv:
            head += gguf_string(key) + struct.pack("<I", vtype) + encode_value(vtype, value, elem)
        offset = 0
        for t in tensors:
            head += gguf_string(t.name) + struct.pack("<I", len(t.shape))
            head += struct.pack(f"<{len(t.shape)}Q", *reversed(t.shape))  # GGUF: fastest dimension first
            head += struct.pack("<IQ", t.ggml_type, offset)
            offset += t.nbytes + self._pad(t.nbytes)
        head += b"\0" * self._pad(len(head))
        with open(path, "wb") as f:
            f.write(head)
            for t in tensors:
                data = np.ascontiguousarray(t.produce())
                if data.nbytes != t.nbytes:
                    raise ValueError(f"{t.name}: {data.nbytes} bytes produced, {t.nbytes} expected")
                f.write(data.tobytes())
                f.write(b"\0" * self._pad(t.nbytes))

    def write_split(self, prefix, max_tensors):
        """llama.cpp's gguf-split layout: prefix-00001-of-0000N.gguf, ...; the first file holds the
        metadata, every file split.no (0-based), split.count and split.tensors.count."""
        groups = [self.tensors[i:i + max_tensors] for i in range(0, len(self.tensors), max_tensors)] or [[]]
        paths = []
        for i, group in enumerate(groups):
            split = [("split.no", U16, i, None), ("split.count", U16, len(groups), None),
                     ("split.tensors.count", I32, len(self.tensors), None)]
            path = f"{prefix}-{i + 1:05d}-of-{len(groups):05d}.gguf"
            self.write(path, (self.kv if i == 0 else []) + split, group)
            paths.append(path)
        return paths
