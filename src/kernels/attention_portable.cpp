// Portable attention primitives (plain C++).
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/attention_impl.h"

namespace dpserve::kernels::portable {

namespace {

struct Ops {
  template <class T>
  static float dot(const float* a, const T* b, int64_t d) {
    float s[8] = {};
    int64_t i = 0;
    for (; i + 8 <= d; i += 8)
      for (int j = 0; j < 8; ++j) s[j] += a[i + j] * kv_to_f32(b[i + j]);
    for (int j = 0; i + j < d; ++j) s[j] += a[i + j] * kv_to_f32(b[i + j]);
    return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
  }
  template <class T>
  static float scores(const float* q, const T* k, int64_t ldk, int64_t n, int64_t d, float scale, float* out) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) {
      out[j] = dot(q, k + j * ldk, d) * scale;
      m = std::max(m, out[j]);
    }
    return m;
  }
  template <class T>
  static void axpy_rows(float* acc, const T* v, int64_t ldv, const float* p, int64_t n, int64_t d) {
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < d; ++i) acc[i] += p[j] * kv_to_f32(v[j * ldv + i]);
  }
  static void scale(float* acc, float c, int64_t d) {
    for (int64_t i = 0; i < d; ++i) acc[i] *= c;
  }
  static float exp_sub_sum(float* x, int64_t n, float shift) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      x[i] = std::exp(x[i] - shift);
      sum += x[i];
    }
    return sum;
  }
};

}  // namespace

void attention_job(const AttnCtx& c, const AttnJob& j, float* parts) { attention_job_impl<Ops>(c, j, parts); }

}  // namespace dpserve::kernels::portable
