#include "model/stacked_experts.h"

#include <cstring>

#include "core/check.h"

namespace dpserve {

const TensorInfo& stacked_float(const WeightStore& store, const std::string& name, const std::vector<int64_t>& shape) {
  const TensorInfo& t = store.get(name);
  if (t.shape != shape) {
    std::string want;
    for (int64_t d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
    fail("weights: tensor \"{}\" in {} does not have the shape [{}] config.json implies", name, t.file, want);
  }
  if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16)
    fail("weights: {} in {} is {}; stacked experts are read as F32, BF16 or F16", name, t.file, dtype_name(t.dtype));
  return t;
}

void add_expert_columns(WeightStore& store, const std::string& name, const TensorInfo& t, int64_t e, int64_t col0,
                        int64_t step, int64_t n) {
  const int64_t in = t.shape[1], out = t.shape[2], es = dtype_size(t.dtype);
  DP_CHECK(e >= 0 && e < t.shape[0] && col0 >= 0 && n >= 1 && col0 + (n - 1) * step < out);
  const auto* src = static_cast<const uint8_t*>(t.data) + e * in * out * es;
  std::vector<uint8_t> w(static_cast<size_t>(n * in * es));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < in; ++i)
      std::memcpy(&w[size_t((r * in + i) * es)], src + (i * out + col0 + r * step) * es, size_t(es));
  store.add_owned(name, TensorInfo{t.dtype, {n, in}, nullptr, t.file}, std::move(w));
}

}  // namespace dpserve
