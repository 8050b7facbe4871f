#include "kernels/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/bf16.h"
#include "core/check.h"

namespace dpserve {

namespace {

void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// f16 of a non-negative scale, kept finite (weights beyond ~4e6 would overflow the format).
uint16_t scale_f16(float d) { return f32_to_f16(std::min(d, 65504.0f)); }

// ggml's quantize_row_q8_0_ref: d = amax / 127, codes round(x / d) (half away from zero),
// computed with the unrounded d; d stored as f16.
void q8_0(const float* x, uint8_t* b) {
  float amax = 0;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_u16(b, f32_to_f16(d));
  for (int i = 0; i < 32; ++i) {
    // roundf (half away from zero) without the libm call: x - trunc(x) is exact here.
    const float v = x[i] * id, t = std::trunc(v);
    const float r = std::fabs(v - t) >= 0.5f ? t + std::copysign(1.0f, v) : t;
    b[2 + i] = uint8_t(int8_t(r));
  }
}

// ggml's quantize_row_q4_0_ref: d = (the value of largest magnitude) / -8, so that value gets
// code 0 and the codes run to 15; code = trunc(x / d + 8.5) capped at 15.
void q4_0(const float* x, uint8_t* b) {
  float amax = 0, max = 0;
  for (int i = 0; i < 32; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_u16(b, f32_to_f16(d));
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, int(x[j] * id + 8.5f));
    const int hi = std::min(15, int(x[j + 16] * id + 8.5f));
    b[2 + j] = uint8_t(lo | (hi << 4));
  }
}

// Sum of v[0..N) (N a multiple of 8) in one fixed order, eight lanes then a tree: short add
// chains, and a weight still quantizes the same wherever it is compiled.
template <int N>
float sum_of(const float* v) {
  float a[8] = {};
  for (int i = 0; i < N; i += 8)
    for (int l = 0; l < 8; ++l) a[l] += v[i + l];
  return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

// One sub-block's grid value = s * q - m (q in [0, nmax], m >= 0). Tries a few scales around
// (max - min) / nmax, refits s and m by least squares to the codes each one gives, and keeps
// the fit with the smallest squared error.
template <int N>
void fit_asymmetric(const float* x, int nmax, float& s_out, float& m_out) {
  float lo = 0, hi = x[0];
  for (int i = 0; i < N; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (hi <= lo) {
    s_out = 0;
    m_out = -lo;
    return;
  }
  const float fmax = float(nmax);
  float tmp[N];
  auto error_of = [&](float s, float m) {
    const float inv = 1.0f / s;
    for (int i = 0; i < N; ++i) {
      const float q = std::min(std::max(std::nearbyint((x[i] + m) * inv), 0.0f), fmax);
      const float r = s * q - m - x[i];
      tmp[i] = r * r;
    }
    return sum_of<N>(tmp);
  };
  float best_s = (hi - lo) / fmax, best_m = -lo;
  float best_err = error_of(best_s, best_m);
  const float sx = sum_of<N>(x);
  float qs[N], qq[N], qx[N];
  for (int step = -2; step <= 2; ++step) {
    const float iscale = (fmax + 0.2f * float(step)) / (hi - lo);
    // Codes under this scale, then the least-squares s, b of x ~ s q + b (b = -m <= 0).
    for (int i = 0; i < N; ++i) {
      const float q = std::min(std::max(std::nearbyint((x[i] - lo) * iscale), 0.0f), fmax);
      qs[i] = q;
      qq[i] = q * q;
      qx[i] = q * x[i];
    }
    const float sq = sum_of<N>(qs), sqq = sum_of<N>(qq), sqx = sum_of<N>(qx);
    const float det = float(N) * sqq - sq * sq;
    if (!(det > 0)) continue;
    float s = (float(N) * sqx - sq * sx) / det, b = (sx - s * sq) / float(N);
    if (b > 0) {  // the format's min is subtracted, never added
      b = 0;
      s = sqx / sqq;
    }
    if (!(s > 0)) continue;
    const float e = error_of(s, -b);
    if (e < best_err) {
      best_err = e;
      best_s = s;
      best_m = -b;
    }
  }
  s_out = best_s;
  m_out = best_m;
}

// Symmetric sub-block fit for Q6_K: grid value = s * q, q in [-32, 31]; s may be negative so the
// value of largest magnitude can take code -32.
template <int N>
float fit_symmetric(const float* x) {
  float amax = 0, max = 0;
  for (int i = 0; i < N; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  if (amax == 0) return 0;
  float tmp[N];
  auto error_of = [&](float s) {
    const float inv = 1.0f / s;
    for (int i = 0; i < N; ++i) {
      const float q = std::min(std::max(std::nearbyint(x[i] * inv), -32.0f), 31.0f);
      const float r = s * q - x[i];
      tmp[i] = r * r;
    }
    return sum_of<N>(tmp);
  };
  float best_s = max / -32.0f, best_err = error_of(best_s);
  float qq[N], qx[N];
  for (int step = -2; step <= 2; ++step) {
    const float iscale = -(32.0f + 0.5f * float(step)) / max;
    for (int i = 0; i < N; ++i) {
      const float q = std::min(std::max(std::nearbyint(x[i] * iscale), -32.0f), 31.0f);
      qq[i] = q * q;
      qx[i] = q * x[i];
    }
    const float sqq = sum_of<N>(qq);
    if (!(sqq > 0)) continue;
    const float s = sum_of<N>(qx) / sqq;
    const float e = error_of(s);
    if (e < best_err) {
      best_err = e;
      best_s = s;
    }
  }
  return best_s;
}

// The code in [0, nmax] whose decoded value (step * q - min, as the decoder rounds it) is nearest x.
int nearest_code(float x, float step, float min, int nmax) {
  if (step == 0.0f) return 0;
  const int q0 = int(std::clamp(std::nearbyint((x + min) / step), 0.0f, float(nmax)));
  int best = q0;
  float best_err = std::fabs(step * float(q0) - min - x);
  for (int q : {q0 - 1, q0 + 1}) {
    if (q < 0 || q > nmax) continue;
    const float err = std::fabs(step * float(q) - min - x);
    if (err < best_err) {
      best_err = err;
      best = q;
    }
  }
  return best;
}

// The 12 scale bytes of Q4_K/Q5_K (the inverse of dequant.cpp's k_scale_min).
void pack_k_scales(const int* sc, const int* mn, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = uint8_t(sc[j] | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = uint8_t(mn[j] | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = uint8_t((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
}

// Q4_K (bits = 4) and Q5_K (bits = 5): eight 32-element sub-blocks, each with its own 6-bit scale
// and min under the superblock's f16 d and dmin.
void qk_asym(const float* x, uint8_t* b, int bits) {
  const int nmax = (1 << bits) - 1;
  float s[8], m[8];
  for (int j = 0; j < 8; ++j) fit_asymmetric<32>(x + 32 * j, nmax, s[j], m[j]);
  const float smax = *std::max_element(s, s + 8), mmax = *std::max_element(m, m + 8);
  const uint16_t d16 = scale_f16(smax / 63.0f), dmin16 = scale_f16(mmax / 63.0f);
  const float d = f16_to_f32(d16), dmin = f16_to_f32(dmin16);
  int sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = d > 0 ? int(std::clamp(std::nearbyint(s[j] / d), 0.0f, 63.0f)) : 0;
    mn[j] = dmin > 0 ? int(std::clamp(std::nearbyint(m[j] / dmin), 0.0f, 63.0f)) : 0;
  }
  store_u16(b, d16);
  store_u16(b + 2, dmin16);
  pack_k_scales(sc, mn, b + 4);
  uint8_t* qh = b + 16;  // Q5_K only
  uint8_t* ql = bits == 4 ? b + 16 : b + 48;
  if (bits == 5) std::memset(qh, 0, 32);
  // Elements l of sub-blocks 2c and 2c + 1 share byte l of the c-th 32-byte run (low, high nibble).
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      int q[2];
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * c + h;
        q[h] = nearest_code(x[32 * j + l], d * float(sc[j]), dmin * float(mn[j]), nmax);
        if (bits == 5) qh[l] |= uint8_t((q[h] >> 4) << j);
      }
      ql[32 * c + l] = uint8_t((q[0] & 15) | ((q[1] & 15) << 4));
    }
}

// Q6_K: sixteen 16-element sub-blocks with int8 scales under one f16 d; codes q + 32 in 6 bits.
void q6_k(const float* x, uint8_t* b) {
  float s[16];
  float amax = 0;
  for (int j = 0; j < 16; ++j) {
    s[j] = fit_symmetric<16>(x + 16 * j);
    amax = std::max(amax, std::fabs(s[j]));
  }
  const uint16_t d16 = scale_f16(amax / 127.0f);
  const float d = f16_to_f32(d16);
  int8_t sc[16];
  for (int j = 0; j < 16; ++j) sc[j] = int8_t(d > 0 ? std::clamp(std::nearbyint(s[j] / d), -128.0f, 127.0f) : 0.0f);
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  std::memcpy(b + 192, sc, 16);
  store_u16(b + 208, d16);
  int q[256];
  for (int i = 0; i < 256; ++i) {
    const float step = d * float(sc[i / 16]);
    // Nearest of the 64 codes by the decoder's own arithmetic ((d * sc) * (q - 32)).
    int best = 0;
    float best_err = INFINITY;
    const int q0 = step != 0.0f ? int(std::clamp(std::nearbyint(x[i] / step), -32.0f, 31.0f)) : 0;
    for (int c : {q0 - 1, q0, q0 + 1}) {
      if (c < -32 || c > 31) continue;
      const float err = std::fabs(step * float(c) - x[i]);
      if (err < best_err) {
        best_err = err;
        best = c;
      }
    }
    q[i] = best + 32;
  }
  // Each half of 128: ql bytes l and l + 32 hold elements l, l + 32 (low nibbles) and l + 64,
  // l + 96 (high nibbles); qh byte l holds the top two bits of l, l + 32, l + 64, l + 96.
  for (int half = 0; half < 2; ++half) {
    const int* qq = q + 128 * half;
    for (int l = 0; l < 32; ++l) {
      ql[64 * half + l] = uint8_t((qq[l] & 15) | ((qq[l + 64] & 15) << 4));
      ql[64 * half + l + 32] = uint8_t((qq[l + 32] & 15) | ((qq[l + 96] & 15) << 4));
      qh[32 * half + l] =
          uint8_t((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) | ((qq[l + 64] >> 4) << 4) | ((qq[l + 96] >> 4) << 6));
    }
  }
}

}  // namespace

bool can_quantize(DType t) {
  switch (t) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return true;
    default: return false;
  }
}

void quantize_row(DType t, const float* x, void* dst, int64_t n) {
  DP_CHECK(can_quantize(t), "quantize_row: cannot quantize to {}", dtype_name(t));
  const int64_t be = dtype_block_elems(t), bb = dtype_block_bytes(t);
  DP_CHECK(n % be == 0, "quantize_row: {} elements are not whole {} blocks", n, dtype_name(t));
  uint8_t* out = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n / be; ++i) {
    const float* xb = x + i * be;
    uint8_t* b = out + i * bb;
    switch (t) {
      case DType::Q8_0: q8_0(xb, b); break;
      case DType::Q4_0: q4_0(xb, b); break;
      case DType::Q4_K: qk_asym(xb, b, 4); break;
      case DType::Q5_K: qk_asym(xb, b, 5); break;
      case DType::Q6_K: q6_k(xb, b); break;
      default: break;
    }
  }
}

}  // namespace dpserve
