// AVX-512 attention primitives (kernels/attention_avx512_ops.h): scores of bf16 / int8 / fp8 keys as a
// small matrix product over transposed keys (fp32 keys key by key), V accumulation eight heads at
// a time, exp.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/attention.h"
#include "kernels/simd_exp.h"
#include "kernels/vec_math.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx2")
#ifdef __clang__  // clang ignores GCC's target pragma (the sanitizer trees compile these files with clang)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx2"))), apply_to = function)
#endif
// GCC 12's unpack / shuffle / extract intrinsics pass _mm512_undefined_*() as the unused merge
// source, which -Wuninitialized reports once they are inlined here: nothing is read from it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"

// Inside the target region, so the shared algorithm is compiled for this ISA.
#include "kernels/attention_impl.h"

namespace dpserve::kernels::avx512 {

namespace {

#include "kernels/attention_avx512_ops.h"

using Ops = Avx512Ops;

}  // namespace

void attention_job(const AttnCtx& c, const AttnJob& j, float* parts) { attention_job_impl<Ops>(c, j, parts); }

}  // namespace dpserve::kernels::avx512

#pragma GCC diagnostic pop
#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
