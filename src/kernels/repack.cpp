#include "kernels/repack.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/check.h"

namespace dpserve {

AlignedBytes::AlignedBytes(size_t n, size_t align) : n_(n) {
  p_.reset(static_cast<uint8_t*>(std::aligned_alloc(align, (n + align - 1) / align * align)));
  if (n && !p_) fail("out of memory allocating {} bytes for repacked weights", n);
}

void AlignedBytes::Free::operator()(uint8_t* p) const { std::free(p); }

namespace {

// Codes (the unsigned integer each element is stored as) of one plain block, element order.
void plain_codes(DType t, const uint8_t* b, uint8_t* c) {
  switch (t) {
    case DType::Q8_0:
      for (int k = 0; k < 32; ++k) c[k] = b[2 + k];
      return;
    case DType::Q4_0:
      for (int j = 0; j < 16; ++j) {
        c[j] = b[2 + j] & 15;
        c[j + 16] = b[2 + j] >> 4;
      }
      return;
    case DType::Q4_K:
    case DType::Q5_K: {
      const uint8_t* qs = b + (t == DType::Q4_K ? 16 : 48);
      for (int pair = 0; pair < 4; ++pair)
        for (int l = 0; l < 32; ++l) {
          c[64 * pair + l] = qs[32 * pair + l] & 15;
          c[64 * pair + 32 + l] = qs[32 * pair + l] >> 4;
        }
      if (t == DType::Q5_K)
        for (int j = 0; j < 8; ++j)
          for (int l = 0; l < 32; ++l) c[32 * j + l] = uint8_t(c[32 * j + l] | (((b[16 + l] >> j) & 1) << 4));
      return;
    }
    case DType::Q6_K:
      for (int half = 0; half < 2; ++half)
        for (int l = 0; l < 32; ++l) {
          const uint8_t q0 = b[64 * half + l], q1 = b[64 * half + 32 + l], h = b[128 + 32 * half + l];
          uint8_t* o = c + 128 * half + l;
          o[0] = uint8_t((q0 & 15) | ((h & 3) << 4));
          o[32] = uint8_t((q1 & 15) | (((h >> 2) & 3) << 4));
          o[64] = uint8_t((q0 >> 4) | (((h >> 4) & 3) << 4));
          o[96] = uint8_t((q1 >> 4) | (((h >> 6) & 3) << 4));
        }
      return;
    default: fail("repack: {} is not a block type", dtype_name(t));
  }
}

// The inverse: writes the code bytes of a plain block (scales are copied separately).
void plain_from_codes(DType t, const uint8_t* c, uint8_t* b) {
  switch (t) {
    case DType::Q8_0: std::memcpy(b + 2, c, 32); return;
    case DType::Q4_0:
      for (int j = 0; j < 16; ++j) b[2 + j] = uint8_t(c[j] | (c[j + 16] << 4));
      return;
    case DType::Q4_K:
    case DType::Q5_K: {
      uint8_t* qs = b + (t == DType::Q4_K ? 16 : 48);
      if (t == DType::Q5_K) std::memset(b + 16, 0, 32);
      for (int pair = 0; pair < 4; ++pair)
        for (int l = 0; l < 32; ++l) {
          const uint8_t lo = c[64 * pair + l], hi = c[64 * pair + 32 + l];
          qs[32 * pair + l] = uint8_t((lo & 15) | ((hi & 15) << 4));
          if (t == DType::Q5_K) b[16 + l] |= uint8_t(((lo >> 4) << (2 * pair)) | ((hi >> 4) << (2 * pair + 1)));
        }
      return;
    }
    case DType::Q6_K:
      for (int half = 0; half < 2; ++half)
        for (int l = 0; l < 32; ++l) {
          const uint8_t* q = c + 128 * half + l;
          b[64 * half + l] = uint8_t((q[0] & 15) | ((q[64] & 15) << 4));
          b[64 * half + l + 32] = uint8_t((q[32] & 15) | ((q[96] & 15) << 4));
          b[128 + 32 * half + l] = uint8_t((q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) | ((q[96] >> 4) << 6));
        }
      return;
    default: fail("repack: {} is not a block type", dtype_name(t));
  }
}

// Where the per-row scalars of a plain block go in a 16-row block: `n` bytes from plain offset
// `from`, stored as vectors of 16 (`elem` bytes per row) starting at `to`.
struct Field {
  int from, n, elem, to;
};

struct Layout {
  int be = 0, bb = 0, xb = 0;   // elements, plain bytes, 16-row bytes per block
  Field fields[3] = {};
  int n_fields = 0;
};

Layout layout(DType t) {
  switch (t) {
    case DType::Q8_0: return {32, 34, 544, {{0, 2, 2, 0}}, 1};
    case DType::Q4_0: return {32, 18, 288, {{0, 2, 2, 0}}, 1};
    case DType::Q4_K: return {256, 144, 2304, {{0, 2, 2, 0}, {2, 2, 2, 32}, {4, 12, 1, 64}}, 3};
    case DType::Q5_K: return {256, 176, 2816, {{0, 2, 2, 0}, {2, 2, 2, 32}, {4, 12, 1, 64}}, 3};
    case DType::Q6_K: return {256, 210, 3360, {{208, 2, 2, 0}, {192, 16, 1, 32}}, 2};
    default: fail("repack: {} is not a block type", dtype_name(t));
  }
}

// Where, inside a 16-row block, the code of element k of row r is (reading single rows back):
// its byte, which nibble (0 low, 1 high, -1 whole byte) and, for Q5_K/Q6_K, its high bits.
struct CodeSlot {
  int byte, nibble;
  int hbyte = -1, hshift = 0;  // high bits: byte and bit position (Q5_K one bit, Q6_K two)
};

CodeSlot code_slot(DType t, int r, int k) {
  const int i = k % 4;
  switch (t) {
    case DType::Q8_0: return {32 + 64 * (k / 4) + 4 * r + i, -1};
    case DType::Q4_0: {
      const int g = k / 4;  // k-group; chunk g / 2, nibble g % 2
      return {32 + 64 * (g / 2) + 4 * r + i, g % 2};
    }
    case DType::Q4_K: {
      const int j = k / 32, g = (k % 32) / 4;
      return {256 + 256 * j + 64 * (g / 2) + 4 * r + i, g % 2};
    }
    case DType::Q5_K: {
      const int j = k / 32, g = (k % 32) / 4;
      CodeSlot s{256 + 320 * j + 64 + 64 * (g / 2) + 4 * r + i, g % 2};
      s.hbyte = 256 + 320 * j + 4 * r + i;
      s.hshift = g;
      return s;
    }
    case DType::Q6_K: {
      const int u = k / 32, g = (k % 32) / 4;
      CodeSlot s{288 + 384 * u + 64 * (g / 2) + 4 * r + i, g % 2};
      s.hbyte = 288 + 384 * u + 256 + 64 * (g / 4) + 4 * r + i;
      s.hshift = 2 * (g % 4);
      return s;
    }
    default: fail("repack: {} is not a block type", dtype_name(t));
  }
}

uint8_t get_code(DType t, const uint8_t* blk, const CodeSlot& s) {
  if (s.nibble < 0) return t == DType::Q8_0 ? uint8_t(blk[s.byte] ^ 0x80) : blk[s.byte];
  uint8_t c = (blk[s.byte] >> (4 * s.nibble)) & 15;
  if (t == DType::Q5_K) c = uint8_t(c | (((blk[s.hbyte] >> s.hshift) & 1) << 4));
  if (t == DType::Q6_K) c = uint8_t(c | (((blk[s.hbyte] >> s.hshift) & 3) << 4));
  return c;
}

// Code slots of every (row, element) of one block type, computed once.
struct SlotTable {
  std::vector<CodeSlot> s;  // [16][be]
  explicit SlotTable(DType t) {
    const int be = layout(t).be;
    for (int r = 0; r < 16; ++r)
      for (int k = 0; k < be; ++k) s.push_back(code_slot(t, r, k));
  }
};

const SlotTable& slots(DType t) {
  static const SlotTable q8(DType::Q8_0), q4(DType::Q4_0), q4k(DType::Q4_K), q5k(DType::Q5_K), q6k(DType::Q6_K);
  switch (t) {
    case DType::Q8_0: return q8;
    case DType::Q4_0: return q4;
    case DType::Q4_K: return q4k;
    case DType::Q5_K: return q5k;
    default: return q6k;
  }
}

// Writers of the 16-row code layouts (repack.h) from codes[row][element] of one block.
// Nibble chunks: chunk c of the 32 elements from k0 holds k-groups 2c (low) and 2c + 1 (high).
void put_nibbles(const uint8_t (*c)[256], int k0, uint8_t* out) {
  for (int ch = 0; ch < 4; ++ch)
    for (int r = 0; r < 16; ++r)
      for (int i = 0; i < 4; ++i)
        out[64 * ch + 4 * r + i] = uint8_t((c[r][k0 + 8 * ch + i] & 15) | ((c[r][k0 + 8 * ch + 4 + i] & 15) << 4));
}

// Q5_K's fifth bits of 32 elements: bit g of byte 4r + i is element 4g + i.
void put_fifth_bits(const uint8_t (*c)[256], int k0, uint8_t* out) {
  for (int r = 0; r < 16; ++r)
    for (int i = 0; i < 4; ++i) {
      int b = 0;
      for (int g = 0; g < 8; ++g) b |= ((c[r][k0 + 4 * g + i] >> 4) & 1) << g;
      out[4 * r + i] = uint8_t(b);
    }
}

// Q6_K's top bit pairs of 32 elements: vector v, bits 2t of byte 4r + i are element 4(4v + t) + i.
void put_bit_pairs(const uint8_t (*c)[256], int k0, uint8_t* out) {
  for (int v = 0; v < 2; ++v)
    for (int r = 0; r < 16; ++r)
      for (int i = 0; i < 4; ++i) {
        int b = 0;
        for (int t = 0; t < 4; ++t) b |= ((c[r][k0 + 4 * (4 * v + t) + i] >> 4) & 3) << (2 * t);
        out[64 * v + 4 * r + i] = uint8_t(b);
      }
}

}  // namespace

namespace {

// Both 16-row layouts: groups of kX16Rows rows, rows of whole kX16Chunk-element chunks.
constexpr int64_t kX16Chunk = 32, kX16Rows = 16;
// BF16_X16: pair p of the group (elements 2p, 2p + 1) is 64 bytes, row r's two at byte 4 r.
constexpr int64_t kBf16PairBytes = 64;

void interleave_bf16(const uint8_t* src, int64_t ld_bytes, int n_rows, int64_t cols, uint8_t* dst) {
  DP_CHECK(cols % kX16Chunk == 0 && n_rows >= 0 && n_rows <= kX16Rows, "interleave_group: bad bf16 shape");
  // 16 pairs (a 64-byte line of each row) at a time, transposed in a 1 KiB buffer: the rows are
  // read and the group written as whole lines (4-byte copies straight to their places: the
  // Qwen3-MoE bench shape's 2.6 GB took 1.99 s to prepare instead of 1.06).
  uint32_t in[kX16Rows][16], out[16][kX16Rows];
  std::memset(in, 0, sizeof(in));  // padding rows: zeros, never stored
  for (int64_t p0 = 0; p0 < cols / 2; p0 += 16) {
    for (int r = 0; r < n_rows; ++r) std::memcpy(in[r], src + r * ld_bytes + 4 * p0, sizeof(in[r]));
    for (int i = 0; i < 16; ++i)
      for (int r = 0; r < kX16Rows; ++r) out[i][r] = in[r][i];
    std::memcpy(dst + p0 * kBf16PairBytes, out, sizeof(out));
  }
}

void deinterleave_bf16(const uint8_t* group, int r, int64_t cols, uint8_t* dst) {
  DP_CHECK(cols % kX16Chunk == 0 && r >= 0 && r < kX16Rows, "deinterleave_row: bad bf16 shape");
  for (int64_t p = 0; p < cols / 2; ++p) std::memcpy(dst + 4 * p, group + p * kBf16PairBytes + 4 * r, 4);
}

// F16_X16: element k of the group's 16 rows is 32 bytes at 32 k, row r's at byte 2 r.
void interleave_f16(const uint8_t* src, int64_t ld_bytes, int n_rows, int64_t cols, uint8_t* dst) {
  DP_CHECK(cols % kX16Chunk == 0 && n_rows >= 0 && n_rows <= kX16Rows, "interleave_group: bad f16 shape");
  // 16 elements of each row (a 32-byte piece) at a time, transposed in a 512-byte buffer.
  uint16_t in[kX16Rows][16], out[16][kX16Rows];
  std::memset(in, 0, sizeof(in));  // padding rows: zeros, never stored
  for (int64_t k0 = 0; k0 < cols; k0 += 16) {
    for (int r = 0; r < n_rows; ++r) std::memcpy(in[r], src + r * ld_bytes + 2 * k0, sizeof(in[r]));
    for (int i = 0; i < 16; ++i)
      for (int r = 0; r < kX16Rows; ++r) out[i][r] = in[r][i];
    std::memcpy(dst + k0 * 2 * kX16Rows, out, sizeof(out));
  }
}

void deinterleave_f16(const uint8_t* group, int r, int64_t cols, uint8_t* dst) {
  DP_CHECK(cols % kX16Chunk == 0 && r >= 0 && r < kX16Rows, "deinterleave_row: bad f16 shape");
  for (int64_t k = 0; k < cols; ++k) std::memcpy(dst + 2 * k, group + k * 2 * kX16Rows + 2 * r, 2);
}

}  // namespace

void interleave_group(DType t, const uint8_t* src, int64_t ld_bytes, int n_rows, int64_t cols, uint8_t* dst) {
  t = dtype_plain(t);
  if (t == DType::BF16) return interleave_bf16(src, ld_bytes, n_rows, cols, dst);
  if (t == DType::F16) return interleave_f16(src, ld_bytes, n_rows, cols, dst);
  const Layout L = layout(t);
  DP_CHECK(cols % L.be == 0 && n_rows >= 0 && n_rows <= 16, "interleave_group: bad shape");
  const int64_t nb = cols / L.be;
  alignas(64) uint8_t codes[16][256];
  std::memset(codes, 0, sizeof(codes));  // missing rows: code 0, scale 0
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* xb = dst + b * L.xb;
    std::memset(xb, 0, size_t(L.xb));
    for (int r = 0; r < n_rows; ++r) {
      const uint8_t* pb = src + r * ld_bytes + b * L.bb;
      for (int f = 0; f < L.n_fields; ++f) {
        const Field& F = L.fields[f];
        for (int i = 0; i < F.n / F.elem; ++i)
          std::memcpy(xb + F.to + (i * 16 + r) * F.elem, pb + F.from + i * F.elem, size_t(F.elem));
      }
      plain_codes(t, pb, codes[r]);
    }
    switch (t) {
      case DType::Q8_0:  // stored + 128 (vpdpbusd's unsigned operand)
        for (int g = 0; g < 8; ++g)
          for (int r = 0; r < 16; ++r)
            for (int i = 0; i < 4; ++i) xb[32 + 64 * g + 4 * r + i] = uint8_t(codes[r][4 * g + i] ^ 0x80);
        break;
      case DType::Q4_0: put_nibbles(codes, 0, xb + 32); break;
      case DType::Q4_K:
        for (int j = 0; j < 8; ++j) put_nibbles(codes, 32 * j, xb + 256 + 256 * j);
        break;
      case DType::Q5_K:
        for (int j = 0; j < 8; ++j) {
          put_fifth_bits(codes, 32 * j, xb + 256 + 320 * j);
          put_nibbles(codes, 32 * j, xb + 256 + 320 * j + 64);
        }
        break;
      case DType::Q6_K:
        for (int u = 0; u < 8; ++u) {
          put_nibbles(codes, 32 * u, xb + 288 + 384 * u);
          put_bit_pairs(codes, 32 * u, xb + 288 + 384 * u + 256);
        }
        break;
      default: break;
    }
  }
}

void deinterleave_row(DType t, const uint8_t* group, int r, int64_t cols, uint8_t* dst) {
  t = dtype_plain(t);
  if (t == DType::BF16) return deinterleave_bf16(group, r, cols, dst);
  if (t == DType::F16) return deinterleave_f16(group, r, cols, dst);
  const Layout L = layout(t);
  DP_CHECK(cols % L.be == 0 && r >= 0 && r < 16, "deinterleave_row: bad shape");
  const CodeSlot* tab = slots(t).s.data();
  uint8_t codes[256];
  for (int64_t b = 0; b < cols / L.be; ++b) {
    const uint8_t* xb = group + b * L.xb;
    uint8_t* pb = dst + b * L.bb;
    for (int f = 0; f < L.n_fields; ++f) {
      const Field& F = L.fields[f];
      for (int i = 0; i < F.n / F.elem; ++i)
        std::memcpy(pb + F.from + i * F.elem, xb + F.to + (i * 16 + r) * F.elem, size_t(F.elem));
    }
    for (int k = 0; k < L.be; ++k) codes[k] = get_code(t, xb, tab[r * L.be + k]);
    plain_from_codes(t, codes, pb);
  }
}

InterleavedWeight interleave(const WeightView& w) {
  const bool floats = w.dtype == DType::BF16 || w.dtype == DType::F16;
  if ((!dtype_is_quantized(w.dtype) && !floats) || dtype_row_group(w.dtype) != 1)
    fail("interleave: {} weights have no repacked form", dtype_name(w.dtype));
  if (floats && w.cols % 32 != 0)
    fail("interleave: {} rows of {} elements are not whole 32-element chunks", dtype_name(w.dtype), w.cols);
  InterleavedWeight out;
  const int64_t G = interleave_group_rows(w.dtype);
  const int64_t groups = (w.rows + G - 1) / G;
  const int64_t group_bytes = G * dtype_row_bytes(w.dtype, w.cols);
  out.bytes = AlignedBytes(size_t(groups * group_bytes));
  const int64_t ld_bytes = dtype_row_bytes(w.dtype, w.ld);
  const uint8_t* src = static_cast<const uint8_t*>(w.data);
  uint8_t* dst = out.bytes.data();
#pragma omp parallel for schedule(dynamic, 4) if (groups > 8)
  for (int64_t g = 0; g < groups; ++g)
    interleave_group(w.dtype, src + g * G * ld_bytes, ld_bytes, int(std::min<int64_t>(G, w.rows - G * g)), w.cols,
                     dst + g * group_bytes);
  out.view = WeightView{dst, dtype_interleaved(w.dtype), w.rows, w.cols, w.cols};
  return out;
}

}  // namespace dpserve
