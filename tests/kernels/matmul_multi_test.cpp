// matmul_multi must give exactly the bits of separate matmul calls (the model fuses q/k/v and
// gate/up with it and relies on batch invariance), for every weight dtype and several M.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/bf16.h"
#include "kernels/matmul.h"

using namespace dpserve;

namespace {

struct Mat {
  std::vector<uint16_t> h;
  std::vector<float> f;
  WeightView view(DType dt, int64_t n, int64_t k) {
    return WeightView{dt == DType::F32 ? static_cast<const void*>(f.data()) : h.data(), dt, n, k, k};
  }
};

Mat make(DType dt, int64_t n, int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> d(0, 1);
  Mat m;
  for (int64_t i = 0; i < n * k; ++i) {
    float v = d(rng);
    m.f.push_back(v);
    m.h.push_back(dt == DType::BF16 ? f32_to_bf16(v) : uint16_t(0x3c00 ^ (i & 0x3ff)));  // F16: some finite values
  }
  return m;
}

}  // namespace

TEST(MatmulMulti, BitIdenticalToSeparateProducts) {
  std::mt19937 rng(5);
  for (DType dt : {DType::BF16, DType::F32, DType::F16}) {
    for (int64_t M : {1, 3, 17, 40}) {
      const int64_t K = 300;
      const std::vector<int64_t> Ns = {64, 17, 130};
      std::vector<Mat> mats;
      for (int64_t n : Ns) mats.push_back(make(dt, n, K, rng));
      std::vector<float> x(size_t(M * K)), bias(200);
      std::normal_distribution<float> d(0, 1);
      for (auto& v : x) v = d(rng);
      for (auto& v : bias) v = d(rng);
      std::vector<std::vector<float>> sep(Ns.size()), fused(Ns.size());
      std::vector<MatmulOut> outs;
      for (size_t i = 0; i < Ns.size(); ++i) {
        sep[i].assign(size_t(M * Ns[i]), 0.f);
        fused[i].assign(size_t(M * Ns[i]), -1.f);
        const float* b = i == 1 ? bias.data() : nullptr;
        matmul(x.data(), M, K, mats[i].view(dt, Ns[i], K), b, sep[i].data(), Ns[i]);
        outs.push_back(MatmulOut{mats[i].view(dt, Ns[i], K), b, fused[i].data(), Ns[i]});
      }
      matmul_multi(x.data(), M, K, outs.data(), int64_t(outs.size()));
      for (size_t i = 0; i < Ns.size(); ++i)
        ASSERT_EQ(0, std::memcmp(sep[i].data(), fused[i].data(), sep[i].size() * sizeof(float)))
            << "dtype " << dtype_name(dt) << " M " << M << " output " << i;
    }
  }
}

TEST(MatmulMulti, RejectsMismatchedK) {
  std::mt19937 rng(1);
  Mat a = make(DType::F32, 4, 8, rng), b = make(DType::F32, 4, 9, rng);
  std::vector<float> x(9, 1.f), ya(4), yb(4);
  MatmulOut outs[2] = {{a.view(DType::F32, 4, 8), nullptr, ya.data(), 4}, {b.view(DType::F32, 4, 9), nullptr, yb.data(), 4}};
  EXPECT_ANY_THROW(matmul_multi(x.data(), 1, 9, outs, 2));
}
