// Placeholder until the SIMD primitives land: forwards to the portable kernel.
#include "kernels/attention_impl.h"

namespace dpserve::kernels::avx2 {
void attention_rows(const AttnCtx& c, int64_t s, int64_t kvh, int64_t i0, int64_t i1) {
  portable::attention_rows(c, s, kvh, i0, i1);
}
}  // namespace dpserve::kernels::avx2
