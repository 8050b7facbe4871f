// AVX-512 attention primitives: 16-wide dot products, V accumulation and exp.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention.h"
#include "kernels/simd_exp.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx2")

// Inside the target region, so the shared algorithm is compiled for this ISA.
#include "kernels/attention_impl.h"

namespace dpserve::kernels::avx512 {

namespace {

#include "kernels/attention_avx512_ops.h"

using Ops = Avx512Ops;

}  // namespace

void attention_job(const AttnCtx& c, const AttnJob& j, float* parts) { attention_job_impl<Ops>(c, j, parts); }

}  // namespace dpserve::kernels::avx512

#pragma GCC pop_options
