// Placeholder until the SIMD block lands: forwards to the portable block.
#include "kernels/matmul_impl.h"

namespace dpserve::kernels::avx2 {
void matmul_block(const MatmulTask& t, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  portable::matmul_block(t, m0, m1, n0, n1);
}
}  // namespace dpserve::kernels::avx2
